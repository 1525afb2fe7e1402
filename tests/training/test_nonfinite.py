"""A non-finite loss: "stop" keeps every file written before it byte for byte, "skip" leaves no trace."""
import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from rnnkit.tasks.base import IndexLoader, Task, TensorData
from rnnkit.training import Callback, StepOutput, TrainConfig, Trainer, TrainingStopped

N, BS, BAD = 40, 4, 3  # samples, batch size, index of the poisoned batch (training step BAD + 1)


class _Regression(Task):
    """Least squares on a linear model. Snapshots the run's files the first time it meets NaN."""

    name = "toy_regression"
    metric, mode = "loss", "min"

    def __init__(self, run_dir=None) -> None:
        super().__init__(None)
        self.run_dir, self.snapshot = run_dir, None

    def step(self, model, batch, state=None) -> StepOutput:
        if self.run_dir is not None and self.snapshot is None and torch.isnan(batch["x"]).any():
            self.snapshot = _files(self.run_dir)  # the files as they were before the NaN step
        loss_sum = ((model(batch["x"]) - batch["y"]) ** 2).sum()
        return StepOutput(loss_sum, len(batch["y"]), {})


def _files(run_dir) -> dict:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _data(n: int, poison: bool, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(n, 1, generator=g)
    if poison:
        x[BAD * BS : (BAD + 1) * BS] = float("nan")
    return TensorData({"x": x, "y": y})


def _trainer(train: TensorData, run_dir=None, callbacks=(), **cfg) -> Trainer:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    config = TrainConfig(**{"epochs": 1, "batch_size": BS, "lr": 0.05, "eval_every": 3, "log_every": 1, **cfg})
    task = _Regression(run_dir)
    return Trainer(task, model, IndexLoader(train, BS, shuffle=False), IndexLoader(_data(12, False, seed=1), BS, False),
                   config, run_dir=run_dir, monitor="loss", mode="min", callbacks=list(callbacks))


def test_stop_raises_and_keeps_the_files_written_before_the_nan(tmp_path):
    trainer = _trainer(_data(N, poison=True), run_dir=tmp_path, on_nonfinite="stop")
    with pytest.raises(TrainingStopped, match=f"nan at step {BAD + 1}"):
        trainer.fit()
    before = trainer.task.snapshot
    assert {"model.safetensors", "checkpoints/last/model.safetensors", "checkpoints/last/trainer.json",
            "checkpoints/last/optimizer.safetensors"} <= before.keys()
    assert _files(tmp_path) == before
    assert trainer.progress.step == BAD  # the NaN batch was never counted as trained
    for t in load_file(tmp_path / "model.safetensors").values():
        assert torch.isfinite(t).all()


def test_skip_counts_the_step_and_leaves_no_trace():
    trainer = _trainer(_data(N, poison=True), on_nonfinite="skip")
    p = trainer.fit()
    assert p.skipped == 1
    assert p.step == N // BS  # the skipped batch is still a step through the data
    for param in trainer.raw_model.parameters():
        assert torch.isfinite(param).all()

    # Exactly the weights of a run that never saw the poisoned batch.
    clean = _data(N, poison=False)
    keep = [i for i in range(N) if not BAD * BS <= i < (BAD + 1) * BS]
    reference = _trainer(TensorData(clean.take(keep)), on_nonfinite="stop")
    reference.fit()
    for a, b in zip(trainer.raw_model.parameters(), reference.raw_model.parameters()):
        assert torch.equal(a, b)


class _BlowUp(Callback):
    """At training step 6, just before its evaluation, the weights turn NaN (as after a diverging
    update); keeps the best weights file as it was then."""

    def __init__(self, run_dir) -> None:
        self.run_dir, self.best_before = run_dir, None

    def on_step_end(self, trainer, record) -> None:
        if record["step"] == 6:
            self.best_before = (self.run_dir / "model.safetensors").read_bytes()
            with torch.no_grad():
                trainer.raw_model.weight.fill_(float("nan"))


def test_a_nan_validation_value_never_replaces_the_best_weights(tmp_path):
    blow_up = _BlowUp(tmp_path)
    trainer = _trainer(_data(N, poison=False), run_dir=tmp_path, callbacks=[blow_up], on_nonfinite="stop")
    with pytest.raises(TrainingStopped):  # step 7's loss is NaN
        trainer.fit()
    assert trainer.progress.step == 6  # evaluated (NaN) and checkpointed at step 6, stopped at 7
    assert (tmp_path / "model.safetensors").read_bytes() == blow_up.best_before
    for t in load_file(tmp_path / "model.safetensors").values():
        assert torch.isfinite(t).all()
    assert trainer.progress.best is not None and math.isfinite(trainer.progress.best)  # step 3's
    assert trainer.progress.bad_evals == 1
