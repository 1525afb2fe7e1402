"""ONNX export: every task's model, exported from a real (tiny) run, gives rnnkit's outputs in
onnxruntime at other batch sizes and lengths than the traced ones, with and without lengths;
the variants export as loops; the command writes the file and refuses bad input in one line."""
import gzip
import random
from collections import Counter

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")  # the extra rnnkit[onnx]
pytest.importorskip("onnxruntime")

from rnnkit import GRU, LSTM
from rnnkit.cli import main
from rnnkit.export import EXPORTS, TOLERANCE, export_graphs, export_onnx, max_abs_diff, run_onnx
from rnnkit.models import (ClassifierConfig, Forecaster, ForecasterConfig, LanguageModel, LanguageModelConfig,
                           SequenceClassifier)
from rnnkit.tasks.charlm import CharLMOptions
from rnnkit.tasks.digits import DigitsOptions
from rnnkit.tasks.forecast import ForecastOptions
from rnnkit.tasks.mnist import MnistOptions
from rnnkit.tasks.sentiment import SentimentOptions
from rnnkit.training import TrainConfig
from rnnkit.training.run import train

SIZES = ((1, 3), (4, 11))  # (batch, time): neither is the traced (3, 6)


# -- tiny runs of every task -----------------------------------------------------------------

def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    gzip.open(path, "wb").write(header + array.astype(np.uint8).tobytes())


def _mnist_folder(root):
    folder = root / "idx"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 12)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 3)
    return str(folder)


def _sentiment_csv(root):
    rng = random.Random(0)
    words = "good bad tea box taste price very".split()
    rows = ["text,label"] + [f"{' '.join(rng.choice(words) for _ in range(rng.randint(2, 9)))},{'ab'[k % 2]}"
                             for k in range(60)]
    (root / "reviews.csv").write_text("\n".join(rows) + "\n")
    return str(root / "reviews.csv")


def _charlm_text(root):
    rng = random.Random(0)
    text = "\n".join(" ".join(rng.choice(["to", "be", "or", "not", "king"]) for _ in range(6)) for _ in range(120))
    (root / "tiny.txt").write_text(text)
    return str(root / "tiny.txt")


def _forecast_csv(root):
    t = np.arange(150)
    values = 50 + 0.1 * t + 5 * np.sin(2 * np.pi * t / 12)
    (root / "series.csv").write_text("value\n" + "\n".join(repr(float(v)) for v in values) + "\n")
    return str(root / "series.csv")


def _options(task: str, root):
    """Tiny options per task; the cells differ, so the runs cover standard layers and a variant."""
    if task == "digits":
        return DigitsOptions(hidden_size=8)  # bidirectional LSTM
    if task == "mnist":
        return MnistOptions(data=_mnist_folder(root), hidden_size=6, cell="peephole_lstm", shift=0)
    if task == "sentiment":
        return SentimentOptions(data=_sentiment_csv(root), max_len=12, min_freq=1, embedding_dim=8, hidden_size=6,
                                embedding_init="random", val_fraction=0.2, test_fraction=0.2)
    if task == "charlm":
        return CharLMOptions(data=_charlm_text(root), embedding_dim=8, hidden_size=12, num_layers=2, seq_len=10)
    return ForecastOptions(data=_forecast_csv(root), column="value", window=12, horizon=2, hidden_size=6, cell="gru",
                           highway=3, arima="off", season=12)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_runs")
    out = {}
    for task in ("digits", "mnist", "sentiment", "charlm", "forecast"):
        (root / task).mkdir()
        config = TrainConfig(epochs=1, batch_size=256 if task == "digits" else 16, lr=0.01, seed=0)
        train(task, _options(task, root / task), config, root / task / "run", progress=False)
        out[task] = root / task / "run"
    return out


def export_graph(run_or_model, **kwargs):
    [(part, graph)] = export_graphs(run_or_model, **kwargs).items()
    assert part == ""
    return graph


def _agree(path, graph, batch, time, seed=0):
    """Largest |onnxruntime - rnnkit| over every output, at (batch, time)."""
    inputs = graph.example(batch, time, seed=seed)
    got, want = run_onnx(path, inputs), graph.reference(inputs)
    assert [g.shape for g in got] == [tuple(w.shape) for w in want]
    return max_abs_diff(got, want)


