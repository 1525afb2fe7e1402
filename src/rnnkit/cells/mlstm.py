"""Matrix-memory LSTM (mLSTM, Beck et al. 2024, arXiv 2405.04517): a (d, d) memory per head.

The equations are written once, in ``mlstm_project`` and ``mlstm_step`` (pure functions of the
typed weights ``MLSTMWeights``). Every gate reads only ``x_t`` (there are no recurrent weights),
so a whole sequence can also run in a chunkwise parallel form
(``rnnkit.kernels.mlstm_chunkwise.mlstm_sequence``), tested against this step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_bool, check_size
from .base import KindCell, CellKind, Weight, check_sizes, gate_norm, init_weights_, weights_tuple

__all__ = ["MLSTMCell", "MLSTMConfig", "MLSTMWeights", "MLSTM_WEIGHTS", "MLSTM_KIND", "mlstm_project", "mlstm_step",
           "mlstm_init_", "mlstm_split", "check_heads"]

MLSTMState = Tuple[Tensor, Tensor, Tensor, Tensor]  # (h, C, n, m)


@dataclass(frozen=True)
class MLSTMConfig:
    """Which mLSTM equations run (see ``MLSTMCell``)."""

    input_size: int  # I
    hidden_size: int  # H = NH * d
    bias: bool = True  # bias_ih
    num_heads: int = 1  # NH: independent (d, d) memories, d = H / NH

    cell: ClassVar[str] = "mlstm"


def _rows(c) -> int:
    """Rows of the projection: q, k, v, o (H each) and the gates i, f (one per head)."""
    return 4 * c.hidden_size + 2 * c.num_heads


MLSTM_WEIGHTS = (
    Weight("weight_ih", lambda c: (_rows(c), c.input_size), "uniform", False, "W_q, W_k, W_v, w_i, w_f, W_o stacked"),
    Weight("bias_ih", lambda c: (_rows(c),) if c.bias else None, "uniform", False, "b_q, b_k, b_v, b_i, b_f, b_o"),
)
MLSTMWeights = weights_tuple("MLSTMWeights", MLSTM_WEIGHTS)
MLSTMWeights.__module__ = __name__


def check_heads(owner: str, hidden_size: int, num_heads: int) -> None:
    """num_heads: a positive int that divides hidden_size."""
    check_size(owner, "num_heads", num_heads)
    if hidden_size % num_heads:
        raise ValueError(f"{owner}: hidden_size must be divisible by num_heads={num_heads}, got {hidden_size}")


class MLSTMCell(KindCell):
    r"""One step of an mLSTM (Beck et al. 2024, "xLSTM", arXiv 2405.04517, section 2.3).

    The long-term memory is a matrix ``C`` per head (d = H / NH units each): the step writes the
    value ``v_t`` under the key ``k_t`` and reads it back with the query ``q_t``, like linear
    attention with forget and learn gates. Per head, from ``x_t`` alone::

        q_t = W_q x_t + b_q                       # query (d)
        k_t = (W_k x_t + b_k) / sqrt(d)           # key (d); the paper leaves b_k outside the 1/sqrt(d)
        v_t = W_v x_t + b_v                       # value (d)
        i~_t = w_i^T x_t + b_i ; f~_t = w_f^T x_t + b_f    # one scalar each per head
        i_t = exp(i~_t)                           # learn (input) gate
        f_t = sigmoid(f~_t)                       # forget gate
        o_t = sigmoid(W_o x_t + b_o)              # use (output) gate, H wide
        C_t = f_t C_tm1 + i_t v_t k_t^T           # remember: new matrix memory (d, d)
        n_t = f_t n_tm1 + i_t k_t                 # normaliser (d)
        h~_t = C_t q_t / max(|n_t^T q_t|, 1)
        h_t = o_t * h~_t                          # heads concatenated, H wide

    ``exp`` overflows, so the step is stabilised as in the paper's appendix: with
    ``m_t = max(log f_t + m_tm1, i~_t)``, ``i'_t = exp(i~_t - m_t)`` and
    ``f'_t = exp(log f_t + m_tm1 - m_t)`` replace ``i_t`` and ``f_t``; ``C`` and ``n`` are then
    stored scaled by ``exp(-m_t)`` and the normaliser becomes ``max(|n_t^T q_t|, exp(-m_t))``:
    ``h_t`` is the same.

    Args:
        input_size: features of ``x_t`` (I).
        hidden_size: units of ``h`` (H), a multiple of ``num_heads``.
        bias: learn ``bias_ih``. Default True.
        num_heads: heads (NH), each with its own (d, d) memory. Default 1.

    Weights: ``MLSTM_WEIGHTS``: one projection ``weight_ih`` (4H + 2NH, I) with rows
    ``[q (H) | k (H) | v (H) | i (NH) | f (NH) | o (H)]`` (head j owns units j*d .. (j+1)*d of
    q, k, v, o and row j of i, f), and ``bias_ih`` (4H + 2NH). Init: see ``mlstm_init_``.

    State: ``(h, C, n, m)``: ``h`` (B, H), ``C`` (B, NH, d, d) indexed [value unit, key unit],
    ``n`` (B, NH, d), ``m`` (B, NH); zeros at first.

    Example:
        >>> cell = MLSTMCell(3, 8, num_heads=2)
        >>> h, (h, C, n, m) = cell(torch.randn(5, 3), cell.initial_state(5))
        >>> tuple(h.shape), tuple(C.shape), tuple(n.shape), tuple(m.shape)
        ((5, 8), (5, 2, 4, 4), (5, 2, 4), (5, 2))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, num_heads: int = 1) -> None:
        super().__init__()
        check_bool("MLSTMCell", "bias", bias)
        check_sizes("MLSTMCell", input_size, hidden_size)
        check_heads("MLSTMCell", hidden_size, num_heads)
        self._build(MLSTM_KIND, MLSTMConfig(input_size, hidden_size, bias, num_heads))
        self.num_heads = num_heads


