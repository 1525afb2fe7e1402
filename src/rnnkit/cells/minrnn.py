"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", arXiv 2410.01201).

The GRU and the LSTM with every gate reading only the input ``x_t``: the recurrence is then
``h_t = a_t * h_{t-1} + b_t`` with ``a`` and ``b`` known for all steps after one matrix product,
so it can be solved over time in parallel (``rnnkit.kernels.scan``) instead of step by step.
The equations are written once, in ``mingru_coefficients`` / ``minlstm_coefficients``: the
reference step applies them to one step, the "scan" backend to the whole sequence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_bool
from .base import CellKind, KindCell, Weight, check_sizes, gate_norm, weights_tuple

__all__ = ["MinGRUConfig", "MinLSTMConfig", "MinGRUWeights", "MinLSTMWeights", "MINGRU_WEIGHTS", "MINLSTM_WEIGHTS",
           "MinGRUCell", "MinLSTMCell", "MINGRU_KIND", "MINLSTM_KIND", "min_project", "mingru_coefficients",
           "minlstm_coefficients", "positive"]


@dataclass(frozen=True)
class MinGRUConfig:
    """Which minGRU equations run (see ``MinGRUCell``)."""

    input_size: int  # I
    hidden_size: int  # H
    bias: bool = True  # b of the input product

    cell: ClassVar[str] = "mingru"


@dataclass(frozen=True)
class MinLSTMConfig:
    """Which minLSTM equations run (see ``MinLSTMCell``)."""

    input_size: int  # I
    hidden_size: int  # H
    bias: bool = True

    cell: ClassVar[str] = "minlstm"


def _table(gates: int, doc: str) -> tuple:
    return (
        Weight("weight_ih", lambda c: (gates * c.hidden_size, c.input_size), "uniform", False, f"W_{doc} stacked"),
        Weight("bias_ih", lambda c: (gates * c.hidden_size,) if c.bias else None, "uniform", False, f"b_{doc}"),
    )


MINGRU_WEIGHTS = _table(2, "{z,h}")
MINLSTM_WEIGHTS = _table(3, "{f,i,h}")
MinGRUWeights = weights_tuple("MinGRUWeights", MINGRU_WEIGHTS)
MinLSTMWeights = weights_tuple("MinLSTMWeights", MINLSTM_WEIGHTS)
MinGRUWeights.__module__ = MinLSTMWeights.__module__ = __name__


# -- the equations, once ----------------------------------------------------------------------

def positive(x: Tensor) -> Tensor:
    """The paper's g: x + 0.5 for x >= 0, sigmoid(x) below; continuous, always > 0."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def min_project(w, x: Tensor, linear=F.linear) -> Tensor:
    """Every gate's pre-activation from the input alone, (..., I) -> (..., G*H)."""
    return linear(x, w.weight_ih, w.bias_ih)


def mingru_coefficients(xp: Tensor, gates: Optional[Dict[str, Tensor]] = None) -> Tuple[Tensor, Tensor]:
    """minGRU's recurrence ``h_t = a_t * h_{t-1} + b_t`` from the projected input (..., 2H).

    z_t = sigmoid(W_z x_t + b_z), h~_t = g(W_h x_t + b_h): a = 1 - z, b = z * h~. Any leading
    dims: one step (B, 2H) or a whole sequence (T, B, 2H).
    """
    k, x_h = xp.chunk(2, -1)
    z = torch.sigmoid(k)
    h_tilde = positive(x_h)
    if gates is not None:
        gates["update"], gates["candidate"] = z, h_tilde
    return 1 - z, z * h_tilde


def minlstm_coefficients(xp: Tensor, gates: Optional[Dict[str, Tensor]] = None) -> Tuple[Tensor, Tensor]:
    """minLSTM's recurrence from the projected input (..., 3H).

    f_t = sigmoid(W_f x_t + b_f), i_t = sigmoid(W_i x_t + b_i), h~_t = g(W_h x_t + b_h), normalised
    f'_t = f_t / (f_t + i_t), i'_t = i_t / (f_t + i_t) (computed from log-sigmoids, so that two
    saturated gates do not divide 0 by 0): a = f', b = i' * h~.
    """
    x_f, x_i, x_h = xp.chunk(3, -1)
    log_f, log_i = F.logsigmoid(x_f), F.logsigmoid(x_i)
    log_sum = torch.logaddexp(log_f, log_i)
    f, i = torch.exp(log_f - log_sum), torch.exp(log_i - log_sum)
    h_tilde = positive(x_h)
    if gates is not None:
        gates["forget"], gates["input"], gates["candidate"] = f, i, h_tilde
    return f, i * h_tilde


