"""A whole GRU sequence (one direction) with a hand-written backward: BPTT in one autograd node.

How and why (one Function per sequence, derivative factors for the whole sequence at once, the
reverse-time loop holding only the recurrence) is in ``rnnkit.kernels.lstm_bptt``'s docstring;
the same holds here. Two flavours, registered as two backends by ``rnnkit.layers.sequence``:
``gru_sequence`` (torch operations, any device) and ``gru_kernel_sequence`` (each step's
element-wise work in the compiled CPU kernels). Derived from ``rnnkit.cells.gru.gru_step`` (the
reference) and tested against it. The kernel flavour runs as the custom operators
``rnnkit::gru_sequence_forward`` and ``rnnkit::gru_sequence_backward``, as the LSTM's.

Covered: both forms (``reset_after``), with or without layer norm. Weight layout and gate order
are torch.nn's: ``W_hh`` (3H, H), gates r, z, n.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..cells.base import LN_EPS
from . import cpu
from .common import (Product, absent, contiguous, mask_coefficients, needs_graph, partial_steps, prev_states,
                     sigmoid_grad, step_kernels, step_kernels_apply, tanh_grad)
from .gemm import addmm_t, gemm_for, mm_t_into, weight_grad

__all__ = ["gru_sequence", "gru_kernel_sequence"]

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
    if needs_graph(gx, h0, weight_hh, bias_hh, layer_norm_hh):
        return _GRUSequence.apply(gx, h0, weight_hh, bias_hh, layer_norm_hh, mask, reset_after)
    with torch.no_grad():
        out, hs, _ = _gru_forward(gx, h0, weight_hh, bias_hh, layer_norm_hh, mask, reset_after, save=False)
    return out, hs[-1].clone()


def gru_kernel_sequence(gx: Tensor, h0: Tensor, weight_hh: Tensor, bias_hh: Tensor | None = None,
                        mask: Tensor | None = None, reset_after: bool = True,
                        layer_norm_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``gru_sequence`` with each step's element-wise work in step kernels: the compiled C++ ones
    on the CPU, the Triton ones on CUDA (``rnnkit.kernels.triton_steps``); same arguments, results
    and gradients. Where neither applies (dtypes other than float32/64 or mixed, no compiler on
    the CPU, no Triton on CUDA, other devices) it is ``gru_sequence``."""
    bias_hh = bias_hh if reset_after else None
    if not step_kernels_apply(gx, h0, weight_hh, bias_hh, layer_norm_hh):
        return gru_sequence(gx, h0, weight_hh, bias_hh, mask, reset_after, layer_norm_hh)
    if needs_graph(gx, h0, weight_hh, bias_hh, layer_norm_hh) or torch.compiler.is_compiling():
        out, h_n = torch.ops.rnnkit.gru_sequence_forward(gx, h0, weight_hh, bias_hh, layer_norm_hh, mask,
                                                         reset_after)[:2]  # the operator: autograd, compile
        return out, h_n
    with torch.no_grad():
        out, hs, _ = _gru_kernel_forward(gx, h0, weight_hh, bias_hh, layer_norm_hh, mask, reset_after)
    return out, hs[-1].clone()


