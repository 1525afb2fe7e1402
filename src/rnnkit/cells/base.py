"""The cell protocol, and what every cell declares: its configuration and its table of weights.

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

rnnkit's own cells (``RNNCell``, ``LSTMCell``, ``GRUCell``) go further: their equations are
written once, as pure *reference* functions over a typed tuple of weights (``lstm_step(w, ...)``),
and each cell declares

- a frozen dataclass ``config`` (``LSTMConfig``: sizes and flags) that says exactly which
  equations run: the engine's fast paths (``rnnkit.layers.backends``) are chosen by it, each
  declaring the values of every config field it supports;
- a table of weights (``LSTM_WEIGHTS``: name, shape from the config, initialisation), the one
  list that cells, layers, conversion, export, streaming and the inspector read;
- ``weights()``: its parameters as that typed tuple (``LSTMWeights``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple, Optional, Protocol, Sequence, Union, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_size

__all__ = ["Cell", "State", "Weight", "CellKind", "BoundCell", "KindCell", "SIZE_FIELDS", "flags_of", "weights_tuple", "present_weights",
           "init_weights_", "gate_norm", "uniform_", "orthogonal_blocks_", "check_sizes", "check_recurrent_init",
           "LN_EPS"]

State = Union[Tensor, tuple[Tensor, ...]]

SIZE_FIELDS = ("input_size", "hidden_size")  # config fields that every backend supports at any value
LN_EPS = 1e-5  # layer norm's epsilon, as F.layer_norm's default


@runtime_checkable
class Cell(Protocol):
    """Structural type of a recurrent cell (see the module docstring)."""

    input_size: int
    hidden_size: int

    def __call__(self, x_t: Tensor, state_tm1: State) -> tuple[Tensor, State]: ...

    def initial_state(self, batch_size: int, device=None, dtype=None) -> State: ...


def flags_of(config) -> dict:
    """The fields of a cell config that choose equations (every field but the sizes)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in SIZE_FIELDS}


# -- the table of weights ----------------------------------------------------------------------

class Weight(NamedTuple):
    """One row of a cell's table of weights.

    ``shape(config)`` is the tensor's shape, or None when the configuration has no such weight
    (``weight_peephole`` without peepholes). ``init`` is "uniform" (U(-1/sqrt(H), 1/sqrt(H)),
    torch.nn's), "ones" or "zeros". ``standard``: torch.nn's layers have this weight (under the
    same name with a ``_l{k}`` suffix), so torch.nn's initialisation draws it.
    """

    name: str
    shape: Callable[[object], Optional[tuple]]
    init: str
    standard: bool
    doc: str


def weights_tuple(typename: str, table: Sequence[Weight]) -> type:
    """The typed tuple of a cell's weights: one optional tensor field per row of the table.

    Made with typing.NamedTuple's functional form: a pytree that torch.export traces through
    (the export's reference loop scans the steps that take it).
    """
    return NamedTuple(typename, [(w.name, Optional[Tensor]) for w in table])


def present_weights(table: Sequence[Weight], config) -> list[tuple[str, tuple]]:
    """(name, shape) of every weight this configuration has, in the table's order."""
    return [(w.name, shape) for w in table if (shape := w.shape(config)) is not None]


def init_weights_(table: Sequence[Weight], weights, hidden_size: int, skip_standard: bool = False) -> None:
    """Initialise ``weights`` (the typed tuple over a module's parameters) as the table says.

    ``skip_standard``: torch.nn already drew the standard weights (in its RNG order).
    """
    with torch.no_grad():
        for row in table:
            tensor = getattr(weights, row.name)
            if tensor is None or (skip_standard and row.standard):
                continue
            if row.init == "uniform":
                uniform_(tensor, hidden_size)
            elif row.init == "ones":
                tensor.fill_(1.0)
            elif row.init == "zeros":
                tensor.zero_()
            else:
                raise ValueError(f"{row.name}: unknown init {row.init!r}")