def _ops(path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


# -- every task's run ------------------------------------------------------------------------

NAMES = {
    "digits": (("x",), ("logits",)), "mnist": (("x",), ("logits",)), "sentiment": (("x",), ("logits",)),
    "charlm": (("x", "h0", "c0"), ("logits", "h_n", "c_n")), "forecast": (("x",), ("forecast",)),
}


@pytest.mark.parametrize("lengths", [False, True])
@pytest.mark.parametrize("task", sorted(NAMES))
def test_every_task_run_exports_and_matches_rnnkit(runs, tmp_path, task, lengths):
    [info] = export_onnx(runs[task], tmp_path / "model.onnx", lengths=lengths)
    assert info.part == "" and info.path == tmp_path / "model.onnx"
    inputs, outputs = NAMES[task]
    assert info.inputs == inputs + (("lengths",) if lengths else ()) and info.outputs == outputs
    assert info.max_abs_diff is not None and info.max_abs_diff <= TOLERANCE
    onnx.checker.check_model(str(info.path))
    graph = export_graph(runs[task], lengths=lengths)
    for batch, time in SIZES:
        assert _agree(info.path, graph, batch, time) <= TOLERANCE, (batch, time)


def test_the_task_table_covers_every_registered_task(runs):
    from rnnkit.tasks.base import all_tasks

    missing = set(all_tasks()) - set(EXPORTS)
    assert not missing, f"tasks without an ONNX export: add them to rnnkit.export.EXPORTS: {sorted(missing)}"
    assert EXPORTS["sentiment"][1] is True and EXPORTS["digits"][1] is False  # lengths by default
    graph = export_graph(runs["sentiment"])
    assert list(graph.example(2, 5)) == ["x", "lengths"]


def test_layers_become_onnx_rnn_nodes(runs, tmp_path):
    for task, op in (("digits", "LSTM"), ("sentiment", "LSTM"), ("forecast", "GRU"), ("mnist", "LSTM")):
        [info] = export_onnx(runs[task], tmp_path / f"{task}.onnx", lengths=True, verify=False)
        ops = _ops(info.path)
        assert ops[op] >= 1 and "Loop" not in ops, (task, ops)
    model = onnx.load(str(tmp_path / "mnist.onnx"))  # the peephole LSTM: ONNX's P input is set
    lstm = next(node for node in model.graph.node if node.op_type == "LSTM")
    assert len(lstm.input) == 8 and lstm.input[7]


def test_export_leaves_the_model_as_it_was(runs):
    import rnnkit

    run = rnnkit.load(runs["mnist"])
    run.model.train()
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    rnn_class = type(run.model.rnn)
    graph = export_graph(run)
    assert run.model.training and type(run.model.rnn) is rnn_class
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())
    assert type(graph.model.rnn).__name__ == "_VariantLayer"  # the converted copy, sharing nothing with the run
    assert graph.model.rnn.layer is not run.model.rnn


# -- lengths: what the graph computes is what rnnkit computes on each sequence alone ------------

def test_with_lengths_each_sequence_is_as_if_alone(runs):
    """The reference the ONNX graph is compared with: for every kind, a padded sequence of
    length L gives what the plain model gives on its first L steps alone."""
    import rnnkit

    for task in ("sentiment", "charlm", "forecast"):
        run = rnnkit.load(runs[task])
        graph = export_graph(run, lengths=True)
        inputs = graph.example(4, 9, seed=3)
        outs = graph.reference(inputs)
        x, lengths = inputs["x"], inputs["lengths"]
        for i, L in enumerate(lengths.tolist()):
            with torch.no_grad():
                if task == "charlm":
                    state = (inputs["h0"][:, i:i + 1], inputs["c0"][:, i:i + 1])
                    logits, (h, c) = run.model(x[i:i + 1, :L], state)
                    assert torch.allclose(outs[0][i, :L], logits[0], atol=1e-5)
                    assert torch.allclose(outs[1][:, i], h[:, 0], atol=1e-5)
                    assert torch.allclose(outs[2][:, i], c[:, 0], atol=1e-5)
                else:
                    alone = run.model(x[i:i + 1, :L])
                    assert torch.allclose(outs[0][i], alone[0], atol=1e-5), (task, i, L)


