"""ONNX export of every task's model, from a real (tiny) run: onnxruntime gives rnnkit's outputs at
other batch sizes and lengths than the traced ones, with and without lengths; every registered
task declares its export; exporting by task name refuses bad input in one clear error, and the
command writes the file and refuses bad input in one line."""
import gzip
import random

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")  # the extra rnnkit[onnx]
pytest.importorskip("onnxruntime")

from export_helpers import SIZES, agree, ops  # noqa: E402

from rnnkit.cli import main  # noqa: E402
from rnnkit.export import TOLERANCE, ExportSpec  # noqa: E402
from rnnkit.exporting import export_graphs, export_onnx  # noqa: E402
from rnnkit.models import ClassifierConfig, SequenceClassifier  # noqa: E402
from rnnkit.runs import train  # noqa: E402
from rnnkit.tasks.charlm import CharLMOptions  # noqa: E402
from rnnkit.tasks.digits import DigitsOptions  # noqa: E402
from rnnkit.tasks.forecast import ForecastOptions  # noqa: E402
from rnnkit.tasks.mnist import MnistOptions  # noqa: E402
from rnnkit.tasks.sentiment import SentimentOptions  # noqa: E402
from rnnkit.training import TrainConfig  # noqa: E402


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
        assert agree(info.path, graph, batch, time) <= TOLERANCE, (batch, time)


@pytest.mark.slow  # an AOTInductor compile (a C++ build) per task: ~20-60 s each
@pytest.mark.parametrize("task", sorted(NAMES))
def test_every_task_run_packages_as_pt2(runs, tmp_path, task):
    [info] = export_onnx(runs[task], tmp_path / "model.pt2", lengths=True, format="pt2")
    assert info.path.is_file() and info.max_abs_diff is not None and info.max_abs_diff <= TOLERANCE


def test_every_registered_task_declares_its_export(runs):
    from rnnkit.tasks import all_tasks

    tasks = all_tasks()
    missing = sorted(name for name, cls in tasks.items() if not isinstance(getattr(cls, "export", None), ExportSpec))
    assert not missing, f"tasks without an ONNX export: give them an `export = ExportSpec(...)`: {missing}"
    assert tasks["sentiment"].export.lengths is True and tasks["digits"].export.lengths is False  # lengths by default
    assert set(tasks["translate"].export.parts()) == {"encoder", "decoder"}
    graph = export_graph(runs["sentiment"])
    assert list(graph.example(2, 5)) == ["x", "lengths"]


def test_layers_become_onnx_rnn_nodes(runs, tmp_path):
    for task, op in (("digits", "LSTM"), ("sentiment", "LSTM"), ("forecast", "GRU"), ("mnist", "LSTM")):
        [info] = export_onnx(runs[task], tmp_path / f"{task}.onnx", lengths=True, verify=False)
        found = ops(info.path)
        assert found[op] >= 1 and "Scan" not in found, (task, found)
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
    assert type(graph.model.rnn).__name__ == "OnnxLayer"  # the converted copy, sharing nothing with the run
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


# -- bad input -------------------------------------------------------------------------------

def _classifier(cell):
    torch.manual_seed(0)
    return SequenceClassifier(ClassifierConfig(num_classes=3, vocab_size=30, embedding_dim=5, cell=cell,
                                               hidden_size=6, num_layers=2, bidirectional=True, pooling="max"))


def test_bad_arguments_raise_one_clear_error(tmp_path):
    model = _classifier("lstm")
    with pytest.raises(ValueError, match="a bare model needs task=<task name>, got task=None"):
        export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="task 'nope' has no ONNX export; exportable: adding, alarm, caption, charlm, copy, digits"):
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


# -- the command -----------------------------------------------------------------------------

def test_command_writes_a_verified_file(runs, tmp_path, capfd):
    out = tmp_path / "sub" / "sentiment.onnx"
    assert main(["export", str(runs["sentiment"]), "--format", "onnx", "--out", str(out)]) == 0
    printed = capfd.readouterr()
    line = printed.out.strip()
    assert line.startswith(f"wrote {out}: inputs x, lengths; outputs logits; onnxruntime agrees with rnnkit within")
    assert printed.err == ""  # torch's C++ exporter warnings go to the log, not the terminal
    assert ops(out)["LSTM"] >= 1
    assert main(["export", str(runs["digits"]), "--no-verify"]) == 0  # default: RUN/model.onnx
    assert (runs["digits"] / "model.onnx").is_file() and "not verified" in capfd.readouterr().out


def test_command_step_writes_the_single_step_model(runs, capfd):
    assert main(["export", str(runs["charlm"]), "--step"]) == 0  # default: RUN/model.step.onnx
    line = capfd.readouterr().out.strip()
    assert line.startswith(f"wrote {runs['charlm'] / 'model.step.onnx'}: inputs x_t, h, c; outputs y_t, h_n, c_n; "
                           "onnxruntime agrees with rnnkit within")
    assert main(["export", str(runs["digits"]), "--step"]) == 2  # a bidirectional LSTM: no step model
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "bidirectional" in err


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
