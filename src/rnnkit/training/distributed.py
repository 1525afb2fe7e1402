"""Data-parallel training with torch.distributed, started by ``torchrun``: one process per GPU
(NCCL) or several processes on CPUs (gloo).

One machine::

    torchrun --nproc_per_node 2 -m rnnkit train digits                  # CPU processes, gloo
    torchrun --nproc_per_node 8 -m rnnkit train charlm --device cuda    # one process per GPU, NCCL

Several machines: the same command on every node, each told the node count and where to meet
(any free port on the first node)::

    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_id charlm1 --rdzv_backend c10d \\
        --rdzv_endpoint node0.example:29400 -m rnnkit train charlm --device cuda

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK and the rendezvous variables; :func:`setup` then joins
the process group: NCCL when the device is CUDA (each process on ``cuda:LOCAL_RANK``, see
``rnnkit.training.device.resolve_device``), gloo on the CPU. Every process draws the same global
batch (same seed) and keeps its share (``indices[rank::world]``); the trainer scales the loss so
that the averaged gradient is the gradient of the whole global batch, and only rank 0 writes
files (``--out`` must be on a file system rank 0 can write; the other nodes write nothing).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["DistInfo", "local_rank", "setup", "all_reduce_sum", "teardown"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # this process among all of them
    world: int = 1  # the number of processes
    local_rank: int = 0  # this process among those of its machine (its GPU under NCCL)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module, device: torch.device | None = None) -> nn.Module:
        """DistributedDataParallel around ``model`` (already on ``device``) when there is more than
        one process; on a GPU, DDP is told that one device."""
        if self.world == 1:
            return model
        if device is not None and device.type == "cuda":
            return nn.parallel.DistributedDataParallel(model, device_ids=[device.index], output_device=device.index)
        return nn.parallel.DistributedDataParallel(model)


def local_rank() -> int | None:
    """This process's LOCAL_RANK under torchrun with more than one process; None otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return None
    return int(os.environ.get("LOCAL_RANK", "0"))


def setup(device: torch.device | str = "cpu") -> DistInfo:
    """Join the process group torchrun described in the environment (no-op for one process):
    NCCL for a CUDA ``device`` (made this process's current device first), gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo()
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(value, info: DistInfo):
    """Sum a float or a tensor over all processes (returned as the same kind)."""
    if info.world == 1:
        return value
    if isinstance(value, Tensor):
        t = value.detach().clone()
    else:  # NCCL reduces GPU tensors only
        on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor(float(value), dtype=torch.float64, device=on)
    dist.all_reduce(t)
    return t if isinstance(value, Tensor) else float(t)