# -- variants: peephole, layer norm, Cho's GRU, as ONNX loops ---------------------------------

def _classifier(cell, **layer):
    torch.manual_seed(0)
    model = SequenceClassifier(ClassifierConfig(num_classes=3, vocab_size=30, embedding_dim=5, cell=cell,
                                                hidden_size=6, num_layers=2, bidirectional=True, pooling="max"))
    if layer:  # a combination the cell names do not offer
        model.rnn = (LSTM if "peephole" in layer else GRU)(5, 6, num_layers=2, batch_first=True, bidirectional=True,
                                                           **layer)
    return model


@pytest.mark.parametrize("cell, layer, op", [
    ("peephole_lstm", {}, "LSTM"), ("ln_lstm", {}, "Loop"), ("cho_gru", {}, "GRU"), ("ln_gru", {}, "Loop"),
    ("lstm", {"peephole": True, "layer_norm": True}, "Loop"),
    ("gru", {"reset_after": False, "layer_norm": True}, "Loop"),
    ("rnn_relu", {}, "RNN"),
])
def test_every_cell_exports_bidirectional_deep_with_and_without_lengths(tmp_path, cell, layer, op):
    model = _classifier(cell, **layer)
    for lengths in (False, True):
        path = tmp_path / f"{lengths}.onnx"
        export_onnx(model, path, task="sentiment", lengths=lengths, verify=False)
        graph = export_graph(model, task="sentiment", lengths=lengths)
        for batch, time in SIZES:
            assert _agree(path, graph, batch, time, seed=batch) <= TOLERANCE, (lengths, batch, time)
            inputs = graph.example(batch, time, seed=batch)
            with torch.no_grad():  # the converted copy in eager mode (the loops) is rnnkit too
                assert max_abs_diff([graph(*inputs.values()).numpy()], graph.reference(inputs)) <= TOLERANCE
        ops = _ops(path)
        assert ops[op] >= 1 and (op == "Loop" or "Loop" not in ops), ops
    if cell == "cho_gru":
        gru = next(node for node in onnx.load(str(path)).graph.node if node.op_type == "GRU")
        assert {a.name: a.i for a in gru.attribute}["linear_before_reset"] == 0


@pytest.mark.parametrize("cell", ["ln_lstm", "cho_gru"])
def test_variant_language_model_carries_its_state(tmp_path, cell):
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig(vocab_size=12, embedding_dim=4, cell=cell, hidden_size=5, num_layers=2))
    [info] = export_onnx(model, tmp_path / "lm.onnx", task="charlm", lengths=True)
    assert info.outputs == (("logits", "h_n", "c_n") if cell == "ln_lstm" else ("logits", "h_n"))
    graph = export_graph(model, task="charlm", lengths=True)
    for batch, time in SIZES + ((2, 1),):  # time 1: one generation step
        assert _agree(info.path, graph, batch, time) <= TOLERANCE


def test_forecaster_with_highway_and_lengths(tmp_path):
    torch.manual_seed(0)
    model = Forecaster(ForecasterConfig(horizon=3, hidden_size=5, cell="ln_gru", highway=2, num_layers=2))
    [info] = export_onnx(model, tmp_path / "f.onnx", task="forecast", lengths=True)
    graph = export_graph(model, task="forecast", lengths=True)
    for batch, time in SIZES:
        assert _agree(info.path, graph, batch, time) <= TOLERANCE


# -- the other tasks' models: tagger, CTC, seq2seq, the memory benchmarks --------------------

@pytest.mark.parametrize("cell, chars", [("lstm", True), ("ln_gru", False)])
def test_tagger_exports_emissions(tmp_path, cell, chars):
    from rnnkit.models.tagger import SequenceTagger, TaggerConfig

    torch.manual_seed(0)
    extra = {"case_dim": 3} if chars and "case_dim" in TaggerConfig.__dataclass_fields__ else {}
    model = SequenceTagger(TaggerConfig(vocab_size=20, num_tags=5, embedding_dim=6, char_vocab_size=10 if chars else 0,
                                        char_embedding_dim=3, char_channels=4, cell=cell, hidden_size=5, crf=chars,
                                        **extra))
    for lengths in (True, False):
        [info] = export_onnx(model, tmp_path / "tagger.onnx", task="tagging", lengths=lengths)
        assert info.inputs == (("words",) + (("chars",) if chars else ()) + (("cases",) if extra else ())
                               + (("lengths",) if lengths else ()))
        graph = export_graph(model, task="tagging", lengths=lengths)
        for batch, time in SIZES:
            assert _agree(info.path, graph, batch, time) <= TOLERANCE


