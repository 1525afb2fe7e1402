"""Where training and inference run, and in which precision: the user's choice checked and
resolved, batches moved, forward passes under autocast (with a GradScaler for float16).

Devices (``TrainConfig.device``, ``rnnkit.load(run, device=...)``, ``--device``)::

    auto      CUDA when torch.cuda.is_available(), else the CPU
    cpu
    cuda      the current CUDA device; under torchrun, cuda:LOCAL_RANK (one process per GPU)
    cuda:N    GPU number N

Precisions (``TrainConfig.precision``, ``--precision``)::

    32        float32 everywhere
    bf16      autocast to bfloat16 around the forward pass and the loss, on the CPU or a GPU
    16-mixed  autocast to float16 around the forward pass and the loss, and a GradScaler
              (scaled loss, unscaled gradients before clipping, steps with inf/NaN gradients
              skipped); CUDA only

Autocast computes in the low precision but keeps the weights, their gradients and the
optimizer's state in float32: a run trained in bf16 or 16-mixed saves float32 weights, which
load into float32 models on any device. (rnnkit's "sequence" backends decline under autocast,
so variant cells run the reference loop there, in autocast's casts.)

Pinned memory: a ``torch.utils.data.DataLoader`` handed to the trainer pins its batches in a
background thread when built with ``pin_memory=True`` (do so for a CUDA device); the trainer
then copies them with ``non_blocking=True``. rnnkit's own loaders (``IndexLoader``,
``StreamLoader``) slice tensors already in memory, in the training process: pinning there
would add a copy without any overlap, so they do not pin.
"""
from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["DEVICES", "PRECISIONS", "check_device", "check_precision", "resolve_device", "autocast", "Precision",
           "move_to_device", "module_device"]

DEVICES = "auto, cpu, cuda or cuda:N (N a GPU index)"  # the device strings, as errors name them
PRECISIONS = ("32", "bf16", "16-mixed")
_AUTOCAST_DTYPE = {"32": None, "bf16": torch.bfloat16, "16-mixed": torch.float16}


def check_device(owner: str, name: str, spec: object) -> str:
    """Return ``spec`` if it is a device string rnnkit takes (see the module docstring); its
    form only: whether the machine has that device is :func:`resolve_device`'s question."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    if isinstance(spec, str) and (spec in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", spec)):
        return spec
    raise ValueError(f"{owner}: {name} must be {DEVICES}, got {spec!r}")


def resolve_device(spec: object, owner: str = "device", name: str = "device",
                   local_rank: int | None = None) -> torch.device:
    """The ``torch.device`` that ``spec`` names on this machine, always with an index for CUDA.

    ``local_rank``: this process's ``LOCAL_RANK`` under torchrun (None for a single process);
    then "auto" and "cuda" give ``cuda:LOCAL_RANK``, one GPU per process, and "cuda:N" is
    refused unless N is the local rank. A CUDA device the machine lacks raises a one-line
    ValueError.
    """
    spec = check_device(owner, name, spec)
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"{owner}: {name} {spec!r} needs a CUDA GPU, but torch finds none "
                         f"(torch.cuda.is_available() is False); use 'cpu' or 'auto'")
    count = torch.cuda.device_count()
    if spec.startswith("cuda:"):  # an explicit index
        index = int(spec[len("cuda:"):])
        if local_rank is not None and index != local_rank:
            raise ValueError(f"{owner}: under torchrun each process takes the GPU of its LOCAL_RANK; {name} must be "
                             f"'cuda' or 'auto' there, got {spec!r} in the process of LOCAL_RANK {local_rank}")
    else:
        index = local_rank if local_rank is not None else torch.cuda.current_device()
    if index >= count:
        raise ValueError(f"{owner}: {name} {spec!r} needs GPU {index}, but this machine has {count} CUDA "
                         f"device(s) (cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def check_precision(owner: str, name: str, precision: object, device: torch.device | None = None) -> str:
    """Return ``precision`` if it is one of PRECISIONS and, given a device, runs there:
    16-mixed needs CUDA; bf16 on a GPU needs one that computes in bfloat16."""
    if precision not in PRECISIONS:
        raise ValueError(f"{owner}: {name} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device is not None and precision == "16-mixed" and device.type != "cuda":
        raise ValueError(f"{owner}: {name} '16-mixed' (float16 autocast with a GradScaler) needs a CUDA device, "
                         f"got device {str(device)!r}; use 'bf16' or '32' there")
    if device is not None and precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{owner}: {name} 'bf16' needs a GPU that computes in bfloat16, and "
                         f"{torch.cuda.get_device_name(device)} does not; use '16-mixed' or '32'")
    return str(precision)


def autocast(precision: str, device: torch.device):
    """The context to run a forward pass (and its loss) in: autocast to ``precision``'s dtype
    on ``device``'s type, or nothing for "32"."""
    dtype = _AUTOCAST_DTYPE[check_precision("autocast", "precision", precision)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


class Precision:
    """Autocast and gradient scaling for one precision on one device, as the trainer uses them::

        with precision.autocast():
            loss = task.step(model, batch).loss_sum
        precision.backward(loss)             # scaled for 16-mixed
        precision.unscale_(optimizer)        # before clipping the gradients
        precision.step(optimizer)            # skipped by the scaler when a gradient is inf/NaN

    ``state_dict()`` (JSON-able: the scaler's scale and growth tracker; ``{}`` without a
    scaler) goes into checkpoints, so a resumed 16-mixed run keeps its scale.
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision = check_precision("Precision", "precision", precision, device)
        self.device = device
        self.scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None

    def autocast(self):
        return autocast(self.precision, self.device)

    def backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return dict(self.scaler.state_dict()) if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        """Restore the scaler; a checkpoint of another precision (``{}``) leaves it fresh."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def move_to_device(batch: Any, device: torch.device | str, non_blocking: bool = True) -> Any:
    """``batch`` with every tensor in it on ``device``: tensors inside dicts (any Mapping),
    lists, tuples, named tuples and dataclass instances, at any depth; anything else as it is.

    Copies are ``non_blocking`` (asynchronous from pinned memory to a GPU); a tensor already
    on ``device`` is not copied.
    """
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        moved = {k: move_to_device(v, device, non_blocking) for k, v in batch.items()}
        if type(batch) is dict:
            return moved
        try:
            return type(batch)(moved)
        except TypeError:  # a mapping that is not built from a dict (a defaultdict): a plain dict
            return moved
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(move_to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device, non_blocking) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: move_to_device(getattr(batch, f.name), device, non_blocking)
                                            for f in dataclasses.fields(batch) if f.init})
    return batch


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (or buffer); the CPU for a module with neither."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")
