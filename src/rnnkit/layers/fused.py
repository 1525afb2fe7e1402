"""Whole-sequence LSTM and GRU with a hand-written backward (BPTT): PyTorch and small CPU kernels.

The generic engine (``rnnkit.layers.recurrent``) loops ``cell.step`` in Python and lets
autograd record every small operation of every step; its backward then replays them one
node at a time. Here one ``torch.autograd.Function`` runs a whole sequence of one direction
(the approach of Haste's CUDA kernels, written with torch operations):

- forward: per step one ``h_tm1 @ W_hh^T`` added to the projected input, and in-place
  element-wise gate math, writing into preallocated (T, B, ...) buffers the activated gates
  and cell states that backward needs;
- backward: the derivative factors of every step (``sigmoid' = s (1 - s)`` and the like,
  times whatever they multiply) are computed once for the whole sequence, so the
  reverse-time loop holds only what the recurrence needs: a few element-wise products and
  one ``dG_t @ W_hh`` per step. The weight gradient is one (G, T*B) @ (T*B, H) product at
  the end, and the gradient of the projected input is the whole ``dG`` (T, B, G): autograd
  takes it back through ``W_ih``, the biases and the input outside this function.

On CPU in float32/float64, each step's element-wise work (gates, layer norms, peepholes, the
mask; forward and backward) runs in one call of a small compiled kernel
(``rnnkit.layers._cpu_kernels``, built with the machine's C++ compiler at first use and
cached), so that a step is one matrix product and one kernel call: at small sizes the ~10-25
torch operations a step otherwise takes cost more than its matrix product. Without a
compiler, on other devices and dtypes, or inside ``kernels(False)``, the same steps run as
torch operations (below); the tests run both against the step loop.

Covered: LSTM with or without peepholes and layer norm (not with a projection, ``proj_size``),
GRU in both forms (``reset_after``) with or without layer norm. Layer norm of the recurrent
product is normalised per step, so its backward (torch's own layer-norm kernel) runs in the
loop; the input side's norm is in the projection, outside, under autograd.

``mask`` (T, B) bool, as the engine builds from ``lengths``: where it is False the state
passes through unchanged, the output is 0, and backward sends the gradient straight through
the state (the gate gradients of that step and sequence are 0).

The step-by-step loop stays the reference: ``with rnnkit.layers.fused.disabled():`` makes
every cell's ``run_sequence`` decline, so the engine runs ``step`` again (the tests compare
the two). The functions here are once differentiable (no double backward, no forward-mode
AD); use ``disabled()`` for those.

Matrix products of float32 CPU tensors go to oneDNN (the library torch.nn.LSTM runs on, on
CPU) rather than torch.mm's BLAS: on this project's AMD machines MKL's sgemm runs at about half
oneDNN's speed. ``linear`` gives the cells' input projections the same products.

Weight layout and gate order are torch.nn's: LSTM ``W_hh`` (4H, H) with gates i, f, g, o,
peephole (3H: p_i, p_f, p_o); GRU ``W_hh`` (3H, H) with gates r, z, n.
"""
from __future__ import annotations

import contextlib
import ctypes
from typing import Iterator

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import _cpu_kernels

__all__ = ["disabled", "is_enabled", "kernels", "linear", "gate_norm", "lstm_sequence", "gru_sequence"]

_enabled = True  # module-wide (not per thread): the switch is for tests and debugging


def is_enabled(gx: Tensor | None = None) -> bool:
    """Whether cells should use the fused sequence functions (for input ``gx``, if given).

    False inside ``disabled()``, and under autocast (the step loop's casts are autocast's).
    """
    if not _enabled:
        return False
    return gx is None or not torch.is_autocast_enabled(gx.device.type)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Force the plain step-by-step loop (the reference) inside the ``with`` block."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


@contextlib.contextmanager
def kernels(enabled: bool) -> Iterator[None]:
    """Use (True) or avoid (False) the compiled element-wise CPU kernels of ``_cpu_kernels``
    inside the ``with`` block; False runs every step with torch operations (for tests)."""
    previous = _cpu_kernels.set_enabled(enabled)
    try:
        yield
    finally:
        _cpu_kernels.set_enabled(previous)


# -- matrix products -------------------------------------------------------------------------

_onednn = None  # torch.ops.mkldnn._linear_pointwise once checked to work here, False if not
# Below this many multiply-adds a product goes to torch.mm: oneDNN's call costs more than it
# saves (measured here: 16 x 128 x 512 is faster on torch.addmm, 64 x 128 x 512 on oneDNN).
_ONEDNN_MIN_MACS = 1 << 21


def _onednn_op():
    """oneDNN's ``input @ weight^T (+ bias)`` on dense tensors (a private torch op, so it is
    checked against torch.addmm once, and never used if missing or different)."""
    global _onednn
    if _onednn is None:
        _onednn = False
        try:
            op = torch.ops.mkldnn._linear_pointwise
            gen = torch.Generator().manual_seed(0)
            a, b, bias = (torch.randn(shape, generator=gen) for shape in ((5, 3), (4, 3), (4,)))
            if torch.backends.mkldnn.is_available() and torch.allclose(
                op(a.t().contiguous().t(), b, bias, "none", [], ""), torch.addmm(bias, a, b.t()), atol=1e-5
            ):
                _onednn = op
        except (AttributeError, RuntimeError):
            pass
    return _onednn


def _gemm_for(like: Tensor):
    """The oneDNN op for tensors like ``like`` (float32, CPU, oneDNN enabled), or None."""
    if like.dtype != torch.float32 or like.device.type != "cpu" or not torch.backends.mkldnn.enabled:
        return None
    return _onednn_op() or None


def _plain(t: Tensor) -> Tensor:
    """t (M, K) as oneDNN runs fast: rows of unit stride, or a transposed contiguous tensor.
    (Other layouts, e.g. a transposed column slice, fall to its reference code: ~1000x slower.)"""
    return t if t.stride(-1) == 1 or t.t().is_contiguous() else t.contiguous()


def _big(m: int, k: int, n: int) -> bool:
    """Whether an (m, k) @ (k, n) product is worth oneDNN's call."""
    return m * k * n >= _ONEDNN_MIN_MACS


def _mm_t(op, a: Tensor, b: Tensor) -> Tensor:
    """a (M, K) @ b (N, K)^T -> (M, N); op from ``_gemm_for`` (None: torch.mm)."""
    if op is None or not _big(*a.shape, b.shape[0]):
        return torch.mm(a, b.t())
    return op(_plain(a), _plain(b), None, "none", [], "")