def _gru_forward(gx, h0, weight_hh, bias_hh, gain_hh, mask, reset_after: bool, save: bool):
    """Returns output, hs (T, B, H) states, and with ``save`` what backward needs: (r, z)
    (T, B, 2H), n (T, B, H), ``W_hh h + b_hh`` (T, B, 3H, reset_after) or ``r * h_tm1``
    (T, B, H, reset before), and the recurrent products (one, or two: rz and n)."""
    T, B, G = gx.shape  # time, batch, 3 * hidden
    H = G // 3
    op = gemm_for(gx)
    if reset_after:
        products = [Product(weight_hh, gain_hh, 3, op, save)]
    else:  # the rz part sees h_tm1, the n part r * h_tm1
        gain_rz, gain_n = (None, None) if gain_hh is None else (gain_hh[: 2 * H], gain_hh[2 * H :])
        products = [Product(weight_hh[: 2 * H], gain_rz, 2, op, save),
                    Product(weight_hh[2 * H :], gain_n, 1, op, save)]
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
    partial = partial_steps(mask, T)
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
        h_prev = prev_states(h0, hs)  # (T, B, H)

        # 1. The derivative factors of every step, for the whole sequence at once. With dh the
        #    gradient of the state after step t: dG_z = dh * z_coef, dG_n = dh * n_coef, and
        #    dh_tm1 = dh * z_eff + (gate gradients) @ W_hh [+ r * d(r h_tm1), reset before].
        #    h = n + z (h_tm1 - n): dG_n = dh (1 - z) (1 - n^2), dG_z = dh (h_tm1 - n) z (1 - z).
        if ctx.reset_after:  # coefficients of dG_r, dG_z and r * dG_n (see below), and of dG_n
            n_coef = tanh_grad(1 - z, n)
            coef = hs.new_empty(T, B, 3, H)
            sigmoid_grad(n_coef * extra[:, :, 2 * H :], r, out=coef[:, :, 0])
            sigmoid_grad(h_prev - n, z, out=coef[:, :, 1])
            torch.mul(n_coef, r, out=coef[:, :, 2])
            keep = mask_coefficients(mask, coef, n_coef)
        else:  # coefficients of dG_z and dG_n
            coef = hs.new_empty(T, B, 2, H)
            sigmoid_grad(h_prev - n, z, out=coef[:, :, 0])
            tanh_grad(1 - z, n, out=coef[:, :, 1])
            keep = mask_coefficients(mask, coef)
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
        r_coef = sigmoid_grad(h_prev, r)  # dG_r = d(r h_tm1) * r_coef (0 where dG_n is)
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
    (T, B, H) and (the step kernels, their buffers)."""
    T, B, G = gx.shape  # time, batch, 3 * hidden
    H = G // 3
    op = gemm_for(gx)
    gx, h0 = gx.contiguous(), h0.contiguous()
    buffers = dict(
        gx=gx, h0=h0, hs=gx.new_empty(T, B, H), acts=gx.new_empty(T, B, G),  # r, z, n
        zp=gx.new_empty(T, B, G if reset_after else 2 * H),  # products of h_tm1 (then normalised)
        zn=None if reset_after else gx.new_empty(T, B, H),  # W_n (r * h_tm1) (then normalised)
        rstd=None if gain_hh is None else gx.new_zeros(T, B, 3),  # zeros: ended sequences write none
        gain=None if gain_hh is None else gain_hh.contiguous(),
        bias=None if bias_hh is None else bias_hh.contiguous(),
        ghn=gx.new_empty(T, B, H) if reset_after else None,  # W_hn h_tm1 (normalised) + b_hn
        rh=None if reset_after else gx.new_empty(T, B, H),  # r * h_tm1
        keep=None if mask is None else mask.contiguous(),
    )
    kernels = step_kernels(cpu.GRUArgs, buffers, T, B, H)
    zp_t, h_t = buffers["zp"].unbind(0), buffers["hs"].unbind(0)
    h_tm1 = h0
    if reset_after:
        step = kernels("gru_forward")
        for t in range(T):
            mm_t_into(op, h_tm1, weight_hh, out=zp_t[t])  # (B, 3H)
            step(t)
            h_tm1 = h_t[t]
    else:
        step_a, step_b = kernels("gru_forward_a"), kernels("gru_forward_b")
        w_rz, w_n = weight_hh[: 2 * H], weight_hh[2 * H :]
        zn_t, rh_t = buffers["zn"].unbind(0), buffers["rh"].unbind(0)
        for t in range(T):
            mm_t_into(op, h_tm1, w_rz, out=zp_t[t])  # (B, 2H)
            step_a(t)  # r, z, r * h_tm1
            mm_t_into(op, rh_t[t], w_n, out=zn_t[t])  # (B, H)
            step_b(t)  # n, h
            h_tm1 = h_t[t]
    hs = buffers["hs"]
    out = hs if mask is None else hs * mask.unsqueeze(-1).to(hs.dtype)
    return out, hs, (kernels, buffers)


# -- the compiled kernels as torch operators ----------------------------------------------------
# ``rnnkit::gru_sequence_forward`` and ``rnnkit::gru_sequence_backward``, as the LSTM's (see
# ``rnnkit.kernels.lstm_bptt``): tensors in and out, empty ones where a configuration has none.

_GRU_SAVED = ("acts", "zp", "zn", "rstd", "ghn", "rh")  # what backward reads besides h0 and hs


@torch.library.custom_op("rnnkit::gru_sequence_forward", mutates_args=(), device_types=("cpu", "cuda"))
def _gru_sequence_forward(
    gx: Tensor, h0: Tensor, weight_hh: Tensor, bias_hh: Optional[Tensor], gain_hh: Optional[Tensor],
    mask: Optional[Tensor], reset_after: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``gru_kernel_sequence``'s forward (``bias_hh`` None unless ``reset_after``). Returns output
    (T, B, H), h_n (B, H), then what the backward operator reads: hs (T, B, H) the states (empty
    without a mask: then they are the output), and ``_gru_kernel_forward``'s buffers ``_GRU_SAVED``
    (shapes in ``csrc/common.h``; empty where the form or the norm has none)."""
    out, hs, (_, buffers) = _gru_kernel_forward(gx, h0, weight_hh, bias_hh, gain_hh, mask, reset_after)
    saved = [absent(gx) if buffers[k] is None else buffers[k] for k in _GRU_SAVED]
    return (out, hs[-1].clone(), absent(gx) if mask is None else hs, *saved)


