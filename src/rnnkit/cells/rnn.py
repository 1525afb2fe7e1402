"""Elman recurrent cell: the course notes' s_t = f(U x_t + W s_tm1).

The equations are written once, in ``rnn_project`` and ``rnn_step``.
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

__all__ = ["RNNCell", "RNNConfig", "RNNWeights", "RNN_WEIGHTS", "RNN_KIND", "NONLINEARITIES", "rnn_project",
           "rnn_step", "rnn_init_", "check_nonlinearity"]

NONLINEARITIES = ("tanh", "relu")


@dataclass(frozen=True)
class RNNConfig:
    """Which Elman equations run (see ``RNNCell``)."""

    input_size: int  # I (the notes' r)
    hidden_size: int  # H (the notes' s)
    bias: bool = True  # b_ih and b_hh
    nonlinearity: str = "tanh"  # f: "tanh" or "relu"

    cell: ClassVar[str] = "rnn"


RNN_WEIGHTS = (
    Weight("weight_ih", lambda c: (c.hidden_size, c.input_size), "uniform", True, "U"),
    Weight("weight_hh", lambda c: (c.hidden_size, c.hidden_size), "uniform", True, "W"),
    Weight("bias_ih", lambda c: (c.hidden_size,) if c.bias else None, "uniform", True, "b_ih"),
    Weight("bias_hh", lambda c: (c.hidden_size,) if c.bias else None, "uniform", True, "b_hh"),
)
RNNWeights = weights_tuple("RNNWeights", RNN_WEIGHTS)
RNNWeights.__module__ = __name__


class RNNCell(nn.Module):
    r"""One step of an Elman RNN, in the notes' letters (seed 000)::

        s_t = f(U x_t + b_ih + W s_tm1 + b_hh)      # the core RNN, f = tanh or relu
        o_t = softmax(V s_t)                        # the dense head, outside the cell

    ``U`` is ``weight_ih`` (H, I), ``W`` is ``weight_hh`` (H, H); the same matrices serve
    every position. ``V`` belongs to the model's head (e.g. ``rnnkit.models``), not the cell.

    Args:
        input_size: features of ``x_t`` (I, the notes' r).
        hidden_size: units of the state ``s`` (H, the notes' s).
        bias: learn ``b_ih`` and ``b_hh`` (torch.nn's layout). Default True.
        nonlinearity: "tanh" or "relu". Default "tanh".
        recurrent_init: "uniform" (torch.nn's U(-1/sqrt(H), 1/sqrt(H))) or "orthogonal"
            (with relu this is close to Le et al.'s IRNN). Default "uniform".

    State: ``s`` (B, H), which is also the output.

    Example:
        >>> cell = RNNCell(3, 5, nonlinearity="relu")
        >>> s, state = cell(torch.randn(2, 3), cell.initial_state(2))
        >>> tuple(s.shape)
        (2, 5)
    """

    num_gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        recurrent_init: str = "uniform",
    ) -> None:
        super().__init__()
        check_bool("RNNCell", "bias", bias)
        check_sizes("RNNCell", input_size, hidden_size)
        check_nonlinearity("RNNCell", nonlinearity)
        check_recurrent_init("RNNCell", recurrent_init)
        self.config = RNNConfig(input_size, hidden_size, bias, nonlinearity)
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.nonlinearity = nonlinearity
        shapes = dict(present_weights(RNN_WEIGHTS, self.config))
        for row in RNN_WEIGHTS:
            shape = shapes.get(row.name)
            self.register_parameter(row.name, None if shape is None else nn.Parameter(torch.empty(shape)))
        rnn_init_(self.weights(), self.config, recurrent_init)

    def weights(self) -> RNNWeights:
        """The parameters as the typed tuple the reference functions take."""
        return RNNWeights(*(getattr(self, row.name) for row in RNN_WEIGHTS))

    def backend_config(self) -> RNNConfig | None:
        """What the engine's backends are chosen by; None for a subclass with its own step."""
        own = type(self).step is RNNCell.step and type(self).project_input is RNNCell.project_input
        return self.config if own else None

    def initial_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype or self.weight_ih.dtype)

    def project_input(self, x: Tensor) -> Tensor:
        return rnn_project(self.weights(), x)

    def step(self, ux_t: Tensor, s_tm1: Tensor, gates: dict | None = None):
        return rnn_step(self.weights(), ux_t, s_tm1, self.nonlinearity, gates)

    def forward(self, x_t: Tensor, s_tm1: Tensor | None = None):
        if s_tm1 is None:
            s_tm1 = self.initial_state(x_t.shape[0], x_t.device, x_t.dtype)
        return self.step(self.project_input(x_t), s_tm1)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"


# -- the equations, once ----------------------------------------------------------------------

def rnn_project(w: RNNWeights, x: Tensor, linear=F.linear) -> Tensor:
    """U x + b_ih + b_hh for any leading dims: (..., I) -> (..., H)."""
    bias = None if w.bias_ih is None else w.bias_ih + w.bias_hh
    return linear(x, w.weight_ih, bias)


def rnn_step(w: RNNWeights, ux_t: Tensor, s_tm1: Tensor, nonlinearity: str,
             gates: Optional[Dict[str, Tensor]] = None) -> Tuple[Tensor, Tensor]:
    """s = f(U x + W s_tm1 + b) from the projected input ux_t (B, H); ``gates`` receives ``hidden``."""
    weight_hh = w.weight_hh
    assert weight_hh is not None
    pre = torch.addmm(ux_t, s_tm1, weight_hh.t())  # (B, H)
    s = torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)
    if gates is not None:
        gates["hidden"] = s
    return s, s


def rnn_init_(w: RNNWeights, config: RNNConfig, recurrent_init: str = "uniform", skip_standard: bool = False) -> None:
    """Initialise the weights (see ``RNN_WEIGHTS``); ``skip_standard``: torch.nn drew its own."""
    init_weights_(RNN_WEIGHTS, w, config.hidden_size, skip_standard)
    if recurrent_init == "orthogonal":
        orthogonal_blocks_(w.weight_hh, 1)


def check_nonlinearity(owner: str, nonlinearity: str) -> None:
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"{owner}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def _project(config: RNNConfig, w: RNNWeights, x: Tensor, linear=F.linear, norm=gate_norm) -> Tensor:
    return rnn_project(w, x, linear)


def _step(config: RNNConfig, w: RNNWeights, ux_t: Tensor, s_tm1: Tensor, gates=None):
    return rnn_step(w, ux_t, s_tm1, config.nonlinearity, gates)


def _h_shape(config) -> tuple:
    return ((config.hidden_size,),)


RNN_KIND = CellKind("rnn", RNNConfig, RNN_WEIGHTS, RNNWeights, _project, _step, None, 1,
                   ("hidden",), _h_shape)
