"""The data and loaders tasks hand to the trainer: aligned tensors, batched by index or by stream.

Both loaders are ``rnnkit.training.ResumableLoader``\\ s: they resume exactly mid-epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from ..data import BucketBatchSampler, StreamBatcher

__all__ = ["TensorData", "IndexLoader", "StreamLoader"]


@dataclass
class TensorData:
    """A dataset held as aligned tensors (first axis = sample), plus optional lengths.

    ``raw``: the split's records before encoding (e.g. texts and labels), for a task's
    ``baselines``; never batched.
    """

    tensors: dict[str, Tensor]
    raw: Any = None

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