@_gru_sequence_forward.register_fake
def _(gx, h0, weight_hh, bias_hh, gain_hh, mask, reset_after):
    T, B, G = gx.shape  # time, batch, 3 * hidden
    H = G // 3

    def new(present: bool, *shape):
        return gx.new_empty(shape if present else (0,))

    norm = gain_hh is not None
    return (new(True, T, B, H), new(True, B, H), new(mask is not None, T, B, H), new(True, T, B, G),
            new(True, T, B, G if reset_after else 2 * H), new(not reset_after, T, B, H), new(norm, T, B, 3),
            new(reset_after, T, B, H), new(not reset_after, T, B, H))


def _gru_setup_context(ctx, inputs, output):
    gx, h0, weight_hh, bias_hh, gain_hh, mask, reset_after = inputs
    out, _, hs, *buffers = output
    ctx.mark_non_differentiable(hs, *buffers)
    ctx.set_materialize_grads(False)  # no zero gradients for the buffers; backward fills in its own
    ctx.reset_after = reset_after
    states = out if mask is None else hs  # out: so that autograd catches in-place changes of it
    ctx.save_for_backward(h0, weight_hh, bias_hh, gain_hh, mask, states, *buffers)


def _gru_wanted(need, bias_hh, gain_hh, reset_after: bool) -> list[bool]:
    """The gradients of (weight_hh, bias_hh, gain_hh) to compute: those ``need`` asks for whose
    parameter is there and used (bias_hh: with ``reset_after`` only)."""
    present = (True, reset_after and bias_hh is not None, gain_hh is not None)
    return [bool(n) and p for n, p in zip(need, present)]


def _gru_autograd_backward(ctx, d_out, d_hn, *_):
    h0, weight_hh, bias_hh, gain_hh, mask, hs, *buffers = ctx.saved_tensors
    wanted = _gru_wanted(ctx.needs_input_grad[2:5], bias_hh, gain_hh, ctx.reset_after)
    d_out = torch.zeros_like(hs) if d_out is None else d_out
    d_hn = torch.zeros_like(h0) if d_hn is None else d_hn
    grads = torch.ops.rnnkit.gru_sequence_backward(d_out, d_hn, h0, weight_hh, bias_hh, gain_hh, mask, hs,
                                                    *buffers, ctx.reset_after, wanted)
    return (*grads[:2], *(g if w else None for g, w in zip(grads[2:], wanted)), None, None)


_gru_sequence_forward.register_autograd(_gru_autograd_backward, setup_context=_gru_setup_context)


