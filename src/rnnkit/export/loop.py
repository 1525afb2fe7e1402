"""The reference loop: any configuration of rnnkit's cells as a scan over the cell's own step.

A configuration that no "onnx" backend declares (layer norm, a projection, a flag added to a
cell later), and every layer of a ``--format pt2`` export, is exported as the cell's reference
equations themselves: the input projection of every step at once (``cell.project_input``),
then ``torch._higher_order_ops.scan`` over time calling the cell kind's reference step
(``BoundCell.step``, i.e. ``lstm_step``, ``gru_step``, ``rnn_step`` from ``rnnkit.cells``) with
the cell's whole config. ``torch.export`` records the scan as one higher-order op whose trip
count is the input's length, and ``torch.onnx.export(dynamo=True)`` writes it as an ONNX
``Scan``, so T stays dynamic. Nothing here restates an equation, and no config field can be
dropped on the way to the step: the step receives the config itself.

``reference_loop(cells, x, lengths, state0) -> (y, state)`` runs one layer, every direction,
with the contract of an "onnx" backend's ``run`` (``export.nodes``); in eager mode the same scan
runs as a plain Python loop, so the converted model can be checked against rnnkit outside an export.
Lengths are masks: the outputs at t >= length are zero, each state stops at its sequence's
last valid step, and the reverse direction reads each sequence reversed within its own length.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor
from torch._higher_order_ops.scan import scan

from ..cells import BoundCell
from ..layers.boundary import where_state

__all__ = ["reference_loop"]


def reference_loop(cells: Sequence[BoundCell], x: Tensor, lengths: Optional[Tensor], state0):
    """One layer over time, every direction, on the cells' reference steps.

    Args:
        cells: the layer's cell per direction (``layer.cell(k, d)``), 1 or 2.
        x: (T, B, I), time-major.
        lengths: (B,) int64 in [1, T], or None (all T).
        state0: h (D, B, H_out), or a tuple (h, c, ...) as the cell kind's ``state_names``.

    Returns:
        y (T, B, D * H_out) and the final state in the form of ``state0``.
    """
    steps = torch.arange(x.shape[0], device=x.device).unsqueeze(1)  # (T, 1)
    if lengths is None:
        keep = (steps >= 0).unsqueeze(-1)  # (T, 1, 1): every step of every sequence
        rev_index = None
    else:
        mask = steps < lengths.unsqueeze(0)  # (T, B)
        keep = mask.unsqueeze(-1)  # (T, B, 1)
        # reverse each sequence within its own length; padding positions map to themselves
        rev_index = torch.where(mask, lengths.unsqueeze(0) - 1 - steps, steps)  # (T, B)
    paired = isinstance(state0, tuple)  # (h, c)
    outs, finals = [], []
    for d, cell in enumerate(cells):
        x_d = x if d == 0 else _reverse(x, rev_index)
        # each (B, ·), contiguous as the steps' states are (scan wants the carry's layout to stay)
        state_d = tuple(s[d].contiguous() for s in state0) if paired else state0[d].contiguous()
        xp = cell.project_input(x_d)  # (T, B, G)
        final, out = _scan(_masked_step(cell, x.shape[1]), state_d, (xp, keep))  # out (T, B, H_out)
        outs.append(out if d == 0 else _reverse(out, rev_index))
        finals.append(final)
    y = outs[0] if len(outs) == 1 else torch.cat(outs, -1)  # (T, B, D*H_out)
    if paired:
        return y, tuple(torch.stack(part) for part in zip(*finals))  # each (D, B, ·)
    return y, torch.stack(finals)  # (D, B, H)


def _masked_step(cell: BoundCell, batch):
    """The scan's body: the cell's reference step on one projected step, then the mask.

    ``(state_tm1, (xp_t (B, G), keep_t (B|1, 1))) -> (state_t, y_t (B, H_out))``: past a
    sequence's length its state passes through and its output is zero. The ``where``s also
    give the scan outputs that alias neither the carry nor each other (the LSTM's step returns
    h both as its output and in its state), which scan requires.

    ``batch`` is B (a symbolic size under torch.export), read once in the body (``view``) so
    that torch.export makes it an input of the scan's body: AOTInductor's lowering of ``scan``
    to ``while_loop`` sizes the outputs from the body's inputs only, and fails
    (``KeyError: s…``) on a batch size it cannot find there (torch 2.13).
    """

    def step(state_tm1, inputs):
        xp_t, keep_t = inputs
        h_t, state_t = cell.step(xp_t, state_tm1)
        state_t = where_state(keep_t, state_t, state_tm1)  # parts of any rank (an mLSTM's C is (B, NH, d, d))
        y_t = torch.where(keep_t, h_t, torch.zeros_like(h_t))
        return state_t, y_t.view(batch, y_t.shape[-1])  # (B, H_out)

    return step


def _scan(step, state0, xs: tuple):
    """``scan(step, state0, xs) -> (final state, stacked outputs)`` over the leading axis of xs.

    Under ``torch.export`` (and ``torch.compile``) torch's ``scan``, one op with a dynamic trip
    count; in eager mode the same step in a Python loop (eager ``scan`` would compile it with
    dynamo at every call).
    """
    if torch.compiler.is_compiling():
        return scan(step, state0, xs)
    state, outs = state0, []
    for t in range(xs[0].shape[0]):
        state, out = step(state, tuple(x[t] for x in xs))
        outs.append(out)
    return state, torch.stack(outs)


def _reverse(x: Tensor, rev_index: Optional[Tensor]) -> Tensor:
    """Reverse time within each sequence's length: (T, B, F) -> (T, B, F)."""
    if rev_index is None:
        return x.flip(0)
    return x.gather(0, rev_index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
