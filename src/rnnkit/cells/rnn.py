"""Elman recurrent cell: the course notes' s_t = f(U x_t + W s_tm1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import _check_recurrent_init, _check_sizes, _orthogonal_blocks_, _uniform_

__all__ = ["RNNCell"]

_NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


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
        _check_sizes("RNNCell", input_size, hidden_size)
        _check_nonlinearity("RNNCell", nonlinearity)
        _check_recurrent_init("RNNCell", recurrent_init)
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.nonlinearity = nonlinearity
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))  # U
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))  # W
        self.bias_ih = nn.Parameter(torch.empty(hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(hidden_size)) if bias else None
        for w in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            _uniform_(w, hidden_size)
        if recurrent_init == "orthogonal":
            _orthogonal_blocks_(self.weight_hh, 1)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype or self.weight_ih.dtype)

    def project_input(self, x: Tensor) -> Tensor:
        return rnn_project(self, x)

    def step(self, ux_t: Tensor, s_tm1: Tensor):
        return rnn_step(self, ux_t, s_tm1)

    def forward(self, x_t: Tensor, s_tm1: Tensor | None = None):
        if s_tm1 is None:
            s_tm1 = self.initial_state(x_t.shape[0], x_t.device, x_t.dtype)
        return self.step(self.project_input(x_t), s_tm1)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"


# Shared by RNNCell and rnnkit.RNN: `p` carries the weights under RNNCell's attribute names
# and a `nonlinearity`.

def rnn_project(p, x: Tensor) -> Tensor:
    """U x + b_ih + b_hh for any leading dims: (..., I) -> (..., H)."""
    bias = None if p.bias_ih is None else p.bias_ih + p.bias_hh
    return F.linear(x, p.weight_ih, bias)


def rnn_step(p, ux_t: Tensor, s_tm1: Tensor):
    """s = f(U x + W s_tm1 + b) from the projected input ux_t (B, H)."""
    s = _NONLINEARITIES[p.nonlinearity](torch.addmm(ux_t, s_tm1, p.weight_hh.t()))
    return s, s


def _check_nonlinearity(cls: str, nonlinearity: str) -> None:
    if nonlinearity not in _NONLINEARITIES:
        raise ValueError(f"{cls}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
