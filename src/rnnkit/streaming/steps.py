"""The step objects of ``Stream``: one per layer, each owning its weights and buffers.

A step object follows one small protocol (``Stream`` is its only caller):

- ``width``: the features of its output h (B, width);
- ``bind(xh, in_width)``: its slice ``[input | h]`` (B, in_width + width) of the stream's buffer;
- ``step()``: read the input part, read and overwrite h in place (under inference mode);
- ``get_state()`` / ``set_state(state)``: its state, ``h`` or ``(h, c)`` (B, ...) without the
  layer axis, as the layer's cell has it.

``ReferenceStep`` runs any cell through the cell's own step (a ``BoundCell`` over copied
weights, or a cell of ``rnnkit.Recurrent``): it is the fallback and the oracle. The fast steps
below are *derived* from the reference steps (``lstm_step``, ``gru_step``, ``rnn_step``) and are
registered as backends of kind "stream" (``rnnkit.layers.backends``), each declaring every
config flag it computes; ``run(config, weights, batch_size)`` builds the step from the typed
tuple of (already copied) weights. A config they do not declare (layer norm, a flag added
later) streams through ``ReferenceStep``. ``tests/streaming/test_stream_backends.py`` pins
every declaration to the layer's own result.

The fast steps concatenate ``[W_ih | W_hh]`` and sum the biases, so a step is one ``addmm``
per layer (two or three for the GRU, whose candidate needs the input and recurrent parts
apart), and work in preallocated buffers: nothing is allocated while stepping.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..cells.gru import GRUConfig, GRUWeights
from ..cells.lstm import LSTMConfig, LSTMWeights
from ..cells.rnn import RNNConfig, RNNWeights
from ..layers.backends import ANY, Backend, register

__all__ = ["ReferenceStep", "LSTM_STREAM_FLAGS", "GRU_STREAM_FLAGS", "RNN_STREAM_FLAGS"]

LSTM_STREAM_FLAGS = {"bias": ANY, "proj_size": ANY, "peephole": (False, True), "layer_norm": (False,)}
GRU_STREAM_FLAGS = {"bias": ANY, "reset_after": (False, True), "layer_norm": (False,)}
RNN_STREAM_FLAGS = {"bias": ANY, "nonlinearity": ("tanh", "relu")}


class ReferenceStep:
    """Any cell through its own step: ``project_input`` + ``step`` where it has them (rnnkit's
    cells and ``BoundCell``), else ``cell(x_t, state)``.

    Args:
        cell: the cell, with weights that will not change (copies).
        batch_size: B.
        width: the features of its output h.
    """

    def __init__(self, cell, batch_size: int, width: int) -> None:
        self.cell, self.batch_size, self.width = cell, batch_size, width
        self.split = hasattr(cell, "project_input") and hasattr(cell, "step")
        self.state = None

    def bind(self, xh: Tensor, in_width: int) -> None:
        self.x, self.h = xh[:, :in_width], xh[:, in_width:]  # (B, I), (B, H_out)

    def step(self) -> None:
        if self.split:
            h, self.state = self.cell.step(self.cell.project_input(self.x), self.state)
        else:
            h, self.state = self.cell(self.x, self.state)
        self.h.copy_(h)

    def get_state(self):
        return self.state

    def set_state(self, state) -> None:
        self.state = _clone(state)
        first = self.state[0] if isinstance(self.state, tuple) else self.state
        if first.shape == self.h.shape:  # the output is the state's h (or the state itself)
            self.h.copy_(first)


def _clone(state):
    return tuple(s.clone() for s in state) if isinstance(state, tuple) else state.clone()


def _bias_sum(b_ih: Tensor | None, b_hh: Tensor | None, rows: int, like: Tensor) -> Tensor:
    if b_ih is None:
        return torch.zeros(rows, dtype=like.dtype, device=like.device)
    return b_ih + b_hh


# Derived from rnnkit.cells.lstm.lstm_step: the same equations, rows reordered i, f, o, g, in place.
class _LSTMStep:
    """LSTM (peephole and proj_size included): gates = [x | h] @ [W_ih | W_hh]^T + b in one addmm.

    The rows are reordered i, f, o, g (torch.nn stores i, f, g, o) so that, without
    peepholes, one sigmoid covers the three sigmoid gates.
    """

    def __init__(self, w: LSTMWeights, B: int) -> None:
        H = w.weight_ih.shape[0] // 4
        order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
        weight = torch.cat([w.weight_ih, w.weight_hh], 1)[order]  # (4H, I + P): i, f, o, g
        self.weight_t = weight.t().contiguous()  # (I + P, 4H): row-vector @ matrix, measured faster than W.t()
        self.bias = _bias_sum(w.bias_ih, w.bias_hh, 4 * H, weight)[order]  # (4H,)
        self.H, self.width = H, w.weight_hh.shape[1]  # width: P with a projection, else H
        self.peephole = w.weight_peephole  # (3H: p_i, p_f, p_o) or None
        self.weight_hr_t = None if w.weight_hr is None else w.weight_hr.t().contiguous()  # (H, P)
        kw = dict(dtype=weight.dtype, device=weight.device)
        self.gates = torch.empty(B, 4 * H, **kw)  # (B, 4H)
        self.c = torch.zeros(B, H, **kw)
        self.tanh_c = torch.empty(B, H, **kw)
        self.u = torch.empty(B, H, **kw) if self.weight_hr_t is not None else None  # o * tanh(c) before W_hr
        g = self.gates
        self.i, self.f, self.o, self.g = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
        self.if_, self.ifo = g[:, : 2 * H], g[:, : 3 * H]
        if self.peephole is not None:
            self.p_i, self.p_f, self.p_o = self.peephole.chunk(3)

    def bind(self, xh: Tensor, in_width: int) -> None:
        self.xh, self.h = xh, xh[:, in_width:]  # (B, I + P), (B, P)

    def step(self) -> None:
        torch.addmm(self.bias, self.xh, self.weight_t, out=self.gates)  # (B, 4H)
        c = self.c
        if self.peephole is None:
            self.ifo.sigmoid_()
        else:
            self.i.addcmul_(self.p_i, c)  # the gates look at the old cell state
            self.f.addcmul_(self.p_f, c)
            self.if_.sigmoid_()
        self.g.tanh_()
        c.mul_(self.f).addcmul_(self.i, self.g)  # c = f * c_tm1 + i * g
        if self.peephole is not None:
            self.o.addcmul_(self.p_o, c).sigmoid_()  # the use gate looks at the new one
        torch.tanh(c, out=self.tanh_c)
        if self.weight_hr_t is None:
            torch.mul(self.o, self.tanh_c, out=self.h)  # h = o * tanh(c)
        else:
            torch.mul(self.o, self.tanh_c, out=self.u)
            torch.mm(self.u, self.weight_hr_t, out=self.h)  # h = W_hr (o * tanh(c))

    def get_state(self):
        return self.h, self.c

    def set_state(self, state) -> None:
        self.h.copy_(state[0])
        self.c.copy_(state[1])


class _HiddenState:
    """The state of a step that carries only h (GRU, Elman RNN): a view into the shared buffer."""

    def get_state(self):
        return self.h

    def set_state(self, state) -> None:
        self.h.copy_(state)


class _GRUStep(_HiddenState):
    """GRU, both forms. reset_after=True: gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh (two
    addmm; the candidate needs W_hn h apart). reset_after=False: r, z from one addmm on [x | h];
    the candidate from x W_in^T and (r * h) W_hn^T. Derived from ``gru_step``."""

    def __init__(self, w: GRUWeights, B: int, reset_after: bool) -> None:
        W_ih, W_hh = w.weight_ih, w.weight_hh  # (3H, I), (3H, H): r, z, n
        H = self.width = W_hh.shape[1]
        self.reset_after = reset_after
        kw = dict(dtype=W_ih.dtype, device=W_ih.device)
        b_ih = w.bias_ih if w.bias_ih is not None else torch.zeros(3 * H, **kw)
        b_hh = w.bias_hh if w.bias_hh is not None else torch.zeros(3 * H, **kw)
        if reset_after:
            self.W_ih_t, self.W_hh_t = W_ih.t().contiguous(), W_hh.t().contiguous()  # (I, 3H), (H, 3H)
            self.b_ih, self.b_hh = b_ih, b_hh
            self.gi, self.gh = torch.empty(B, 3 * H, **kw), torch.empty(B, 3 * H, **kw)
            self.rz, self.gh_rz = self.gi[:, : 2 * H], self.gh[:, : 2 * H]
            self.r, self.z, self.n = self.gi[:, :H], self.gi[:, H : 2 * H], self.gi[:, 2 * H :]
            self.gh_n = self.gh[:, 2 * H :]
        else:
            self.W_rz_t = torch.cat([W_ih[: 2 * H], W_hh[: 2 * H]], 1).t().contiguous()  # (I + H, 2H)
            self.b_rz = b_ih[: 2 * H] + b_hh[: 2 * H]
            self.W_in_t, self.W_hn_t = W_ih[2 * H :].t().contiguous(), W_hh[2 * H :].t().contiguous()  # (I, H), (H, H)
            self.b_n = b_ih[2 * H :] + b_hh[2 * H :]
            self.rz, self.n, self.rh = (torch.empty(B, 2 * H, **kw), torch.empty(B, H, **kw),
                                        torch.empty(B, H, **kw))
            self.r, self.z = self.rz[:, :H], self.rz[:, H:]

    def bind(self, xh: Tensor, in_width: int) -> None:
        self.xh, self.x, self.h = xh, xh[:, :in_width], xh[:, in_width:]

    def step(self) -> None:
        h = self.h
        if self.reset_after:
            torch.addmm(self.b_ih, self.x, self.W_ih_t, out=self.gi)  # (B, 3H)
            torch.addmm(self.b_hh, h, self.W_hh_t, out=self.gh)  # (B, 3H)
            self.rz.add_(self.gh_rz).sigmoid_()  # r, z
            self.n.addcmul_(self.r, self.gh_n).tanh_()  # n = tanh(x_n + r * (W_hn h + b_hn))
        else:
            torch.addmm(self.b_rz, self.xh, self.W_rz_t, out=self.rz).sigmoid_()  # (B, 2H)
            torch.addmm(self.b_n, self.x, self.W_in_t, out=self.n)  # (B, H)
            torch.mul(self.r, h, out=self.rh)
            self.n.addmm_(self.rh, self.W_hn_t).tanh_()  # n = tanh(x_n + W_hn (r * h) + b_n)
        torch.lerp(self.n, h, self.z, out=h)  # h = n + z * (h_tm1 - n)


class _RNNStep(_HiddenState):
    """Elman RNN: s = f([x | s_tm1] @ [U | W]^T + b), one addmm. Derived from ``rnn_step``."""

    def __init__(self, w: RNNWeights, B: int, nonlinearity: str) -> None:
        weight = torch.cat([w.weight_ih, w.weight_hh], 1)  # (H, I + H)
        self.width = weight.shape[0]
        self.weight_t = weight.t().contiguous()  # (I + H, H)
        self.bias = _bias_sum(w.bias_ih, w.bias_hh, self.width, weight)  # (H,)
        self.relu = nonlinearity == "relu"
        self.pre = torch.empty(B, self.width, dtype=weight.dtype, device=weight.device)

    def bind(self, xh: Tensor, in_width: int) -> None:
        self.xh, self.h = xh, xh[:, in_width:]

    def step(self) -> None:
        torch.addmm(self.bias, self.xh, self.weight_t, out=self.pre)  # (B, H)
        if self.relu:
            torch.clamp(self.pre, min=0, out=self.h)
        else:
            torch.tanh(self.pre, out=self.h)


# -- the "stream" backends ---------------------------------------------------------------------

def _lstm_run(config: LSTMConfig, w: LSTMWeights, batch_size: int) -> _LSTMStep:
    return _LSTMStep(w, batch_size)


def _gru_run(config: GRUConfig, w: GRUWeights, batch_size: int) -> _GRUStep:
    return _GRUStep(w, batch_size, config.reset_after)


def _rnn_run(config: RNNConfig, w: RNNWeights, batch_size: int) -> _RNNStep:
    return _RNNStep(w, batch_size, config.nonlinearity)


_DOC = "one preallocated step per layer on BLAS and in-place elementwise kernels (rnnkit.Stream)"
register(Backend("stream-steps", "stream", "lstm", LSTM_STREAM_FLAGS, _lstm_run, doc=_DOC))
register(Backend("stream-steps", "stream", "gru", GRU_STREAM_FLAGS, _gru_run, doc=_DOC))
register(Backend("stream-steps", "stream", "rnn", RNN_STREAM_FLAGS, _rnn_run, doc=_DOC))
