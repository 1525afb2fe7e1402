"""Gated recurrent unit: torch/cuDNN's reset-after form and Cho et al.'s reset-before form.

The equations are written once, in ``gru_project`` and ``gru_step`` (pure functions of the
typed weights ``GRUWeights``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_bool
from .base import (CellKind, Weight, check_recurrent_init, check_sizes, gate_norm, init_weights_, orthogonal_blocks_,
                   present_weights, weights_tuple)

__all__ = ["GRUCell", "GRUConfig", "GRUWeights", "GRU_WEIGHTS", "GRU_KIND", "gru_project", "gru_step", "gru_init_"]


@dataclass(frozen=True)
class GRUConfig:
    """Which GRU equations run (see ``GRUCell``)."""

    input_size: int  # I
    hidden_size: int  # H
    bias: bool = True  # b_ih and b_hh
    reset_after: bool = True  # torch.nn's / cuDNN's form; False: Cho et al.'s
    layer_norm: bool = False  # per-gate layer norm of both products

    cell: ClassVar[str] = "gru"


def _3h(c):
    return (3 * c.hidden_size,)


GRU_WEIGHTS = (
    Weight("weight_ih", lambda c: (3 * c.hidden_size, c.input_size), "uniform", True, "W_i{r,z,n} stacked"),
    Weight("weight_hh", lambda c: (3 * c.hidden_size, c.hidden_size), "uniform", True, "W_h{r,z,n} stacked"),
    Weight("bias_ih", lambda c: _3h(c) if c.bias else None, "uniform", True, "b_i{r,z,n}"),
    Weight("bias_hh", lambda c: _3h(c) if c.bias else None, "uniform", True, "b_h{r,z,n}"),
    Weight("layer_norm_ih", lambda c: _3h(c) if c.layer_norm else None, "ones", False, "gain of LN(W_ih x)"),
    Weight("layer_norm_hh", lambda c: _3h(c) if c.layer_norm else None, "ones", False, "gain of LN(W_hh h)"),
)
GRUWeights = weights_tuple("GRUWeights", GRU_WEIGHTS)
GRUWeights.__module__ = __name__


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

    Weights: ``GRU_WEIGHTS`` below (torch.nn.GRUCell's layout, gates stacked r, z, n).

    State: ``h`` (B, H).

    Over time, the engine runs the first backend of ``rnnkit.layers.backends`` that supports
    ``cell.config``, else it loops ``step``, the reference (see ``LSTMCell``).

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
        check_bool("GRUCell", "bias", bias)
        check_bool("GRUCell", "reset_after", reset_after)
        check_bool("GRUCell", "layer_norm", layer_norm)
        check_sizes("GRUCell", input_size, hidden_size)
        check_recurrent_init("GRU", recurrent_init)
        self.config = GRUConfig(input_size, hidden_size, bias, reset_after, layer_norm)
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.reset_after, self.layer_norm = reset_after, layer_norm
        shapes = dict(present_weights(GRU_WEIGHTS, self.config))
        for row in GRU_WEIGHTS:
            shape = shapes.get(row.name)
            self.register_parameter(row.name, None if shape is None else nn.Parameter(torch.empty(shape)))
        gru_init_(self.weights(), self.config, recurrent_init)

    def weights(self) -> GRUWeights:
        """The parameters as the typed tuple the reference functions take."""
        return GRUWeights(*(getattr(self, row.name) for row in GRU_WEIGHTS))

    def backend_config(self) -> GRUConfig | None:
        """What the engine's backends are chosen by; None for a subclass with its own step."""
        own = type(self).step is GRUCell.step and type(self).project_input is GRUCell.project_input
        return self.config if own else None

    def initial_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype or self.weight_ih.dtype)

    def project_input(self, x: Tensor) -> Tensor:
        return gru_project(self.weights(), x, self.reset_after)

    def step(self, gx_t: Tensor, h_tm1: Tensor, gates: dict | None = None):
        return gru_step(self.weights(), gx_t, h_tm1, self.reset_after, gates)

    def forward(self, x_t: Tensor, h_tm1: Tensor | None = None):
        if h_tm1 is None:
            h_tm1 = self.initial_state(x_t.shape[0], x_t.device, x_t.dtype)
        return self.step(self.project_input(x_t), h_tm1)

    def extra_repr(self) -> str:
        flags = [f"{self.input_size}, {self.hidden_size}"]
        flags += ["reset_after=False"] * (not self.reset_after) + ["layer_norm=True"] * self.layer_norm
        return ", ".join(flags)