@pytest.mark.parametrize("cell, stack", [("lstm", 3), ("cho_gru", 2)])
def test_ctc_model_exports_log_probs_and_output_lengths(tmp_path, cell, stack):
    from rnnkit.models.ctc import CTCConfig, CTCModel

    torch.manual_seed(0)
    model = CTCModel(CTCConfig(num_features=4, num_classes=6, stack=stack, cell=cell, hidden_size=5))
    for lengths in (True, False):
        [info] = export_onnx(model, tmp_path / "ctc.onnx", task="speech", lengths=lengths)
        assert info.outputs == ("log_probs", "out_lengths")
        graph = export_graph(model, task="speech", lengths=lengths)
        for batch, time in SIZES + ((2, 7),):  # T not a multiple of the stack: a padded last step
            assert _agree(info.path, graph, batch, time) <= TOLERANCE


def test_memory_benchmark_models_export(tmp_path):
    torch.manual_seed(0)
    adding = Forecaster(ForecasterConfig(horizon=1, input_size=2, hidden_size=5, cell="peephole_lstm"))
    copying = LanguageModel(LanguageModelConfig(vocab_size=10, embedding_dim=4, cell="gru", hidden_size=5))
    for task, model in (("adding", adding), ("copy", copying)):
        [info] = export_onnx(model, tmp_path / f"{task}.onnx", task=task)
        assert info.max_abs_diff <= TOLERANCE


@pytest.mark.parametrize("cell, attention", [("lstm", "luong"), ("cho_gru", "bahdanau"), ("ln_lstm", "none")])
def test_seq2seq_exports_encoder_and_decoder_step(tmp_path, cell, attention):
    from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig

    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(source_vocab_size=15, target_vocab_size=12, embedding_dim=5, cell=cell,
                                  hidden_size=4, num_layers=2, attention=attention))
    encoder, decoder = export_onnx(model, tmp_path / "t.onnx", task="translate")
    assert (encoder.part, encoder.path.name, decoder.part, decoder.path.name) == (
        "encoder", "t.encoder.onnx", "decoder", "t.decoder.onnx")
    assert encoder.inputs == ("source", "lengths") and decoder.inputs[0] == "y_prev"
    graphs = export_graphs(model, task="translate")
    for part, info in (("encoder", encoder), ("decoder", decoder)):
        for batch, time in SIZES:
            assert _agree(info.path, graphs[part], batch, time) <= TOLERANCE, part


def test_seq2seq_greedy_decoding_through_onnx_equals_rnnkit(tmp_path):
    """The two graphs used as a translator would: encode once, then feed the step its own
    state and the likeliest token (specials barred as greedy_decode bars them)."""
    from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig, greedy_decode

    torch.manual_seed(1)
    model = Seq2Seq(Seq2SeqConfig(source_vocab_size=15, target_vocab_size=12, embedding_dim=5, cell="lstm",
                                  hidden_size=6, attention="luong")).eval()
    encoder, decoder = export_onnx(model, tmp_path / "t.onnx", task="translate", verify=False)
    source = torch.randint(4, 15, (3, 7))
    lengths = torch.tensor([7, 2, 5])
    want = [h.tokens for h in greedy_decode(model, source, lengths, max_len=6)]
    memory, mask, keys, h, c = run_onnx(encoder.path, {"source": source, "lengths": lengths})
    y = np.full(3, model.config.bos_index)
    tokens, done = [[] for _ in range(3)], np.zeros(3, bool)
    for t in range(6):
        step = {"y_prev": torch.from_numpy(y), "h": torch.from_numpy(h), "c": torch.from_numpy(c),
                "memory": torch.from_numpy(memory), "mask": torch.from_numpy(mask), "keys": torch.from_numpy(keys)}
        logits, h, c, _ = run_onnx(decoder.path, step)
        logits[:, [0, 1, 2]] = -np.inf  # <pad>, <unk>, <bos>
        if t == 5:  # the length limit: only <eos>
            logits[:, :] = np.where(np.arange(12) == 3, logits, -np.inf)
        y = logits.argmax(-1)
        for b in range(3):
            if not done[b] and y[b] != 3:
                tokens[b].append(int(y[b]))
        done |= y == 3
    assert tokens == want


