"""Long short-term memory cell, with optional peephole connections, layer norm and projection.

The equations are written once, in ``lstm_project`` and ``lstm_step`` (pure functions of the
typed weights ``LSTMWeights``); the cell, the layers' engine, the inspector and the ONNX export
of variant layers all call them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_bool
from .base import (CellKind, Weight, check_recurrent_init, check_sizes, gate_norm, init_weights_,
                   orthogonal_blocks_, present_weights, weights_tuple)

__all__ = ["LSTMCell", "LSTMConfig", "LSTMWeights", "LSTM_WEIGHTS", "LSTM_KIND", "lstm_project", "lstm_step",
           "lstm_init_"]


@dataclass(frozen=True)
class LSTMConfig:
    """Which LSTM equations run (see ``LSTMCell``)."""

    input_size: int  # I
    hidden_size: int  # H, units of the cell state
    bias: bool = True  # b_ih and b_hh
    proj_size: int = 0  # P: h = W_hr (o * tanh(c)), 0 = no projection
    peephole: bool = False  # p_i, p_f look at c_tm1, p_o at c
    layer_norm: bool = False  # per-gate layer norm of both products, and of c before its tanh

    cell: ClassVar[str] = "lstm"


def _4h(c):
    return (4 * c.hidden_size,)


LSTM_WEIGHTS = (
    Weight("weight_ih", lambda c: (4 * c.hidden_size, c.input_size), "uniform", True, "W_i{i,f,g,o} stacked"),
    Weight("weight_hh", lambda c: (4 * c.hidden_size, c.proj_size or c.hidden_size), "uniform", True,
           "W_h{i,f,g,o} stacked"),
    Weight("bias_ih", lambda c: _4h(c) if c.bias else None, "uniform", True, "b_i{i,f,g,o}"),
    Weight("bias_hh", lambda c: _4h(c) if c.bias else None, "uniform", True, "b_h{i,f,g,o}"),
    Weight("weight_hr", lambda c: (c.proj_size, c.hidden_size) if c.proj_size else None, "uniform", True,
           "projection W_hr"),
    Weight("weight_peephole", lambda c: (3 * c.hidden_size,) if c.peephole else None, "uniform", False,
           "peepholes p_i, p_f, p_o"),
    Weight("layer_norm_ih", lambda c: _4h(c) if c.layer_norm else None, "ones", False, "gain of LN(W_ih x)"),
    Weight("layer_norm_hh", lambda c: _4h(c) if c.layer_norm else None, "ones", False, "gain of LN(W_hh h)"),
    Weight("layer_norm_c_weight", lambda c: (c.hidden_size,) if c.layer_norm else None, "ones", False,
           "gain of LN(c)"),
    Weight("layer_norm_c_bias", lambda c: (c.hidden_size,) if c.layer_norm else None, "zeros", False,
           "shift of LN(c)"),
)
LSTMWeights = weights_tuple("LSTMWeights", LSTM_WEIGHTS)
LSTMWeights.__module__ = __name__


class LSTMCell(nn.Module):
    r"""One step of an LSTM (Hochreiter & Schmidhuber 1997), in the course notes' words.

    The long-term memory ``c`` (LTM) and short-term memory ``h`` (STM) come in; the event
    ``x_t`` joins the STM; four gates decide what happens::

        i = sigmoid(W_ii x_t + W_hi h_tm1 + b_i [+ p_i * c_tm1])   # learn (input) gate: how much to learn
        f = sigmoid(W_if x_t + W_hf h_tm1 + b_f [+ p_f * c_tm1])   # forget gate: what LTM to keep
        g = tanh   (W_ig x_t + W_hg h_tm1 + b_g)                   # learn gate: candidate memory
        c = f * c_tm1 + i * g                                      # remember gate: new LTM
        o = sigmoid(W_io x_t + W_ho h_tm1 + b_o [+ p_o * c])       # use (output) gate
        h = o * tanh(c)                                            # use gate: new STM and output
        h = W_hr h                                                 # only with proj_size > 0

    The bracketed terms are the peephole connections (``peephole=True``, Gers & Schmidhuber
    2000, seed 004): diagonal weights ``p_i, p_f`` look at the old cell state, ``p_o`` at the new
    one. ``layer_norm=True`` (Ba et al. 2016) replaces ``W_x x`` and ``W_h h`` by their layer
    norms, taken per gate, times a learned gain, and ``tanh(c)`` by ``tanh(LN(c))``.

    Args:
        input_size: features of ``x_t`` (I).
        hidden_size: units of the cell state (H).
        bias: learn ``b_ih`` and ``b_hh`` (torch.nn's two-bias layout). Default True.
        peephole: add the peephole weights. Default False.
        layer_norm: normalise the gate pre-activations and the cell state. Default False.
        proj_size: width P of the projected output ``h`` (torch.nn's ``proj_size``); 0 = none.
        forget_bias: value of the forget-gate slice of ``bias_ih`` after init (``bias_hh``'s
            forget slice is zeroed, so the gate starts at sigmoid(1) ~ 0.73 and the memory flows);
            ``None`` keeps torch.nn's init exactly. Default 1.0.
        recurrent_init: "uniform" (torch.nn's U(-1/sqrt(H), 1/sqrt(H))) or "orthogonal"
            (each gate's block of ``weight_hh``). Default "uniform".

    Weights: ``LSTM_WEIGHTS`` below (torch.nn.LSTMCell's layout, gates stacked i, f, g, o).

    State: ``(h, c)``, ``h`` (B, P or H), ``c`` (B, H).

    Over time, the engine (``rnnkit.Recurrent``, the layers) runs the first backend of
    ``rnnkit.layers.backends`` that supports ``cell.config`` (e.g. a whole sequence at once with a
    hand-written backward), else it loops ``step``: the reference, which every backend is tested
    against. A subclass that overrides ``step`` or ``project_input`` is always looped.

    Example:
        >>> cell = LSTMCell(3, 5, peephole=True)
        >>> h, (h, c) = cell(torch.randn(2, 3), cell.initial_state(2))
        >>> tuple(h.shape), tuple(c.shape)
        ((2, 5), (2, 5))
    """

    num_gates = 4

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        peephole: bool = False,
        layer_norm: bool = False,
        proj_size: int = 0,
        forget_bias: float | None = 1.0,
        recurrent_init: str = "uniform",
    ) -> None:
        super().__init__()
        check_bool("LSTMCell", "bias", bias)
        check_bool("LSTMCell", "peephole", peephole)
        check_bool("LSTMCell", "layer_norm", layer_norm)
        check_sizes("LSTMCell", input_size, hidden_size, proj_size)
        check_recurrent_init("LSTM", recurrent_init)
        self.config = LSTMConfig(input_size, hidden_size, bias, proj_size, peephole, layer_norm)
        self.input_size, self.hidden_size, self.proj_size = input_size, hidden_size, proj_size
        self.output_size = proj_size or hidden_size
        self.peephole, self.layer_norm = peephole, layer_norm
        shapes = dict(present_weights(LSTM_WEIGHTS, self.config))
        for row in LSTM_WEIGHTS:
            shape = shapes.get(row.name)
            self.register_parameter(row.name, None if shape is None else nn.Parameter(torch.empty(shape)))
        lstm_init_(self.weights(), self.config, forget_bias, recurrent_init)

    def weights(self) -> LSTMWeights:
        """The parameters as the typed tuple the reference functions take."""
        return LSTMWeights(*(getattr(self, row.name) for row in LSTM_WEIGHTS))

    def backend_config(self) -> LSTMConfig | None:
        """What the engine's backends are chosen by; None for a subclass with its own step."""
        own = type(self).step is LSTMCell.step and type(self).project_input is LSTMCell.project_input
        return self.config if own else None

    def initial_state(self, batch_size: int, device=None, dtype=None) -> tuple[Tensor, Tensor]:
        dtype = dtype or self.weight_ih.dtype
        h0 = torch.zeros(batch_size, self.output_size, device=device, dtype=dtype)
        c0 = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return h0, c0

    def project_input(self, x: Tensor) -> Tensor:
        return lstm_project(self.weights(), x)

    def step(self, gx_t: Tensor, state_tm1: tuple[Tensor, Tensor], gates: dict | None = None):
        return lstm_step(self.weights(), gx_t, state_tm1, gates)

    def forward(self, x_t: Tensor, state_tm1: tuple[Tensor, Tensor] | None = None):
        if state_tm1 is None:
            state_tm1 = self.initial_state(x_t.shape[0], x_t.device, x_t.dtype)
        return self.step(self.project_input(x_t), state_tm1)

    def extra_repr(self) -> str:
        flags = [f"{self.input_size}, {self.hidden_size}"]
        flags += [f"proj_size={self.proj_size}"] * bool(self.proj_size)
        flags += ["peephole=True"] * self.peephole + ["layer_norm=True"] * self.layer_norm
        return ", ".join(flags)


# -- the equations, once ----------------------------------------------------------------------

def lstm_project(w: LSTMWeights, x: Tensor, linear=F.linear, norm=gate_norm) -> Tensor:
    """Input part of the gate pre-activations for any leading dims: (..., I) -> (..., 4H).

    ``W_ih x + b_ih + b_hh``, with layer norm ``LN(W_ih x) * gain_ih + b_ih + b_hh``. A backend
    may pass its own (equal) ``linear(x, weight, bias)`` and ``norm(z, gain, num_gates)``.
    """
    bias = None if w.bias_ih is None else w.bias_ih + w.bias_hh
    if w.layer_norm_ih is None:
        return linear(x, w.weight_ih, bias)
    gx = norm(linear(x, w.weight_ih), w.layer_norm_ih, 4)
    return gx if bias is None else gx + bias


def lstm_step(w: LSTMWeights, gx_t: Tensor, state_tm1: Tuple[Tensor, Tensor],
              gates: Optional[Dict[str, Tensor]] = None) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
    """One step from the projected input gx_t (B, 4H): returns h (B, P|H), (h, c).

    ``gates``: a dict to receive this step's activations (``input``, ``forget``, ``candidate``,
    ``output``, ``cell``, ``hidden``; each (B, H)), for the inspector; None keeps nothing.
    The export of variant layers traces it inside torch's ``scan`` (``rnnkit.export.loop``).
    """
    h_tm1, c_tm1 = state_tm1
    weight_hh = w.weight_hh
    assert weight_hh is not None
    H = c_tm1.shape[-1]
    gain_hh = w.layer_norm_hh
    if gain_hh is None:
        z = torch.addmm(gx_t, h_tm1, weight_hh.t())  # (B, 4H)
    else:
        z = gx_t + gate_norm(F.linear(h_tm1, weight_hh), gain_hh, 4)
    i, f, g, o = z.chunk(4, -1)  # each (B, H)
    peephole = w.weight_peephole
    if peephole is not None:
        i = i + peephole[:H] * c_tm1  # the learn and forget gates look at the old LTM
        f = f + peephole[H : 2 * H] * c_tm1
    i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)  # learn, forget, new memory
    c = f * c_tm1 + i * g  # remember
    if peephole is not None:
        o = o + peephole[2 * H :] * c  # the use gate looks at the new one
    o = torch.sigmoid(o)  # use
    ln_c_weight = w.layer_norm_c_weight
    c_out = c if ln_c_weight is None else F.layer_norm(c, [H], ln_c_weight, w.layer_norm_c_bias)
    h = o * torch.tanh(c_out)
    weight_hr = w.weight_hr
    if weight_hr is not None:
        h = F.linear(h, weight_hr)  # (B, P)
    if gates is not None:
        gates["input"], gates["forget"], gates["candidate"] = i, f, g
        gates["output"], gates["cell"], gates["hidden"] = o, c, h
    return h, (h, c)


def lstm_init_(w: LSTMWeights, config: LSTMConfig, forget_bias: float | None = 1.0, recurrent_init: str = "uniform",
               skip_standard: bool = False) -> None:
    """Initialise the weights (see ``LSTMCell``'s docstring and ``LSTM_WEIGHTS``).

    With ``skip_standard`` torch.nn already drew its weights (in its RNG order) and only
    rnnkit's adjustments and extras are applied.
    """
    init_weights_(LSTM_WEIGHTS, w, config.hidden_size, skip_standard)
    with torch.no_grad():
        if recurrent_init == "orthogonal":
            orthogonal_blocks_(w.weight_hh, 4)
        if forget_bias is not None and w.bias_ih is not None:
            H = config.hidden_size
            w.bias_ih[H : 2 * H].fill_(forget_bias)
            w.bias_hh[H : 2 * H].zero_()


def _project(config: LSTMConfig, w: LSTMWeights, x: Tensor, linear=F.linear, norm=gate_norm) -> Tensor:
    return lstm_project(w, x, linear, norm)


def _step(config: LSTMConfig, w: LSTMWeights, gx_t: Tensor, state_tm1, gates=None):
    return lstm_step(w, gx_t, state_tm1, gates)


def _state_shapes(config: LSTMConfig) -> tuple:
    return ((config.proj_size or config.hidden_size,), (config.hidden_size,))


LSTM_KIND = CellKind("lstm", LSTMConfig, LSTM_WEIGHTS, LSTMWeights, _project, _step, ("h", "c"), 4,
                    ("input", "forget", "candidate", "output", "cell", "hidden"), _state_shapes)