def _mm_t_into(op, a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """out = a @ b^T."""
    if op is None or not _big(*a.shape, b.shape[0]):
        return torch.mm(a, b.t(), out=out)
    return out.copy_(op(_plain(a), _plain(b), None, "none", [], ""))


def _addmm_t(op, c: Tensor, a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """c + a @ b^T, into ``out`` if given."""
    if op is None or not _big(*a.shape, b.shape[0]):
        return torch.addmm(c, a, b.t()) if out is None else torch.addmm(c, a, b.t(), out=out)
    ab = op(_plain(a), _plain(b), None, "none", [], "")
    return ab.add_(c) if out is None else torch.add(c, ab, out=out)


def _weight_grad(op, d: Tensor, x: Tensor) -> Tensor:
    """sum over rows of d^T x: d (N, G), x (N, K) -> (G, K), one product over all steps."""
    if op is None or not _big(d.shape[1], d.shape[0], x.shape[1]):
        return torch.mm(d.t(), x)
    d, x = d.contiguous(), x.contiguous()
    return op(x.t(), d.t(), None, "none", [], "").t()  # (x^T d)^T: oneDNN's faster orientation


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` with oneDNN's products, forward and backward, where they apply (float32 on
    CPU, oneDNN enabled) and the fused path is on; plain ``F.linear`` otherwise.

    x: (..., K); weight: (N, K); bias: (N) or None -> (..., N).
    """
    if (not is_enabled(x) or _gemm_for(x) is None or weight.dtype != x.dtype
            or (bias is not None and bias.dtype != x.dtype) or not _big(x.numel() // x.shape[-1], *weight.shape)):
        return torch.nn.functional.linear(x, weight, bias)
    return _Linear.apply(x, weight, bias)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        op = _gemm_for(x)
        x2 = x.reshape(-1, x.shape[-1])  # (N, K)
        ctx.save_for_backward(x2, weight)
        ctx.x_shape, ctx.has_bias = x.shape, bias is not None
        return op(_plain(x2), _plain(weight), bias, "none", [], "").view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x2, weight = ctx.saved_tensors
        op = _gemm_for(x2)
        dy2 = dy.reshape(-1, weight.shape[0])  # (N, G)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _mm_t(op, dy2, weight.t().contiguous()).view(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            dw = _weight_grad(op, dy2, x2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy2.sum(0)
        return dx, dw, db


def gate_norm(z: Tensor, gain: Tensor, num_gates: int, bias: Tensor | None = None) -> Tensor:
    """``rnnkit.cells.base._gate_norm(z, gain, num_gates) (+ bias)``: layer norm of each gate's
    part of z (..., G*H) separately, times gain (G*H), plus bias (G*H) if given.

    With the compiled kernels (float32/64 on CPU, the fused path on), forward is one pass over
    z and backward one pass over the gradient (the gain and bias gradients summed in it);
    otherwise the reference's torch operations under autograd. Once differentiable.
    """
    from ..cells.base import _gate_norm  # not at the top: rnnkit.cells imports this module

    if not (is_enabled(z) and _kernels_apply(z, gain, bias)):
        out = _gate_norm(z, gain, num_gates, eps=_LN_EPS)
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
        args = _cpu_kernels.NormArgs(rows=z2.shape[0], H=H, gates=num_gates, threads=torch.get_num_threads(),
                                     eps=_LN_EPS, **{k: _cpu_kernels.pointer(v) for k, v in dict(
                                         z=z2, out=out, xhat=xhat, rstd=rstd, gain=gain, bias=bias).items()})
        getattr(_cpu_kernels.load(), "gate_norm_forward_" + _cpu_kernels.suffix(z.dtype))(ctypes.byref(args))
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
        args = _cpu_kernels.NormArgs(rows=rows, H=H, gates=ctx.num_gates, threads=torch.get_num_threads(),
                                     eps=_LN_EPS, **{k: _cpu_kernels.pointer(v) for k, v in dict(
                                         xhat=xhat, rstd=rstd, gain=gain, dy=dy, dz=dz, d_gain=d_gain,
                                         d_bias=d_bias).items()})
        getattr(_cpu_kernels.load(), "gate_norm_backward_" + _cpu_kernels.suffix(dy.dtype))(ctypes.byref(args))
        return dz.view(ctx.z_shape), d_gain, d_bias, None


def _needs_graph(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _partial_steps(mask: Tensor | None, T: int) -> list[bool]:
    """partial[t]: step t has some sequence masked out (the others need no torch.where)."""
    if mask is None:
        return [False] * T
    return (~mask.all(1)).tolist()


def _mask_coefficients(mask: Tensor | None, *coefficients: Tensor) -> Tensor | None:
    """Zero every (T, B, ...) coefficient where mask (T, B) is False; returns mask as (T, B, 1) float."""
    if mask is None:
        return None
    keep = mask.unsqueeze(-1).to(coefficients[0].dtype)  # (T, B, 1)
    for k in coefficients:
        k.mul_(keep.view(keep.shape + (1,) * (k.dim() - 3)))
    return keep


def _prev_states(h0: Tensor, hs: Tensor) -> Tensor:
    """h_tm1 of every step: (T, B, H) from h0 (B, H) and the states after each step hs (T, B, H)."""
    return torch.cat([h0.unsqueeze(0), hs[:-1]])


def _sigmoid_grad(grad: Tensor, s: Tensor, out: Tensor | None = None) -> Tensor:
    """grad * s (1 - s) for s = sigmoid(.), in one pass (autograd's own kernel)."""
    if out is None:
        return torch.ops.aten.sigmoid_backward(grad, s)
    return torch.ops.aten.sigmoid_backward.grad_input(grad, s, grad_input=out)


def _tanh_grad(grad: Tensor, y: Tensor, out: Tensor | None = None) -> Tensor:
    """grad * (1 - y^2) for y = tanh(.), in one pass."""
    if out is None:
        return torch.ops.aten.tanh_backward(grad, y)
    return torch.ops.aten.tanh_backward.grad_input(grad, y, grad_input=out)


# -- the recurrent product, with or without layer norm ---------------------------------------

_LN_EPS = 1e-5  # as rnnkit.cells.base._gate_norm and F.layer_norm


def _layer_norm_backward(dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor | None) -> Tensor:
    """Gradient w.r.t. x (..., N) of layer_norm(x) [* weight] over the last dim, given dy."""
    return torch.ops.aten.native_layer_norm_backward(dy, x, x.shape[-1:], mean, rstd, weight, None,
                                                     [True, False, False])[0]


class _Product:
    """The recurrent product of each step: ``a_t @ W^T`` (B, G), or with a gain (layer norm)
    ``LN(a_t @ W^T) * gain``, normalised per gate as ``rnnkit.cells.base._gate_norm``.

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
                return out.copy_(_mm_t(self.op, a, self.weight))
            return _addmm_t(self.op, add, a, self.weight, out=out)
        z = _mm_t(self.op, a, self.weight)  # (B, G)
        B, G = z.shape
        zg = z.view(B, self.num_gates, G // self.num_gates)  # (B, gates, H)
        xhat, mean, rstd = torch.native_layer_norm(zg, zg.shape[-1:], None, None, _LN_EPS)
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
            dz = _layer_norm_backward((dy * self.gain).view(zg.shape), zg, *self.stats[t], None)
            self.dz[t] = dz  # for the weight gradient, in grads()
            dy = dz.view(dy.shape)
        return _mm_t(self.op, dy, self.w_t) if add is None else _addmm_t(self.op, add, dy, self.w_t)

    def grads(self, dy: Tensor, a: Tensor, need_weight: bool, need_gain: bool):
        """Weight (G, K) and gain (G) gradients from every step's dy (T, B, G) and a (T, B, K)."""
        T, B, G = dy.shape
        d_w = d_gain = None
        if need_weight:
            dz = dy if self.gain is None else torch.stack(self.dz).view(T, B, G)
            d_w = _weight_grad(self.op, dz.reshape(-1, G), a.reshape(-1, a.shape[-1]))
        if self.gain is not None and need_gain:
            d_gain = self.d_gain.sum(0).view(G)
        return d_w, d_gain


# -- LSTM ----------------------------------------------------------------------------------


def lstm_sequence(gx: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor, peephole: Tensor | None = None,
                  mask: Tensor | None = None, layer_norm_hh: Tensor | None = None,
                  layer_norm_c_weight: Tensor | None = None, layer_norm_c_bias: Tensor | None = None,
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """A whole LSTM sequence (one direction) from its projected input.

    Args:
        gx: (T, B, 4H) the input part of the gate pre-activations (``lstm_project``: with
            layer norm ``LN(W_ih x_t) * gain_ih``, and the biases), gates i, f, g, o.
        h0, c0: (B, H) initial state.
        weight_hh: (4H, H).
        peephole: (3H) ``p_i, p_f, p_o`` or None (see ``rnnkit.cells.LSTMCell``).
        mask: (T, B) bool or None (all True).
        layer_norm_hh: (4H) gain of the per-gate layer norm of ``W_hh h_tm1``, or None (no norm).
        layer_norm_c_weight, layer_norm_c_bias: (H) affine of the layer norm of ``c`` before
            its tanh in ``h = o * tanh(.)``; no norm when the weight is None.

    Returns:
        output (T, B, H) (0 where mask is False), h_n (B, H), c_n (B, H).
    """
    args = (gx, h0, c0, weight_hh, peephole, layer_norm_hh, layer_norm_c_weight, layer_norm_c_bias)
    if _kernels_apply(*args):
        if _needs_graph(*args):
            return _LSTMKernelSequence.apply(*args, mask)
        with torch.no_grad():
            out, hs, cs, _ = _lstm_kernel_forward(*args, mask)
        return out, hs[-1].clone(), cs[-1].clone()
    if _needs_graph(*args):
        return _LSTMSequence.apply(*args, mask)
    with torch.no_grad():
        out, hs, cs, _ = _lstm_forward(*args, mask, save=False)
    return out, hs[-1].clone(), cs[-1].clone()


def _lstm_forward(gx, h0, c0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask, save: bool):
    """Returns output, hs (T, B, H) states h, cs (T + 1, B, H) states c (cs[0] = c0), and with
    ``save`` what backward needs: the activated gates (T, B, 4H), tanh(c or LN(c)) (T, B, H),
    the recurrent product and the statistics of LN(c) per step."""
    T, B, G = gx.shape  # time, batch, 4 * hidden
    H = G // 4
    op = _gemm_for(gx)
    product = _Product(weight_hh, gain_hh, 4, op, save)
    hs = gx.new_empty(T, B, H)
    cs = gx.new_empty(T + 1, B, H)
    cs[0] = c0
    acts = gx.new_empty(T if save else 1, B, G)
    tcs = gx.new_empty(T if save else 1, B, H)
    c_stats = []  # (mean, rstd) of LN(c), per step
    # Per-step views, made once: unbind is one call, indexing in the loop one call per view.
    a4 = acts.view(-1, B, 4, H)
    act_t, if_t, if3_t = acts.unbind(0), acts[:, :, : 2 * H].unbind(0), a4[:, :, :2].unbind(0)
    i_t, f_t, g_t, o_t = (a4[:, :, k].unbind(0) for k in range(4))
    tc_t = tcs.unbind(0)
    if not save:  # one buffer reused by every step
        act_t, if_t, if3_t, i_t, f_t, g_t, o_t, tc_t = (v * T for v in (act_t, if_t, if3_t, i_t, f_t, g_t, o_t, tc_t))
    gx_t, h_t, c_t = gx.unbind(0), hs.unbind(0), cs.unbind(0)
    partial = _partial_steps(mask, T)
    if any(partial):
        keep_t = mask.unsqueeze(-1).unbind(0)  # (B, 1) each
        c_new, h_new = gx.new_empty(B, H), gx.new_empty(B, H)
    if peephole is not None:
        p_if, p_o = peephole[: 2 * H].view(2, H), peephole[2 * H :]
    h_tm1 = h0
    for t in range(T):
        c_tm1 = c_t[t]
        product.forward(gx_t[t], h_tm1, out=act_t[t])  # (B, 4H) pre-activations
        if peephole is not None:
            if3_t[t].addcmul_(p_if, c_tm1.unsqueeze(1))  # i, f look at c_tm1: (B, 2, H)
        if_t[t].sigmoid_()
        g_t[t].tanh_()
        c = c_new if partial[t] else c_t[t + 1]
        torch.mul(f_t[t], c_tm1, out=c)
        c.addcmul_(i_t[t], g_t[t])  # c = f * c_tm1 + i * g
        o = o_t[t]
        if peephole is not None:
            o.addcmul_(p_o, c)  # o looks at the new c
        o.sigmoid_()
        if ln_c_weight is None:
            tc = torch.tanh(c, out=tc_t[t])
        else:
            c_out, mean, rstd = torch.native_layer_norm(c, (H,), ln_c_weight, ln_c_bias, _LN_EPS)
            tc = torch.tanh(c_out, out=tc_t[t])
            if save:
                c_stats.append((mean, rstd))
        h = h_new if partial[t] else h_t[t]
        torch.mul(o, tc, out=h)
        if partial[t]:  # masked sequences keep their state
            torch.where(keep_t[t], c, c_tm1, out=c_t[t + 1])
            torch.where(keep_t[t], h, h_tm1, out=h_t[t])
        h_tm1 = h_t[t]
    out = hs if mask is None else hs * mask.unsqueeze(-1).to(hs.dtype)
    return out, hs, cs, ((acts, tcs, product, c_stats) if save else None)


class _LSTMSequence(torch.autograd.Function):
    """(gx, h0, c0, W_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask) -> (output, h_n, c_n)."""

    @staticmethod
    def forward(ctx, gx, h0, c0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask):
        out, hs, cs, (acts, tcs, product, c_stats) = _lstm_forward(
            gx, h0, c0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask, save=True
        )
        ctx.save_for_backward(h0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask, hs, cs, acts, tcs)
        ctx.product, ctx.c_stats = product, c_stats  # per-step intermediates (layer norm)
        return out, hs[-1].clone(), cs[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn, d_cn):
        h0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask, hs, cs, acts, tcs = ctx.saved_tensors
        product, c_stats = ctx.product, ctx.c_stats
        T, B, G = acts.shape  # time, batch, 4 * hidden
        H = G // 4
        i, f, g, o = acts.view(T, B, 4, H).unbind(2)  # activated gates, each (T, B, H)
        c_tm1 = cs[:-1]  # (T, B, H)
        ln_c = ln_c_weight is not None

        # 1. The derivative factors of every step, for the whole sequence at once.
        #    With dh, dc the gradients of the state after step t and h = o tanh(c'), where
        #    c' = c, or LN(c) with ln_c:
        #      dG_o = dh * o_coef;  dc' = dh * co_coef
        #      dc_total = dc + dc' [through LN] + dh * p_o * o_coef      (p_o: peephole on o)
        #      (dG_i, dG_f, dG_g) = dc_total * ifg_coef
        #      dc_tm1 = dc_total * f_coef                         (c = f c_tm1 + i g, and p_i, p_f)
        o_coef = _sigmoid_grad(tcs, o)  # (T, B, H): tanh(c') o (1 - o)
        co_coef = _tanh_grad(o, tcs)  # o (1 - tanh(c')^2)
        ifg_coef = acts.new_empty(T, B, 3, H)
        _sigmoid_grad(g, i, out=ifg_coef[:, :, 0])
        _sigmoid_grad(c_tm1, f, out=ifg_coef[:, :, 1])
        _tanh_grad(i, g, out=ifg_coef[:, :, 2])
        f_coef = f
        if peephole is not None:
            p_i, p_f, p_o = peephole.view(3, 1, 1, H).unbind(0)
            po_coef = o_coef * p_o
            f_coef = f + ifg_coef[:, :, 0] * p_i + ifg_coef[:, :, 1] * p_f
        if ln_c:  # dc_total = dc + LN'(dh * co_coef) [+ dh * po_coef]
            dc_coef = po_coef if peephole is not None else None
        else:  # dc_total = dc + dh * (co_coef [+ po_coef])
            dc_coef = co_coef if peephole is None else co_coef.add_(po_coef)
        coefs = [k for k in (o_coef, co_coef, dc_coef, ifg_coef) if k is not None]
        keep = _mask_coefficients(mask, *{id(k): k for k in coefs}.values())  # each once
        if keep is not None:  # masked steps: dc passes through unchanged, dh too (below)
            f_coef = torch.where(mask.unsqueeze(-1), f_coef, 1.0)
            d_out = d_out * keep
            drop_t = (1 - keep).unbind(0)

        # 2. The reverse-time loop: element-wise products and one (B, 4H) @ (4H, H) per step.
        dG = acts.new_empty(T, B, G)  # gradient of the gate pre-activations
        dG4 = dG.view(T, B, 4, H)
        dG_t, dG_ifg_t, dG_o_t = dG.unbind(0), dG4[:, :, :3].unbind(0), dG4[:, :, 3].unbind(0)
        o_coef_t, ifg_coef_t, f_coef_t, co_coef_t = (k.unbind(0) for k in (o_coef, ifg_coef, f_coef, co_coef))
        dc_coef_t = None if dc_coef is None else dc_coef.unbind(0)
        if ln_c:
            d_cout = acts.new_empty(T, B, H)  # gradient of LN(c), for its weight and bias
            d_cout_t = d_cout.unbind(0)
        d_out_t = d_out.unbind(0)
        partial = _partial_steps(mask, T)
        dh, dc = d_hn + d_out_t[T - 1], d_cn
        for t in range(T - 1, -1, -1):
            if ln_c:
                torch.mul(dh, co_coef_t[t], out=d_cout_t[t])
                dc_norm = _layer_norm_backward(d_cout_t[t], cs[t + 1], *c_stats[t], ln_c_weight)
                dc_total = dc_norm.add_(dc) if dc_coef_t is None else dc_norm.add_(dc).addcmul_(dh, dc_coef_t[t])
            else:
                dc_total = torch.addcmul(dc, dh, dc_coef_t[t])
            torch.mul(dh, o_coef_t[t], out=dG_o_t[t])
            torch.mul(dc_total.unsqueeze(1), ifg_coef_t[t], out=dG_ifg_t[t])
            dc = dc_total.mul_(f_coef_t[t])
            dh_tm1 = product.backward(t, dG_t[t], d_out_t[t - 1] if t else None)  # dG_t @ W_hh (+ d_out)
            if partial[t]:
                dh_tm1.addcmul_(dh, drop_t[t])
            dh = dh_tm1

        # 3. Parameter gradients: one big product each, over all steps.
        need = ctx.needs_input_grad
        d_w, d_gain = product.grads(dG, _prev_states(h0, hs), need[3], need[5])
        d_p = d_c_weight = d_c_bias = None
        if peephole is not None and need[4]:
            d_if = (dG4[:, :, :2] * c_tm1.unsqueeze(2)).sum((0, 1))  # (2, H)
            d_o = (dG4[:, :, 3] * cs[1:]).sum((0, 1))  # masked steps have dG_o = 0
            d_p = torch.cat([d_if.reshape(-1), d_o])
        if ln_c and need[6]:
            mean, rstd = (torch.stack(s) for s in zip(*c_stats))  # (T, B, 1) each
            d_c_weight = (d_cout * (cs[1:] - mean) * rstd).sum((0, 1))  # masked steps: d_cout = 0
        if ln_c and ln_c_bias is not None and need[7]:
            d_c_bias = d_cout.sum((0, 1))
        return dG, dh, dc, d_w, d_p, d_gain, d_c_weight, d_c_bias, None


# -- LSTM on the compiled kernels -----------------------------------------------------------


def _kernels_apply(gx: Tensor, *tensors: Tensor | None) -> bool:
    """Whether the compiled kernels run this sequence: CPU, float32/64, one dtype throughout."""
    return _cpu_kernels.kernels_for(gx) is not None and all(
        t is None or (t.dtype == gx.dtype and t.device == gx.device) for t in tensors
    )


def _lstm_kernel_forward(gx, h0, c0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask):
    """``_lstm_forward`` with each step's element-wise work in one kernel call. Returns output,
    hs (T, B, H), cs (T + 1, B, H), and the kernel's arguments (with the tensors they point
    to, kept alive) for backward."""
    lib = _cpu_kernels.kernels_for(gx)
    T, B, G = gx.shape  # time, batch, 4 * hidden
    H = G // 4
    op = _gemm_for(gx)
    gx, h0 = gx.contiguous(), h0.contiguous()
    buffers = dict(
        gx=gx, h0=h0, acts=gx.new_empty(T, B, G), hs=gx.new_empty(T, B, H), cs=gx.new_empty(T + 1, B, H),
        tcs=gx.new_empty(T, B, H), peep=None if peephole is None else peephole.contiguous(),
        gain_hh=None if gain_hh is None else gain_hh.contiguous(),
        z=None if gain_hh is None else gx.new_empty(T, B, G),  # W_hh h_tm1, then its norm
        rstd_hh=None if gain_hh is None else gx.new_empty(T, B, 4),
        ln_w=None if ln_c_weight is None else ln_c_weight.contiguous(),
        ln_b=None if ln_c_weight is None or ln_c_bias is None else ln_c_bias.contiguous(),
        stats_c=None if ln_c_weight is None else gx.new_empty(T, B, 2),  # mean, 1 / std
        keep=None if mask is None else mask.contiguous(),  # bool: one byte, 0 or 1
    )
    buffers["cs"][0] = c0
    args = _cpu_kernels.LSTMArgs(T=T, B=B, H=H, eps=_LN_EPS, **{k: _cpu_kernels.pointer(v) for k, v in buffers.items()})
    step = getattr(lib, "lstm_forward_" + _cpu_kernels.suffix(gx.dtype))
    ref = ctypes.byref(args)
    gx_t, act_t, h_t = gx.unbind(0), buffers["acts"].unbind(0), buffers["hs"].unbind(0)
    z_t = None if gain_hh is None else buffers["z"].unbind(0)
    h_tm1 = h0
    for t in range(T):
        if z_t is None:
            _addmm_t(op, gx_t[t], h_tm1, weight_hh, out=act_t[t])  # (B, 4H) pre-activations
        else:
            _mm_t_into(op, h_tm1, weight_hh, out=z_t[t])  # normalised, scaled and added in the kernel
        step(ref, t)
        h_tm1 = h_t[t]
    hs, cs = buffers["hs"], buffers["cs"]
    out = hs if mask is None else hs * mask.unsqueeze(-1).to(hs.dtype)
    return out, hs, cs, (args, buffers)


class _LSTMKernelSequence(torch.autograd.Function):
    """``_LSTMSequence`` with each step's element-wise work, forward and backward, in one
    compiled kernel call (``_cpu_kernels``); the same inputs, outputs and gradients."""

    @staticmethod
    def forward(ctx, gx, h0, c0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask):
        out, hs, cs, (args, buffers) = _lstm_kernel_forward(
            gx, h0, c0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask
        )
        ctx.args, ctx.buffers = args, buffers  # raw pointers into buffers: kept together
        ctx.save_for_backward(weight_hh, hs)  # hs: so that autograd catches in-place changes of out
        return out, hs[-1].clone(), cs[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn, d_cn):
        weight_hh, hs = ctx.saved_tensors
        args, buffers = ctx.args, ctx.buffers
        cs, mask = buffers["cs"], buffers["keep"]
        T, B, H = hs.shape  # time, batch, hidden
        G = 4 * H
        lib = _cpu_kernels.load()  # loaded in forward
        op = _gemm_for(hs)
        d_out = (d_out if mask is None else d_out * mask.unsqueeze(-1).to(d_out.dtype)).contiguous()
        grads = dict(
            d_out=d_out, dh=(d_hn + d_out[T - 1]).contiguous(), dc=d_cn.clone(memory_format=torch.contiguous_format),
            carry=hs.new_empty(B, H), dG=hs.new_empty(T, B, G), scratch=hs.new_empty(H),
            dZ=None if buffers["z"] is None else hs.new_empty(T, B, G),  # gradient of W_hh h_tm1
            d_cout=None if buffers["ln_w"] is None else hs.new_empty(T, B, H),  # of LN(c)
        )
        for name, tensor in grads.items():
            setattr(args, name, _cpu_kernels.pointer(tensor))
        step = getattr(lib, "lstm_backward_" + _cpu_kernels.suffix(hs.dtype))
        ref = ctypes.byref(args)
        dZ = grads["dZ"] if grads["dZ"] is not None else grads["dG"]
        dZ_t, dh, carry = dZ.unbind(0), grads["dh"], grads["carry"]
        w_t = weight_hh.t().contiguous()  # (H, 4H)
        for t in range(T - 1, -1, -1):
            step(ref, t)  # dG_t, dZ_t, dc -> dc_tm1, carry = d_out[t-1] (+ dh where ended)
            _addmm_t(op, carry, dZ_t[t], w_t, out=dh)  # dh_tm1 = carry + dZ_t @ W_hh

        need = ctx.needs_input_grad
        dG = grads["dG"]
        d_w = d_p = d_gain = d_c_weight = d_c_bias = None
        if need[3]:
            d_w = _weight_grad(op, dZ.view(-1, G), _prev_states(buffers["h0"], hs).view(-1, H))
        if buffers["peep"] is not None and need[4]:
            dG4 = dG.view(T, B, 4, H)
            d_if = (dG4[:, :, :2] * cs[:-1].unsqueeze(2)).sum((0, 1))  # (2, H)
            d_o = (dG4[:, :, 3] * cs[1:]).sum((0, 1))  # ended sequences have dG = 0
            d_p = torch.cat([d_if.reshape(-1), d_o])
        if buffers["z"] is not None and need[5]:
            d_gain = (dG * buffers["z"]).sum((0, 1))  # z holds the normalised products
        if buffers["ln_w"] is not None:
            d_cout, stats = grads["d_cout"], buffers["stats_c"]
            if need[6]:
                d_c_weight = (d_cout * (cs[1:] - stats[:, :, :1]) * stats[:, :, 1:]).sum((0, 1))
            if buffers["ln_b"] is not None and need[7]:
                d_c_bias = d_cout.sum((0, 1))
        return dG, dh.clone(), grads["dc"], d_w, d_p, d_gain, d_c_weight, d_c_bias, None


# -- GRU -----------------------------------------------------------------------------------


def gru_sequence(gx: Tensor, h0: Tensor, weight_hh: Tensor, bias_hh: Tensor | None = None,
                 mask: Tensor | None = None, reset_after: bool = True,
                 layer_norm_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """A whole GRU sequence (one direction) from its projected input.

    Args:
        gx: (T, B, 3H) for gates r, z, n: ``gru_project``'s ``W_ih x_t + b_ih`` (with layer
            norm ``LN(W_ih x_t) * gain_ih + b_ih``), plus ``b_hh`` when ``reset_after=False``.
        h0: (B, H).
        weight_hh: (3H, H).
        bias_hh: (3H) or None; only used with ``reset_after=True``, where ``b_hn`` sits
            inside ``r * (W_hn h + b_hn)``.
        mask: (T, B) bool or None.
        reset_after: torch.nn's GRU (True) or Cho et al.'s (False); see ``GRUCell``.
        layer_norm_hh: (3H) gain of the per-gate layer norm of the recurrent products, or None.

    Returns:
        output (T, B, H) (0 where mask is False), h_n (B, H).
    """
    bias_hh = bias_hh if reset_after else None
    if _kernels_apply(gx, h0, weight_hh, bias_hh, layer_norm_hh):
        if _needs_graph(gx, h0, weight_hh, bias_hh, layer_norm_hh):
            return _GRUKernelSequence.apply(gx, h0, weight_hh, bias_hh, layer_norm_hh, mask, reset_after)
        with torch.no_grad():
            out, hs, _ = _gru_kernel_forward(gx, h0, weight_hh, bias_hh, layer_norm_hh, mask, reset_after)
        return out, hs[-1].clone()
    if _needs_graph(gx, h0, weight_hh, bias_hh, layer_norm_hh):
        return _GRUSequence.apply(gx, h0, weight_hh, bias_hh, layer_norm_hh, mask, reset_after)
    with torch.no_grad():
        out, hs, _ = _gru_forward(gx, h0, weight_hh, bias_hh, layer_norm_hh, mask, reset_after, save=False)
    return out, hs[-1].clone()


def _gru_forward(gx, h0, weight_hh, bias_hh, gain_hh, mask, reset_after: bool, save: bool):
    """Returns output, hs (T, B, H) states, and with ``save`` what backward needs: (r, z)
    (T, B, 2H), n (T, B, H), ``W_hh h + b_hh`` (T, B, 3H, reset_after) or ``r * h_tm1``
    (T, B, H, reset before), and the recurrent products (one, or two: rz and n)."""
    T, B, G = gx.shape  # time, batch, 3 * hidden
    H = G // 3
    op = _gemm_for(gx)
    if reset_after:
        products = [_Product(weight_hh, gain_hh, 3, op, save)]
    else:  # the rz part sees h_tm1, the n part r * h_tm1
        gain_rz, gain_n = (None, None) if gain_hh is None else (gain_hh[: 2 * H], gain_hh[2 * H :])
        products = [_Product(weight_hh[: 2 * H], gain_rz, 2, op, save),
                    _Product(weight_hh[2 * H :], gain_n, 1, op, save)]
    n_saved = T if save else 1
    hs = gx.new_empty(T, B, H)
    rzs, ns = gx.new_empty(n_saved, B, 2 * H), gx.new_empty(n_saved, B, H)
    extra = gx.new_empty(n_saved, B, G if reset_after else H)
    rz_t, r_t, z_t, n_t, extra_t = (
        rzs.unbind(0), rzs[:, :, :H].unbind(0), rzs[:, :, H:].unbind(0), ns.unbind(0), extra.unbind(0)
    )
    if not save:
        rz_t, r_t, z_t, n_t, extra_t = (v * T for v in (rz_t, r_t, z_t, n_t, extra_t))
    gx_rz_t, gx_n_t, h_t = gx[:, :, : 2 * H].unbind(0), gx[:, :, 2 * H :].unbind(0), hs.unbind(0)
    partial = _partial_steps(mask, T)
    if any(partial):
        keep_t = mask.unsqueeze(-1).unbind(0)  # (B, 1) each
        h_new = gx.new_empty(B, H)
    diff = gx.new_empty(B, H)
    h_tm1 = h0
    for t in range(T):
        rz, r, z = rz_t[t], r_t[t], z_t[t]
        if reset_after:
            gh = products[0].forward(bias_hh, h_tm1, out=extra_t[t])  # (B, 3H)
            torch.add(gx_rz_t[t], gh[:, : 2 * H], out=rz).sigmoid_()
            n = torch.addcmul(gx_n_t[t], r, gh[:, 2 * H :], out=n_t[t]).tanh_()  # reset after W_hn h
        else:
            products[0].forward(gx_rz_t[t], h_tm1, out=rz).sigmoid_()
            rh = torch.mul(r, h_tm1, out=extra_t[t])  # reset before W_hn
            n = products[1].forward(gx_n_t[t], rh, out=n_t[t]).tanh_()
        h = h_new if partial[t] else h_t[t]
        torch.sub(h_tm1, n, out=diff)
        torch.addcmul(n, z, diff, out=h)  # h = n + z * (h_tm1 - n)
        if partial[t]:
            torch.where(keep_t[t], h, h_tm1, out=h_t[t])
        h_tm1 = h_t[t]
    out = hs if mask is None else hs * mask.unsqueeze(-1).to(hs.dtype)
    return out, hs, ((rzs, ns, extra, products) if save else None)


class _GRUSequence(torch.autograd.Function):
    """(gx, h0, W_hh, b_hh, gain_hh, mask, reset_after) -> (output, h_n); see ``gru_sequence``."""

    @staticmethod
    def forward(ctx, gx, h0, weight_hh, bias_hh, gain_hh, mask, reset_after):
        out, hs, (rzs, ns, extra, products) = _gru_forward(
            gx, h0, weight_hh, bias_hh, gain_hh, mask, reset_after, save=True
        )
        ctx.reset_after, ctx.products = reset_after, products
        ctx.save_for_backward(h0, weight_hh, gain_hh, mask, hs, rzs, ns, extra)
        return out, hs[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn):
        h0, weight_hh, gain_hh, mask, hs, rzs, ns, extra = ctx.saved_tensors
        need = ctx.needs_input_grad
        T, B, H = hs.shape  # time, batch, hidden
        G = 3 * H
        r, z, n = rzs[:, :, :H], rzs[:, :, H:], ns  # each (T, B, H)
        h_prev = _prev_states(h0, hs)  # (T, B, H)

        # 1. The derivative factors of every step, for the whole sequence at once. With dh the
        #    gradient of the state after step t: dG_z = dh * z_coef, dG_n = dh * n_coef, and
        #    dh_tm1 = dh * z_eff + (gate gradients) @ W_hh [+ r * d(r h_tm1), reset before].
        #    h = n + z (h_tm1 - n): dG_n = dh (1 - z) (1 - n^2), dG_z = dh (h_tm1 - n) z (1 - z).
        if ctx.reset_after:  # coefficients of dG_r, dG_z and r * dG_n (see below), and of dG_n
            n_coef = _tanh_grad(1 - z, n)
            coef = hs.new_empty(T, B, 3, H)
            _sigmoid_grad(n_coef * extra[:, :, 2 * H :], r, out=coef[:, :, 0])
            _sigmoid_grad(h_prev - n, z, out=coef[:, :, 1])
            torch.mul(n_coef, r, out=coef[:, :, 2])
            keep = _mask_coefficients(mask, coef, n_coef)
        else:  # coefficients of dG_z and dG_n
            coef = hs.new_empty(T, B, 2, H)
            _sigmoid_grad(h_prev - n, z, out=coef[:, :, 0])
            _tanh_grad(1 - z, n, out=coef[:, :, 1])
            keep = _mask_coefficients(mask, coef)
        z_eff = z if keep is None else torch.where(mask.unsqueeze(-1), z, 1.0)  # masked: h passes
        if keep is not None:
            d_out = d_out * keep
        d_out_t, z_eff_t = d_out.unbind(0), z_eff.unbind(0)
        dh = d_hn + d_out_t[T - 1]

        if ctx.reset_after:
            # n = tanh(x_n + r * gh_n): the gradients w.r.t. gh = W_hh h + b_hh are dh * coef;
            # those w.r.t. gx differ only in the n part (no factor r): dh * n_coef.
            (product,) = ctx.products
            dGh = hs.new_empty(T, B, G)  # gradient of W_hh h_tm1 + b_hh
            dhs = hs.new_empty(T, B, H)  # gradient of the state after each step
            dhs[T - 1] = dh
            dGh_t, coef_t, dhs_t = dGh.view(T, B, 3, H).unbind(0), coef.unbind(0), dhs.unbind(0)
            for t in range(T - 1, -1, -1):
                torch.mul(dhs_t[t].unsqueeze(1), coef_t[t], out=dGh_t[t])
                dh = product.backward(t, dGh_t[t].view(B, G))  # (B, H)
                if t:
                    dh = torch.add(dh, d_out_t[t - 1], out=dhs_t[t - 1])
                dh.addcmul_(dhs_t[t], z_eff_t[t])
            dGx = dGh.clone()
            torch.mul(dhs, n_coef, out=dGx[:, :, 2 * H :])
            d_w, d_gain = product.grads(dGh, h_prev, need[2], need[4])
            d_b = dGh.sum((0, 1)) if need[3] else None
            return dGx, dh, d_w, d_b, d_gain, None, None

        # reset before: n = tanh(x_n + W_hn (r * h_tm1)); d(r h_tm1) = dG_n @ W_hn
        product_rz, product_n = ctx.products
        rh = extra  # (T, B, H)
        r_coef = _sigmoid_grad(h_prev, r)  # dG_r = d(r h_tm1) * r_coef (0 where dG_n is)
        dG = hs.new_empty(T, B, G)  # gradient of the gate pre-activations (and of gx)
        dG3 = dG.view(T, B, 3, H)
        dG_zn_t, dG_r_t, dG_n_t, dG_rz_t = (
            dG3[:, :, 1:].unbind(0), dG3[:, :, 0].unbind(0), dG3[:, :, 2].unbind(0), dG[:, :, : 2 * H].unbind(0)
        )
        coef_t, r_coef_t, r_t = coef.unbind(0), r_coef.unbind(0), r.unbind(0)
        for t in range(T - 1, -1, -1):
            torch.mul(dh.unsqueeze(1), coef_t[t], out=dG_zn_t[t])
            d_rh = product_n.backward(t, dG_n_t[t])  # (B, H)
            torch.mul(d_rh, r_coef_t[t], out=dG_r_t[t])
            dh_tm1 = product_rz.backward(t, dG_rz_t[t], d_out_t[t - 1] if t else None)  # (B, H)
            dh = dh_tm1.addcmul_(dh, z_eff_t[t]).addcmul_(d_rh, r_t[t])
        d_w = d_gain = None
        d_w_rz, d_gain_rz = product_rz.grads(dG[:, :, : 2 * H], h_prev, need[2], need[4])
        d_w_n, d_gain_n = product_n.grads(dG[:, :, 2 * H :], rh, need[2], need[4])
        if need[2]:
            d_w = torch.cat([d_w_rz, d_w_n])  # (3H, H)
        if gain_hh is not None and need[4]:
            d_gain = torch.cat([d_gain_rz, d_gain_n])
        return dG, dh, d_w, None, d_gain, None, None


# -- GRU on the compiled kernels ------------------------------------------------------------


def _gru_kernel_forward(gx, h0, weight_hh, bias_hh, gain_hh, mask, reset_after: bool):
    """``_gru_forward`` with each step's element-wise work in kernel calls (two with
    ``reset_after=False``: around the product of W_n with r * h_tm1). Returns output, hs
    (T, B, H) and the kernel's arguments with the tensors they point to, for backward."""
    lib = _cpu_kernels.kernels_for(gx)
    T, B, G = gx.shape  # time, batch, 3 * hidden
    H = G // 3
    op = _gemm_for(gx)
    gx, h0 = gx.contiguous(), h0.contiguous()
    buffers = dict(
        gx=gx, h0=h0, hs=gx.new_empty(T, B, H), acts=gx.new_empty(T, B, G),  # r, z, n
        zp=gx.new_empty(T, B, G if reset_after else 2 * H),  # products of h_tm1 (then normalised)
        zn=None if reset_after else gx.new_empty(T, B, H),  # W_n (r * h_tm1) (then normalised)
        rstd=None if gain_hh is None else gx.new_empty(T, B, 3),
        gain=None if gain_hh is None else gain_hh.contiguous(),
        bias=None if bias_hh is None else bias_hh.contiguous(),
        ghn=gx.new_empty(T, B, H) if reset_after else None,  # W_hn h_tm1 (normalised) + b_hn
        rh=None if reset_after else gx.new_empty(T, B, H),  # r * h_tm1
        keep=None if mask is None else mask.contiguous(),
    )
    args = _cpu_kernels.GRUArgs(T=T, B=B, H=H, eps=_LN_EPS, **{k: _cpu_kernels.pointer(v) for k, v in buffers.items()})
    ref, dtype = ctypes.byref(args), _cpu_kernels.suffix(gx.dtype)
    zp_t, h_t = buffers["zp"].unbind(0), buffers["hs"].unbind(0)
    h_tm1 = h0
    if reset_after:
        step = getattr(lib, "gru_forward_" + dtype)
        for t in range(T):
            _mm_t_into(op, h_tm1, weight_hh, out=zp_t[t])  # (B, 3H)
            step(ref, t)
            h_tm1 = h_t[t]
    else:
        step_a, step_b = getattr(lib, "gru_forward_a_" + dtype), getattr(lib, "gru_forward_b_" + dtype)
        w_rz, w_n = weight_hh[: 2 * H], weight_hh[2 * H :]
        zn_t, rh_t = buffers["zn"].unbind(0), buffers["rh"].unbind(0)
        for t in range(T):
            _mm_t_into(op, h_tm1, w_rz, out=zp_t[t])  # (B, 2H)
            step_a(ref, t)  # r, z, r * h_tm1
            _mm_t_into(op, rh_t[t], w_n, out=zn_t[t])  # (B, H)
            step_b(ref, t)  # n, h
            h_tm1 = h_t[t]
    hs = buffers["hs"]
    out = hs if mask is None else hs * mask.unsqueeze(-1).to(hs.dtype)
    return out, hs, (args, buffers)


class _GRUKernelSequence(torch.autograd.Function):
    """``_GRUSequence`` with each step's element-wise work, forward and backward, in compiled
    kernel calls (``_cpu_kernels``); the same inputs, outputs and gradients."""

    @staticmethod
    def forward(ctx, gx, h0, weight_hh, bias_hh, gain_hh, mask, reset_after):
        out, hs, (args, buffers) = _gru_kernel_forward(gx, h0, weight_hh, bias_hh, gain_hh, mask, reset_after)
        ctx.args, ctx.buffers, ctx.reset_after = args, buffers, reset_after  # pointers into buffers
        ctx.save_for_backward(weight_hh, hs)  # hs: so that autograd catches in-place changes of out
        return out, hs[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn):
        weight_hh, hs = ctx.saved_tensors
        args, buffers, reset_after = ctx.args, ctx.buffers, ctx.reset_after
        mask, gain = buffers["keep"], buffers["gain"]
        T, B, H = hs.shape  # time, batch, hidden
        G = 3 * H
        lib, op, dtype = _cpu_kernels.load(), _gemm_for(hs), _cpu_kernels.suffix(hs.dtype)
        d_out = (d_out if mask is None else d_out * mask.unsqueeze(-1).to(d_out.dtype)).contiguous()
        grads = dict(
            d_out=d_out, dh=(d_hn + d_out[T - 1]).contiguous(), carry=hs.new_empty(B, H),
            dG=hs.new_empty(T, B, G), scratch=hs.new_empty(H),
            dGh=hs.new_empty(T, B, G) if reset_after else None,  # of W_hh h_tm1 + b_hh (normalised)
            dZ=None if reset_after and gain is None else hs.new_empty(T, B, G if reset_after else 2 * H),
            dZn=None if reset_after else hs.new_empty(T, B, H),  # of W_n (r * h_tm1)
            drh=None if reset_after else hs.new_empty(B, H),  # of r * h_tm1
        )
        for name, tensor in grads.items():
            setattr(args, name, _cpu_kernels.pointer(tensor))
        ref, dh, carry = ctypes.byref(args), grads["dh"], grads["carry"]
        h_prev = _prev_states(buffers["h0"], hs)  # (T, B, H)
        need = ctx.needs_input_grad
        dG = grads["dG"]
        d_w = d_b = d_gain = None
        if reset_after:
            step = getattr(lib, "gru_backward_" + dtype)
            dGh = grads["dGh"]
            dZ = dGh if gain is None else grads["dZ"]
            dZ_t, w_t = dZ.unbind(0), weight_hh.t().contiguous()  # w_t: (H, 3H)
            for t in range(T - 1, -1, -1):
                step(ref, t)  # dG_t, dGh_t, dZ_t, carry = d_out[t-1] + dh * z
                _addmm_t(op, carry, dZ_t[t], w_t, out=dh)  # dh_tm1 = carry + dZ_t @ W_hh
            if need[2]:
                d_w = _weight_grad(op, dZ.view(-1, G), h_prev.view(-1, H))
            if buffers["bias"] is not None and need[3]:
                d_b = dGh.sum((0, 1))
            if gain is not None and need[4]:
                d_gain = (dGh * buffers["zp"]).sum((0, 1))  # zp holds the normalised products
        else:
            step_b, step_c = getattr(lib, "gru_backward_b_" + dtype), getattr(lib, "gru_backward_c_" + dtype)
            dZ, dZn, drh = grads["dZ"], grads["dZn"], grads["drh"]
            dZ_t, dZn_t = dZ.unbind(0), dZn.unbind(0)
            w_rz_t, w_n_t = weight_hh[: 2 * H].t().contiguous(), weight_hh[2 * H :].t().contiguous()  # (H, 2H), (H, H)
            for t in range(T - 1, -1, -1):
                step_b(ref, t)  # dG_z, dG_n, dZn_t
                _mm_t_into(op, dZn_t[t], w_n_t, out=drh)  # d(r * h_tm1) = dZn_t @ W_n
                step_c(ref, t)  # dG_r, dZ_t, carry = d_out[t-1] + dh * z + drh * r
                _addmm_t(op, carry, dZ_t[t], w_rz_t, out=dh)  # dh_tm1 = carry + dZ_t @ W_rz
            if need[2]:
                d_w = torch.cat([_weight_grad(op, dZ.view(-1, 2 * H), h_prev.view(-1, H)),
                                 _weight_grad(op, dZn.view(-1, H), buffers["rh"].view(-1, H))])  # (3H, H)
            if gain is not None and need[4]:
                d_gain = torch.cat([(dG[:, :, : 2 * H] * buffers["zp"]).sum((0, 1)),
                                    (dG[:, :, 2 * H :] * buffers["zn"]).sum((0, 1))])
        return dG, dh.clone(), d_w, d_b, d_gain, None, None