def _min_step(coefficients, xp_t: Tensor, h_tm1: Tensor, gates: Optional[Dict[str, Tensor]] = None):
    a, b = coefficients(xp_t, gates)
    h = torch.addcmul(b, a, h_tm1)  # a * h_{t-1} + b
    if gates is not None:
        gates["hidden"] = h
    return h, h


# -- the cells --------------------------------------------------------------------------------

class MinGRUCell(KindCell):
    r"""One step of minGRU (Feng et al. 2024, arXiv 2410.01201, section 3.1 and appendix)::

        z_t = sigmoid(W_z x_t + b_z)                 # update gate: the input only
        h~_t = g(W_h x_t + b_h)                      # candidate, g(x) = x + 0.5 (x >= 0), sigmoid(x) (x < 0)
        h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

    No recurrent weights: the only path from h_{t-1} to h_t is the gated sum, linear in h, so a
    whole sequence is solved by a parallel scan. g keeps the candidate positive, as the paper's
    log-space scan needs (ours works in linear space, but the equations stay the paper's).

    Args:
        input_size: features of ``x_t`` (I).
        hidden_size: units of ``h`` (H).
        bias: learn ``b``. Default True.

    Weights: ``weight_ih`` (2H, I) (rows z, h), ``bias_ih`` (2H). State: ``h`` (B, H).

    Example:
        >>> cell = MinGRUCell(3, 5)
        >>> h, state = cell(torch.randn(2, 3))
        >>> tuple(h.shape)
        (2, 5)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        _check("MinGRUCell", input_size, hidden_size, bias)
        self._build(MINGRU_KIND, MinGRUConfig(input_size, hidden_size, bias))


class MinLSTMCell(KindCell):
    r"""One step of minLSTM (Feng et al. 2024, arXiv 2410.01201, section 3.2 and appendix)::

        f_t = sigmoid(W_f x_t + b_f)                 # forget gate
        i_t = sigmoid(W_i x_t + b_i)                 # input gate
        h~_t = g(W_h x_t + b_h)                      # candidate (g as minGRU's)
        f'_t, i'_t = f_t / (f_t + i_t), i_t / (f_t + i_t)   # normalised: time-independent scale
        h_t = f'_t * h_{t-1} + i'_t * h~_t

    The cell state and the output gate of the LSTM are gone; the hidden state is the memory.

    Args: as ``MinGRUCell``'s. Weights: ``weight_ih`` (3H, I) (rows f, i, h), ``bias_ih`` (3H).
    State: ``h`` (B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        _check("MinLSTMCell", input_size, hidden_size, bias)
        self._build(MINLSTM_KIND, MinLSTMConfig(input_size, hidden_size, bias))


def _check(owner: str, input_size, hidden_size, bias) -> None:
    check_bool(owner, "bias", bias)
    check_sizes(owner, input_size, hidden_size)


def _project(config, w, x: Tensor, linear=F.linear, norm=gate_norm) -> Tensor:
    return min_project(w, x, linear)


def _h_shape(config) -> tuple:
    return ((config.hidden_size,),)


def _kind(name: str, config: type, table: tuple, weights: type, coefficients, num_gates: int,
          gates: tuple) -> CellKind:
    def step(config, w, xp_t, h_tm1, gates=None):
        return _min_step(coefficients, xp_t, h_tm1, gates)

    return CellKind(name, config, table, weights, _project, step, None, num_gates, gates, _h_shape)


MINGRU_KIND = _kind("mingru", MinGRUConfig, MINGRU_WEIGHTS, MinGRUWeights, mingru_coefficients, 2,
                    ("update", "candidate", "hidden"))
MINLSTM_KIND = _kind("minlstm", MinLSTMConfig, MINLSTM_WEIGHTS, MinLSTMWeights, minlstm_coefficients, 3,
                     ("forget", "input", "candidate", "hidden"))
