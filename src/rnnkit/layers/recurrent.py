"""The generic engine: any cell, run over time, stacked, in two directions, with lengths.

The step lives in the cell (``rnnkit.cells``); everything about time lives here:

- the first "sequence" backend (``rnnkit.layers.backends``) that supports the cell's config,
  when the cell declares one (``backend_config()``): rnnkit's own cells do;
- else the reference loop over the cell's step, with the input projection of every time step
  in one matrix product when the cell offers ``project_input``/``step`` (see ``rnnkit.cells.base``);
- ``lengths`` masking: outputs at ``t >= length`` are zero, a sequence's state stops changing
  after its last valid step, and the reverse direction starts at each sequence's own last
  valid step (the result equals torch.nn on ``pack_padded_sequence`` data);
- stacking with dropout between layers (not after the last), two directions concatenated
  on the feature axis, states shaped (num_layers * num_directions, B, ...) as torch.nn's.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..cells import KINDS, BoundCell
from ..checks import check_bool, check_dropout, check_size
from . import parallel, sequence  # noqa: F401  (register the sequence backends before any layer runs)
from .backends import select
from .boundary import (autocast_state, check_state, pack_output, split_states, stack_states, unpack_input,
                       where_state)

__all__ = ["Recurrent", "run_layers", "run_direction"]


def run_layers(
    x: Tensor,
    lengths: Tensor | None,
    cells: Sequence,
    states0: Sequence,
    num_directions: int,
    dropout: float = 0.0,
    training: bool = False,
):
    """Run a stack of cells over padded, time-major input.

    Args:
        x: (T, B, I).
        lengths: (B,) int64 on x's device, each in [1, T], or None (all T).
        cells: num_layers * num_directions cells, index ``layer * num_directions + direction``;
            each has ``project_input``/``step`` or is called as ``cell(x_t, state)``.
        states0: one initial state per cell (tensor (B, ...) or tuple of them).
        num_directions: 1 or 2.
        dropout, training: dropout on the output of every layer but the last, when training.

    Returns:
        output (T, B, num_directions * H_out) and the list of final states, one per cell.
    """
    T = x.shape[0]
    mask = rev_index = None
    if lengths is not None:
        T_run = int(lengths.max())  # steps past the longest sequence change nothing
        x = x[:T_run]
        steps = torch.arange(T_run, device=x.device).unsqueeze(1)  # (T_run, 1)
        mask = steps < lengths  # (T_run, B)
        # Reverse each sequence within its own length; padding positions map to themselves.
        rev_index = torch.where(mask, lengths - 1 - steps, steps)  # (T_run, B)
    num_layers = len(cells) // num_directions
    finals = []
    for layer in range(num_layers):
        outs = []
        for direction in range(num_directions):
            k = layer * num_directions + direction
            x_d = x if direction == 0 else _reverse(x, rev_index)
            out, state = run_direction(cells[k], x_d, states0[k], mask)
            outs.append(out if direction == 0 else _reverse(out, rev_index))
            finals.append(state)
        x = outs[0] if num_directions == 1 else torch.cat(outs, -1)  # (T_run, B, D*H_out)
        if dropout > 0 and training and layer < num_layers - 1:
            x = F.dropout(x, dropout, training=True)
    if x.shape[0] < T:
        x = F.pad(x, (0, 0, 0, 0, 0, T - x.shape[0]))
    return x, finals


def run_direction(cell, x: Tensor, state, mask: Tensor | None = None):
    """The loop over time for one cell: x (T, B, I) -> output (T, B, H_out), final state.

    A cell that declares a config (``cell.backend_config()``, with ``cell.weights()``) runs on
    the first "sequence" backend that supports it; otherwise, or when none does, the loop below
    runs the cell's own step: the reference every backend is tested against. mask: (T, B)
    bool, False past each sequence's length (outputs 0 there, the state kept).
    """
    config = cell.backend_config() if hasattr(cell, "backend_config") else None
    backend = select("sequence", config, x) if x.shape[0] > 0 else None
    if backend is not None:
        return backend.run(config, cell.weights(), x, state, mask)
    if config is not None and not isinstance(cell, BoundCell):
        # a cell of rnnkit's own equations: gather its weights once, not at every step
        cell = BoundCell(KINDS[config.cell], config, cell.weights())
    if hasattr(cell, "project_input") and hasattr(cell, "step"):
        xs, step = cell.project_input(x), cell.step  # (T, B, G): one matrix product
    else:
        xs, step = x, cell
    if mask is not None:
        keep = mask.unsqueeze(-1)  # (T, B, 1)
        out_mask = keep.to(x.dtype)
    outs = []
    # unbind, not xs[t]: the backward of T selects would fill a zero (T, B, G) tensor for each
    # step (O(T^2) memory traffic); unbind's is one stack
    for t, xs_t in enumerate(xs.unbind(0)):
        h, new_state = step(xs_t, state)
        if mask is None:
            state = new_state
        else:
            state = where_state(keep[t], new_state, state)
            h = h * out_mask[t]
        outs.append(h)
    return torch.stack(outs), state


def _reverse(x: Tensor, rev_index: Tensor | None) -> Tensor:
    """Reverse time within each sequence's length: (T, B, F) -> (T, B, F)."""
    if rev_index is None:
        return x.flip(0)
    return x.gather(0, rev_index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class Recurrent(nn.Module):
    """Runs any cell that follows ``rnnkit.cells``'s protocol as a deep, bidirectional layer.

    Args:
        cell_factory: ``cell_factory(input_size)`` returns a fresh cell; it is called
            num_layers * num_directions times (layer 0 with ``input_size``, later layers with
            num_directions * the cell's ``output_size``, or ``hidden_size`` without one).
        input_size: features of the input (I). Required.
        num_layers: stacked layers. Default 1.
        bidirectional: run a second stack of cells over reversed time. Default False.
        dropout: dropout on each layer's output except the last's, in training. Default 0.
        batch_first: input and output (B, T, F) instead of (T, B, F); states are unaffected.

    ``forward(x, state=None, lengths=None) -> (output, state)`` as ``rnnkit.LSTM``'s: ``x``
    (T, B, I), (B, T, I) or a PackedSequence; ``state`` shaped like the cell's
    ``initial_state`` with a leading (num_layers * num_directions) axis; ``output``
    (T, B, D * H_out). Cells index as ``layer * num_directions + direction``.

    Example:
        >>> from rnnkit.cells import GRUCell
        >>> layer = Recurrent(lambda n: GRUCell(n, 8, reset_after=False), input_size=4,
        ...                   num_layers=2, bidirectional=True)
        >>> y, h = layer(torch.randn(5, 3, 4), lengths=torch.tensor([5, 2, 1]))
        >>> tuple(y.shape), tuple(h.shape)
        ((5, 3, 16), (4, 3, 8))
    """

    def __init__(
        self,
        cell_factory: Callable[[int], nn.Module],
        input_size: int | None = None,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        if not callable(cell_factory):
            raise TypeError(f"Recurrent: cell_factory must be callable, got {type(cell_factory).__name__}")
        check_bool("Recurrent", "bidirectional", bidirectional)
        check_bool("Recurrent", "batch_first", batch_first)
        check_size("Recurrent", "input_size", input_size)
        check_size("Recurrent", "num_layers", num_layers)
        check_dropout("Recurrent", dropout)
        self.input_size, self.num_layers = input_size, num_layers
        self.bidirectional, self.dropout, self.batch_first = bidirectional, float(dropout), batch_first
        self.num_directions = 2 if bidirectional else 1
        cells, size = [], input_size
        for _ in range(num_layers):
            layer_cells = [cell_factory(size) for _ in range(self.num_directions)]
            for cell in layer_cells:
                if not isinstance(cell, nn.Module) or not hasattr(cell, "initial_state"):
                    raise TypeError(
                        "Recurrent: cell_factory must return an nn.Module with initial_state(), "
                        f"got {type(cell).__name__}"
                    )
            cells += layer_cells
            size = self.num_directions * getattr(layer_cells[0], "output_size", layer_cells[0].hidden_size)
        self.cells = nn.ModuleList(cells)
        self.hidden_size = cells[0].hidden_size
        self.output_size = size  # features of the output: num_directions * H_out

    def initial_state(self, batch_size: int, device=None, dtype=None):
        """Zero (or the cells' own) state, each part (num_layers * num_directions, B, ...)."""
        return stack_states([c.initial_state(batch_size, device=device, dtype=dtype) for c in self.cells])

    def forward(self, x: Tensor | PackedSequence, state=None, lengths: Tensor | None = None):
        like = next(iter(self.parameters()), None)  # a cell without weights checks nothing here
        batch = unpack_input("Recurrent", x, lengths, self.batch_first, self.input_size, like)
        x_tbi = batch.x  # (T, B, I)
        B = x_tbi.shape[1]
        if state is None:
            states0 = [c.initial_state(B, device=x_tbi.device, dtype=x_tbi.dtype) for c in self.cells]
        else:
            template = self.initial_state(B, device=x_tbi.device, dtype=x_tbi.dtype)
            state = autocast_state(batch.state_in("Recurrent", state), template)
            check_state("Recurrent", state, template)
            states0 = split_states(state, len(self.cells))
        out, finals = run_layers(
            x_tbi, batch.lengths, self.cells, states0, self.num_directions, self.dropout, self.training
        )
        return pack_output(batch, out, self.batch_first), batch.state_out(stack_states(finals))

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, dropout={self.dropout}, batch_first={self.batch_first}"
        )
