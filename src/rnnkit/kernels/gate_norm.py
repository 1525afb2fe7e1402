"""Per-gate layer norm (``rnnkit.cells.base.gate_norm``) on the compiled CPU kernels.

Forward is one pass over z and backward one pass over the gradient (the gain and bias gradients
summed in it); where the kernels do not apply (other devices or dtypes, no compiler) the cells'
own ``gate_norm`` runs under autograd. The backends pass it as the ``norm`` of the cells'
projection functions (``lstm_project(w, x, linear, norm)``), so layer-norm variants normalise
their input projections with it.

The kernels run as two torch custom operators, ``rnnkit::gate_norm_forward`` (z, gain, bias?,
num_gates) -> (out, xhat, rstd) and ``rnnkit::gate_norm_backward`` (dy, xhat, rstd, gain,
num_gates, has_bias) -> (dz, d_gain, d_bias), with fake implementations and the autograd of the
first registered to call the second: autograd and ``torch.compile`` see through them.
"""
from __future__ import annotations

import ctypes
from typing import Optional

import torch
from torch import Tensor

from ..cells.base import LN_EPS
from ..cells.base import gate_norm as reference_gate_norm
from . import cpu
from .common import absent, contiguous, kernels_apply

__all__ = ["gate_norm"]


def gate_norm(z: Tensor, gain: Tensor, num_gates: int, bias: Tensor | None = None) -> Tensor:
    """``rnnkit.cells.base.gate_norm(z, gain, num_gates) (+ bias)``: layer norm of each gate's
    part of z (..., G*H) separately, times gain (G*H), plus bias (G*H) if given.

    With the compiled kernels (float32/64 on CPU, autocast off), forward is one pass over
    z and backward one pass over the gradient (the gain and bias gradients summed in it);
    otherwise the reference's torch operations under autograd. Once differentiable.
    """
    if torch.is_autocast_enabled(z.device.type) or not kernels_apply(z, gain, bias):
        out = reference_gate_norm(z, gain, num_gates)
        return out if bias is None else out + bias
    return torch.ops.rnnkit.gate_norm_forward(z, gain, bias, num_gates)[0]


# -- the compiled kernels as torch operators: ``rnnkit::gate_norm_forward`` and ``_backward`` ----


@torch.library.custom_op("rnnkit::gate_norm_forward", mutates_args=(), device_types="cpu")
def _gate_norm_forward(z: Tensor, gain: Tensor, bias: Optional[Tensor],
                       num_gates: int) -> tuple[Tensor, Tensor, Tensor]:
    """``gate_norm``'s forward: out (z's shape), and for backward xhat (rows, H), the normalised
    z with row r in gate r % num_gates, and its 1 / std (rows)."""
    G = z.shape[-1]
    H = G // num_gates
    z2 = z.reshape(-1, H).contiguous()  # (rows, H), row r in gate r % num_gates
    out, xhat, rstd = torch.empty_like(z2), torch.empty_like(z2), z2.new_empty(z2.shape[0])
    buffers = dict(z=z2, out=out, xhat=xhat, rstd=rstd, gain=gain.contiguous(), bias=contiguous(bias))
    args = cpu.NormArgs(rows=z2.shape[0], H=H, gates=num_gates, threads=torch.get_num_threads(), eps=LN_EPS,
                        **{k: cpu.pointer(v) for k, v in buffers.items()})
    getattr(cpu.load(), "gate_norm_forward_" + cpu.suffix(z.dtype))(ctypes.byref(args))
    return out.view(z.shape), xhat, rstd


@_gate_norm_forward.register_fake
def _(z, gain, bias, num_gates):
    H = z.shape[-1] // num_gates
    rows = z.numel() // H
    return z.new_empty(z.shape), z.new_empty(rows, H), z.new_empty(rows)


def _gate_norm_setup_context(ctx, inputs, output):
    z, gain, bias, num_gates = inputs
    _, xhat, rstd = output
    ctx.mark_non_differentiable(xhat, rstd)
    ctx.set_materialize_grads(False)  # no zero gradients for xhat and rstd
    ctx.save_for_backward(xhat, rstd, gain)
    ctx.num_gates, ctx.has_bias = num_gates, bias is not None


def _gate_norm_autograd_backward(ctx, dy, *_):
    if dy is None:  # out got no gradient
        return None, None, None, None
    xhat, rstd, gain = ctx.saved_tensors
    dz, d_gain, d_bias = torch.ops.rnnkit.gate_norm_backward(dy, xhat, rstd, gain, ctx.num_gates, ctx.has_bias)
    return dz, d_gain, d_bias if ctx.has_bias else None, None


_gate_norm_forward.register_autograd(_gate_norm_autograd_backward, setup_context=_gate_norm_setup_context)


@torch.library.custom_op("rnnkit::gate_norm_backward", mutates_args=(), device_types="cpu")
def _gate_norm_backward(dy: Tensor, xhat: Tensor, rstd: Tensor, gain: Tensor, num_gates: int,
                        has_bias: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The gradients of z (dy's shape), gain and bias (empty unless ``has_bias``), from dy, the
    gradient of out, and the forward's xhat and rstd."""
    rows, H = xhat.shape
    dy2 = dy.reshape(rows, H).contiguous()
    dz, d_gain = torch.empty_like(xhat), gain.new_empty(gain.shape)
    d_bias = gain.new_empty(gain.shape) if has_bias else None
    buffers = dict(xhat=xhat.contiguous(), rstd=rstd.contiguous(), gain=gain.contiguous(), dy=dy2, dz=dz,
                   d_gain=d_gain, d_bias=d_bias)
    args = cpu.NormArgs(rows=rows, H=H, gates=num_gates, threads=torch.get_num_threads(), eps=LN_EPS,
                        **{k: cpu.pointer(v) for k, v in buffers.items()})
    getattr(cpu.load(), "gate_norm_backward_" + cpu.suffix(dy.dtype))(ctypes.byref(args))
    return dz.view(dy.shape), d_gain, absent(gain) if d_bias is None else d_bias


@_gate_norm_backward.register_fake
def _(dy, xhat, rstd, gain, num_gates, has_bias):
    return dy.new_empty(dy.shape), gain.new_empty(gain.shape), gain.new_empty(gain.shape if has_bias else (0,))