# -- bad input -------------------------------------------------------------------------------

def test_bad_arguments_raise_one_clear_error(tmp_path):
    model = _classifier("lstm")
    with pytest.raises(ValueError, match="a bare model needs task=<task name>, got task=None"):
        export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="task 'nope' has no ONNX export; exportable: adding, charlm, copy, digits"):
        export_onnx(model, tmp_path / "m.onnx", task="nope")
    with pytest.raises(ValueError, match=r"path must end in \.onnx, got '.*m\.txt'"):
        export_onnx(model, tmp_path / "m.txt", task="sentiment")
    with pytest.raises(TypeError, match="run_or_model must be a run directory, a RunModel or an nn.Module, got int"):
        export_onnx(3, tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="lengths must be a bool or None, got str 'yes'"):
        export_onnx(model, tmp_path / "m.onnx", task="sentiment", lengths="yes")
    with pytest.raises(ValueError, match="does not exist"):
        export_onnx(tmp_path / "no-run", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_layers_onnx_cannot_express_are_refused(tmp_path):
    from rnnkit import Recurrent
    from rnnkit.cells import GRUCell

    model = _classifier("lstm")
    model.rnn = Recurrent(lambda n: GRUCell(n, 6), input_size=5, num_layers=2, bidirectional=True, batch_first=True)
    with pytest.raises(ValueError, match="rnn is an rnnkit.Recurrent over custom cells, which has no ONNX export"):
        export_onnx(model, tmp_path / "m.onnx", task="sentiment")
    model.rnn = LSTM(5, 6, num_layers=2, batch_first=True, bidirectional=True, proj_size=3)
    with pytest.raises(ValueError, match="rnn: LSTM with proj_size has no ONNX export"):
        export_onnx(model, tmp_path / "m.onnx", task="sentiment")
    assert not (tmp_path / "m.onnx").exists()


def test_a_standard_layer_on_the_python_engine_exports_as_an_onnx_node(tmp_path):
    model = _classifier("gru")
    model.rnn = GRU(5, 6, num_layers=2, batch_first=True, bidirectional=True, engine="python")
    [info] = export_onnx(model, tmp_path / "m.onnx", task="sentiment")
    assert info.max_abs_diff <= TOLERANCE and _ops(info.path)["GRU"] == 2
    assert model.rnn.engine == "python"  # the copy switched engines, not the model


# -- the command -----------------------------------------------------------------------------

def test_command_writes_a_verified_file(runs, tmp_path, capfd):
    out = tmp_path / "sub" / "sentiment.onnx"
    assert main(["export", str(runs["sentiment"]), "--format", "onnx", "--out", str(out)]) == 0
    printed = capfd.readouterr()
    line = printed.out.strip()
    assert line.startswith(f"wrote {out}: inputs x, lengths; outputs logits; onnxruntime agrees with rnnkit within")
    assert printed.err == ""  # torch's C++ exporter warnings go to the log, not the terminal
    assert _ops(out)["LSTM"] >= 1
    assert main(["export", str(runs["digits"]), "--no-verify"]) == 0  # default: RUN/model.onnx
    assert (runs["digits"] / "model.onnx").is_file() and "not verified" in capfd.readouterr().out


def test_command_refuses_bad_input_in_one_line(runs, tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run directory" in err and "missing does not exist" in err
    with pytest.raises(SystemExit) as stop:
        main(["export", str(runs["digits"]), "--format", "tflite"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "invalid choice: 'tflite'" in err
    assert main(["export", str(runs["digits"]), "--out", str(tmp_path / "m.pb")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "path must end in .onnx" in err
    assert not (tmp_path / "m.onnx").exists()
