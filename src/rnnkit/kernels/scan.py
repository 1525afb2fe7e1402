"""The linear recurrence ``h_t = a_t * h_{t-1} + b_t``, solved over time in parallel.

The cells whose recurrence is linear in their state once the gates are known (minGRU and
minLSTM, whose gates read only ``x_t``; SRU's cell state without its peephole weights) are
one element-wise recurrence after one matrix product. ``linear_scan(a, b, h0)`` solves it with
a two-level (chunked) scan in plain torch operations:

1. time is cut into C chunks of L ~ sqrt(T) steps; every chunk is scanned from a zero state at
   once (a loop of L steps over tensors of C chunks), which also gives each step's product of
   the a's since its chunk began;
2. a loop of C steps carries the state across chunk boundaries;
3. one broadcast adds each chunk's carried-in state, times those products, to its steps.

So about 2 sqrt(T) small operations instead of T, in linear space: no logarithms (the signs of
a and b are free), no divisions by products that underflow. The gradient is the same kind of
recurrence run backwards, ``g_t = dh_t + a_{t+1} g_{t+1}``, solved by the same scan
(``torch.autograd.Function``), with ``da_t = g_t h_{t-1}``, ``db_t = g_t`` and ``dh0 = a_1 g_1``.

Padding is the caller's business: a step with ``a = 1, b = 0`` keeps the state as it is, which
is how the "scan" backends (``rnnkit.layers.sequence``) freeze a sequence past its length.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["linear_scan", "scan_sequential"]


def linear_scan(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """All states of ``h_t = a_t * h_{t-1} + b_t``, t = 1..T.

    Args:
        a, b: (T, ...) coefficients, same shape, dtype and device.
        h0: (...) the state before the first step.

    Returns:
        h: (T, ...), ``h[t]`` the state after step t. Differentiable in a, b and h0.
    """
    if a.shape != b.shape or a.shape[1:] != h0.shape:
        raise ValueError(f"linear_scan: a and b must be (T, ...) with h0 (...), got a {tuple(a.shape)}, "
                         f"b {tuple(b.shape)}, h0 {tuple(h0.shape)}")
    return _LinearScan.apply(a, b, h0)


def scan_sequential(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """The same recurrence one step at a time: the oracle ``linear_scan`` is tested against."""
    h, out = h0, []
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        out.append(h)
    return torch.stack(out)


def _chunked(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """The forward computation of ``linear_scan`` (no autograd of its own)."""
    T = a.shape[0]
    rest = a.shape[1:]
    L = max(1, int(math.isqrt(T)))  # steps per chunk
    C = -(-T // L)  # chunks
    pad = C * L - T
    if pad:  # steps that keep the state: a = 1, b = 0
        a = torch.cat([a, a.new_ones((pad,) + rest)])
        b = torch.cat([b, b.new_zeros((pad,) + rest)])
    # (C*L, ...) -> (L, C, ...): step j of every chunk side by side
    a = a.reshape((C, L) + rest).transpose(0, 1).contiguous()
    b = b.reshape((C, L) + rest).transpose(0, 1).contiguous()
    local = torch.empty_like(b)  # each chunk scanned from a zero state
    prod = torch.empty_like(a)  # a's product since the chunk began
    local[0], prod[0] = b[0], a[0]
    for j in range(1, L):
        torch.addcmul(b[j], a[j], local[j - 1], out=local[j])
        torch.mul(prod[j - 1], a[j], out=prod[j])
    carries = torch.empty((C,) + rest, dtype=b.dtype, device=b.device)  # the state entering each chunk
    carry = h0
    for c in range(C):
        carries[c] = carry
        carry = torch.addcmul(local[L - 1, c], prod[L - 1, c], carry)
    h = torch.addcmul(local, prod, carries.unsqueeze(0))  # (L, C, ...)
    return h.transpose(0, 1).reshape((C * L,) + rest)[:T]


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        h = _chunked(a, b, h0)
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    def backward(ctx, dh: Tensor):
        a, h0, h = ctx.saved_tensors
        # g_t = dh_t + a_{t+1} g_{t+1}: the same recurrence over reversed time
        a_next = torch.cat([a[1:], a.new_zeros((1,) + a.shape[1:])])
        g = _chunked(a_next.flip(0), dh.flip(0), torch.zeros_like(h0)).flip(0)
        h_prev = torch.cat([h0.unsqueeze(0), h[:-1]])
        da = g * h_prev if ctx.needs_input_grad[0] else None
        dh0 = a[0] * g[0] if ctx.needs_input_grad[2] else None
        return da, g, dh0
