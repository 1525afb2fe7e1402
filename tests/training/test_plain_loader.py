"""The trainer takes any re-iterable of batches: a torch DataLoader, a list, an object with
``__iter__`` and no length. The loss falls, checkpoints resume (an epoch boundary exactly; a
plain loader restarts an interrupted epoch from its beginning, a ResumableLoader does not),
and what cannot work (a generator for several epochs, a decaying schedule of unknown length)
is refused with a clear error."""
import json
import logging

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import rnnkit
from rnnkit.tasks import IndexLoader, TensorData
from rnnkit.training import (Loader, ResumableLoader, StepOutput, TrainConfig, Trainer, TrainingTask,
                             evaluate_batches)

N, T, H, BS = 192, 6, 8, 16  # sequences, time steps, hidden size, batch size


class _SumModel(nn.Module):
    """A tiny GRU read out at its last step: x (B, T, 1) -> (B,)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = rnnkit.GRU(1, H, batch_first=True)
        self.head = nn.Linear(H, 1)

    def forward(self, x):
        out, _ = self.rnn(x)  # (B, T, H)
        return self.head(out[:, -1])[:, 0]  # (B,)


class _SumTask:
    """Predict the sum of a sequence; batches are ``(x, y)`` pairs as a TensorDataset gives.

    Not an rnnkit.tasks.Task: the trainer needs only the TrainingTask protocol.
    """

    stateful = False

    def step(self, model, batch, state=None) -> StepOutput:
        x, y = batch  # (B, T, 1), (B,)
        return StepOutput(((model(x) - y) ** 2).sum(), len(y), {})

    def metrics(self, totals: dict) -> dict[str, float]:
        return {"loss": totals["loss_sum"] / max(totals["count"], 1)}

    def split_time(self, batch, window: int) -> list:
        raise ValueError("_SumTask does not support truncated BPTT")


class _Batches:
    """A re-iterable of batches without a length, and without a generator: each pass is a fresh list iterator."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


def _tensors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, T, 1, generator=g) / 2
    return x, x.sum(dim=(1, 2))  # (n, T, 1), (n,)


def _dataloader(seed: int = 0, shuffle: bool = True) -> DataLoader:
    return DataLoader(TensorDataset(*_tensors(N, seed)), batch_size=BS, shuffle=shuffle)


def _trainer(train_loader, run_dir=None, **cfg) -> Trainer:
    torch.manual_seed(0)
    config = TrainConfig(**{"epochs": 4, "batch_size": BS, "lr": 0.02, "log_every": 1, "seed": 0, **cfg})
    val = DataLoader(TensorDataset(*_tensors(64, seed=1)), batch_size=32)
    return Trainer(_SumTask(), _SumModel(), train_loader, val, config, run_dir=run_dir)


def test_the_protocols_tell_plain_from_resumable_loaders():
    assert isinstance(_SumTask(), TrainingTask)
    plain = _dataloader()
    assert isinstance(plain, Loader) and not isinstance(plain, ResumableLoader)
    assert isinstance(_Batches([]), Loader) and not isinstance(_Batches([]), ResumableLoader)
    x, y = _tensors(8, 0)
    assert isinstance(IndexLoader(TensorData({"x": x, "y": y}), 4, shuffle=True), ResumableLoader)


