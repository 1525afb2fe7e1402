"""A whole LSTM sequence (one direction) with a hand-written backward: BPTT in one autograd node.

The generic engine (``rnnkit.layers.recurrent``) loops ``lstm_step`` in Python and lets autograd
record every small operation of every step; its backward then replays them one node at a time.
Here one ``torch.autograd.Function`` runs a whole sequence (the approach of Haste's CUDA
kernels, written with torch operations):

- forward: per step one ``h_tm1 @ W_hh^T`` added to the projected input, and in-place
  element-wise gate math, writing into preallocated (T, B, ...) buffers the activated gates
  and cell states that backward needs;
- backward: the derivative factors of every step are computed once for the whole sequence,
  so the reverse-time loop holds only what the recurrence needs: a few element-wise products
  and one ``dG_t @ W_hh`` per step. The weight gradient is one (G, T*B) @ (T*B, H) product at
  the end, and the gradient of the projected input is the whole ``dG`` (T, B, G): autograd
  takes it back through ``W_ih``, the biases and the input outside this function.

Two flavours, registered as two backends by ``rnnkit.layers.sequence``: ``lstm_sequence``
(torch operations, any device) and ``lstm_kernel_sequence`` (each step's element-wise work,
forward and backward, in one call of the compiled CPU kernels of ``rnnkit.kernels.cpu``).
They are derived from ``rnnkit.cells.lstm.lstm_step`` (the reference) and tested against it.

The kernel flavour is two torch custom operators, so that autograd and ``torch.compile`` see
through the ctypes calls: ``rnnkit::lstm_sequence_forward`` (gx, h0, c0, weight_hh, peephole?,
gain_hh?, ln_c_weight?, ln_c_bias?, mask?) -> (output, h_n, c_n, and the 7 buffers backward
reads) and ``rnnkit::lstm_sequence_backward`` (the output gradients, the weights, the buffers,
need) -> the 8 input gradients, each with a fake implementation, the first with its autograd
registered to call the second. Without a graph to record (eager, no grad) the kernels are
called directly.

Covered: peepholes and layer norm, not a projection (``proj_size``). ``mask`` (T, B) bool:
where False the state passes through unchanged, the output is 0, and backward sends the
gradient straight through the state. Once differentiable (no double backward).
Weight layout and gate order are torch.nn's: ``W_hh`` (4H, H), gates i, f, g, o; peephole
(3H: p_i, p_f, p_o).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..cells.base import LN_EPS
from . import cpu
from .common import (Product, absent, contiguous, layer_norm_backward, mask_coefficients, needs_graph, partial_steps,
                     prev_states, sigmoid_grad, step_kernels, step_kernels_apply, tanh_grad)
from .gemm import addmm_t, gemm_for, mm_t_into, weight_grad

__all__ = ["lstm_sequence", "lstm_kernel_sequence"]

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
    if needs_graph(*args):
        return _LSTMSequence.apply(*args, mask)
    with torch.no_grad():
        out, hs, cs, _ = _lstm_forward(*args, mask, save=False)
    return out, hs[-1].clone(), cs[-1].clone()


def lstm_kernel_sequence(gx: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor, peephole: Tensor | None = None,
                         mask: Tensor | None = None, layer_norm_hh: Tensor | None = None,
                         layer_norm_c_weight: Tensor | None = None, layer_norm_c_bias: Tensor | None = None,
                         ) -> tuple[Tensor, Tensor, Tensor]:
    """``lstm_sequence`` with each step's element-wise work in one call of a step kernel: the
    compiled C++ kernels on the CPU, the Triton ones on CUDA (``rnnkit.kernels.triton_steps``);
    same arguments, results and gradients. Where neither applies (dtypes other than float32/64
    or mixed, no compiler on the CPU, no Triton on CUDA, other devices) it is ``lstm_sequence``."""
    args = (gx, h0, c0, weight_hh, peephole, layer_norm_hh, layer_norm_c_weight, layer_norm_c_bias)
    if not step_kernels_apply(*args):
        return lstm_sequence(*args[:5], mask, *args[5:])
    if needs_graph(*args) or torch.compiler.is_compiling():  # the operator: autograd, torch.compile
        out, h_n, c_n = torch.ops.rnnkit.lstm_sequence_forward(*args, mask)[:3]
        return out, h_n, c_n
    with torch.no_grad():
        out, hs, cs, _ = _lstm_kernel_forward(*args, mask)
    return out, hs[-1].clone(), cs[-1].clone()


def _lstm_forward(gx, h0, c0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask, save: bool):
    """Returns output, hs (T, B, H) states h, cs (T + 1, B, H) states c (cs[0] = c0), and with
    ``save`` what backward needs: the activated gates (T, B, 4H), tanh(c or LN(c)) (T, B, H),
    the recurrent product and the statistics of LN(c) per step."""
    T, B, G = gx.shape  # time, batch, 4 * hidden
    H = G // 4
    op = gemm_for(gx)
    product = Product(weight_hh, gain_hh, 4, op, save)
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
    partial = partial_steps(mask, T)
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
            c_out, mean, rstd = torch.native_layer_norm(c, (H,), ln_c_weight, ln_c_bias, LN_EPS)
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
        o_coef = sigmoid_grad(tcs, o)  # (T, B, H): tanh(c') o (1 - o)
        co_coef = tanh_grad(o, tcs)  # o (1 - tanh(c')^2)
        ifg_coef = acts.new_empty(T, B, 3, H)
        sigmoid_grad(g, i, out=ifg_coef[:, :, 0])
        sigmoid_grad(c_tm1, f, out=ifg_coef[:, :, 1])
        tanh_grad(i, g, out=ifg_coef[:, :, 2])
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
        keep = mask_coefficients(mask, *{id(k): k for k in coefs}.values())  # each once
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
        partial = partial_steps(mask, T)
        dh, dc = d_hn + d_out_t[T - 1], d_cn
        for t in range(T - 1, -1, -1):
            if ln_c:
                torch.mul(dh, co_coef_t[t], out=d_cout_t[t])
                dc_norm = layer_norm_backward(d_cout_t[t], cs[t + 1], *c_stats[t], ln_c_weight)
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
        d_w, d_gain = product.grads(dG, prev_states(h0, hs), need[3], need[5])
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



def _lstm_kernel_forward(gx, h0, c0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask):
    """``_lstm_forward`` with each step's element-wise work in one kernel call. Returns output,
    hs (T, B, H), cs (T + 1, B, H), and (the step kernels, their buffers)."""
    T, B, G = gx.shape  # time, batch, 4 * hidden
    H = G // 4
    op = gemm_for(gx)
    gx, h0 = gx.contiguous(), h0.contiguous()
    buffers = dict(
        gx=gx, h0=h0, acts=gx.new_empty(T, B, G), hs=gx.new_empty(T, B, H), cs=gx.new_empty(T + 1, B, H),
        tcs=gx.new_empty(T, B, H), peep=None if peephole is None else peephole.contiguous(),
        gain_hh=None if gain_hh is None else gain_hh.contiguous(),
        z=None if gain_hh is None else gx.new_empty(T, B, G),  # W_hh h_tm1, then its norm
        rstd_hh=None if gain_hh is None else gx.new_zeros(T, B, 4),  # zeros: ended sequences write none
        ln_w=None if ln_c_weight is None else ln_c_weight.contiguous(),
        ln_b=None if ln_c_weight is None or ln_c_bias is None else ln_c_bias.contiguous(),
        stats_c=None if ln_c_weight is None else gx.new_empty(T, B, 2),  # mean, 1 / std
        keep=None if mask is None else mask.contiguous(),  # bool: one byte, 0 or 1
    )
    buffers["cs"][0] = c0
    kernels = step_kernels(cpu.LSTMArgs, buffers, T, B, H)
    step = kernels("lstm_forward")
    gx_t, act_t, h_t = gx.unbind(0), buffers["acts"].unbind(0), buffers["hs"].unbind(0)
    z_t = None if gain_hh is None else buffers["z"].unbind(0)
    h_tm1 = h0
    for t in range(T):
        if z_t is None:
            addmm_t(op, gx_t[t], h_tm1, weight_hh, out=act_t[t])  # (B, 4H) pre-activations
        else:
            mm_t_into(op, h_tm1, weight_hh, out=z_t[t])  # normalised, scaled and added in the kernel
        step(t)
        h_tm1 = h_t[t]
    hs, cs = buffers["hs"], buffers["cs"]
    out = hs if mask is None else hs * mask.unsqueeze(-1).to(hs.dtype)
    return out, hs, cs, (kernels, buffers)


# -- the compiled kernels as torch operators ----------------------------------------------------
# ``rnnkit::lstm_sequence_forward`` and ``rnnkit::lstm_sequence_backward``: what autograd and
# torch.compile see (ctypes is opaque to both). Operators take and return tensors only, so the
# forward returns every buffer backward reads (an empty tensor where the configuration has none),
# and each call rebuilds the kernels' struct of pointers from the tensors it gets.


@torch.library.custom_op("rnnkit::lstm_sequence_forward", mutates_args=(), device_types=("cpu", "cuda"))
def _lstm_sequence_forward(
    gx: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor, peephole: Optional[Tensor], gain_hh: Optional[Tensor],
    ln_c_weight: Optional[Tensor], ln_c_bias: Optional[Tensor], mask: Optional[Tensor],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``lstm_kernel_sequence``'s forward, arguments as ``_lstm_forward``'s. Returns output (T, B, H),
    h_n, c_n (B, H), then what the backward operator reads: hs (T, B, H) the states (empty without
    a mask: then they are the output), cs (T + 1, B, H), the activated gates (T, B, 4H), tanh(c or
    LN(c)) (T, B, H); with ``gain_hh`` the normalised products (T, B, 4H) and their 1 / std
    (T, B, 4); with ``ln_c_weight`` the mean and 1 / std of c (T, B, 2) (each empty without)."""
    out, hs, cs, (_, buffers) = _lstm_kernel_forward(
        gx, h0, c0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask
    )
    saved = [absent(gx) if buffers[k] is None else buffers[k] for k in ("z", "rstd_hh", "stats_c")]
    return (out, hs[-1].clone(), cs[-1].clone(), absent(gx) if mask is None else hs, cs, buffers["acts"],
            buffers["tcs"], *saved)


