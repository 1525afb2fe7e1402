"""Deep, bidirectional layers of any cell kind: what ``rnnkit.LSTM`` does, for every cell.

``KindLayer`` is what every rnnkit layer shares, whether torch.nn has the layer (``RNN``,
``LSTM``, ``GRU`` in ``layers.native``, which add torch's fused kernels) or not: weights named
``{weight}_l{k}`` / ``{weight}_l{k}_reverse`` from the cell kind's table, ``cell(k, d)`` (one
layer and direction as a ``BoundCell`` of the reference equations, which streaming, the
inspector and the export read), the initial state from the kind's ``state_shapes``, and
``forward(x, state=None, lengths=None)``: the "layer" backends where one supports the
configuration, else ``run_layers`` with its "sequence" backends, else the reference loop.

``CellLayer`` is a ``KindLayer`` for cell kinds without a torch.nn class; ``MinGRU``,
``MinLSTM``, ... (``layers.modern``) are its subclasses, one per kind.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..cells.base import BoundCell, check_sizes, init_weights_
from ..checks import check_bool, check_dropout, check_size
from .backends import select
from .boundary import autocast_state, check_state, pack_output, split_states, stack_states, unpack_input
from .recurrent import run_layers

__all__ = ["KindLayer", "CellLayer", "check_layer_args"]


class KindLayer:
    """The layer API over a cell kind (mixed in before ``nn.Module`` or a torch.nn layer).

    The class sets ``kind`` (a ``CellKind``); instances have ``input_size``, ``hidden_size``,
    ``num_layers``, ``bias``, ``batch_first``, ``dropout``, ``bidirectional``, ``proj_size``,
    ``engine`` and ``_flags`` (the config fields besides sizes and bias).
    """

    kind = None

    def _directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self) -> list[str]:
        D = self._directions()
        return [f"_l{layer}{'_reverse' * d}" for layer in range(self.num_layers) for d in range(D)]

    def _like(self) -> Tensor:
        return next(iter(self.parameters()))

    def cell_config(self, layer_index: int = 0):
        """The cell config of layer ``layer_index`` (its input_size is the layer's input width)."""
        width = self.input_size if layer_index == 0 else self._directions() * (self.proj_size or self.hidden_size)
        return self.kind.config(width, self.hidden_size, self.bias, **self._flags)

    def cell(self, layer_index: int = 0, direction: int = 0) -> BoundCell:
        """One layer and direction's weights (the parameters themselves) as a cell of the
        reference equations: ``project_input``, ``step(xp_t, state, gates=None)``, ``weights()``."""
        D = self._directions()
        if not (0 <= layer_index < self.num_layers and 0 <= direction < D):
            raise IndexError(f"{type(self).__name__}.cell: layer_index must be in [0, {self.num_layers}) and "
                             f"direction in [0, {D}), got ({layer_index}, {direction})")
        suffix = self._suffixes()[layer_index * D + direction]
        weights = self.kind.weights(*(getattr(self, f"{row.name}{suffix}", None) for row in self.kind.table))
        return BoundCell(self.kind, self.cell_config(layer_index), weights)

    def bound_cells(self) -> list[BoundCell]:
        """``cell(layer, direction)`` for every layer and direction, index layer * D + direction."""
        D = self._directions()
        return [self.cell(k // D, k % D) for k in range(self.num_layers * D)]

    def initial_state(self, batch_size: int, device=None, dtype=None):
        """Zeros in the layer's state format: h, or a tuple (h, ...) as the kind's ``state_names``
        say, each part (num_layers * D, B, ...)."""
        dtype = dtype or self._like().dtype
        lead = (self.num_layers * self._directions(), batch_size)
        parts = tuple(torch.zeros(lead + tuple(shape), device=device, dtype=dtype)
                      for shape in self.kind.state_shapes(self.cell_config()))
        return parts[0] if self.kind.state_names is None else parts

    def forward(self, x: Tensor | PackedSequence, state=None, lengths: Tensor | None = None):
        """Run the layer.

        Args:
            x: (T, B, I), or (B, T, I) with batch_first, or (T, I) unbatched, or a
                PackedSequence (then the output is packed too).
            state: initial state, each part (num_layers * num_directions, B, ...); zeros when
                None. ``h`` for RNN/GRU/minGRU/..., a tuple ``(h, ...)`` for the others
                (``(h, c)`` for LSTM; the kind's ``state_names``).
            lengths: (B,) integers in [1, T], any order, any device. Outputs at t >= length
                are zero; the final state is each sequence's state at its last valid step.

        Returns:
            (output, state): output (T, B, D * H_out) in x's layout; state as above.
        """
        cls = type(self).__name__
        batch = unpack_input(cls, x, lengths, self.batch_first, self.input_size, self._like())
        B = batch.x.shape[1]
        template = self.initial_state(B, batch.x.device, batch.x.dtype)
        if state is None:
            state = template
        else:
            state = autocast_state(batch.state_in(cls, state), template)
            check_state(cls, state, template, self.kind.state_names)
        backend = select("layer", self.cell_config(), batch.x) if self.engine == "auto" else None
        if backend is not None:
            out, final = backend.run(self, batch, state)
            if isinstance(out, PackedSequence):
                return out, final
        else:
            cells = self.bound_cells()
            out, finals = run_layers(
                batch.x, batch.lengths, cells, split_states(state, len(cells)), self._directions(), self.dropout,
                self.training,
            )
            final = stack_states(finals)
        return pack_output(batch, out, self.batch_first), batch.state_out(final)


class CellLayer(KindLayer, nn.Module):
    """A deep, optionally bidirectional layer of a cell kind that torch.nn does not have.

    Args (the subclass sets ``kind``):
        input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0
        (between layers, in training), bidirectional=False, device, dtype: as torch.nn.LSTM's;
        engine: as ``rnnkit.LSTM``'s (no "layer" backend declares these kinds, so "auto" and
        "python" both run rnnkit's engine).
        **flags: the cell config's other fields (``num_heads=4``, ...).

    Weights ``{weight}_l{k}[_reverse]`` for every row of the kind's table, initialised by the
    kind's ``init`` (or the table's ``init`` column); ``reset_parameters()`` draws them again.
    ``forward``, ``initial_state``, ``cell``, ``bound_cells``, ``cell_config``: see ``KindLayer``.
    """

    proj_size = 0

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, engine: str = "auto",
                 device=None, dtype=None, **flags) -> None:
        super().__init__()
        cls = type(self).__name__
        if engine not in ("auto", "python"):
            raise ValueError(f"{cls}: engine must be 'auto' or 'python', got {engine!r}")
        self.engine = engine  # no "layer" backend runs these kinds: both run rnnkit's engine
        if self.kind is None:
            raise TypeError(f"{cls}: a CellLayer subclass must set `kind` (a rnnkit.cells.CellKind)")
        check_layer_args(cls, input_size, hidden_size, num_layers, dropout, bias=bias, batch_first=batch_first,
                         bidirectional=bidirectional)
        known = {f.name for f in dataclasses.fields(self.kind.config)} - {"input_size", "hidden_size", "bias"}
        for name in flags:
            if name not in known:
                raise TypeError(f"{cls}: got an unexpected keyword argument {name!r} (its cell's options: "
                                f"{', '.join(sorted(known)) or 'none'})")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, float(dropout), bidirectional
        self._flags = dict(flags)
        D = self._directions()
        for k, suffix in enumerate(self._suffixes()):
            config = self.cell_config(k // D)
            for row in self.kind.table:
                shape = row.shape(config)
                if shape is not None:
                    self.register_parameter(f"{row.name}{suffix}",
                                            nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise every layer and direction's weights (the kind's ``init``, or the table's)."""
        for cell in self.bound_cells():
            if self.kind.init is not None:
                self.kind.init(cell.config, cell.weights())
            else:
                init_weights_(self.kind.table, cell.weights(), self.hidden_size)

    def extra_repr(self) -> str:
        flags = [f"{self.input_size}, {self.hidden_size}"] + [f"num_layers={self.num_layers}"] * (self.num_layers > 1)
        flags += ["bias=False"] * (not self.bias) + ["batch_first=True"] * self.batch_first
        flags += [f"dropout={self.dropout}"] * (self.dropout > 0) + ["bidirectional=True"] * self.bidirectional
        return ", ".join(flags + [f"{k}={v!r}" for k, v in self._flags.items()])


def check_layer_args(cls: str, input_size, hidden_size, num_layers, dropout, proj_size=0, **flags) -> None:
    """Sizes, dropout, and the bool flags (``bidirectional="no"`` is a TypeError, not True)."""
    for name, value in flags.items():
        check_bool(cls, name, value)
    check_sizes(cls, input_size, hidden_size, proj_size)
    check_size(cls, "num_layers", num_layers)
    check_dropout(cls, dropout)
