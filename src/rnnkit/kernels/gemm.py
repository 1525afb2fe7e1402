"""Matrix products for the BPTT Functions and the backends' input projections.

Matrix products of float32 CPU tensors go to oneDNN (the library torch.nn.LSTM runs on, on
CPU) rather than torch.mm's BLAS: on this project's AMD machines MKL's sgemm runs at about half
oneDNN's speed. ``linear`` gives the backends' input projections the same products. Every other
device, dtype or size goes to torch.mm / F.linear.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["gemm_for", "onednn_op", "mm_t", "mm_t_into", "addmm_t", "weight_grad", "linear"]


_onednn = None  # True once oneDNN's op is checked to work here, False if not
# Below this many multiply-adds a product goes to torch.mm: oneDNN's call costs more than it
# saves (measured here: 16 x 128 x 512 is faster on torch.addmm, 64 x 128 x 512 on oneDNN).
_ONEDNN_MIN_MACS = 1 << 21


def onednn_op():
    """oneDNN's ``input @ weight^T (+ bias)`` on dense tensors, or False (a private torch op, so
    it is checked against torch.addmm once, and never used if missing or different)."""
    return torch.ops.mkldnn._linear_pointwise if _onednn_works() else False


@torch.compiler.assume_constant_result
def _onednn_works() -> bool:
    """The check, made on the first call. ``torch.compile`` runs it outside the trace (it
    compares real tensors) and keeps the answer as a constant of the graph."""
    global _onednn
    if _onednn is None:
        _onednn = False
        try:
            op = torch.ops.mkldnn._linear_pointwise
            gen = torch.Generator().manual_seed(0)
            a, b, bias = (torch.randn(shape, generator=gen) for shape in ((5, 3), (4, 3), (4,)))
            _onednn = torch.backends.mkldnn.is_available() and torch.allclose(
                op(a.t().contiguous().t(), b, bias, "none", [], ""), torch.addmm(bias, a, b.t()), atol=1e-5
            )
        except (AttributeError, RuntimeError):
            pass
    return bool(_onednn)


def gemm_for(like: Tensor):
    """The oneDNN op for tensors like ``like`` (float32, CPU, oneDNN enabled), or None."""
    if like.dtype != torch.float32 or like.device.type != "cpu" or not torch.backends.mkldnn.enabled:
        return None
    return onednn_op() or None


def _plain(t: Tensor) -> Tensor:
    """t (M, K) as oneDNN runs fast: rows of unit stride, or a transposed contiguous tensor.
    (Other layouts, e.g. a transposed column slice, fall to its reference code: ~1000x slower.)"""
    return t if t.stride(-1) == 1 or t.t().is_contiguous() else t.contiguous()


def _big(m: int, k: int, n: int) -> bool:
    """Whether an (m, k) @ (k, n) product is worth oneDNN's call."""
    return m * k * n >= _ONEDNN_MIN_MACS


def mm_t(op, a: Tensor, b: Tensor) -> Tensor:
    """a (M, K) @ b (N, K)^T -> (M, N); op from ``gemm_for`` (None: torch.mm)."""
    if op is None or not _big(*a.shape, b.shape[0]):
        return torch.mm(a, b.t())
    return op(_plain(a), _plain(b), None, "none", [], "")


def mm_t_into(op, a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """out = a @ b^T."""
    if op is None or not _big(*a.shape, b.shape[0]):
        return torch.mm(a, b.t(), out=out)
    return out.copy_(op(_plain(a), _plain(b), None, "none", [], ""))


def addmm_t(op, c: Tensor, a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """c + a @ b^T, into ``out`` if given."""
    if op is None or not _big(*a.shape, b.shape[0]):
        return torch.addmm(c, a, b.t()) if out is None else torch.addmm(c, a, b.t(), out=out)
    ab = op(_plain(a), _plain(b), None, "none", [], "")
    return ab.add_(c) if out is None else torch.add(c, ab, out=out)


def weight_grad(op, d: Tensor, x: Tensor) -> Tensor:
    """sum over rows of d^T x: d (N, G), x (N, K) -> (G, K), one product over all steps."""
    if op is None or not _big(d.shape[1], d.shape[0], x.shape[1]):
        return torch.mm(d.t(), x)
    d, x = d.contiguous(), x.contiguous()
    return op(x.t(), d.t(), None, "none", [], "").t()  # (x^T d)^T: oneDNN's faster orientation


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` with oneDNN's products, forward and backward, where they apply (float32 on
    CPU, oneDNN enabled) and autocast is off; plain ``F.linear`` otherwise.

    x: (..., K); weight: (N, K); bias: (N) or None -> (..., N).
    """
    if (torch.is_autocast_enabled(x.device.type) or gemm_for(x) is None or weight.dtype != x.dtype
            or (bias is not None and bias.dtype != x.dtype) or not _big(x.numel() // x.shape[-1], *weight.shape)):
        return torch.nn.functional.linear(x, weight, bias)
    return _Linear.apply(x, weight, bias)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        op = gemm_for(x)
        x2 = x.reshape(-1, x.shape[-1])  # (N, K)
        ctx.save_for_backward(x2, weight)
        ctx.x_shape, ctx.has_bias = x.shape, bias is not None
        return op(_plain(x2), _plain(weight), bias, "none", [], "").view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x2, weight = ctx.saved_tensors
        op = gemm_for(x2)
        dy2 = dy.reshape(-1, weight.shape[0])  # (N, G)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = mm_t(op, dy2, weight.t().contiguous()).view(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            dw = weight_grad(op, dy2, x2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy2.sum(0)
        return dx, dw, db