def uniform_(tensor: Tensor | None, hidden_size: int) -> None:
    """torch.nn's default RNN initialisation: U(-1/sqrt(H), 1/sqrt(H))."""
    if tensor is not None:
        bound = 1.0 / math.sqrt(hidden_size)
        torch.nn.init.uniform_(tensor, -bound, bound)


def orthogonal_blocks_(weight_hh: Tensor, num_gates: int) -> None:
    """Orthogonal init of each gate's (H, H_out) block of a stacked recurrent matrix."""
    with torch.no_grad():
        for block in weight_hh.chunk(num_gates, 0):
            torch.nn.init.orthogonal_(block)


# -- shared pieces of the equations ------------------------------------------------------------

def gate_norm(z: Tensor, gain: Tensor, num_gates: int, eps: float = LN_EPS) -> Tensor:
    """Layer norm applied to each gate's pre-activation separately, then a per-unit gain.

    z: (..., G*H) -> (..., G*H). Normalising per gate (as TensorFlow's LayerNormBasicLSTMCell
    does) keeps one gate's scale from swamping another's; the biases are added afterwards by the
    caller, so they play the role of layer norm's shift.
    """
    H = z.shape[-1] // num_gates
    shape = z.shape
    zg = z.reshape(list(shape[:-1]) + [num_gates, H])  # (..., G, H)
    zg = F.layer_norm(zg, [H], eps=eps)
    return zg.reshape(shape) * gain


# -- argument checks of the cells and layers ---------------------------------------------------

def check_recurrent_init(owner: str, recurrent_init: str) -> None:
    if recurrent_init not in ("uniform", "orthogonal"):
        raise ValueError(f"{owner}: recurrent_init must be 'uniform' or 'orthogonal', got {recurrent_init!r}")


def check_sizes(owner: str, input_size, hidden_size, proj_size=0) -> None:
    check_size(owner, "input_size", input_size)
    check_size(owner, "hidden_size", hidden_size)
    check_size(owner, "proj_size", proj_size, minimum=0)
    if proj_size >= hidden_size:
        raise ValueError(f"{owner}: proj_size must be an int in [0, hidden_size={hidden_size}), got {proj_size}")


# -- a cell type, and one cell's weights bound to it --------------------------------------------

class CellKind(NamedTuple):
    """Everything the engine needs to know about a cell type, written once in its file.

    ``project(config, w, x, linear=F.linear, norm=gate_norm)`` is the input part of the
    pre-activations (..., I) -> (..., G) (a backend may pass faster but equal ``linear`` and
    ``norm`` functions); ``step(config, w, xp_t, state_tm1, gates=None) -> (h_t, state_t)`` the
    reference step, which writes its activations into ``gates`` (a dict) when one is given.

    ``state_names``: None when the state is ``h`` alone, else the names of its parts, ``h``
    first (``("h", "c")``): every tuple state starts with the output ``h`` (B, H_out), which
    the heads read as "the last hidden state". ``gates``: the names the step writes into
    ``gates`` (the inspector records them, in this order; ``hidden`` last).

    Cell types without a torch.nn layer of their own (they run in ``rnnkit.layers.CellLayer``)
    also give ``state_shapes(config)``: the shape of each part of the state without the batch
    axis (``((H,), (NH, d, d), ...)``; one part for an ``h``-only state), whose zeros are the
    initial state; and ``init(config, w)``, which initialises one cell's weights (None: as the
    table's ``init`` column says).
    """

    name: str
    config: type
    table: tuple
    weights: type
    project: Callable
    step: Callable
    state_names: Optional[tuple]
    num_gates: int
    gates: tuple = ("hidden",)
    state_shapes: Optional[Callable] = None
    init: Optional[Callable] = None