@_lstm_sequence_forward.register_fake
def _(gx, h0, c0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask):
    T, B, G = gx.shape  # time, batch, 4 * hidden
    H = G // 4

    def new(present: bool, *shape):
        return gx.new_empty(shape if present else (0,))

    norm_hh, norm_c = gain_hh is not None, ln_c_weight is not None
    return (new(True, T, B, H), new(True, B, H), new(True, B, H), new(mask is not None, T, B, H),
            new(True, T + 1, B, H), new(True, T, B, G), new(True, T, B, H), new(norm_hh, T, B, G),
            new(norm_hh, T, B, 4), new(norm_c, T, B, 2))


def _lstm_setup_context(ctx, inputs, output):
    gx, h0, c0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask = inputs
    out, _, _, hs, *buffers = output
    ctx.mark_non_differentiable(hs, *buffers)
    ctx.set_materialize_grads(False)  # no zero gradients for the buffers; backward fills in its own
    states = out if mask is None else hs  # out: so that autograd catches in-place changes of it
    ctx.save_for_backward(h0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask, states, *buffers)


def _lstm_wanted(need, peephole, gain_hh, ln_c_weight, ln_c_bias) -> list[bool]:
    """The gradients of (weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias) to compute: those
    ``need`` asks for whose parameter is there (the bias of LN(c) only with its weight)."""
    norm_c = ln_c_weight is not None
    present = (True, peephole is not None, gain_hh is not None, norm_c, norm_c and ln_c_bias is not None)
    return [bool(n) and p for n, p in zip(need, present)]


