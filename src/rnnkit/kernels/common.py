"""What the BPTT Functions of ``lstm_bptt`` and ``gru_bptt`` share: masks, derivative
factors, and the recurrent product with or without layer norm (``Product``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..cells.base import LN_EPS
import ctypes
from functools import partial
from typing import Callable

from . import cpu, triton_steps
from .gemm import addmm_t, mm_t, weight_grad

__all__ = ["kernels_apply", "step_kernels_apply", "step_kernels", "needs_graph", "absent", "contiguous", "partial_steps", "mask_coefficients",
           "prev_states", "sigmoid_grad", "tanh_grad", "layer_norm_backward", "Product"]

def _alike(gx: Tensor, tensors) -> bool:
    return all(t is None or (t.dtype == gx.dtype and t.device == gx.device) for t in tensors)


def kernels_apply(gx: Tensor, *tensors: Tensor | None) -> bool:
    """Whether the compiled C++ kernels run this: CPU, float32/64, one dtype throughout."""
    return cpu.applies(gx) and _alike(gx, tensors)


def step_kernels_apply(gx: Tensor, *tensors: Tensor | None) -> bool:
    """Whether a sequence's steps run on step kernels (``step_kernels``): the C++ ones on the CPU,
    the Triton ones on CUDA (``triton_steps``); float32/64, one dtype and device throughout."""
    return (cpu.applies(gx) or triton_steps.applies(gx)) and _alike(gx, tensors)


def step_kernels(args_type, buffers: dict[str, Tensor | None], T: int, B: int, H: int
                 ) -> Callable[[str], Callable[[int], None]]:
    """The step kernels over one sequence's ``buffers`` (name -> tensor or None, the names of
    ``csrc/common.h``): ``step_kernels(...)("lstm_forward")(t)`` runs step t. The compiled C++
    kernels where they apply (``args_type``: their struct, ``cpu.LSTMArgs`` or ``cpu.GRUArgs``),
    else the Triton ones (``step_kernels_apply`` said one of them does)."""
    like = next(v for v in buffers.values() if v is not None)
    if not cpu.applies(like):
        return triton_steps.StepKernels(buffers, T, B, H)
    lib, dtype = cpu.load(), cpu.suffix(like.dtype)
    args = args_type(T=T, B=B, H=H, eps=LN_EPS, **{k: cpu.pointer(v) for k, v in buffers.items()})
    ref = ctypes.byref(args)  # holds args (and buffers holds the tensors) while a step can run

    def kernel(name: str) -> Callable[[int], None]:
        return partial(getattr(lib, f"{name}_{dtype}"), ref)
    return kernel


def needs_graph(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def absent(like: Tensor) -> Tensor:
    """A new empty tensor (0 elements) like ``like``: what a custom op returns in place of a buffer
    its configuration has none of (ops return tensors only, and no two outputs may share memory)."""
    return like.new_empty(0)


def contiguous(t: Tensor | None) -> Tensor | None:
    """``t.contiguous()``, None for None (an absent optional weight)."""
    return None if t is None else t.contiguous()


def partial_steps(mask: Tensor | None, T: int) -> list[bool]:
    """partial[t]: step t has some sequence masked out (the others need no torch.where)."""
    if mask is None:
        return [False] * T
    return (~mask.all(1)).tolist()


def mask_coefficients(mask: Tensor | None, *coefficients: Tensor) -> Tensor | None:
    """Zero every (T, B, ...) coefficient where mask (T, B) is False; returns mask as (T, B, 1) float."""
    if mask is None:
        return None
    keep = mask.unsqueeze(-1).to(coefficients[0].dtype)  # (T, B, 1)
    for k in coefficients:
        k.mul_(keep.view(keep.shape + (1,) * (k.dim() - 3)))
    return keep


def prev_states(h0: Tensor, hs: Tensor) -> Tensor:
    """h_tm1 of every step: (T, B, H) from h0 (B, H) and the states after each step hs (T, B, H)."""
    return torch.cat([h0.unsqueeze(0), hs[:-1]])


def sigmoid_grad(grad: Tensor, s: Tensor, out: Tensor | None = None) -> Tensor:
    """grad * s (1 - s) for s = sigmoid(.), in one pass (autograd's own kernel)."""
    if out is None:
        return torch.ops.aten.sigmoid_backward(grad, s)
    return torch.ops.aten.sigmoid_backward.grad_input(grad, s, grad_input=out)


def tanh_grad(grad: Tensor, y: Tensor, out: Tensor | None = None) -> Tensor:
    """grad * (1 - y^2) for y = tanh(.), in one pass."""
    if out is None:
        return torch.ops.aten.tanh_backward(grad, y)
    return torch.ops.aten.tanh_backward.grad_input(grad, y, grad_input=out)


# -- the recurrent product, with or without layer norm ---------------------------------------



def layer_norm_backward(dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor | None) -> Tensor:
    """Gradient w.r.t. x (..., N) of layer_norm(x) [* weight] over the last dim, given dy."""
    return torch.ops.aten.native_layer_norm_backward(dy, x, x.shape[-1:], mean, rstd, weight, None,
                                                     [True, False, False])[0]


class Product:
    """The recurrent product of each step: ``a_t @ W^T`` (B, G), or with a gain (layer norm)
    ``LN(a_t @ W^T) * gain``, normalised per gate as ``rnnkit.cells.base.gate_norm``.

    ``forward`` runs step after step and (with ``save``) keeps what ``backward`` needs, which
    then runs in reverse step order; ``grads`` gives the weight and gain gradients at the end.
    """

    def __init__(self, weight: Tensor, gain: Tensor | None, num_gates: int, op, save: bool) -> None:
        self.weight, self.gain, self.num_gates, self.op, self.save = weight, gain, num_gates, op, save
        self.w_t = None  # weight^T, contiguous, for backward's dy @ W
        # layer norm only, per step: a_t @ W^T (B, gates, H), its norm and (mean, rstd)
        self.z, self.xhat, self.stats = [], [], []
        self.dz, self.d_gain = [], None  # filled by backward

    def forward(self, add: Tensor | None, a: Tensor, out: Tensor) -> Tensor:
        """out = add + product(a) for the next step; add (B, G), (G) or None."""
        if self.gain is None:
            if add is None:
                return out.copy_(mm_t(self.op, a, self.weight))
            return addmm_t(self.op, add, a, self.weight, out=out)
        z = mm_t(self.op, a, self.weight)  # (B, G)
        B, G = z.shape
        zg = z.view(B, self.num_gates, G // self.num_gates)  # (B, gates, H)
        xhat, mean, rstd = torch.native_layer_norm(zg, zg.shape[-1:], None, None, LN_EPS)
        if self.save:
            self.z.append(zg)
            self.xhat.append(xhat)
            self.stats.append((mean, rstd))
        xhat = xhat.view(B, G)
        return torch.mul(xhat, self.gain, out=out) if add is None else torch.addcmul(add, xhat, self.gain, out=out)

    def backward(self, t: int, dy: Tensor, add: Tensor | None = None) -> Tensor:
        """(add +) the gradient w.r.t. a_t (B, K), from dy (B, G) w.r.t. the product of step t."""
        if self.w_t is None:
            self.w_t = self.weight.t().contiguous()  # (K, G)
        if self.gain is not None:
            zg, xhat = self.z[t], self.xhat[t]
            if t == len(self.z) - 1:  # the first step of this backward pass
                self.dz, self.d_gain = [None] * len(self.z), torch.zeros_like(xhat)
            self.d_gain.addcmul_(dy.view(xhat.shape), xhat)  # summed over the batch in grads()
            dz = layer_norm_backward((dy * self.gain).view(zg.shape), zg, *self.stats[t], None)
            self.dz[t] = dz  # for the weight gradient, in grads()
            dy = dz.view(dy.shape)
        return mm_t(self.op, dy, self.w_t) if add is None else addmm_t(self.op, add, dy, self.w_t)

    def grads(self, dy: Tensor, a: Tensor, need_weight: bool, need_gain: bool):
        """Weight (G, K) and gain (G) gradients from every step's dy (T, B, G) and a (T, B, K)."""
        T, B, G = dy.shape
        d_w = d_gain = None
        if need_weight:
            dz = dy if self.gain is None else torch.stack(self.dz).view(T, B, G)
            d_w = weight_grad(self.op, dz.reshape(-1, G), a.reshape(-1, a.shape[-1]))
        if self.gain is not None and need_gain:
            d_gain = self.d_gain.sum(0).view(G)
        return d_w, d_gain