@torch.library.custom_op("rnnkit::gru_sequence_backward", mutates_args=(), device_types=("cpu", "cuda"))
def _gru_sequence_backward(
    d_out: Tensor, d_hn: Tensor, h0: Tensor, weight_hh: Tensor, bias_hh: Optional[Tensor], gain_hh: Optional[Tensor],
    mask: Optional[Tensor], hs: Tensor, acts: Tensor, zp: Tensor, zn: Tensor, rstd: Tensor, ghn: Tensor, rh: Tensor,
    reset_after: bool, need: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The gradients of gx, h0 and, where ``need`` (3 flags) says so (else empty), of weight_hh,
    bias_hh, gain_hh; from those of the output and h_n and the forward operator's buffers (``hs``:
    the states, whether or not a mask made the output differ)."""
    T, B, H = hs.shape  # time, batch, hidden
    G = 3 * H
    need = _gru_wanted(need, bias_hh, gain_hh, reset_after)
    op = gemm_for(hs)
    norm = gain_hh is not None
    buffers = dict(  # the forward's buffers, as _gru_kernel_forward named them (gx: not read)
        gx=None, h0=h0.contiguous(), hs=hs.contiguous(), acts=acts.contiguous(), zp=zp.contiguous(),
        zn=None if reset_after else zn.contiguous(), rstd=rstd.contiguous() if norm else None,
        gain=contiguous(gain_hh), bias=contiguous(bias_hh), ghn=ghn.contiguous() if reset_after else None,
        rh=None if reset_after else rh.contiguous(), keep=contiguous(mask),
    )
    d_out = (d_out if mask is None else d_out * mask.unsqueeze(-1).to(d_out.dtype)).contiguous()
    grads = dict(
        d_out=d_out, dh=(d_hn + d_out[T - 1]).contiguous(), carry=hs.new_empty(B, H),
        dG=hs.new_empty(T, B, G), scratch=hs.new_empty(H),
        dGh=hs.new_empty(T, B, G) if reset_after else None,  # of W_hh h_tm1 + b_hh (normalised)
        dZ=None if reset_after and not norm else hs.new_empty(T, B, G if reset_after else 2 * H),
        dZn=None if reset_after else hs.new_empty(T, B, H),  # of W_n (r * h_tm1)
        drh=None if reset_after else hs.new_empty(B, H),  # of r * h_tm1
    )
    kernels, dh, carry = step_kernels(cpu.GRUArgs, {**buffers, **grads}, T, B, H), grads["dh"], grads["carry"]
    h_prev = prev_states(buffers["h0"], buffers["hs"])  # (T, B, H)
    dG = grads["dG"]
    d_w, d_b, d_gain = (absent(hs) for _ in range(3))  # each its own
    if reset_after:
        step = kernels("gru_backward")
        dGh = grads["dGh"]
        dZ = grads["dZ"] if norm else dGh
        dZ_t, w_t = dZ.unbind(0), weight_hh.t().contiguous()  # w_t: (H, 3H)
        for t in range(T - 1, -1, -1):
            step(t)  # dG_t, dGh_t, dZ_t, carry = d_out[t-1] + dh * z
            addmm_t(op, carry, dZ_t[t], w_t, out=dh)  # dh_tm1 = carry + dZ_t @ W_hh
        if need[0]:  # contiguous: oneDNN's product is a transposed view, the fake one is not
            d_w = weight_grad(op, dZ.view(-1, G), h_prev.view(-1, H)).contiguous()
        if need[1]:
            d_b = dGh.sum((0, 1))
        if need[2]:
            d_gain = (dGh * buffers["zp"]).sum((0, 1))  # zp holds the normalised products
    else:
        step_b, step_c = kernels("gru_backward_b"), kernels("gru_backward_c")
        dZ, dZn, drh = grads["dZ"], grads["dZn"], grads["drh"]
        dZ_t, dZn_t = dZ.unbind(0), dZn.unbind(0)
        w_rz_t, w_n_t = weight_hh[: 2 * H].t().contiguous(), weight_hh[2 * H :].t().contiguous()  # (H, 2H), (H, H)
        for t in range(T - 1, -1, -1):
            step_b(t)  # dG_z, dG_n, dZn_t
            mm_t_into(op, dZn_t[t], w_n_t, out=drh)  # d(r * h_tm1) = dZn_t @ W_n
            step_c(t)  # dG_r, dZ_t, carry = d_out[t-1] + dh * z + drh * r
            addmm_t(op, carry, dZ_t[t], w_rz_t, out=dh)  # dh_tm1 = carry + dZ_t @ W_rz
        if need[0]:
            d_w = torch.cat([weight_grad(op, dZ.view(-1, 2 * H), h_prev.view(-1, H)),
                             weight_grad(op, dZn.view(-1, H), buffers["rh"].view(-1, H))])  # (3H, H)
        if need[2]:
            d_gain = torch.cat([(dG[:, :, : 2 * H] * buffers["zp"]).sum((0, 1)),
                                (dG[:, :, 2 * H :] * buffers["zn"]).sum((0, 1))])
    return dG, dh, d_w, d_b, d_gain


@_gru_sequence_backward.register_fake
def _(d_out, d_hn, h0, weight_hh, bias_hh, gain_hh, mask, hs, acts, zp, zn, rstd, ghn, rh, reset_after, need):
    T, B, H = hs.shape  # time, batch, hidden
    need = _gru_wanted(need, bias_hh, gain_hh, reset_after)
    params = (weight_hh, bias_hh, gain_hh)
    return (hs.new_empty(T, B, 3 * H), hs.new_empty(B, H),
            *(hs.new_empty(p.shape if wanted else (0,)) for p, wanted in zip(params, need)))