def _lstm_autograd_backward(ctx, d_out, d_hn, d_cn, *_):
    h0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask, hs, *buffers = ctx.saved_tensors
    wanted = _lstm_wanted(ctx.needs_input_grad[3:8], peephole, gain_hh, ln_c_weight, ln_c_bias)
    d_out = torch.zeros_like(hs) if d_out is None else d_out
    d_hn, d_cn = (torch.zeros_like(h0) if d is None else d for d in (d_hn, d_cn))
    grads = torch.ops.rnnkit.lstm_sequence_backward(d_out, d_hn, d_cn, h0, weight_hh, peephole, gain_hh,
                                                     ln_c_weight, ln_c_bias, mask, hs, *buffers, wanted)
    return (*grads[:3], *(g if w else None for g, w in zip(grads[3:], wanted)), None)


_lstm_sequence_forward.register_autograd(_lstm_autograd_backward, setup_context=_lstm_setup_context)


@torch.library.custom_op("rnnkit::lstm_sequence_backward", mutates_args=(), device_types=("cpu", "cuda"))
def _lstm_sequence_backward(
    d_out: Tensor, d_hn: Tensor, d_cn: Tensor, h0: Tensor, weight_hh: Tensor, peephole: Optional[Tensor],
    gain_hh: Optional[Tensor], ln_c_weight: Optional[Tensor], ln_c_bias: Optional[Tensor], mask: Optional[Tensor],
    hs: Tensor, cs: Tensor, acts: Tensor, tcs: Tensor, z: Tensor, rstd_hh: Tensor, stats_c: Tensor, need: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The gradients of gx, h0, c0 and, where ``need`` (5 flags) says so (else empty), of weight_hh,
    peephole, gain_hh, ln_c_weight, ln_c_bias; from those of the output, h_n, c_n and the forward
    operator's buffers (``hs``: the states, whether or not a mask made the output differ)."""
    T, B, H = hs.shape  # time, batch, hidden
    G = 4 * H
    need = _lstm_wanted(need, peephole, gain_hh, ln_c_weight, ln_c_bias)
    op = gemm_for(hs)
    norm_hh, norm_c = gain_hh is not None, ln_c_weight is not None
    buffers = dict(  # the forward's buffers, as _lstm_kernel_forward named them (gx: not read)
        gx=None, h0=h0.contiguous(), acts=acts.contiguous(), hs=hs.contiguous(), cs=cs.contiguous(),
        tcs=tcs.contiguous(), peep=contiguous(peephole), gain_hh=contiguous(gain_hh),
        z=z.contiguous() if norm_hh else None, rstd_hh=rstd_hh.contiguous() if norm_hh else None,
        ln_w=contiguous(ln_c_weight), ln_b=contiguous(ln_c_bias) if norm_c else None,
        stats_c=stats_c.contiguous() if norm_c else None, keep=contiguous(mask),
    )
    d_out = (d_out if mask is None else d_out * mask.unsqueeze(-1).to(d_out.dtype)).contiguous()
    grads = dict(
        d_out=d_out, dh=(d_hn + d_out[T - 1]).contiguous(), dc=d_cn.clone(memory_format=torch.contiguous_format),
        carry=hs.new_empty(B, H), dG=hs.new_empty(T, B, G), scratch=hs.new_empty(H),
        dZ=hs.new_empty(T, B, G) if norm_hh else None,  # gradient of W_hh h_tm1
        d_cout=hs.new_empty(T, B, H) if norm_c else None,  # of LN(c)
    )
    step = step_kernels(cpu.LSTMArgs, {**buffers, **grads}, T, B, H)("lstm_backward")
    dZ = grads["dZ"] if norm_hh else grads["dG"]
    dZ_t, dh, carry = dZ.unbind(0), grads["dh"], grads["carry"]
    w_t = weight_hh.t().contiguous()  # (H, 4H)
    for t in range(T - 1, -1, -1):
        step(t)  # dG_t, dZ_t, dc -> dc_tm1, carry = d_out[t-1] (+ dh where ended)
        addmm_t(op, carry, dZ_t[t], w_t, out=dh)  # dh_tm1 = carry + dZ_t @ W_hh

    cs, dG = buffers["cs"], grads["dG"]
    d_w, d_p, d_gain, d_c_weight, d_c_bias = (absent(hs) for _ in range(5))  # each its own
    if need[0]:  # contiguous: oneDNN's product is a transposed view, the fake one is not
        d_w = weight_grad(op, dZ.view(-1, G), prev_states(buffers["h0"], buffers["hs"]).view(-1, H)).contiguous()
    if need[1]:
        dG4 = dG.view(T, B, 4, H)
        d_if = (dG4[:, :, :2] * cs[:-1].unsqueeze(2)).sum((0, 1))  # (2, H)
        d_o = (dG4[:, :, 3] * cs[1:]).sum((0, 1))  # ended sequences have dG = 0
        d_p = torch.cat([d_if.reshape(-1), d_o])
    if need[2]:
        d_gain = (dG * buffers["z"]).sum((0, 1))  # z holds the normalised products
    if norm_c:
        d_cout, stats = grads["d_cout"], buffers["stats_c"]
        if need[3]:
            d_c_weight = (d_cout * (cs[1:] - stats[:, :, :1]) * stats[:, :, 1:]).sum((0, 1))
        if need[4]:
            d_c_bias = d_cout.sum((0, 1))
    return dG, dh, grads["dc"], d_w, d_p, d_gain, d_c_weight, d_c_bias


@_lstm_sequence_backward.register_fake
def _(d_out, d_hn, d_cn, h0, weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias, mask, hs, cs, acts, tcs, z,
      rstd_hh, stats_c, need):
    T, B, H = hs.shape  # time, batch, hidden
    need = _lstm_wanted(need, peephole, gain_hh, ln_c_weight, ln_c_bias)
    params = (weight_hh, peephole, gain_hh, ln_c_weight, ln_c_bias)
    return (hs.new_empty(T, B, 4 * H), hs.new_empty(B, H), hs.new_empty(B, H),
            *(hs.new_empty(p.shape if wanted else (0,)) for p, wanted in zip(params, need)))
