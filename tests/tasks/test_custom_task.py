"""A task defined only here, outside rnnkit, registered with ``rnnkit.tasks.register``: the
command line (in this process) lists it, trains it, evaluates it and predicts with the
task's own predict option, without any change to rnnkit."""
import dataclasses
import json
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rnnkit
from rnnkit.cli import main
from rnnkit.export import ExportGraph, ExportSpec, run_onnx
from rnnkit.tasks import TASKS, NoOptions, Task, TensorData, get_task, register
from rnnkit.training import RunTask, StepOutput

LABELS = ["negative", "positive"]


@dataclass
class SignOptions:
    seq_len: int = 10  # values per sequence
    size: int = 320  # sequences, split 60 / 20 / 20
    hidden_size: int = 8

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise ValueError(f"SignOptions: seq_len must be >= 1, got {self.seq_len}")


@dataclass
class SignPredictOptions:
    threshold: float = field(default=0.5, metadata={"help": "probability of 'positive' above which it is chosen"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"SignPredictOptions: threshold must be in [0, 1], got {self.threshold}")


class SignModel(nn.Module):
    """A tiny rnnkit GRU read out at its last step: x (B, T, 1) -> logits (B, 2)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.rnn = rnnkit.GRU(1, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 2)

    def forward(self, x):
        out, _ = self.rnn(x)  # (B, T, H)
        return self.head(out[:, -1])  # (B, 2)


class SignGraph(ExportGraph):
    """SignModel as an ONNX graph: x (B, T, 1) -> logits (B, 2), batch and time dynamic."""

    kind = "sign"

    def output_names(self):
        return ["logits"]

    def dynamic_axes(self, name):
        return {"x": {0: "batch", 1: "time"}, "logits": {0: "batch"}}[name]

    def sample_inputs(self, batch, time, g):
        return {"x": torch.randn(batch, time, 1, generator=g)}

    def run(self, model, x):
        return model(x)


class SignTask(Task):
    """Is the sum of a sequence of random numbers positive?"""

    name = "toy_sign"
    description = "toy: is the sum of a sequence positive? (defined in a test file)"
    default_data = "random sequences, N(0, 1), generated from the seed"
    metric, mode = "accuracy", "max"
    Options = SignOptions
    PredictOptions = SignPredictOptions
    export = ExportSpec(SignGraph)  # `rnnkit export RUN` writes this graph
    train_defaults = {"epochs": 2, "batch_size": 32, "lr": 0.02}

    def prepare(self, seed: int) -> dict[str, TensorData]:
        o = self.options
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(o.size, o.seq_len, 1, generator=g)  # (N, T, 1)
        y = (x.sum(dim=(1, 2)) > 0).long()  # (N,)
        self.meta = {"labels": LABELS}
        cut = [0, o.size * 3 // 5, o.size * 4 // 5, o.size]
        return {name: TensorData({"x": x[lo:hi], "y": y[lo:hi]})
                for name, lo, hi in zip(("train", "val", "test"), cut, cut[1:])}

    def build_model(self) -> SignModel:
        return SignModel(self.options.hidden_size)

    def step(self, model, batch, state=None) -> StepOutput:
        logits = model(batch["x"])  # (B, 2)
        loss_sum = F.cross_entropy(logits, batch["y"], reduction="sum")
        correct = int((logits.argmax(-1) == batch["y"]).sum())
        return StepOutput(loss_sum, len(batch["y"]), {"correct": correct})

    @torch.no_grad()
    def predict(self, model, inputs: list[str], options: SignPredictOptions) -> list[dict]:
        rows = []
        for text in inputs:
            x = torch.tensor([float(v) for v in text.split()]).view(1, -1, 1)  # (1, T, 1)
            p = float(torch.softmax(model(x), -1)[0, 1])
            rows.append({"input": text, "label": LABELS[p > options.threshold], "probability": round(p, 4)})
        return rows


@pytest.fixture()
def registered():
    """SignTask, registered for one test only (other tests list every task)."""
    register(SignTask)
    yield SignTask
    TASKS.pop(SignTask.name)


def test_register_makes_the_task_known_by_name_and_checks_it(registered):
    assert get_task("toy_sign") is SignTask
    assert register(SignTask) is SignTask  # again: no error
    assert isinstance(SignTask(SignOptions()), RunTask)

    class Other(SignTask):
        pass

    with pytest.raises(ValueError, match="register: task name 'toy_sign' is taken by .*SignTask"):
        register(Other)
    bad = type("Bad", (SignTask,), {"name": "bad name"})
    with pytest.raises(ValueError, match="register: Bad.name must be letters, digits"):
        register(bad)
    no_dataclass = type("NoDataclass", (SignTask,), {"name": "no_dataclass", "PredictOptions": dict})
    with pytest.raises(TypeError, match="register: NoDataclass.PredictOptions must be a dataclass"):
        register(no_dataclass)
    assert "bad name" not in TASKS and "no_dataclass" not in TASKS


def test_the_command_line_trains_evaluates_and_predicts_a_task_defined_here(registered, tmp_path, capsys):
    assert main(["tasks"]) == 0
    listing = capsys.readouterr().out
    assert "toy_sign" in listing and "test_accuracy" in listing and "defined in a test file" in listing

    out = tmp_path / "run"
    assert main(["train", "toy_sign", "--epochs", "2", "--hidden-size", "6", "--no-progress", "--out", str(out)]) == 0
    assert "toy_sign: " in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "toy_sign" and config["options"] == dataclasses.asdict(SignOptions(hidden_size=6))
    assert config["train"]["lr"] == 0.02  # the task's train_defaults
    assert json.loads((out / "preprocess.json").read_text()) == {"labels": LABELS}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "toy_sign" and summary["epochs"] == 2 and summary["steps"] == 2 * 6  # 192 / 32
    for name in ("model.safetensors", "metrics.jsonl", "plots/loss.png", "plots/accuracy.png",
                 "checkpoints/last/trainer.json"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_loss = [r["train_loss"] for r in records if r["split"] == "train"]
    assert train_loss[-1] < train_loss[0]

    assert main(["evaluate", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test_accuracy"] == summary["test_accuracy"]
    assert metrics["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-9)

    inputs = ["3 2 4 1", "-3 -2 -4 -1"]
    assert main(["predict", str(out), *inputs]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == inputs and all(r["label"] in LABELS for r in rows)
    # the task's own option, as a flag; a threshold of 1 makes every answer negative
    assert main(["predict", str(out), "--threshold", "1.0", *inputs]) == 0
    strict = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in strict] == ["negative", "negative"]
    assert [r["probability"] for r in strict] == [r["probability"] for r in rows]
    assert rnnkit.load(out).predict(inputs, threshold=1.0) == strict  # the same from Python

    # the task's options show in `predict RUN --help` and are checked by its dataclass
    with pytest.raises(SystemExit):
        main(["predict", str(out), "--help"])
    assert "--threshold FLOAT" in capsys.readouterr().out
    assert main(["predict", str(out), "--threshold", "2", "1 2"]) == 2
    assert "SignPredictOptions: threshold must be in [0, 1], got 2.0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage_error:  # another task's option: a usage error, as argparse's
        main(["predict", str(out), "--horizon", "3", "1 2"])
    assert usage_error.value.code == 2 and "unrecognized arguments: --horizon" in capsys.readouterr().err
    assert main(["generate", str(out)]) == 2
    assert "task toy_sign does not generate text" in capsys.readouterr().err

    # export: the task's own graph (its `export` declaration), written and checked in onnxruntime
    onnx_file = tmp_path / "sign.onnx"
    assert main(["export", str(out), "--out", str(onnx_file)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {onnx_file}: inputs x; outputs logits; onnxruntime agrees with rnnkit within")
    x = torch.tensor([[3.0, 2.0, 4.0, 1.0], [-3.0, -2.0, -4.0, -1.0]]).unsqueeze(-1)  # (2, 4, 1)
    [logits] = run_onnx(onnx_file, {"x": x})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(logits), rnnkit.load(out).model(x), atol=1e-5, rtol=1e-5)


def test_a_run_of_a_task_that_is_not_registered_says_so(registered, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "toy_sign", "--epochs", "1", "--no-progress", "--out", str(out)]) == 0
    TASKS.pop("toy_sign")
    try:
        assert main(["predict", str(out), "1 2"]) == 2
        assert "run of task 'toy_sign', which is not registered" in capsys.readouterr().err
    finally:
        register(SignTask)  # for the fixture to remove


def test_no_options_task_predict_rejects_unknown_keywords():
    task = SignTask(SignOptions())
    task.meta = {"labels": LABELS}
    run = rnnkit.runs.RunModel(task.build_model(), task, {})
    with pytest.raises(ValueError, match="toy_sign: predict takes no option horizon \\(its options: threshold\\)"):
        run.predict(["1 2"], horizon=3)
    assert NoOptions() == NoOptions()  # the options of a task that takes none


def test_installed_packages_declare_tasks_by_entry_point(monkeypatch, caplog):
    """``[project.entry-points."rnnkit.tasks"] toy_sign = "pkg.mod:SignTask"`` makes the `rnnkit` command see it."""
    import importlib.metadata

    import rnnkit.tasks.base as base

    class Entry:
        def __init__(self, name, value, load):
            self.name, self.value, self.load = name, value, load

    def broken():
        raise ImportError("no module named pkg.missing")

    entries = [Entry("toy_sign", "tests:SignTask", lambda: SignTask), Entry("gone", "pkg.missing:Task", broken)]
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: entries if group == "rnnkit.tasks" else [])
    monkeypatch.setattr(base, "_plugins_loaded", False)
    try:
        with caplog.at_level("WARNING", logger="rnnkit.tasks.base"):
            assert base.all_tasks()["toy_sign"] is SignTask
        assert "task plugin gone = pkg.missing:Task could not be loaded: ImportError" in caplog.text
    finally:
        TASKS.pop("toy_sign", None)