# -- the equations, once ----------------------------------------------------------------------

def gru_project(w: GRUWeights, x: Tensor, reset_after: bool, linear=F.linear, norm=gate_norm) -> Tensor:
    """Input part of the pre-activations, (..., I) -> (..., 3H).

    reset_after=True keeps ``b_hh`` for the step (``b_hn`` sits inside ``r * (.)``);
    reset_after=False folds all of ``b_hh`` in here. A backend may pass its own (equal)
    ``linear(x, weight, bias)`` and ``norm(z, gain, num_gates)``.
    """
    bias = w.bias_ih
    if bias is not None and not reset_after:
        bias = bias + w.bias_hh
    if w.layer_norm_ih is None:
        return linear(x, w.weight_ih, bias)
    gx = norm(linear(x, w.weight_ih), w.layer_norm_ih, 3)
    return gx if bias is None else gx + bias


def gru_step(w: GRUWeights, gx_t: Tensor, h_tm1: Tensor, reset_after: bool,
             gates: Optional[Dict[str, Tensor]] = None) -> Tuple[Tensor, Tensor]:
    """One step from the projected input gx_t (B, 3H): returns h (B, H), h.

    ``gates``: a dict to receive this step's activations (``reset``, ``update``,
    ``candidate``, ``hidden``; each (B, H)), for the inspector; None keeps nothing.
    The export of variant layers traces it inside torch's ``scan`` (``rnnkit.export.loop``).
    """
    weight_hh = w.weight_hh
    assert weight_hh is not None
    H = h_tm1.shape[-1]
    gain_hh, bias_hh = w.layer_norm_hh, w.bias_hh
    x_r, x_z, x_n = gx_t.chunk(3, -1)  # each (B, H)
    if reset_after:
        gh = F.linear(h_tm1, weight_hh)  # (B, 3H)
        if gain_hh is not None:
            gh = gate_norm(gh, gain_hh, 3)
        if bias_hh is not None:
            gh = gh + bias_hh
        h_r, h_z, h_n = gh.chunk(3, -1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
    else:
        gh_rz = F.linear(h_tm1, weight_hh[: 2 * H])  # (B, 2H)
        if gain_hh is not None:
            gh_rz = gate_norm(gh_rz, gain_hh[: 2 * H], 2)
        h_r, h_z = gh_rz.chunk(2, -1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        gh_n = F.linear(r * h_tm1, weight_hh[2 * H :])  # (B, H): reset before the product
        if gain_hh is not None:
            gh_n = gate_norm(gh_n, gain_hh[2 * H :], 1)
        n = torch.tanh(x_n + gh_n)
    h = n + z * (h_tm1 - n)  # = (1 - z) * n + z * h_tm1
    if gates is not None:
        gates["reset"], gates["update"], gates["candidate"], gates["hidden"] = r, z, n, h
    return h, h


def gru_init_(w: GRUWeights, config: GRUConfig, recurrent_init: str = "uniform", skip_standard: bool = False) -> None:
    """Initialise the weights (see ``GRU_WEIGHTS``); ``skip_standard``: torch.nn drew its own."""
    init_weights_(GRU_WEIGHTS, w, config.hidden_size, skip_standard)
    if recurrent_init == "orthogonal":
        orthogonal_blocks_(w.weight_hh, 3)


def _project(config: GRUConfig, w: GRUWeights, x: Tensor, linear=F.linear, norm=gate_norm) -> Tensor:
    return gru_project(w, x, config.reset_after, linear, norm)


def _step(config: GRUConfig, w: GRUWeights, gx_t: Tensor, h_tm1: Tensor, gates=None):
    return gru_step(w, gx_t, h_tm1, config.reset_after, gates)


def _h_shape(config) -> tuple:
    return ((config.hidden_size,),)


GRU_KIND = CellKind("gru", GRUConfig, GRU_WEIGHTS, GRUWeights, _project, _step, None, 3,
                   ("reset", "update", "candidate", "hidden"), _h_shape)