# -- the equations, once ----------------------------------------------------------------------

def mlstm_project(w: MLSTMWeights, x: Tensor, linear=F.linear) -> Tensor:
    """Every pre-activation of all steps at once, (..., I) -> (..., 4H + 2NH): ``W_ih x + b_ih``.

    A backend may pass its own (equal) ``linear(x, weight, bias)``.
    """
    return linear(x, w.weight_ih, w.bias_ih)


def mlstm_split(xp: Tensor, num_heads: int):
    """Split projected inputs (..., 4H + 2NH) into the per-head pieces of the equations.

    Returns ``q, k, v`` (..., NH, d) with ``k`` already divided by sqrt(d), ``i_tilde`` and
    ``f_tilde`` (..., NH) and ``o_tilde`` (..., H) (before its sigmoid).
    """
    NH = num_heads
    H = (xp.shape[-1] - 2 * NH) // 4
    d = H // NH
    q, k, v, i_tilde, f_tilde, o_tilde = xp.split([H, H, H, NH, NH, H], -1)
    heads = xp.shape[:-1] + (NH, d)
    return q.reshape(heads), k.reshape(heads) / math.sqrt(d), v.reshape(heads), i_tilde, f_tilde, o_tilde


def mlstm_step(w: MLSTMWeights, xp_t: Tensor, state_tm1: MLSTMState, num_heads: int = 1,
               gates: Optional[Dict[str, Tensor]] = None) -> Tuple[Tensor, MLSTMState]:
    """One stabilised step from the projected input xp_t (B, 4H + 2NH): returns h (B, H), (h, C, n, m).

    ``w`` is unused (every weight acts in ``mlstm_project``); it is taken as every cell's step
    takes it. ``gates``: a dict to receive this step's activations (``input`` = i'_t, ``forget``
    = f'_t, each head's scalar repeated over its d units, ``output`` = o_t, ``hidden`` = h_t;
    each (B, H)), for the inspector; None keeps nothing.
    """
    _, C_tm1, n_tm1, m_tm1 = state_tm1
    q, k, v, i_tilde, f_tilde, o_tilde = mlstm_split(xp_t, num_heads)  # (B, NH, d) x3, (B, NH) x2, (B, H)
    B, NH, d = q.shape
    log_f = F.logsigmoid(f_tilde)  # (B, NH)
    m = torch.maximum(log_f + m_tm1, i_tilde)  # the stabiliser
    i = torch.exp(i_tilde - m)  # i'_t, learn
    f = torch.exp(log_f + m_tm1 - m)  # f'_t, forget
    C = f[..., None, None] * C_tm1 + i[..., None, None] * (v.unsqueeze(-1) * k.unsqueeze(-2))  # (B, NH, d, d)
    n = f[..., None] * n_tm1 + i[..., None] * k  # (B, NH, d)
    numerator = (C @ q.unsqueeze(-1)).squeeze(-1)  # (B, NH, d): C_t q_t
    denominator = torch.maximum((n * q).sum(-1).abs(), torch.exp(-m))  # (B, NH)
    h_tilde = (numerator / denominator.unsqueeze(-1)).reshape(B, NH * d)  # (B, H)
    o = torch.sigmoid(o_tilde)  # use
    h = o * h_tilde
    if gates is not None:
        gates["input"] = i.unsqueeze(-1).expand(B, NH, d).reshape(B, NH * d)
        gates["forget"] = f.unsqueeze(-1).expand(B, NH, d).reshape(B, NH * d)
        gates["output"], gates["hidden"] = o, h
    return h, (h, C, n, m)