class BoundCell:
    """One cell's weights bound to its kind and config: a cell for the engine (``project_input``,
    ``step``) that is not a module of its own, e.g. one layer and direction of ``rnnkit.LSTM``
    (``layer.cell(k)``). Reading ``weights`` later gives the tensors of construction time.
    """

    def __init__(self, kind: CellKind, config, weights) -> None:
        self.kind, self.config, self._weights = kind, config, weights
        self.input_size, self.hidden_size = config.input_size, config.hidden_size
        self.output_size = getattr(config, "proj_size", 0) or config.hidden_size

    def weights(self):
        """The typed tuple of weights (``LSTMWeights``, ...)."""
        return self._weights

    def backend_config(self):
        return self.config

    def project_input(self, x: Tensor) -> Tensor:
        return self.kind.project(self.config, self._weights, x)

    def step(self, xp_t: Tensor, state_tm1, gates: dict | None = None):
        return self.kind.step(self.config, self._weights, xp_t, state_tm1, gates)

    def __repr__(self) -> str:
        return f"BoundCell({self.config})"


class KindCell(nn.Module):
    """A cell module over a kind's reference functions: the cells after 2017 (``MinGRUCell``,
    ``SRUCell``, ...) are this plus their argument checks and docstring.

    The subclass's ``__init__`` checks its arguments and calls ``_build(kind, config)``, which
    registers one parameter per weight the config has (the kind's table, in its order) and
    initialises them (``reset_parameters``: the kind's ``init``, or the table's ``init`` column).
    Then ``weights()``, ``backend_config()``, ``initial_state`` (zeros of the kind's
    ``state_shapes``), ``project_input``, ``step(xp_t, state, gates=None)`` and
    ``forward(x_t, state=None)`` all go through the kind: the equations stay in its functions.
    """

    def _build(self, kind: CellKind, config) -> None:
        self.kind, self.config = kind, config
        self.input_size, self.hidden_size, self.output_size = config.input_size, config.hidden_size, config.hidden_size
        for row in kind.table:
            shape = row.shape(config)
            self.register_parameter(row.name, None if shape is None else nn.Parameter(torch.empty(shape)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the weights as the kind says (its ``init``, or the table's ``init`` column)."""
        if self.kind.init is not None:
            self.kind.init(self.config, self.weights())
        else:
            init_weights_(self.kind.table, self.weights(), self.hidden_size)

    def weights(self):
        """The parameters as the typed tuple the reference functions take."""
        return self.kind.weights(*(getattr(self, row.name) for row in self.kind.table))

    def backend_config(self):
        """What the engine's backends are chosen by; None for a subclass with its own step."""
        own = type(self).step is KindCell.step and type(self).project_input is KindCell.project_input
        return self.config if own else None

    def initial_state(self, batch_size: int, device=None, dtype=None) -> State:
        """Zeros: ``h`` (B, H), or the tuple of the kind's ``state_names``, each (B, ...)."""
        dtype = dtype or self.weight_ih.dtype
        parts = tuple(torch.zeros((batch_size,) + tuple(shape), device=device, dtype=dtype)
                      for shape in self.kind.state_shapes(self.config))
        return parts[0] if self.kind.state_names is None else parts

    def project_input(self, x: Tensor) -> Tensor:
        """The input part of every step at once: (..., I) -> (..., G)."""
        return self.kind.project(self.config, self.weights(), x)

    def step(self, xp_t: Tensor, state_tm1: State, gates: dict | None = None):
        """One step from the projected input (B, G): returns h_t, state_t."""
        return self.kind.step(self.config, self.weights(), xp_t, state_tm1, gates)

    def forward(self, x_t: Tensor, state_tm1: State | None = None):
        if state_tm1 is None:
            state_tm1 = self.initial_state(x_t.shape[0], x_t.device, x_t.dtype)
        return self.step(self.project_input(x_t), state_tm1)

    def extra_repr(self) -> str:
        """The sizes, then every flag that is not its default."""
        changed = [f"{f.name}={getattr(self.config, f.name)!r}" for f in dataclasses.fields(self.config)
                   if f.name not in SIZE_FIELDS and getattr(self.config, f.name) != f.default]
        return ", ".join([f"{self.input_size}, {self.hidden_size}"] + changed)
