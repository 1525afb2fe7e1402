"""Simple recurrent unit (SRU): all matrix products read x_t only; c recurs element-wise.

The equations are written once, in ``sru_project`` and ``sru_step`` (pure functions of the typed
weights ``SRUWeights``); ``sru_coefficients`` and ``sru_output`` split a whole sequence's step
around its linear recurrence, for a parallel scan.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_bool
from .base import KindCell, CellKind, Weight, check_sizes, gate_norm, init_weights_, weights_tuple

__all__ = ["SRUCell", "SRUConfig", "SRUWeights", "SRU_WEIGHTS", "SRU_KIND", "sru_project", "sru_step",
           "sru_coefficients", "sru_output", "sru_init_"]


@dataclass(frozen=True)
class SRUConfig:
    """Which SRU equations run (see ``SRUCell``)."""

    input_size: int  # I
    hidden_size: int  # H
    bias: bool = True  # b_f, b_r
    peephole: bool = False  # v_f, v_r look at c_tm1 (the 2018 form); False: c is linear in c_tm1

    cell: ClassVar[str] = "sru"


def _ih_rows(c) -> int:
    """3H rows [x~ | f | r], plus H rows of the skip projection W_s when I != H."""
    return (3 if c.input_size == c.hidden_size else 4) * c.hidden_size


SRU_WEIGHTS = (
    Weight("weight_ih", lambda c: (_ih_rows(c), c.input_size), "uniform", False, "W, W_f, W_r [, W_s] stacked"),
    Weight("bias_ih", lambda c: (2 * c.hidden_size,) if c.bias else None, "zeros", False, "b_f, b_r"),
    Weight("weight_c", lambda c: (2 * c.hidden_size,) if c.peephole else None, "uniform", False, "v_f, v_r"),
)
SRUWeights = weights_tuple("SRUWeights", SRU_WEIGHTS)
SRUWeights.__module__ = __name__


class SRUCell(KindCell):
    r"""One step of an SRU (Lei et al. 2018, "Simple Recurrent Units for Highly Parallelizable
    Recurrence", arXiv 1709.02755)::

        x~_t = W x_t                                           # candidate
        f_t  = sigmoid(W_f x_t [+ v_f * c_tm1] + b_f)          # forget gate
        r_t  = sigmoid(W_r x_t [+ v_r * c_tm1] + b_r)          # reset (highway) gate
        c_t  = f_t * c_tm1 + (1 - f_t) * x~_t                  # the memory, element-wise
        h_t  = r_t * c_t + (1 - r_t) * x'_t                    # highway to the input

    ``x'_t = x_t`` when I == H, else ``W_s x_t``. The bracketed terms are the element-wise
    peephole weights of the 2018 version (``peephole=True``); without them (the 2017 form) every
    gate reads ``x_t`` alone, so ``c_t`` is linear in ``c_tm1`` and the whole sequence solves
    by a parallel scan (``sru_coefficients``, ``sru_output``). Not built: the optional
    activation ``g(c_t)`` of the first version (here the identity, as in the 2018 paper) and the
    paper's rescaling of the highway term for its initialisation.

    Args:
        input_size: features of ``x_t`` (I).
        hidden_size: units of ``c`` and ``h`` (H).
        bias: learn ``b_f`` and ``b_r``. Default True.
        peephole: add ``v_f`` and ``v_r``. Default False.

    Weights (``SRU_WEIGHTS``): ``weight_ih`` (3H or 4H, I), rows ``[W | W_f | W_r | W_s]``
    (``W_s`` only when I != H); ``bias_ih`` (2H,) ``[b_f | b_r]``; ``weight_c`` (2H,)
    ``[v_f | v_r]``. Initialisation: weights U(-1/sqrt(H), 1/sqrt(H)), both biases 0 (the
    official implementation's default, ``highway_bias=0``).

    The projection ``sru_project`` (..., 4H) holds everything a step needs: ``[W x | W_f x + b_f
    | W_r x + b_r | x']`` (x itself appended when I == H).

    State: ``(h, c)``, each (B, H); ``h`` first by rnnkit's convention, though only ``c`` recurs.

    Example:
        >>> cell = SRUCell(3, 5, peephole=True)
        >>> h, (h, c) = cell(torch.randn(2, 3), cell.initial_state(2))
        >>> tuple(h.shape), tuple(c.shape)
        ((2, 5), (2, 5))
    """

    num_gates = 4

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, peephole: bool = False) -> None:
        super().__init__()
        check_bool("SRUCell", "bias", bias)
        check_bool("SRUCell", "peephole", peephole)
        check_sizes("SRUCell", input_size, hidden_size)
        self._build(SRU_KIND, SRUConfig(input_size, hidden_size, bias, peephole))
        self.peephole = peephole


# -- the equations, once ----------------------------------------------------------------------

def sru_project(w: SRUWeights, x: Tensor, hidden_size: int, linear=F.linear) -> Tensor:
    """Everything a step reads of x_t, for any leading dims: (..., I) -> (..., 4H), the blocks
    ``[W x | W_f x + b_f | W_r x + b_r | x']`` with ``x' = x`` (I == H) or ``W_s x``.

    ``hidden_size`` tells the two layouts of ``weight_ih`` apart. A backend may pass its own
    (equal) ``linear(x, weight, bias)``.
    """
    H = hidden_size
    weight, b = w.weight_ih, w.bias_ih
    skip_is_x = weight.shape[0] == 3 * H  # no W_s: x' = x
    bias = None
    if b is not None:  # no bias on the candidate (nor on W_s x)
        zeros = b.new_zeros(H)
        bias = torch.cat([zeros, b] if skip_is_x else [zeros, b, zeros])
    xp = linear(x, weight, bias)  # (..., 3H or 4H)
    return torch.cat([xp, x], -1) if skip_is_x else xp


def sru_step(w: SRUWeights, xp_t: Tensor, state_tm1: Tuple[Tensor, Tensor],
             gates: Optional[Dict[str, Tensor]] = None) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
    """One step from the projected input xp_t (B, 4H): returns h (B, H), (h, c).

    ``gates``: a dict to receive ``forget``, ``reset``, ``cell`` and ``hidden`` (each (B, H)),
    for the inspector; None keeps nothing.
    """
    _, c_tm1 = state_tm1  # h_tm1 is not read: only c recurs
    x_tilde, f, r, x_skip = xp_t.chunk(4, -1)  # each (B, H)
    v = w.weight_c
    if v is not None:
        v_f, v_r = v.chunk(2)
        f = f + v_f * c_tm1
        r = r + v_r * c_tm1
    f, r = torch.sigmoid(f), torch.sigmoid(r)
    c = f * c_tm1 + (1 - f) * x_tilde
    h = r * c + (1 - r) * x_skip
    if gates is not None:
        gates["forget"], gates["reset"], gates["cell"], gates["hidden"] = f, r, c, h
    return h, (h, c)


def sru_coefficients(w: SRUWeights, xp: Tensor, peephole: bool = False) -> Tuple[Tensor, Tensor]:
    """The coefficients of ``c_t = a_t * c_tm1 + b_t`` over a whole projected sequence.

    Args:
        w: the weights (read only to check that there are no peephole weights).
        xp: (T, B, 4H), ``sru_project``'s output.
        peephole: must be False: with ``v_f`` the forget gate reads ``c_tm1`` and the
            recurrence is no longer linear.

    Returns:
        a = f_t and b = (1 - f_t) * x~_t, each (T, B, H).
    """
    if peephole:
        raise ValueError("sru_coefficients: peephole must be False (c_t is linear in c_tm1 only without "
                         "v_f, v_r), got True")
    if w.weight_c is not None:
        raise ValueError("sru_coefficients: w.weight_c must be None (no peephole weights), got a tensor")
    x_tilde, f, _, _ = xp.chunk(4, -1)  # each (T, B, H)
    f = torch.sigmoid(f)
    return f, (1 - f) * x_tilde


def sru_output(w: SRUWeights, xp: Tensor, c: Tensor, c0: Tensor | None = None) -> Tensor:
    """Every ``h_t = r_t * c_t + (1 - r_t) * x'_t`` at once from every ``c_t``.

    Args:
        w: the weights.
        xp: (T, B, 4H), ``sru_project``'s output.
        c: (T, B, H), the cell state after each step.
        c0: (B, H), the cell state before the first step; needed only with peephole weights
            (``r_t`` reads ``c_tm1``).

    Returns:
        h: (T, B, H).
    """
    _, _, r, x_skip = xp.chunk(4, -1)  # each (T, B, H)
    v = w.weight_c
    if v is not None:
        if c0 is None:
            raise ValueError("sru_output: c0 must be the (B, H) state before the first step when w has "
                             "peephole weights, got None")
        c_tm1 = torch.cat([c0.unsqueeze(0), c[:-1]])  # (T, B, H)
        r = r + v.chunk(2)[1] * c_tm1
    r = torch.sigmoid(r)
    return r * c + (1 - r) * x_skip


def sru_init_(w: SRUWeights, config: SRUConfig) -> None:
    """Initialise in place as ``SRU_WEIGHTS`` says: weights U(-1/sqrt(H), 1/sqrt(H)), biases 0."""
    init_weights_(SRU_WEIGHTS, w, config.hidden_size)


def _project(config: SRUConfig, w: SRUWeights, x: Tensor, linear=F.linear, norm=gate_norm) -> Tensor:
    return sru_project(w, x, config.hidden_size, linear)


def _step(config: SRUConfig, w: SRUWeights, xp_t: Tensor, state_tm1, gates=None):
    return sru_step(w, xp_t, state_tm1, gates)


def _state_shapes(config: SRUConfig) -> tuple:
    return ((config.hidden_size,), (config.hidden_size,))


def _init(config: SRUConfig, w: SRUWeights) -> None:
    sru_init_(w, config)


SRU_KIND = CellKind("sru", SRUConfig, SRU_WEIGHTS, SRUWeights, _project, _step, ("h", "c"), 4,
                    ("forget", "reset", "cell", "hidden"), _state_shapes, _init)
