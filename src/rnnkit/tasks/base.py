"""What a task is: one data source, one model, one loss, its metrics and its decoding.

Adding a task is adding one module that subclasses :class:`Task` and calls :func:`register`.
The trainer only sees ``step``/``metrics``/``split_time``/``stateful``; the CLI sees the
rest (options dataclass, data preparation, prediction).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator

import torch
from torch import Tensor, nn

from ..data import BucketBatchSampler, StreamBatcher
from ..training.trainer import StepOutput

__all__ = ["Task", "IndexLoader", "StreamLoader", "TensorData", "register", "get_task", "all_tasks", "TASKS"]

TASKS: dict[str, type["Task"]] = {}


def register(cls: type["Task"]) -> type["Task"]:
    TASKS[cls.name] = cls
    return cls


def all_tasks() -> dict[str, type["Task"]]:
    """Every task: each module of this package registers its task when imported."""
    import importlib
    import pkgutil

    from .. import tasks

    for module in pkgutil.iter_modules(tasks.__path__):
        if module.name != "base":
            importlib.import_module(f"{tasks.__name__}.{module.name}")
    return TASKS


def get_task(name: str) -> type["Task"]:
    if name not in all_tasks():
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    return TASKS[name]


@dataclass
class TensorData:
    """A dataset held as aligned tensors (first axis = sample), plus optional lengths."""

    tensors: dict[str, Tensor]

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def take(self, index: list[int]) -> dict[str, Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long)
        return {k: v[idx] for k, v in self.tensors.items()}

    def lengths(self) -> Tensor:
        """Per-sample lengths for bucketing (all equal when there is no 'lengths' tensor)."""
        if "lengths" in self.tensors:
            return self.tensors["lengths"]
        return torch.ones(len(self), dtype=torch.long)


class IndexLoader:
    """Batches of a TensorData, in the order of a BucketBatchSampler.

    Every process builds the same sampler (same seed), so all draw the same global batch of
    indices, and each keeps ``indices[rank::world]``. Resumable through state_dict.
    """

    def __init__(self, data: TensorData, batch_size: int, shuffle: bool, seed: int = 0,
                 rank: int = 0, world: int = 1, collate: Callable[[dict], Any] | None = None) -> None:
        self.data, self.rank, self.world = data, rank, world
        self.sampler = BucketBatchSampler(data.lengths(), batch_size, shuffle=shuffle, seed=seed)
        self.collate = collate or (lambda batch: batch)

    def __iter__(self):
        for index in self.sampler:
            yield self.collate(self.data.take(index[self.rank :: self.world]))

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


class StreamLoader:
    """Windows of a StreamBatcher as ``{"x", "y"}`` batches (B, T), for language models.

    Under DDP every process walks the same global windows and keeps streams ``rank::world``,
    so the state each process carries belongs to its own streams. Resumable through
    state_dict; every epoch walks the streams from their start.
    """

    def __init__(self, batcher: StreamBatcher, rank: int = 0, world: int = 1) -> None:
        self.batcher, self.rank, self.world = batcher, rank, world

    def __iter__(self):
        for x, y in self.batcher:
            yield {"x": x[self.rank :: self.world], "y": y[self.rank :: self.world]}

    def __len__(self) -> int:
        return len(self.batcher)

    def set_epoch(self, epoch: int) -> None:
        pass  # the batcher restarts from window 0 after each full pass

    def state_dict(self) -> dict:
        return self.batcher.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batcher.load_state_dict(state)


class Task:
    """Base class of every task; subclasses fill in the class attributes and methods."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_data: ClassVar[str] = ""
    metric: ClassVar[str] = "accuracy"  # reported as test_<metric> in summary.json
    mode: ClassVar[str] = "max"  # whether a larger metric is better
    Options: ClassVar[type] = object  # dataclass of the task's options (model + data)
    train_defaults: ClassVar[dict] = {}  # TrainConfig defaults that suit this task
    stateful: ClassVar[bool] = False  # carry the recurrent state from batch to batch

    def __init__(self, options) -> None:
        self.options = options
        self.meta: dict[str, Any] = {}  # JSON-able preprocessing state (labels, vocab, scalers)

    # -- data and model -------------------------------------------------------------------
    def prepare(self, seed: int) -> dict[str, TensorData]:
        """Load the data, fit preprocessing (fills self.meta), return train/val/test splits."""
        raise NotImplementedError

    def load_data(self, path: str) -> TensorData:
        """Read a user's file in the task's format, preprocessed with self.meta."""
        raise ValueError(f"task {self.name} cannot read data files")

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def loader(self, data: TensorData, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1):
        return IndexLoader(data, batch_size, shuffle, seed, rank, world)

    # -- training protocol ----------------------------------------------------------------
    def step(self, model: nn.Module, batch, state=None) -> StepOutput:
        raise NotImplementedError

    def metrics(self, totals: dict) -> dict[str, float]:
        """Metrics from summed statistics; the default knows loss and accuracy."""
        count = max(totals["count"], 1)
        out = {"loss": totals["loss_sum"] / count}
        if "correct" in totals:
            out["accuracy"] = totals["correct"] / count
        return out

    def split_time(self, batch, window: int) -> list:
        raise ValueError(f"task {self.name} does not support truncated BPTT (--bptt)")

    # -- using a trained model ------------------------------------------------------------
    predict_options: ClassVar[tuple[str, ...]] = ()  # keyword options predict takes, e.g. ("horizon",)

    def predict(self, model: nn.Module, inputs: list[str], **options) -> list[dict]:
        """One JSON-able dict per input (``rnnkit predict`` prints one line each)."""
        raise ValueError(f"task {self.name} has no predict")

    def generate(self, model: nn.Module, prime: str, length: int, temperature: float, top_k: int) -> Iterator[str]:
        """Yield generated text piece by piece, so the command line can stream it."""
        raise ValueError(f"task {self.name} does not generate text; use `rnnkit predict`")