def test_a_torch_dataloader_trains_and_the_loss_falls():
    trainer = _trainer(_dataloader())
    before = trainer.evaluate(trainer.val_loader)["loss"]
    p = trainer.fit()
    assert (p.step, p.epoch) == (4 * N // BS, 4)
    assert trainer.total_steps == 4 * N // BS  # from len(DataLoader)
    assert trainer.last_val["loss"] < 0.2 * before
    assert evaluate_batches(_SumTask(), trainer.raw_model, trainer.val_loader) == trainer.last_val


def test_a_list_and_an_iterable_without_length_train():
    x, y = _tensors(N, 0)
    batches = [(x[i : i + BS], y[i : i + BS]) for i in range(0, N, BS)]
    as_list = _trainer(batches)  # a list has a length: it sizes the schedule
    as_list.fit()
    no_length = _trainer(_Batches(batches))  # no length: the constant schedule does not need one
    assert no_length.total_steps is None
    p = no_length.fit()
    assert p.step == 4 * len(batches) and p.stopped == "4 epochs done"
    for a, b in zip(as_list.raw_model.parameters(), no_length.raw_model.parameters()):
        torch.testing.assert_close(a, b)  # the same batches in the same order: the same weights
    assert no_length.last_val["loss"] < 0.2 * _trainer(batches).evaluate(as_list.val_loader)["loss"]


def test_a_decaying_schedule_without_a_length_needs_a_step_budget():
    x, y = _tensors(N, 0)
    batches = _Batches([(x[i : i + BS], y[i : i + BS]) for i in range(0, N, BS)])
    with pytest.raises(ValueError, match="schedule 'cosine' needs the length of training.*set max_steps"):
        _trainer(batches, schedule="cosine")
    trainer = _trainer(batches, schedule="cosine", max_steps=30)
    p = trainer.fit()
    assert trainer.total_steps == 30
    assert p.step == 30 and p.stopped == "step budget of 30 steps reached"
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)  # the cosine ended with the budget


def test_a_generator_is_refused_where_it_would_be_read_twice():
    x, y = _tensors(N, 0)
    with pytest.raises(ValueError, match="train_loader must be re-iterable.*got an iterator \\(generator\\)"):
        _trainer((b for b in [(x, y)]), epochs=2)
    with pytest.raises(ValueError, match="val_loader must be re-iterable"):
        Trainer(_SumTask(), _SumModel(), [(x, y)], iter([(x, y)]), TrainConfig(epochs=2))
    p = _trainer((b for b in [(x[:BS], y[:BS]), (x[BS:], y[BS:])]), epochs=1).fit()  # one pass: fine
    assert p.step == 2


def test_resume_at_an_epoch_boundary_equals_the_uninterrupted_run(tmp_path):
    whole = _trainer(_dataloader(), tmp_path / "whole", epochs=3)
    whole.fit()
    first = _trainer(_dataloader(), tmp_path / "split", epochs=1)
    first.fit()  # the process ends after one epoch ...
    rest = _trainer(_dataloader(), tmp_path / "split", epochs=3)
    p = rest.fit(resume=True)  # ... and another one continues the run
    assert (p.step, p.epoch) == (whole.progress.step, whole.progress.epoch) == (3 * N // BS, 3)
    for a, b in zip(whole.raw_model.parameters(), rest.raw_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the shuffles come from the checkpointed RNG
    saved = json.loads((tmp_path / "split" / "checkpoints" / "last" / "trainer.json").read_text())
    assert saved["loader"] is None  # a DataLoader has no position to save


@pytest.mark.parametrize("resumable", [False, True])
def test_resume_mid_epoch_restarts_the_epoch_unless_the_loader_is_resumable(tmp_path, resumable, caplog):
    x, y = _tensors(N, 0)
    per_epoch = N // BS

    def loader():
        if resumable:
            data = TensorData({"x": x, "y": y})
            return IndexLoader(data, BS, shuffle=True, seed=0, collate=lambda b: (b["x"], b["y"]))
        return _dataloader()

    cut = per_epoch + 5  # five batches into the second epoch
    _trainer(loader(), tmp_path, epochs=2, max_steps=cut).fit()  # stops (and checkpoints) mid-epoch
    resumed = _trainer(loader(), tmp_path, epochs=2)
    with caplog.at_level(logging.INFO, logger="rnnkit.training.trainer"):
        p = resumed.fit(resume=True)
    assert p.epoch == 2 and p.stopped == "2 epochs done"
    if resumable:  # exactly where it stopped: the epoch's other batches only
        assert p.step == 2 * per_epoch
        assert "starts again" not in caplog.text
    else:  # documented: the interrupted epoch starts again from its first batch
        assert p.step == cut + per_epoch
        assert "epoch 2 starts again from its first batch" in caplog.text
