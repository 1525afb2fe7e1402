"""The cell protocol: one step of a recurrent network, separate from the loop over time.

A cell is any ``torch.nn.Module`` with

- ``input_size`` and ``hidden_size`` attributes (and ``output_size`` when its output ``h_t``
  is not ``hidden_size`` wide, e.g. an LSTM with a projection);
- ``forward(x_t, state_tm1) -> (h_t, state_t)``: ``x_t`` is (B, I); ``state_tm1`` is a
  tensor (B, S) or a tuple of such tensors (the layer's state without the layer axis);
  ``h_t`` is (B, output_size), the output the next layer and the head see;
- ``initial_state(batch_size, device=None, dtype=None)``: the state before the first step.

A cell may also split its step in two so that the engine can compute the input projection of
all time steps in one matrix product (the trick torch.nn's own CPU kernels use):

- ``project_input(x) -> xp``: any leading dims, e.g. (T, B, I) -> (T, B, G);
- ``step(xp_t, state_tm1) -> (h_t, state_t)`` on one projected step (B, G).

and may run a whole sequence at once, with a hand-written backward (``rnnkit.layers.fused``):

- ``run_sequence(xp, state0, mask) -> (output, state)`` on the projected input (T, B, G);
  returning None means "not for this configuration" and the engine loops ``step``.

``rnnkit.Recurrent`` uses ``run_sequence``, then ``project_input``/``step``, then ``forward``.
"""
from __future__ import annotations

import math
from typing import Protocol, Union, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Cell", "State"]

State = Union[Tensor, tuple[Tensor, ...]]


@runtime_checkable
class Cell(Protocol):
    """Structural type of a recurrent cell (see the module docstring)."""

    input_size: int
    hidden_size: int

    def __call__(self, x_t: Tensor, state_tm1: State) -> tuple[Tensor, State]: ...

    def initial_state(self, batch_size: int, device=None, dtype=None) -> State: ...


def _uniform_(tensor: Tensor | None, hidden_size: int) -> None:
    """torch.nn's default RNN initialisation: U(-1/sqrt(H), 1/sqrt(H))."""
    if tensor is not None:
        bound = 1.0 / math.sqrt(hidden_size)
        torch.nn.init.uniform_(tensor, -bound, bound)


def _orthogonal_blocks_(weight_hh: Tensor, num_gates: int) -> None:
    """Orthogonal init of each gate's (H, H_out) block of a stacked recurrent matrix."""
    with torch.no_grad():
        for block in weight_hh.chunk(num_gates, 0):
            torch.nn.init.orthogonal_(block)


def _gate_norm(z: Tensor, gain: Tensor, num_gates: int, eps: float = 1e-5) -> Tensor:
    """Layer norm applied to each gate's pre-activation separately, then a per-unit gain.

    z: (..., G*H) -> (..., G*H). Normalising per gate (as TensorFlow's LayerNormBasicLSTMCell
    does) keeps one gate's scale from swamping another's; the biases are added afterwards by the
    caller, so they play the role of layer norm's shift.
    """
    *lead, gh = z.shape
    zg = z.reshape(*lead, num_gates, gh // num_gates)  # (..., G, H)
    zg = F.layer_norm(zg, zg.shape[-1:], eps=eps)
    return zg.reshape(*lead, gh) * gain


def _check_recurrent_init(cls: str, recurrent_init: str) -> None:
    if recurrent_init not in ("uniform", "orthogonal"):
        raise ValueError(f"{cls}: recurrent_init must be 'uniform' or 'orthogonal', got {recurrent_init!r}")


def _check_int(cls: str, name: str, value, minimum: int = 1) -> None:
    """A size argument: an int (TypeError otherwise) of at least ``minimum`` (ValueError)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{cls}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        expected = "a positive int" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{cls}: {name} must be {expected}, got {value}")


def _check_sizes(cls: str, input_size, hidden_size, proj_size=0) -> None:
    _check_int(cls, "input_size", input_size)
    _check_int(cls, "hidden_size", hidden_size)
    _check_int(cls, "proj_size", proj_size, minimum=0)
    if proj_size >= hidden_size:
        raise ValueError(f"{cls}: proj_size must be an int in [0, hidden_size={hidden_size}), got {proj_size}")
