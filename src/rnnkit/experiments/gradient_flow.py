"""Gradient flow of fresh models of several cells on the adding problem (seed 002's figure).

``rnnkit.viz.gradients`` measures and draws the curve of any model on any task's batch; this
experiment supplies the models and the data: the adding task (``rnnkit.tasks.adding``) and its
sequences (``rnnkit.data.datasets.memory``).

Example (T = 100)::

    curves = compare_cells(("rnn", "lstm", "gru"), seq_len=100)
    plot_gradient_flow(curves, "gradient-flow.png")
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..data.datasets.memory import adding_problem, stream_generator
from ..tasks.adding import AddingOptions, AddingTask
from ..viz.gradients import gradient_flow

__all__ = ["compare_cells"]


def compare_cells(cells=("rnn", "lstm", "gru"), seq_len: int = 100, hidden_size: int = 64,
                  seed: int = 0, batch_size: int = 100) -> dict[str, Tensor]:
    """Fresh models of each cell on the adding problem: the gradient-flow curve of each.

    Every cell reads the same ``batch_size`` sequences (drawn from ``seed``); each model is
    initialised from ``torch.manual_seed(seed)`` inside a forked RNG, so the caller's random
    state is untouched. Returns cell -> (seq_len,) curve.
    """
    data = adding_problem(batch_size, seq_len, stream_generator(seed, 3))
    batch = {"x": data.x, "y": data.y}  # (N, T, 2), (N,)
    curves = {}
    for cell in cells:
        task = AddingTask(AddingOptions(seq_len=seq_len, cell=cell, hidden_size=hidden_size))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = task.build_model()
        curves[cell] = gradient_flow(model, task, batch)
    return curves
