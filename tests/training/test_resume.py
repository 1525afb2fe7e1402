"""Resume: an interrupted run, resumed, ends exactly where the uninterrupted run ends, and its
metrics.jsonl reads as if it had never been interrupted."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from rnnkit.tasks.base import IndexLoader, Task, TensorData
from rnnkit.training import Callback, StepOutput, TrainConfig, Trainer
from rnnkit.training.callbacks import JsonlLogger

# -- the real thing: `rnnkit train digits`, killed with SIGKILL, then --resume ----------------

TRAIN = ["train", "digits", "--epochs", "20", "--eval-every", "5", "--hidden-size", "16", "--no-progress",
         "--seed", "0"]  # 460 steps, a checkpoint every 5


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _rnnkit(args, cwd, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnkit", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _checkpoint_step(run_dir) -> int:
    try:
        return json.loads((run_dir / "checkpoints" / "last" / "trainer.json").read_text())["progress"]["step"]
    except (OSError, ValueError, KeyError):  # not written yet, or in the middle of its swap
        return -1


def _records(run_dir) -> list[dict]:
    """metrics.jsonl without the throughput, which depends on the machine's load."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "samples_per_s"} for line in lines]


def test_a_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path):
    a = tmp_path / "A"
    proc = subprocess.Popen([sys.executable, "-m", "rnnkit", *TRAIN, "--out", str(a)], cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and _checkpoint_step(a) < 10 and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    # Killed in the middle of training (almost always: 450 steps were left), or else between
    # the last checkpoint and summary.json, or at the end; resuming must be right in every case.
    assert _checkpoint_step(a) >= 10 or (a / "checkpoints" / "last.old").exists()

    resumed = _rnnkit(["train", "digits", "--out", str(a), "--resume", "--no-progress"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    uninterrupted = _rnnkit([*TRAIN, "--out", str(tmp_path / "B")], tmp_path)
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    last_a = load_file(a / "checkpoints" / "last" / "model.safetensors")
    last_b = load_file(tmp_path / "B" / "checkpoints" / "last" / "model.safetensors")
    assert last_a.keys() == last_b.keys()
    for name in last_a:
        assert torch.equal(last_a[name], last_b[name]), name
    best_a, best_b = load_file(a / "model.safetensors"), load_file(tmp_path / "B" / "model.safetensors")
    for name in best_a:
        assert torch.equal(best_a[name], best_b[name]), name

    summary_a = json.loads((a / "summary.json").read_text())
    summary_b = json.loads((tmp_path / "B" / "summary.json").read_text())
    assert summary_a["steps"] == summary_b["steps"] == 460
    for key in ("test_accuracy", "test_loss", "best_val_accuracy", "val_loss"):
        assert summary_a[key] == summary_b[key], key

    records = _records(a)
    keys = [(r["split"], r["step"]) for r in records]
    assert len(keys) == len(set(keys))  # nothing logged twice
    assert records == _records(tmp_path / "B")


# -- the same promises at the Trainer level, on a toy task (fast and exact) ------------------

N, BS = 40, 4  # 10 steps per epoch


class _Regression(Task):
    name = "toy_regression"
    metric, mode = "loss", "min"

    def __init__(self) -> None:
        super().__init__(None)

    def step(self, model, batch, state=None) -> StepOutput:
        loss_sum = ((model(batch["x"]) - batch["y"]) ** 2).sum()
        return StepOutput(loss_sum, len(batch["y"]), {})


class _Interrupt(Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_step_end(self, trainer, record) -> None:
        if record["step"] == self.at_step:
            raise KeyboardInterrupt


def _data(n: int, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return TensorData({"x": x, "y": x.sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)})


def _trainer(run_dir, callbacks=(), **cfg) -> Trainer:
    torch.manual_seed(0)
    config = TrainConfig(**{"epochs": 2, "batch_size": BS, "lr": 0.05, "eval_every": 3, "log_every": 1, **cfg})
    return Trainer(_Regression(), nn.Linear(3, 1), IndexLoader(_data(N, 0), BS, shuffle=True, seed=0),
                   IndexLoader(_data(12, 1), BS, shuffle=False), config, run_dir=run_dir, monitor="loss",
                   mode="min", callbacks=[JsonlLogger(run_dir / "metrics.jsonl"), *callbacks])


def _keys(run_dir) -> list[tuple]:
    return [(r["split"], r["step"]) for r in _records(run_dir)]


@pytest.mark.parametrize("eval_every, stop_at", [(3, 8), (0, 13)])
def test_resume_after_an_interruption_matches_the_uninterrupted_run(tmp_path, eval_every, stop_at):
    """Interrupted after a checkpoint in the middle of an epoch (step 6) or at its end (step 10),
    with steps logged after it."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    with pytest.raises(KeyboardInterrupt):
        _trainer(a, [_Interrupt(stop_at)], eval_every=eval_every).fit()
    resumed = _trainer(a, eval_every=eval_every)
    p = resumed.fit(resume=True)
    whole = _trainer(b, eval_every=eval_every)
    whole.fit()
    assert (p.step, p.epoch) == (whole.progress.step, whole.progress.epoch) == (20, 2)
    for p, q in zip(resumed.raw_model.parameters(), whole.raw_model.parameters()):
        assert torch.equal(p, q)
    assert _records(a) == _records(b)
    assert resumed.last_val == whole.last_val


def test_no_evaluation_is_logged_twice_when_the_last_step_is_an_evaluation_step(tmp_path):
    trainer = _trainer(tmp_path, eval_every=5)  # 20 steps: evaluations at 5, 10, 15, 20
    trainer.fit()
    keys = _keys(tmp_path)
    assert [k for k in keys if k[0] == "val"] == [("val", 5), ("val", 10), ("val", 15), ("val", 20)]
    assert len(keys) == len(set(keys))


def test_resuming_a_finished_run_adds_nothing(tmp_path):
    """Killed after its last checkpoint, before summary.json: resuming evaluates nothing again."""
    trainer = _trainer(tmp_path)
    trainer.fit()
    before = (tmp_path / "metrics.jsonl").read_bytes()
    best = (tmp_path / "model.safetensors").read_bytes()
    again = _trainer(tmp_path)
    p = again.fit(resume=True)
    assert (tmp_path / "metrics.jsonl").read_bytes() == before
    assert (tmp_path / "model.safetensors").read_bytes() == best
    assert p.step == trainer.progress.step and p.best == trainer.progress.best
    assert p.bad_evals == trainer.progress.bad_evals
    assert again.last_val == trainer.last_val  # summary.json's val_* still come out


def test_a_fresh_run_starts_a_fresh_metrics_file(tmp_path):
    """A run killed before its first checkpoint cannot be resumed; training again into the same
    folder must not append to its partial log."""
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"split": "train", "step": 1, "train_loss": 9.0}) + "\n")
    _trainer(tmp_path).fit()
    keys = _keys(tmp_path)
    assert len(keys) == len(set(keys))
    assert _records(tmp_path)[0]["train_loss"] != 9.0
