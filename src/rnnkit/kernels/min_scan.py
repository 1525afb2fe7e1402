"""minGRU and minLSTM over a whole sequence on the compiled CPU kernels (``csrc/scan.cpp``).

Forward is one pass over the projected input (each unit's gates and its linear recurrence, the
units split over threads); backward one pass of the reversed recurrence of the gradient, the
gates recomputed from the projected input. Same results as the reference steps
(``rnnkit.cells.minrnn``) up to float rounding; pinned to them by ``tests/layers/test_backends.py``
("scan-kernels").

The kernels run as two torch custom operators, ``rnnkit::min_scan_forward`` (xp, h0, keep?,
kind) -> hs and ``rnnkit::min_scan_backward`` (d_hs, xp, h0, hs, keep?, kind) -> (dxp, dh0),
with fake implementations and the autograd of the first registered to call the second.
"""
from __future__ import annotations

import ctypes
from typing import Optional

import torch
from torch import Tensor

from . import cpu

__all__ = ["min_scan", "MIN_KINDS"]

MIN_KINDS = {"mingru": 0, "minlstm": 1}  # the kernels' ``kind``


def min_scan(xp: Tensor, h0: Tensor, mask: Tensor | None, cell: str) -> Tensor:
    """Every state of a minGRU / minLSTM direction: xp (T, B, G) the projected input, h0 (B, H),
    mask (T, B) bool or None (past a length the state is kept) -> hs (T, B, H).

    For CPU float32/64 tensors where ``cpu.kernels_for`` finds the library (the caller checks)."""
    keep = None if mask is None else mask.to(torch.uint8).contiguous()
    return torch.ops.rnnkit.min_scan_forward(xp.contiguous(), h0.contiguous(), keep, MIN_KINDS[cell])


def _call(name: str, dtype: torch.dtype, T: int, B: int, H: int, kind: int, **buffers) -> None:
    args = cpu.ScanArgs(T=T, B=B, H=H, kind=kind, threads=torch.get_num_threads(),
                        **{k: cpu.pointer(v) for k, v in buffers.items()})
    getattr(cpu.load(), f"{name}_{cpu.suffix(dtype)}")(ctypes.byref(args))


@torch.library.custom_op("rnnkit::min_scan_forward", mutates_args=(), device_types="cpu")
def _min_scan_forward(xp: Tensor, h0: Tensor, keep: Optional[Tensor], kind: int) -> Tensor:
    """hs (T, B, H): the states of every step."""
    T, B, _ = xp.shape
    H = h0.shape[-1]
    hs = xp.new_empty(T, B, H)
    _call("min_scan_forward", xp.dtype, T, B, H, kind, xp=xp, h0=h0, keep=keep, hs=hs)
    return hs


@_min_scan_forward.register_fake
def _(xp, h0, keep, kind):
    return xp.new_empty(xp.shape[0], xp.shape[1], h0.shape[-1])


def _setup_context(ctx, inputs, output):
    xp, h0, keep, kind = inputs
    ctx.save_for_backward(xp, h0, keep, output)
    ctx.kind = kind


def _autograd_backward(ctx, d_hs):
    xp, h0, keep, hs = ctx.saved_tensors
    dxp, dh0 = torch.ops.rnnkit.min_scan_backward(d_hs.contiguous(), xp, h0, hs, keep, ctx.kind)
    return dxp, dh0, None, None


_min_scan_forward.register_autograd(_autograd_backward, setup_context=_setup_context)


@torch.library.custom_op("rnnkit::min_scan_backward", mutates_args=(), device_types="cpu")
def _min_scan_backward(d_hs: Tensor, xp: Tensor, h0: Tensor, hs: Tensor, keep: Optional[Tensor],
                       kind: int) -> tuple[Tensor, Tensor]:
    """The gradients of xp (T, B, G) and h0 (B, H) from that of hs (T, B, H)."""
    T, B, H = hs.shape
    dxp, dh0 = torch.empty_like(xp), torch.empty_like(h0)
    _call("min_scan_backward", xp.dtype, T, B, H, kind, xp=xp, h0=h0, keep=keep, hs=hs, d_hs=d_hs, dxp=dxp, dh0=dh0)
    return dxp, dh0


@_min_scan_backward.register_fake
def _(d_hs, xp, h0, hs, keep, kind):
    return torch.empty_like(xp), torch.empty_like(h0)
