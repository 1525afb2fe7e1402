"""Per-gate layer norm (``rnnkit.cells.base.gate_norm``) on the compiled CPU kernels.

Forward is one pass over z and backward one pass over the gradient (the gain and bias gradients
summed in it); where the kernels do not apply (other devices or dtypes, no compiler) the cells'
own ``gate_norm`` runs under autograd. The backends pass it as the ``norm`` of the cells'
projection functions (``lstm_project(w, x, linear, norm)``), so layer-norm variants normalise
their input projections with it.
"""
from __future__ import annotations

import ctypes

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..cells.base import LN_EPS
from ..cells.base import gate_norm as reference_gate_norm
from . import cpu
from .common import kernels_apply

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
    return _GateNorm.apply(z, gain, bias, num_gates)


class _GateNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, gain, bias, num_gates):
        G = z.shape[-1]
        H = G // num_gates
        z2 = z.reshape(-1, H).contiguous()  # (rows, H), row r in gate r % num_gates
        out, xhat, rstd = torch.empty_like(z2), torch.empty_like(z2), z2.new_empty(z2.shape[0])
        gain, bias = gain.contiguous(), None if bias is None else bias.contiguous()
        args = cpu.NormArgs(rows=z2.shape[0], H=H, gates=num_gates, threads=torch.get_num_threads(),
                                     eps=LN_EPS, **{k: cpu.pointer(v) for k, v in dict(
                                         z=z2, out=out, xhat=xhat, rstd=rstd, gain=gain, bias=bias).items()})
        getattr(cpu.load(), "gate_norm_forward_" + cpu.suffix(z.dtype))(ctypes.byref(args))
        ctx.save_for_backward(xhat, rstd, gain)
        ctx.num_gates, ctx.has_bias, ctx.z_shape = num_gates, bias is not None, z.shape
        return out.view(z.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        xhat, rstd, gain = ctx.saved_tensors
        rows, H = xhat.shape
        dy = dy.reshape(rows, H).contiguous()
        dz, d_gain = torch.empty_like(xhat), gain.new_empty(gain.shape)
        d_bias = gain.new_empty(gain.shape) if ctx.has_bias else None
        args = cpu.NormArgs(rows=rows, H=H, gates=ctx.num_gates, threads=torch.get_num_threads(),
                                     eps=LN_EPS, **{k: cpu.pointer(v) for k, v in dict(
                                         xhat=xhat, rstd=rstd, gain=gain, dy=dy, dz=dz, d_gain=d_gain,
                                         d_bias=d_bias).items()})
        getattr(cpu.load(), "gate_norm_backward_" + cpu.suffix(dy.dtype))(ctypes.byref(args))
        return dz.view(ctx.z_shape), d_gain, d_bias, None

