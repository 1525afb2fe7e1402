"""Evaluating a model with a task's metrics (``evaluate_batches``, optionally within a deadline), and the
recurrent state carried between batches (``detach_state``)."""
from __future__ import annotations

import logging
import time
from typing import Callable

import torch
from torch import Tensor, nn

from .device import autocast, check_precision, module_device, move_to_device, resolve_device
from .protocol import Loader, TrainingTask

__all__ = ["evaluate_batches", "detach_state", "weights_dtype", "EVALUATED_FRACTION"]

log = logging.getLogger(__name__)

# The key a cut evaluation adds to its metrics: the share of the batches it evaluated.
EVALUATED_FRACTION = "evaluated_fraction"


@torch.no_grad()
def evaluate_batches(task: TrainingTask, model: nn.Module, batches: Loader, device: torch.device | str | None = None,
                     precision: str = "32", deadline: float | None = None,
                     on_batch: Callable[[int, int | None], None] | None = None) -> dict[str, float]:
    """``task.metrics`` over every batch of ``batches``, the model in eval mode (restored after).

    Losses and stats are summed over the batches first, so the metrics are those of the
    whole data, whatever the batch sizes. A stateful task carries its state from batch to batch.
    Each batch moves to ``device`` (default: the model's), and the steps run under autocast
    for ``precision`` "bf16" or "16-mixed" (see ``rnnkit.training.device``).

    ``deadline`` (a ``time.perf_counter()`` value): once it has passed, the batches left are
    skipped (at least one batch is evaluated), a warning says so, and the metrics are those of
    the batches evaluated, with ``EVALUATED_FRACTION`` ("evaluated_fraction": done / len(batches),
    or the number of batches done for a loader without a length) added. ``on_batch(done, total)``
    is called after each batch (``total`` None for a loader without a length), for progress bars.
    """
    device = module_device(model) if device is None else resolve_device(device, "evaluate_batches", "device")
    check_precision("evaluate_batches", "precision", precision, device)
    carry_dtype = weights_dtype(model) if precision != "32" else None  # (as the trainer's carry)
    try:
        total = len(batches)
    except TypeError:
        total = None
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {"loss_sum": 0.0, "count": 0.0}
    carry, done, cut = None, 0, False
    try:
        for batch in batches:
            if done and deadline is not None and time.perf_counter() > deadline:
                cut = True
                break
            with autocast(precision, device):
                out = task.step(model, move_to_device(batch, device), carry)
            carry = detach_state(out.state, carry_dtype) if task.stateful else None
            totals["loss_sum"] += float(out.loss_sum)
            totals["count"] += out.count
            for k, v in out.stats.items():
                totals[k] = totals.get(k, 0.0) + float(v)
            done += 1
            if on_batch is not None:
                on_batch(done, total)
    finally:
        model.train(was_training)
    metrics = task.metrics(totals)
    if cut:
        share = f"{done} of {total}" if total is not None else f"the first {done}"
        log.warning("evaluation cut by the time budget (max_minutes) after %s batches: its metrics are those "
                    "of these batches only", share)
        metrics[EVALUATED_FRACTION] = done / total if total else float(done)
    return metrics


def weights_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter (None without one)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def detach_state(state, dtype: torch.dtype | None = None):
    """Cut the graph behind a recurrent state (tensor or nested tuple), keeping its values; with
    ``dtype``, its floating-point tensors are cast to it (the trainer passes the weights' dtype
    under autocast, where layers hand back a low-precision state: the carry stays float32)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        state = state.detach()
        return state.to(dtype) if dtype is not None and state.is_floating_point() else state
    return tuple(detach_state(s, dtype) for s in state)
