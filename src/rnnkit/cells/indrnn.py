"""Independently recurrent neural network (IndRNN): each unit sees only its own past.

The equations are written once, in ``indrnn_project`` and ``indrnn_step`` (pure functions of the
typed weights ``IndRNNWeights``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_bool, check_choice
from .base import KindCell, CellKind, Weight, check_sizes, gate_norm, init_weights_, weights_tuple

__all__ = ["IndRNNCell", "IndRNNConfig", "IndRNNWeights", "INDRNN_WEIGHTS", "INDRNN_KIND", "indrnn_project",
           "indrnn_step", "indrnn_init_"]

INDRNN_NONLINEARITIES = ("relu", "tanh")


@dataclass(frozen=True)
class IndRNNConfig:
    """Which IndRNN equations run (see ``IndRNNCell``)."""

    input_size: int  # I
    hidden_size: int  # H
    bias: bool = True  # b
    nonlinearity: str = "relu"  # sigma: "relu" (the paper's) or "tanh"

    cell: ClassVar[str] = "indrnn"


INDRNN_WEIGHTS = (
    Weight("weight_ih", lambda c: (c.hidden_size, c.input_size), "uniform", False, "W"),
    Weight("weight_hh", lambda c: (c.hidden_size,), "uniform", False,
           "u, one recurrent weight per unit (indrnn_init_ draws it from U(0, 1))"),
    Weight("bias_ih", lambda c: (c.hidden_size,) if c.bias else None, "zeros", False, "b"),
)
IndRNNWeights = weights_tuple("IndRNNWeights", INDRNN_WEIGHTS)
IndRNNWeights.__module__ = __name__


class IndRNNCell(KindCell):
    r"""One step of an IndRNN (Li et al. 2018, "Independently Recurrent Neural Network (IndRNN):
    Building A Longer and Deeper RNN", arXiv 1803.04831)::

        h_t = sigma(W x_t + u * h_tm1 + b)      # u: a vector, so unit n sees only its own h_tm1[n]

    The recurrent weight is a vector ``u`` (H,) instead of a matrix: the units are independent in
    time and mix only across layers (stack several). The gradient through ``T`` steps scales by
    ``u_n^T`` per unit, so the paper constrains ``|u_n|`` to a range derived from T: a cap
    against explosion (e.g. ``2^(1/T)``) and, for units that must keep long memory, a floor
    close to 1 (e.g. ``(1/2)^(1/T)``). rnnkit enforces no bound (clip ``weight_hh`` after each
    optimiser step if a task needs it).

    Args:
        input_size: features of ``x_t`` (I).
        hidden_size: units of ``h`` (H).
        bias: learn ``b``. Default True.
        nonlinearity: sigma, "relu" (the paper's) or "tanh". Default "relu".

    Weights (``INDRNN_WEIGHTS``): ``weight_ih`` W (H, I), ``weight_hh`` u (H,), ``bias_ih`` b (H,).
    Initialisation (``indrnn_init_``): W from U(-1/sqrt(H), 1/sqrt(H)), b = 0, and u from
    U(0, 1), the paper's setting for its long-sequence tasks (adding problem, sequential MNIST).

    State: ``h`` (B, H), which is also the output.

    Example:
        >>> cell = IndRNNCell(3, 5)
        >>> h, state = cell(torch.randn(2, 3), cell.initial_state(2))
        >>> tuple(h.shape), bool((h >= 0).all())
        ((2, 5), True)
    """

    num_gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "relu") -> None:
        super().__init__()
        check_bool("IndRNNCell", "bias", bias)
        check_sizes("IndRNNCell", input_size, hidden_size)
        check_choice("IndRNNCell", "nonlinearity", nonlinearity, INDRNN_NONLINEARITIES)
        self._build(INDRNN_KIND, IndRNNConfig(input_size, hidden_size, bias, nonlinearity))
        self.nonlinearity = nonlinearity


# -- the equations, once ----------------------------------------------------------------------

def indrnn_project(w: IndRNNWeights, x: Tensor, linear=F.linear) -> Tensor:
    """W x + b for any leading dims: (..., I) -> (..., H). A backend may pass its own (equal)
    ``linear(x, weight, bias)``."""
    return linear(x, w.weight_ih, w.bias_ih)


def indrnn_step(w: IndRNNWeights, wx_t: Tensor, h_tm1: Tensor, nonlinearity: str,
                gates: Optional[Dict[str, Tensor]] = None) -> Tuple[Tensor, Tensor]:
    """h = sigma(W x + u * h_tm1 + b) from the projected input wx_t (B, H): returns h (B, H), h.

    ``gates``: a dict to receive ``preactivation`` (the argument of sigma: with relu, where it
    is negative the unit is silent) and ``hidden``, each (B, H); None keeps nothing.
    """
    u = w.weight_hh
    assert u is not None
    pre = torch.addcmul(wx_t, u, h_tm1)  # (B, H): u * h_tm1 element-wise, no matrix product
    h = torch.relu(pre) if nonlinearity == "relu" else torch.tanh(pre)
    if gates is not None:
        gates["preactivation"], gates["hidden"] = pre, h
    return h, h


def indrnn_init_(w: IndRNNWeights, config: IndRNNConfig) -> None:
    """Initialise in place: W ~ U(-1/sqrt(H), 1/sqrt(H)), b = 0, u ~ U(0, 1) (arXiv 1803.04831's
    setting for long sequences; no bound on |u| is enforced, see ``IndRNNCell``)."""
    init_weights_(INDRNN_WEIGHTS, w, config.hidden_size)
    with torch.no_grad():
        w.weight_hh.uniform_(0.0, 1.0)


def _project(config: IndRNNConfig, w: IndRNNWeights, x: Tensor, linear=F.linear, norm=gate_norm) -> Tensor:
    return indrnn_project(w, x, linear)


def _step(config: IndRNNConfig, w: IndRNNWeights, wx_t: Tensor, h_tm1: Tensor, gates=None):
    return indrnn_step(w, wx_t, h_tm1, config.nonlinearity, gates)


def _state_shapes(config: IndRNNConfig) -> tuple:
    return ((config.hidden_size,),)


def _init(config: IndRNNConfig, w: IndRNNWeights) -> None:
    indrnn_init_(w, config)


INDRNN_KIND = CellKind("indrnn", IndRNNConfig, INDRNN_WEIGHTS, IndRNNWeights, _project, _step, None, 1,
                       ("preactivation", "hidden"), _state_shapes, _init)
