"""Truncated BPTT: the state flows forward across windows, the gradient stops at each window's start.

The reference is a hand-written loop that reads like the definition: window ``w`` runs from the
*detached* state the previous window ended in, its loss is averaged over the window, and one
optimizer step follows. The trainer must match it exactly (float64), differ from full BPTT
(so the cut is real) and differ from starting every window at zero (so the state is carried).
"""
import copy
import math

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.tasks.base import IndexLoader, Task, TensorData
from rnnkit.training import StepOutput, TrainConfig, Trainer

B, T, I, H, O, K = 3, 12, 2, 5, 2, 4  # batch, time steps, inputs, hidden, outputs, window


class _ManyToMany(nn.Module):
    """An LSTM read out at every step: x (B, T, I) -> (B, T, O), state."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = rnnkit.LSTM(I, H, batch_first=True)
        self.head = nn.Linear(H, O)

    def forward(self, x, state=None):
        out, state = self.rnn(x, state)  # (B, T, H)
        return self.head(out), state  # (B, T, O)


class _ToyTask(Task):
    """Squared error at every step; windows cut along the time axis."""

    name = "toy_tbptt"
    metric, mode = "loss", "min"

    def __init__(self, stateful: bool = False) -> None:
        super().__init__(None)
        self.stateful = stateful

    def step(self, model, batch, state=None) -> StepOutput:
        pred, state = model(batch["x"], state)  # (B, T, O)
        loss_sum = ((pred - batch["y"]) ** 2).sum()
        return StepOutput(loss_sum, batch["y"].numel(), {}, state)

    def split_time(self, batch, window: int) -> list:
        steps = batch["x"].shape[1]
        return [{k: v[:, t : t + window] for k, v in batch.items()} for t in range(0, steps, window)]


def _data(batches: int) -> TensorData:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batches * B, T, I, generator=g, dtype=torch.float64)
    y = torch.randn(batches * B, T, O, generator=g, dtype=torch.float64)
    return TensorData({"x": x, "y": y})


def _model() -> _ManyToMany:
    torch.manual_seed(0)
    return _ManyToMany().double()


def _trainer(model, data, stateful=False, **cfg) -> Trainer:
    config = TrainConfig(**{"epochs": 1, "batch_size": B, "optimizer": "sgd", "momentum": 0.0, "lr": 0.0,
                            "clip_norm": 0.0, "bptt": K, **cfg})
    loader = IndexLoader(data, B, shuffle=False)
    return Trainer(_ToyTask(stateful), model, loader, None, config)


def _record(trainer) -> list[dict]:
    """Every gradient the optimizer is about to apply, and the learning rate it applies it with."""
    seen = []

    def hook(opt, args, kwargs):
        grads = {n: p.grad.detach().clone() for n, p in trainer.raw_model.named_parameters()}
        seen.append({"grads": grads, "lr": opt.param_groups[0]["lr"]})

    trainer.optimizer.register_step_pre_hook(hook)
    return seen


def _grads(model) -> dict:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _reference(model, windows, carry=True, lr=0.0) -> list[dict]:
    """Window by window: loss averaged over the window, backward, SGD step, detached carry."""
    grads, state = [], None
    for win in windows:
        model.zero_grad()
        pred, new_state = model(win["x"], state)
        loss = ((pred - win["y"]) ** 2).sum() / win["y"].numel()
        loss.backward()
        grads.append(_grads(model))
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        state = tuple(s.detach() for s in new_state) if carry else None
    return grads


def _windows(data: TensorData, batch: int) -> list[dict]:
    rows = data.take(list(range(batch * B, (batch + 1) * B)))
    return [{k: v[:, t : t + K] for k, v in rows.items()} for t in range(0, T, K)]


def _assert_same(a: dict, b: dict) -> None:
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-10, atol=1e-12, msg=name)


def _differs(a: dict, b: dict) -> bool:
    return any(not torch.allclose(a[n], b[n], rtol=1e-6, atol=1e-9) for n in a)


def test_each_window_gets_the_gradient_of_its_own_loss_from_the_carried_detached_state():
    data = _data(batches=1)
    model = _model()
    reference_model = copy.deepcopy(model)
    trainer = _trainer(model, data)
    seen = _record(trainer)
    trainer.fit()
    windows = _windows(data, 0)
    assert len(seen) == T // K  # one update per window
    expected = _reference(reference_model, windows)
    for w in range(T // K):
        _assert_same(seen[w]["grads"], expected[w])

    # The cut is real: full BPTT of the same window loss (no detach) gives another gradient.
    for w in range(1, T // K):
        full = copy.deepcopy(reference_model)
        full.zero_grad()
        x = torch.cat([win["x"] for win in windows[: w + 1]], 1)  # (B, (w+1)K, I)
        pred, _ = full(x)
        loss = ((pred[:, -K:] - windows[w]["y"]) ** 2).sum() / windows[w]["y"].numel()
        loss.backward()
        assert _differs(seen[w]["grads"], _grads(full))

    # The state is carried: starting each window from zero gives another gradient.
    zero_start = _reference(copy.deepcopy(reference_model), windows, carry=False)
    _assert_same(seen[0]["grads"], zero_start[0])
    for w in range(1, T // K):
        assert _differs(seen[w]["grads"], zero_start[w])


def test_updates_apply_window_by_window_with_the_weights_of_the_moment():
    """With a real step size, window w runs on the weights after w updates, from a state
    that earlier windows computed with the weights they had then."""
    data = _data(batches=1)
    model = _model()
    reference_model = copy.deepcopy(model)
    lr = 0.3
    trainer = _trainer(model, data, lr=lr)
    seen = _record(trainer)
    trainer.fit()
    expected = _reference(reference_model, _windows(data, 0), lr=lr)
    for w in range(T // K):
        _assert_same(seen[w]["grads"], expected[w])
    for (name, p), q in zip(model.named_parameters(), reference_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=name)
    assert not torch.equal(next(model.parameters()), next(_model().parameters()))


@pytest.mark.parametrize("stateful", [False, True])
def test_the_state_crosses_batches_only_for_stateful_tasks(stateful):
    """Independent sequences (stateful=False) start every batch from zero; streams carry on."""
    data = _data(batches=2)
    model = _model()
    reference_model = copy.deepcopy(model)
    trainer = _trainer(model, data, stateful=stateful)
    seen = _record(trainer)
    trainer.fit()
    assert len(seen) == 2 * (T // K)
    if stateful:  # batch 1 continues batch 0's rows: one long stream of six windows
        expected = _reference(reference_model, _windows(data, 0) + _windows(data, 1))
    else:
        expected = _reference(reference_model, _windows(data, 0)) + _reference(reference_model, _windows(data, 1))
    for w, (got, want) in enumerate(zip(seen, expected)):
        _assert_same(got["grads"], want)


def test_the_schedule_counts_batches_not_windows():
    """The schedule spans epochs * batches; the windows of one batch share its learning rate."""
    data = _data(batches=2)
    lr = 0.01
    trainer = _trainer(_model(), data, lr=lr, schedule="cosine", epochs=2)
    seen = _record(trainer)
    trainer.fit()
    total = 2 * 2  # epochs * batches per epoch
    expected = [lr * 0.5 * (1 + math.cos(math.pi * s / total)) for s in range(total) for _ in range(T // K)]
    assert [r["lr"] for r in seen] == pytest.approx(expected, rel=1e-12)


def test_a_time_budget_ends_the_schedule_when_it_ends():
    """With max_minutes, progress is the larger of steps done and budget spent."""
    from rnnkit.training.trainer import _lr_lambda

    cfg = TrainConfig(schedule="cosine", max_minutes=1.0, warmup_steps=0)
    spent = [0.0]
    factor = _lr_lambda(cfg, 100, lambda: spent[0])
    assert factor(10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.10)))  # steps lead
    spent[0] = 0.5
    assert factor(10) == pytest.approx(0.5)  # the budget leads: half way down the cosine
    spent[0] = 1.5
    assert factor(10) == pytest.approx(0.0)  # over budget: the end of the schedule
    assert _lr_lambda(TrainConfig(schedule="constant"), 100, lambda: 0.9)(10) == 1.0


def test_the_trainer_feeds_the_budget_to_the_schedule():
    data = _data(batches=2)
    trainer = _trainer(_model(), data, lr=0.01, schedule="cosine", epochs=1000, max_minutes=1e-9)
    trainer.fit()
    assert trainer.progress.stopped.startswith("time budget")
    assert trainer.progress.step == 1  # the first step spends the whole budget
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)


def test_epoch_end_evaluations_count_as_evaluation_time():
    data = _data(batches=2)
    config = TrainConfig(epochs=2, batch_size=B, optimizer="sgd", lr=0.0, bptt=K)
    loader = IndexLoader(data, B, shuffle=False)
    trainer = Trainer(_ToyTask(False), _model(), loader, IndexLoader(data, B, shuffle=False), config)
    trainer.fit()
    assert trainer.progress.timing["eval"] > 0.0  # two evaluations, one per epoch
