"""Gated recurrent unit: torch/cuDNN's reset-after form and Cho et al.'s reset-before form."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import _check_recurrent_init, _check_sizes, _gate_norm, _orthogonal_blocks_, _uniform_

__all__ = ["GRUCell"]


class GRUCell(nn.Module):
    r"""One step of a GRU (Cho et al. 2014). Seed 004: the forget and learn gates merge into
    one update gate, and there is a single working memory ``h``::

        r = sigmoid(W_ir x_t + b_ir + W_hr h_tm1 + b_hr)        # reset gate
        z = sigmoid(W_iz x_t + b_iz + W_hz h_tm1 + b_hz)        # update gate
        n = tanh(W_in x_t + b_in + r * (W_hn h_tm1 + b_hn))     # reset_after=True (torch, cuDNN)
        n = tanh(W_in x_t + b_in + W_hn (r * h_tm1) + b_hn)     # reset_after=False (Cho et al.)
        h = (1 - z) * n + z * h_tm1

    ``layer_norm=True`` (Ba et al. 2016) replaces each ``W_i* x`` and ``W_h* (.)`` product by its
    layer norm (per gate) times a learned gain; the biases follow the norm.

    Args:
        input_size: features of ``x_t`` (I).
        hidden_size: units of ``h`` (H).
        bias: learn ``b_ih`` and ``b_hh``. Default True.
        reset_after: where the reset gate acts (see above). Default True.
        layer_norm: normalise the gate pre-activations. Default False.
        recurrent_init: "uniform" (torch.nn's) or "orthogonal" per gate block. Default "uniform".

    Weights (torch.nn.GRUCell's layout, gates stacked r, z, n): weight_ih (3H, I),
    weight_hh (3H, H), bias_ih (3H), bias_hh (3H), layer_norm_ih (3H), layer_norm_hh (3H).
    All U(-1/sqrt(H), 1/sqrt(H)) but the layer-norm gains (1).

    State: ``h`` (B, H).

    Over time, the engine (``rnnkit.Recurrent``, the layers) calls ``run_sequence``: all steps at
    once with a hand-written backward (``rnnkit.layers.fused``), the same numbers as looping
    ``step``, which it still does inside ``fused.disabled()`` or for a subclass that overrides
    ``step``.

    Example:
        >>> cell = GRUCell(3, 5, reset_after=False)
        >>> h, state = cell(torch.randn(2, 3), cell.initial_state(2))
        >>> tuple(h.shape)
        (2, 5)
    """

    num_gates = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        reset_after: bool = True,
        layer_norm: bool = False,
        recurrent_init: str = "uniform",
    ) -> None:
        super().__init__()
        _check_sizes("GRUCell", input_size, hidden_size)
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.reset_after, self.layer_norm = reset_after, layer_norm
        for name, shape in _gru_param_shapes(input_size, hidden_size, bias, layer_norm):
            self.register_parameter(name, nn.Parameter(torch.empty(shape)) if shape else None)
        _init_gru(self, hidden_size, recurrent_init)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype or self.weight_ih.dtype)

    def project_input(self, x: Tensor) -> Tensor:
        return gru_project(self, x)

    def step(self, gx_t: Tensor, h_tm1: Tensor):
        return gru_step(self, gx_t, h_tm1)

    def run_sequence(self, gx: Tensor, h0: Tensor, mask: Tensor | None = None):
        if type(self).step is not GRUCell.step:  # a subclass's own step: the engine loops over it
            return None
        return gru_run_sequence(self, gx, h0, mask)

    def forward(self, x_t: Tensor, h_tm1: Tensor | None = None):
        if h_tm1 is None:
            h_tm1 = self.initial_state(x_t.shape[0], x_t.device, x_t.dtype)
        return self.step(self.project_input(x_t), h_tm1)

    def extra_repr(self) -> str:
        flags = [f"{self.input_size}, {self.hidden_size}"]
        flags += ["reset_after=False"] * (not self.reset_after) + ["layer_norm=True"] * self.layer_norm
        return ", ".join(flags)


# Shared by GRUCell and rnnkit.GRU: `p` carries the weights under GRUCell's attribute names
# and a `reset_after` flag.

def gru_project(p, x: Tensor) -> Tensor:
    """Input part of the pre-activations, (..., I) -> (..., 3H).

    reset_after=True keeps ``b_hh`` for the step (``b_hn`` sits inside ``r * (.)``);
    reset_after=False folds all of ``b_hh`` in here.
    """
    from ..layers.fused import linear  # F.linear, faster on CPU; not at the top: import cycle
    bias = p.bias_ih
    if bias is not None and not p.reset_after:
        bias = bias + p.bias_hh
    if p.layer_norm_ih is None:
        return linear(x, p.weight_ih, bias)
    gx = _gate_norm(linear(x, p.weight_ih), p.layer_norm_ih, 3)
    return gx if bias is None else gx + bias


def gru_step(p, gx_t: Tensor, h_tm1: Tensor, gates: dict | None = None):
    """One step from the projected input gx_t (B, 3H): returns h (B, H), h.

    ``gates``: a dict to receive this step's activations (``reset``, ``update``,
    ``candidate``, ``hidden``; each (B, H)), for the inspector; None keeps nothing.
    """
    H = h_tm1.shape[-1]
    x_r, x_z, x_n = gx_t.chunk(3, -1)  # each (B, H)
    if p.reset_after:
        gh = F.linear(h_tm1, p.weight_hh)  # (B, 3H)
        if p.layer_norm_hh is not None:
            gh = _gate_norm(gh, p.layer_norm_hh, 3)
        if p.bias_hh is not None:
            gh = gh + p.bias_hh
        h_r, h_z, h_n = gh.chunk(3, -1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
    else:
        gh_rz = F.linear(h_tm1, p.weight_hh[: 2 * H])  # (B, 2H)
        if p.layer_norm_hh is not None:
            gh_rz = _gate_norm(gh_rz, p.layer_norm_hh[: 2 * H], 2)
        h_r, h_z = gh_rz.chunk(2, -1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        gh_n = F.linear(r * h_tm1, p.weight_hh[2 * H :])  # (B, H): reset before the product
        if p.layer_norm_hh is not None:
            gh_n = _gate_norm(gh_n, p.layer_norm_hh[2 * H :], 1)
        n = torch.tanh(x_n + gh_n)
    h = n + z * (h_tm1 - n)  # = (1 - z) * n + z * h_tm1
    if gates is not None:
        gates.update(reset=r, update=z, candidate=n, hidden=h)
    return h, h


def gru_run_sequence(p, gx: Tensor, h0: Tensor, mask: Tensor | None = None):
    """All steps at once from the projected input gx (T, B, 3H), with a hand-written backward.

    Returns output (T, B, H), h, as the engine's loop over ``gru_step`` would, or None while
    ``rnnkit.layers.fused`` is disabled; the engine then runs the step loop.
    mask: (T, B) bool, see the engine.
    """
    from ..layers import fused  # not at the top: rnnkit.layers imports this module

    if gx.shape[0] == 0 or not fused.is_enabled(gx):
        return None
    out, h = fused.gru_sequence(gx, h0, p.weight_hh, p.bias_hh, mask, p.reset_after, p.layer_norm_hh)
    return out, h


def _gru_param_shapes(input_size, hidden_size, bias, layer_norm):
    H = hidden_size
    return [
        ("weight_ih", (3 * H, input_size)),
        ("weight_hh", (3 * H, H)),
        ("bias_ih", (3 * H,) if bias else None),
        ("bias_hh", (3 * H,) if bias else None),
        ("layer_norm_ih", (3 * H,) if layer_norm else None),
        ("layer_norm_hh", (3 * H,) if layer_norm else None),
    ]


def _init_gru(p, hidden_size: int, recurrent_init: str, standard_done=False) -> None:
    _check_recurrent_init("GRU", recurrent_init)
    with torch.no_grad():
        if not standard_done:
            for w in (p.weight_ih, p.weight_hh, p.bias_ih, p.bias_hh):
                _uniform_(w, hidden_size)
        for gain in (p.layer_norm_ih, p.layer_norm_hh):
            if gain is not None:
                gain.fill_(1.0)
        if recurrent_init == "orthogonal":
            _orthogonal_blocks_(p.weight_hh, 3)
