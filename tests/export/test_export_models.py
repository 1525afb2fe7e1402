"""ONNX export of every kind of model and every cell: classifiers over each cell type and variant
(bidirectional, deep, with and without lengths), language models carrying their state, the
forecaster's highway, tagger, CTC and seq2seq graphs (greedy decoding through onnxruntime equals
rnnkit's); what ONNX cannot express is refused with a clear error."""
import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")  # the extra rnnkit[onnx]
pytest.importorskip("onnxruntime")

from export_helpers import SIZES, agree, ops  # noqa: E402

from rnnkit import GRU, LSTM  # noqa: E402
from rnnkit.export import TOLERANCE, max_abs_diff, run_onnx  # noqa: E402
from rnnkit.exporting import export_graphs, export_onnx  # noqa: E402
from rnnkit.models import (ClassifierConfig, Forecaster, ForecasterConfig, LanguageModel,  # noqa: E402
                           LanguageModelConfig, SequenceClassifier)


def export_graph(run_or_model, **kwargs):
    [(part, graph)] = export_graphs(run_or_model, **kwargs).items()
    assert part == ""
    return graph


# -- variants: peephole, layer norm, Cho's GRU, as ONNX Scans ---------------------------------

def _classifier(cell, **layer):
    torch.manual_seed(0)
    model = SequenceClassifier(ClassifierConfig(num_classes=3, vocab_size=30, embedding_dim=5, cell=cell,
                                                hidden_size=6, num_layers=2, bidirectional=True, pooling="max"))
    if layer:  # a combination the cell names do not offer
        model.rnn = (LSTM if "peephole" in layer else GRU)(5, 6, num_layers=2, batch_first=True, bidirectional=True,
                                                           **layer)
    return model


@pytest.mark.parametrize("cell, layer, op", [
    ("peephole_lstm", {}, "LSTM"), ("ln_lstm", {}, "Scan"), ("cho_gru", {}, "GRU"), ("ln_gru", {}, "Scan"),
    ("lstm", {"peephole": True, "layer_norm": True}, "Scan"),
    ("gru", {"reset_after": False, "layer_norm": True}, "Scan"),
    ("rnn_relu", {}, "RNN"),
])
def test_every_cell_exports_bidirectional_deep_with_and_without_lengths(tmp_path, cell, layer, op):
    model = _classifier(cell, **layer)
    for lengths in (False, True):
        path = tmp_path / f"{lengths}.onnx"
        export_onnx(model, path, task="sentiment", lengths=lengths, verify=False)
        graph = export_graph(model, task="sentiment", lengths=lengths)
        for batch, time in SIZES:
            assert agree(path, graph, batch, time, seed=batch) <= TOLERANCE, (lengths, batch, time)
            inputs = graph.example(batch, time, seed=batch)
            with torch.no_grad():  # the converted copy in eager mode (the scans) is rnnkit too
                assert max_abs_diff([graph(*inputs.values()).numpy()], graph.reference(inputs)) <= TOLERANCE
        found = ops(path)
        assert found[op] >= 1 and (op == "Scan" or "Scan" not in found) and "Loop" not in found, found
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
        assert agree(info.path, graph, batch, time) <= TOLERANCE


NEW_CELL_STATES = {"mingru": ("h",), "minlstm": ("h",), "indrnn": ("h",), "sru": ("h", "c"),
                   "slstm": ("h", "c", "n", "m"), "mlstm": ("h", "C", "n", "m")}


@pytest.mark.parametrize("cell", sorted(NEW_CELL_STATES))
def test_the_cells_after_2017_export_as_scans_and_carry_every_state_part(tmp_path, cell):
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig(vocab_size=12, embedding_dim=4, cell=cell, hidden_size=8, num_layers=2))
    [info] = export_onnx(model, tmp_path / "lm.onnx", task="charlm", lengths=True)
    assert info.outputs == ("logits",) + tuple(f"{n}_n" for n in NEW_CELL_STATES[cell])
    graph = export_graph(model, task="charlm", lengths=True)
    for batch, time in SIZES + ((2, 1),):
        assert agree(info.path, graph, batch, time) <= TOLERANCE
    assert ops(info.path)["Scan"] >= 2  # one per layer: the cell's own reference step


def test_forecaster_with_highway_and_lengths(tmp_path):
    torch.manual_seed(0)
    model = Forecaster(ForecasterConfig(horizon=3, hidden_size=5, cell="ln_gru", highway=2, num_layers=2))
    [info] = export_onnx(model, tmp_path / "f.onnx", task="forecast", lengths=True)
    graph = export_graph(model, task="forecast", lengths=True)
    for batch, time in SIZES:
        assert agree(info.path, graph, batch, time) <= TOLERANCE


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
            assert agree(info.path, graph, batch, time) <= TOLERANCE


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
            assert agree(info.path, graph, batch, time) <= TOLERANCE


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
            assert agree(info.path, graphs[part], batch, time) <= TOLERANCE, part


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


# -- what ONNX cannot express, and engines ---------------------------------------------------

def test_layers_onnx_cannot_express_are_refused(tmp_path):
    """An rnnkit.Recurrent runs arbitrary cells, whose equations nothing declares. (An LSTM with
    proj_size, which no ONNX node has, is no longer refused: the reference loop exports it, see
    test_export_backends.py.)"""
    from rnnkit import Recurrent
    from rnnkit.cells import GRUCell

    model = _classifier("lstm")
    model.rnn = Recurrent(lambda n: GRUCell(n, 6), input_size=5, num_layers=2, bidirectional=True, batch_first=True)
    with pytest.raises(ValueError, match="rnn is an rnnkit.Recurrent over custom cells, which has no ONNX export"):
        export_onnx(model, tmp_path / "m.onnx", task="sentiment")
    assert not (tmp_path / "m.onnx").exists()


def test_a_standard_layer_on_the_python_engine_exports_as_an_onnx_node(tmp_path):
    model = _classifier("gru")
    model.rnn = GRU(5, 6, num_layers=2, batch_first=True, bidirectional=True, engine="python")
    [info] = export_onnx(model, tmp_path / "m.onnx", task="sentiment")
    assert info.max_abs_diff <= TOLERANCE and ops(info.path)["GRU"] == 2
    assert model.rnn.engine == "python"  # the model is not changed
