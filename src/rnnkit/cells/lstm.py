"""Long short-term memory cell, with optional peephole connections and layer normalisation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import _check_recurrent_init, _check_sizes, _gate_norm, _orthogonal_blocks_, _uniform_

__all__ = ["LSTMCell"]


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

    Weights (torch.nn.LSTMCell's layout, gates stacked in the order i, f, g, o):
        weight_ih (4H, I), weight_hh (4H, P or H), bias_ih (4H), bias_hh (4H),
        weight_hr (P, H), weight_peephole (3H: p_i, p_f, p_o),
        layer_norm_ih (4H), layer_norm_hh (4H), layer_norm_c_weight (H), layer_norm_c_bias (H).
        All U(-1/sqrt(H), 1/sqrt(H)) but the layer-norm gains (1) and shift (0).

    State: ``(h, c)``, ``h`` (B, P or H), ``c`` (B, H).

    Over time, the engine (``rnnkit.Recurrent``, the layers) calls ``run_sequence``: all steps at
    once with a hand-written backward (``rnnkit.layers.fused``), the same numbers as looping
    ``step``, which it still does with a projection, inside ``fused.disabled()``, or for a
    subclass that overrides ``step``.

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
        _check_sizes("LSTMCell", input_size, hidden_size, proj_size)
        self.input_size, self.hidden_size, self.proj_size = input_size, hidden_size, proj_size
        self.output_size = proj_size or hidden_size
        self.peephole, self.layer_norm = peephole, layer_norm
        for name, shape in _lstm_param_shapes(input_size, hidden_size, bias, peephole, layer_norm, proj_size):
            self.register_parameter(name, nn.Parameter(torch.empty(shape)) if shape else None)
        _init_lstm(self, hidden_size, forget_bias, recurrent_init)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> tuple[Tensor, Tensor]:
        dtype = dtype or self.weight_ih.dtype
        h0 = torch.zeros(batch_size, self.output_size, device=device, dtype=dtype)
        c0 = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return h0, c0

    def project_input(self, x: Tensor) -> Tensor:
        return lstm_project(self, x)

    def step(self, gx_t: Tensor, state_tm1: tuple[Tensor, Tensor]):
        return lstm_step(self, gx_t, state_tm1)

    def run_sequence(self, gx: Tensor, state_tm1: tuple[Tensor, Tensor], mask: Tensor | None = None):
        if type(self).step is not LSTMCell.step:  # a subclass's own step: the engine loops over it
            return None
        return lstm_run_sequence(self, gx, state_tm1, mask)

    def forward(self, x_t: Tensor, state_tm1: tuple[Tensor, Tensor] | None = None):
        if state_tm1 is None:
            state_tm1 = self.initial_state(x_t.shape[0], x_t.device, x_t.dtype)
        return self.step(self.project_input(x_t), state_tm1)

    def extra_repr(self) -> str:
        flags = [f"{self.input_size}, {self.hidden_size}"]
        flags += [f"proj_size={self.proj_size}"] * bool(self.proj_size)
        flags += ["peephole=True"] * self.peephole + ["layer_norm=True"] * self.layer_norm
        return ", ".join(flags)


# The math below takes any object `p` that carries the weights under LSTMCell's attribute names
# (an LSTMCell, or one layer/direction of rnnkit.LSTM), so cells and layers share one definition.

def lstm_project(p, x: Tensor) -> Tensor:
    """Input part of the gate pre-activations for any leading dims: (..., I) -> (..., 4H)."""
    from ..layers.fused import linear  # F.linear, faster on CPU; not at the top: import cycle
    if p.layer_norm_ih is None:
        bias = None if p.bias_ih is None else p.bias_ih + p.bias_hh
        return linear(x, p.weight_ih, bias)
    gx = _gate_norm(linear(x, p.weight_ih), p.layer_norm_ih, 4)
    return gx if p.bias_ih is None else gx + (p.bias_ih + p.bias_hh)


def lstm_step(p, gx_t: Tensor, state_tm1: tuple[Tensor, Tensor], gates: dict | None = None):
    """One step from the projected input gx_t (B, 4H): returns h (B, P|H), (h, c).

    ``gates``: a dict to receive this step's activations (``input``, ``forget``, ``candidate``,
    ``output``, ``cell``, ``hidden``; each (B, H)), for the inspector; None (the default) keeps
    nothing.
    """
    h_tm1, c_tm1 = state_tm1
    if p.layer_norm_hh is None:
        z = torch.addmm(gx_t, h_tm1, p.weight_hh.t())  # (B, 4H)
    else:
        z = gx_t + _gate_norm(F.linear(h_tm1, p.weight_hh), p.layer_norm_hh, 4)
    i, f, g, o = z.chunk(4, -1)  # each (B, H)
    if p.weight_peephole is not None:
        p_i, p_f, p_o = p.weight_peephole.chunk(3)
        i = i + p_i * c_tm1
        f = f + p_f * c_tm1
    i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)  # learn, forget, new memory
    c = f * c_tm1 + i * g  # remember
    if p.weight_peephole is not None:
        o = o + p_o * c
    o = torch.sigmoid(o)  # use
    if p.layer_norm_c_weight is not None:
        c_out = F.layer_norm(c, c.shape[-1:], p.layer_norm_c_weight, p.layer_norm_c_bias)
    else:
        c_out = c
    h = o * torch.tanh(c_out)
    if p.weight_hr is not None:
        h = F.linear(h, p.weight_hr)  # (B, P)
    if gates is not None:
        gates.update(input=i, forget=f, candidate=g, output=o, cell=c, hidden=h)
    return h, (h, c)


def lstm_run_sequence(p, gx: Tensor, state0: tuple[Tensor, Tensor], mask: Tensor | None = None):
    """All steps at once from the projected input gx (T, B, 4H), with a hand-written backward.

    Returns output (T, B, H), (h, c), as the engine's loop over ``lstm_step`` would, or None
    where ``rnnkit.layers.fused`` does not cover the configuration (a projection) or is
    disabled; the engine then runs the step loop. mask: (T, B) bool, see the engine.
    """
    from ..layers import fused  # not at the top: rnnkit.layers imports this module

    if p.weight_hr is not None or gx.shape[0] == 0 or not fused.is_enabled(gx):
        return None
    h0, c0 = state0
    out, h, c = fused.lstm_sequence(
        gx, h0, c0, p.weight_hh, p.weight_peephole, mask, p.layer_norm_hh, p.layer_norm_c_weight, p.layer_norm_c_bias
    )
    return out, (h, c)


def _lstm_param_shapes(input_size, hidden_size, bias, peephole, layer_norm, proj_size):
    """(name, shape or None) in torch.nn's registration order, then rnnkit's extras."""
    H, P = hidden_size, proj_size or hidden_size
    return [
        ("weight_ih", (4 * H, input_size)),
        ("weight_hh", (4 * H, P)),
        ("bias_ih", (4 * H,) if bias else None),
        ("bias_hh", (4 * H,) if bias else None),
        ("weight_hr", (proj_size, H) if proj_size else None),
        ("weight_peephole", (3 * H,) if peephole else None),
        ("layer_norm_ih", (4 * H,) if layer_norm else None),
        ("layer_norm_hh", (4 * H,) if layer_norm else None),
        ("layer_norm_c_weight", (H,) if layer_norm else None),
        ("layer_norm_c_bias", (H,) if layer_norm else None),
    ]


def _init_lstm(p, hidden_size: int, forget_bias: float | None, recurrent_init: str, standard_done=False):
    """Initialise the weights of `p` (see LSTMCell's docstring).

    With ``standard_done`` the torch.nn weights were already drawn (by torch's own
    reset_parameters, in its RNG order) and only rnnkit's adjustments and extras are applied.
    """
    _check_recurrent_init("LSTM", recurrent_init)
    with torch.no_grad():
        if not standard_done:
            for w in (p.weight_ih, p.weight_hh, p.bias_ih, p.bias_hh, p.weight_hr):
                _uniform_(w, hidden_size)
        _uniform_(p.weight_peephole, hidden_size)
        for gain in (p.layer_norm_ih, p.layer_norm_hh, p.layer_norm_c_weight):
            if gain is not None:
                gain.fill_(1.0)
        if p.layer_norm_c_bias is not None:
            p.layer_norm_c_bias.zero_()
        if recurrent_init == "orthogonal":
            _orthogonal_blocks_(p.weight_hh, 4)
        if forget_bias is not None and p.bias_ih is not None:
            H = hidden_size
            p.bias_ih[H : 2 * H].fill_(forget_bias)
            p.bias_hh[H : 2 * H].zero_()