def mlstm_init_(w: MLSTMWeights, config: MLSTMConfig) -> None:
    """Initialise the weights: U(-1/sqrt(H), 1/sqrt(H)) as the table says, then (with a bias)
    the forget-gate biases spread linearly over the heads in [3, 6] (f starts near
    sigmoid(3..6) ~ 0.95..0.998, so the memory lasts) and the input-gate biases at 0: the
    choice of the paper's code, NX-AI's xlstm (``mLSTMCell.reset_parameters``; it also zeroes
    the two gates' weights and draws the input bias from N(0, 0.1), which we do not).
    """
    init_weights_(MLSTM_WEIGHTS, w, config.hidden_size)
    if w.bias_ih is None:
        return
    H, NH = config.hidden_size, config.num_heads
    with torch.no_grad():
        w.bias_ih[3 * H : 3 * H + NH].zero_()  # input gate
        w.bias_ih[3 * H + NH : 3 * H + 2 * NH].copy_(torch.linspace(3.0, 6.0, NH))  # forget gate


def _state_shapes(config: MLSTMConfig) -> tuple:
    H, NH = config.hidden_size, config.num_heads
    d = H // NH
    return (H,), (NH, d, d), (NH, d), (NH,)


def _project(config: MLSTMConfig, w: MLSTMWeights, x: Tensor, linear=F.linear, norm=gate_norm) -> Tensor:
    return mlstm_project(w, x, linear)


def _step(config: MLSTMConfig, w: MLSTMWeights, xp_t: Tensor, state_tm1, gates=None):
    return mlstm_step(w, xp_t, state_tm1, config.num_heads, gates)


def _init(config: MLSTMConfig, w: MLSTMWeights) -> None:
    mlstm_init_(w, config)


# num_gates = 4: the projection is 4H + 2NH wide (q, k, v, o and a scalar i, f per head)
MLSTM_KIND = CellKind("mlstm", MLSTMConfig, MLSTM_WEIGHTS, MLSTMWeights, _project, _step, ("h", "C", "n", "m"), 4,
                      ("input", "forget", "output", "hidden"), _state_shapes, _init)
