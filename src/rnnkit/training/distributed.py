"""Data-parallel training with torch.distributed, started by ``torchrun``.

``torchrun --nproc_per_node 2 -m rnnkit train digits`` sets WORLD_SIZE, RANK and the
rendezvous variables; :func:`setup` then joins the process group (gloo on CPU, nccl on GPU).
Every process draws the same global batch (same seed) and keeps its share
(``indices[rank::world]``); the trainer scales the loss so that the averaged gradient is the
gradient of the whole global batch, and only rank 0 writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["DistInfo", "setup", "all_reduce_sum", "teardown"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel around model when there is more than one process."""
        if self.world == 1:
            return model
        return nn.parallel.DistributedDataParallel(model)


def setup(device: str = "cpu") -> DistInfo:
    """Join the process group torchrun described in the environment (no-op for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size())


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(value, info: DistInfo):
    """Sum a float or a tensor over all processes (returned as the same kind)."""
    if info.world == 1:
        return value
    t = value.detach().clone() if isinstance(value, Tensor) else torch.tensor(float(value), dtype=torch.float64)
    dist.all_reduce(t)
    return t if isinstance(value, Tensor) else float(t)
