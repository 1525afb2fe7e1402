"""sLSTM (xLSTM's scalar-memory LSTM): exponential input gate, a normaliser state and a stabiliser.

The equations are written once, in ``slstm_project`` and ``slstm_step`` (pure functions of the
typed weights ``SLSTMWeights``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_bool
from .base import KindCell, CellKind, Weight, check_sizes, gate_norm, init_weights_, weights_tuple

__all__ = ["SLSTMCell", "SLSTMConfig", "SLSTMWeights", "SLSTM_WEIGHTS", "SLSTM_KIND", "slstm_project", "slstm_step",
           "slstm_init_"]

SLSTMState = Tuple[Tensor, Tensor, Tensor, Tensor]  # (h, c, n, m), each (B, H)


@dataclass(frozen=True)
class SLSTMConfig:
    """Which sLSTM equations run (see ``SLSTMCell``)."""

    input_size: int  # I
    hidden_size: int  # H
    bias: bool = True  # b_{i,f,z,o}

    cell: ClassVar[str] = "slstm"


SLSTM_WEIGHTS = (
    Weight("weight_ih", lambda c: (4 * c.hidden_size, c.input_size), "uniform", False, "W_{i,f,z,o} stacked"),
    Weight("weight_hh", lambda c: (4 * c.hidden_size, c.hidden_size), "uniform", False, "R_{i,f,z,o} stacked"),
    Weight("bias_ih", lambda c: (4 * c.hidden_size,) if c.bias else None, "zeros", False,
           "b_{i,f,z,o} (slstm_init_ spreads b_f over [3, 6])"),
)
SLSTMWeights = weights_tuple("SLSTMWeights", SLSTM_WEIGHTS)
SLSTMWeights.__module__ = __name__


class SLSTMCell(KindCell):
    r"""One step of an sLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory",
    arXiv 2405.04517, section 2.2)::

        z_t = tanh   (W_z x_t + R_z h_tm1 + b_z)     # candidate (cell input)
        i_t = exp    (W_i x_t + R_i h_tm1 + b_i)     # input gate, exponential
        f_t = sigmoid(W_f x_t + R_f h_tm1 + b_f)     # forget gate
        o_t = sigmoid(W_o x_t + R_o h_tm1 + b_o)     # output gate
        c_t = f_t * c_tm1 + i_t * z_t                # cell state
        n_t = f_t * n_tm1 + i_t                      # normaliser state
        h_t = o_t * (c_t / n_t)

    ``exp`` overflows, so the step is run stabilised, as in the paper: with the pre-activations
    ``i~``, ``f~`` and ``log f_t = logsigmoid(f~_t)``::

        m_t  = max(log f_t + m_tm1, i~_t)            # stabiliser state
        i'_t = exp(i~_t - m_t)
        f'_t = exp(log f_t + m_tm1 - m_t)            # in [0, 1]

    and ``c``, ``n`` are updated with ``i'``, ``f'``: they are the plain ones times
    ``exp(-m_t)``, so ``h_t`` is unchanged. With ``n_0 = 0`` the first step gives
    ``n_1 = i'_1 > 0``, so ``c / n`` is defined.

    One head: ``R`` is a full (4H, H) matrix; the paper's block-diagonal heads (each head's
    units recurrently connected among themselves only) are not built.

    Args:
        input_size: features of ``x_t`` (I).
        hidden_size: units of ``h``, ``c``, ``n``, ``m`` (H).
        bias: learn ``b``. Default True.

    Weights (``SLSTM_WEIGHTS``): ``weight_ih`` W (4H, I) and ``weight_hh`` R (4H, H), rows
    ``[i | f | z | o]``; ``bias_ih`` b (4H,). Initialisation (``slstm_init_``): W and R from
    U(-1/sqrt(H), 1/sqrt(H)); ``b_f`` = linspace(3, 6) over the units, the other biases 0. The
    spread keeps the forget gates open (sigmoid(3..6) = 0.95..0.998) at several time scales;
    NX-AI's xlstm code uses linspace(3, 6) for its mLSTM forget gate and, by default, a
    power-law spread that depends on the block's depth ("powerlaw_blockdependent") for the
    sLSTM: we take the linear one, which needs no depth.

    State: ``(h, c, n, m)``, each (B, H), zeros initially.

    Example:
        >>> cell = SLSTMCell(3, 5)
        >>> h, (h, c, n, m) = cell(torch.randn(2, 3), cell.initial_state(2))
        >>> tuple(h.shape), bool((n > 0).all())
        ((2, 5), True)
    """

    num_gates = 4

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        check_bool("SLSTMCell", "bias", bias)
        check_sizes("SLSTMCell", input_size, hidden_size)
        self._build(SLSTM_KIND, SLSTMConfig(input_size, hidden_size, bias))


# -- the equations, once ----------------------------------------------------------------------

def slstm_project(w: SLSTMWeights, x: Tensor, linear=F.linear) -> Tensor:
    """Input part of the pre-activations, W x + b, for any leading dims: (..., I) -> (..., 4H).
    A backend may pass its own (equal) ``linear(x, weight, bias)``."""
    return linear(x, w.weight_ih, w.bias_ih)


def slstm_step(w: SLSTMWeights, wx_t: Tensor, state_tm1: SLSTMState,
               gates: Optional[Dict[str, Tensor]] = None) -> Tuple[Tensor, SLSTMState]:
    """One stabilised step from the projected input wx_t (B, 4H): returns h (B, H), (h, c, n, m).

    ``gates``: a dict to receive ``input`` (i'), ``forget`` (f'), ``candidate`` (z), ``output``
    (o), ``cell`` (the stabilised c) and ``hidden`` (h), each (B, H); None keeps nothing.
    """
    h_tm1, c_tm1, n_tm1, m_tm1 = state_tm1
    weight_hh = w.weight_hh
    assert weight_hh is not None
    pre = torch.addmm(wx_t, h_tm1, weight_hh.t())  # (B, 4H)
    i_pre, f_pre, z_pre, o_pre = pre.chunk(4, -1)  # each (B, H)
    log_f = F.logsigmoid(f_pre)
    m = torch.maximum(log_f + m_tm1, i_pre)  # the stabiliser
    i = torch.exp(i_pre - m)  # i' <= 1
    f = torch.exp(log_f + m_tm1 - m)  # f' <= 1
    z, o = torch.tanh(z_pre), torch.sigmoid(o_pre)
    c = f * c_tm1 + i * z
    n = f * n_tm1 + i
    h = o * (c / n)
    if gates is not None:
        gates["input"], gates["forget"], gates["candidate"] = i, f, z
        gates["output"], gates["cell"], gates["hidden"] = o, c, h
    return h, (h, c, n, m)


def slstm_init_(w: SLSTMWeights, config: SLSTMConfig) -> None:
    """Initialise in place: W, R ~ U(-1/sqrt(H), 1/sqrt(H)); b_f = linspace(3, 6) over the H
    units (see ``SLSTMCell``), b_i = b_z = b_o = 0."""
    init_weights_(SLSTM_WEIGHTS, w, config.hidden_size)
    if w.bias_ih is not None:
        H = config.hidden_size
        with torch.no_grad():
            w.bias_ih[H : 2 * H].copy_(torch.linspace(3.0, 6.0, H, dtype=w.bias_ih.dtype, device=w.bias_ih.device))


def _project(config: SLSTMConfig, w: SLSTMWeights, x: Tensor, linear=F.linear, norm=gate_norm) -> Tensor:
    return slstm_project(w, x, linear)


def _step(config: SLSTMConfig, w: SLSTMWeights, wx_t: Tensor, state_tm1, gates=None):
    return slstm_step(w, wx_t, state_tm1, gates)


def _state_shapes(config: SLSTMConfig) -> tuple:
    return ((config.hidden_size,),) * 4


def _init(config: SLSTMConfig, w: SLSTMWeights) -> None:
    slstm_init_(w, config)


SLSTM_KIND = CellKind("slstm", SLSTMConfig, SLSTM_WEIGHTS, SLSTMWeights, _project, _step, ("h", "c", "n", "m"), 4,
                      ("input", "forget", "candidate", "output", "cell", "hidden"), _state_shapes, _init)
