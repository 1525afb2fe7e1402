"""Generators of the long-memory benchmarks: the adding problem and the copy task.

Both are synthetic: every sample is drawn from a ``torch.Generator``, so a seed fixes a data
set exactly and a training loop can draw fresh batches forever.

**Adding problem** (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015 and
Arjovsky et al. 2016). Each step of a sequence of length ``T`` carries two numbers: a value
drawn from U(0, 1) and a marker. Exactly two markers are 1, the rest 0; the first 1 sits at
a uniformly drawn position of the first half (``[0, T//2)``), the second in the second half
(``[T//2, T)``). The target is the sum of the two marked values. Always predicting the mean
target, 1.0, gives the mean squared error ``Var(U1 + U2) = 2 / 12 = 1/6 ~ 0.167``: a model
is useful only below that.

**Copy task** (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016, section 4.1). Symbols
are ids: 0 is the blank, ``1..K`` the data symbols (K = 8), ``K + 1`` the delimiter. The
input (length ``T + 2 * L``, L = 10 symbols to copy) is::

    s_1 .. s_L  | 0 x (T - 1) | K+1 | 0 x L          input
    0 x (T + L)                     | s_1 .. s_L     target

so the model reads L symbols, waits ``T`` steps (blanks, then the delimiter that says "now
repeat") and must write the L symbols back. A model that outputs blanks and then guesses
uniformly among the K symbols has the cross-entropy ``L log K / (T + 2L)`` per step
(:func:`copy_baseline_loss`), the memoryless baseline of Arjovsky et al.

**Training batches** are drawn afresh (:class:`GeneratedData`, :class:`GeneratedLoader`): batch
``i`` of epoch ``e`` from its own seeded stream, so runs are reproducible and resumable.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["MemoryData", "adding_problem", "copy_task", "ADDING_BASELINE_MSE", "copy_baseline_loss",
           "stream_generator", "GeneratedData", "GeneratedLoader"]

ADDING_BASELINE_MSE = 1.0 / 6.0  # Var(U1 + U2) for U1, U2 ~ U(0, 1): the MSE of always predicting 1.0


class MemoryData(NamedTuple):
    """One generated data set: inputs and targets, first axis = sample."""

    x: Tensor  # adding: (N, T, 2) float (value, marker); copy: (N, T + 2L) long ids
    y: Tensor  # adding: (N,) float sums; copy: (N, T + 2L) long ids


def _check(owner: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")
    return value


def stream_generator(seed: int, *stream: int) -> torch.Generator:
    """A generator seeded from (seed, *stream), e.g. (seed, split, epoch, batch).

    numpy's SeedSequence mixes the numbers, so neighbouring streams are unrelated and two
    different tuples practically never collide (unlike ``seed + epoch``-style sums).
    """
    state = np.random.SeedSequence([seed, *stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def adding_problem(num: int, seq_len: int, generator: torch.Generator | None = None) -> MemoryData:
    """``num`` adding-problem sequences of length ``seq_len`` (>= 2).

    Returns ``MemoryData(x, y)``: x (num, T, 2) with ``x[..., 0]`` the values and
    ``x[..., 1]`` the markers, y (num,) the sum of the two marked values.
    """
    _check("adding_problem", "num", num, 1)
    T = _check("adding_problem", "seq_len", seq_len, 2)
    half = T // 2
    values = torch.rand(num, T, generator=generator)  # (N, T)
    first = torch.randint(0, half, (num,), generator=generator)  # (N,) in the first half
    second = torch.randint(half, T, (num,), generator=generator)  # (N,) in the second half
    markers = torch.zeros(num, T)
    rows = torch.arange(num)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]  # (N,)
    return MemoryData(torch.stack([values, markers], -1), y)  # (N, T, 2), (N,)


def copy_task(num: int, seq_len: int, generator: torch.Generator | None = None, num_symbols: int = 8,
              copy_len: int = 10) -> MemoryData:
    """``num`` copy-task sequences: ``copy_len`` symbols, a delay of ``seq_len`` steps, recall.

    Returns ``MemoryData(x, y)``, both (num, seq_len + 2 * copy_len) int64 ids: 0 blank,
    ``1..num_symbols`` data, ``num_symbols + 1`` the delimiter (in x only; see the module
    docstring for the layout).
    """
    _check("copy_task", "num", num, 1)
    T = _check("copy_task", "seq_len", seq_len, 1)
    K = _check("copy_task", "num_symbols", num_symbols, 1)
    L = _check("copy_task", "copy_len", copy_len, 1)
    symbols = torch.randint(1, K + 1, (num, L), generator=generator)  # (N, L)
    x = torch.zeros(num, T + 2 * L, dtype=torch.long)
    y = torch.zeros(num, T + 2 * L, dtype=torch.long)
    x[:, :L] = symbols
    x[:, L + T - 1] = K + 1  # the delimiter: the last of the T waiting steps
    y[:, T + L:] = symbols
    return MemoryData(x, y)


def copy_baseline_loss(seq_len: int, num_symbols: int = 8, copy_len: int = 10) -> float:
    """Cross-entropy per step of the memoryless strategy: blanks, then uniform guesses.

    ``copy_len * log(num_symbols) / (seq_len + 2 * copy_len)`` (Arjovsky et al. 2016).
    """
    _check("copy_baseline_loss", "seq_len", seq_len, 1)
    _check("copy_baseline_loss", "num_symbols", num_symbols, 1)
    _check("copy_baseline_loss", "copy_len", copy_len, 1)
    return copy_len * math.log(num_symbols) / (seq_len + 2 * copy_len)


class GeneratedData:
    """A training split drawn afresh: ``size`` samples per epoch, made by ``make(num, generator)``.

    Stands where a task's ``prepare`` would put a ``TensorData``; the task's ``loader`` turns it
    into a :class:`GeneratedLoader`. No sample is ever shown twice, so there is nothing to
    overfit, as in the papers, and memory does not grow with the epoch size.
    """

    def __init__(self, make, size: int) -> None:
        self.make = make  # (num, torch.Generator) -> {"x": ..., "y": ...}, first axis = sample
        self.size = _check("GeneratedData", "size", size, 1)

    def __len__(self) -> int:
        return self.size


class GeneratedLoader:
    """Batches of a :class:`GeneratedData`, each drawn from its own seeded stream.

    Batch ``i`` of epoch ``e`` comes from ``stream_generator(seed, 0, e, i)``: the same batch
    whatever happened before, so :meth:`state_dict` (epoch and position) is all that resuming
    needs. Under DDP every process draws the same global batch and keeps rows ``rank::world``.
    The interface is ``rnnkit.tasks.base.IndexLoader``'s.
    """

    def __init__(self, data: GeneratedData, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1) -> None:
        self.data = data
        self.batch_size = _check("GeneratedLoader", "batch_size", batch_size, 1)
        self.seed, self.rank, self.world = seed, rank, world
        self._epoch, self._position = 0, 0  # batches of this epoch already handed out

    def __len__(self) -> int:
        return -(-self.data.size // self.batch_size)

    def __iter__(self):
        while self._position < len(self):
            i = self._position
            num = min(self.batch_size, self.data.size - i * self.batch_size)
            batch = self.data.make(num, stream_generator(self.seed, 0, self._epoch, i))
            self._position += 1
            yield {k: v[self.rank :: self.world] for k, v in batch.items()}
        self._epoch, self._position = self._epoch + 1, 0  # a second loop draws the next epoch

    def set_epoch(self, epoch: int) -> None:
        """Go to ``epoch`` from its start; the current epoch keeps its position (resuming)."""
        if epoch != self._epoch:
            self._epoch, self._position = epoch, 0

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "position": self._position}

    def load_state_dict(self, state: dict) -> None:
        self._epoch, self._position = int(state["epoch"]), int(state["position"])
