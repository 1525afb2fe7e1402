"""The backend registry: every fast path declares what it supports; dispatch picks by declaration.

A cell's equations exist once, as its reference step (``rnnkit.cells``). Everything faster is
a *backend* derived from it: torch's fused RNN kernels for whole standard layers, rnnkit's
BPTT Functions on torch operations or on the compiled CPU kernels for one direction of a
sequence, the streaming steps, the ONNX nodes of the export. Each registers a ``Backend`` that
names

- ``kind``: what it runs, and so how ``run`` is called —

  - "layer": a whole stack, ``run(layer, batch, state) -> (output, state)`` (``layers.native``);
  - "sequence": one direction over time, ``run(config, weights, x, state0, mask) -> (output,
    state)`` (``layers.sequence``);
  - "stream": one step at a time, ``run(config, weights, batch_size) -> step object``
    (``rnnkit.streaming.steps``);
  - "onnx": one layer (both directions) as an ONNX node, ``run(cells, x, lengths, state0) ->
    (output, state)`` with ``cells`` the layer's ``BoundCell``s (``rnnkit.export.nodes``);

- ``cell``: the cell type (a config's ``cell``: "rnn", "lstm", "gru");
- ``flags``: for EVERY field of the cell's config other than the sizes, the values it supports
  (or ``ANY``). A field it does not name is a field it never heard of, so a configuration with
  a new flag is declined by every backend until one declares it: the flag is never silently
  ignored, and the reference loop runs it;
- ``available(like)``: conditions known only at call time (device, dtype, autocast, a
  compiler).

``select(kind, config, like)`` returns the first registered backend (in registration order)
that supports ``config`` and is available for tensors like ``like``, or None: the caller then
runs the reference. ``only(*names)`` restricts the choice inside a ``with`` block (``only()``:
the reference everywhere), for tests and debugging; ``describe()`` lists what is registered.

Example:
    >>> from rnnkit.cells import LSTMConfig
    >>> [b.name for b in registered("sequence", "lstm")]
    ['bptt-kernels', 'bptt']
    >>> select("sequence", LSTMConfig(4, 8, proj_size=2), torch.zeros(1)) is None  # no projection
    True
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Collection, Iterator, Mapping

import torch
from torch import Tensor

from ..cells.base import flags_of

__all__ = ["Backend", "ANY", "register", "registered", "select", "only", "describe", "not_autocast"]

KINDS = ("layer", "sequence", "stream", "onnx")


class _AnyValue:
    def __repr__(self) -> str:
        return "ANY"


ANY = _AnyValue()  # a flag value a backend supports whatever it is (e.g. ``bias``)


def _always(like: Tensor | None) -> bool:
    return True


@dataclass(frozen=True)
class Backend:
    """A fast path, with a positive declaration of the configurations it computes exactly."""

    name: str  # e.g. "bptt"; one name may serve several cells and kinds
    kind: str  # "layer", "sequence", "stream" or "onnx"
    cell: str  # "rnn", "lstm", "gru"
    flags: Mapping[str, Collection | _AnyValue]  # every non-size config field -> supported values
    run: Callable = field(repr=False)
    available: Callable[[Tensor | None], bool] = field(default=_always, repr=False)
    doc: str = ""

    def supports(self, config) -> bool:
        """True when every field of ``config`` (but the sizes) is declared here with its value."""
        if getattr(config, "cell", None) != self.cell:
            return False
        for name, value in flags_of(config).items():
            if name not in self.flags:
                return False  # a flag this backend never declared: it would be ignored
            allowed = self.flags[name]
            if allowed is not ANY and value not in allowed:
                return False
        return True


_registry: list[Backend] = []
_allowed: frozenset[str] | None = None  # inside only(...): the names that may be chosen


def register(backend: Backend) -> Backend:
    """Add ``backend`` after those registered before it (earlier ones are preferred)."""
    if backend.kind not in KINDS:
        raise ValueError(f"register: kind must be one of {', '.join(KINDS)}, got {backend.kind!r}")
    for other in _registry:
        if (other.name, other.kind, other.cell) == (backend.name, backend.kind, backend.cell):
            raise ValueError(f"register: a {backend.kind} backend {backend.name!r} for {backend.cell!r} "
                             "is registered already")
    _registry.append(backend)
    return backend


def registered(kind: str | None = None, cell: str | None = None) -> list[Backend]:
    """The registered backends of ``kind`` for ``cell`` (None: all), in order of preference."""
    return [b for b in _registry if kind in (None, b.kind) and cell in (None, b.cell)]


def select(kind: str, config, like: Tensor | None = None) -> Backend | None:
    """The first backend of ``kind`` that supports ``config`` and is available for ``like``."""
    if config is None:
        return None
    for backend in _registry:
        if backend.kind != kind or (_allowed is not None and backend.name not in _allowed):
            continue
        if backend.supports(config) and backend.available(like):
            return backend
    return None


@contextlib.contextmanager
def only(*names: str) -> Iterator[None]:
    """Inside the block, choose only among backends with these names; ``only()`` runs the
    reference everywhere (module-wide, not per thread: a switch for tests and debugging)."""
    global _allowed
    previous, _allowed = _allowed, frozenset(names)
    try:
        yield
    finally:
        _allowed = previous


def describe() -> str:
    """One line per registered backend: kind, cell, name and the flags it declares."""
    lines = []
    for b in _registry:
        flags = ", ".join(f"{k}={'any' if v is ANY else sorted(v, key=repr)}" for k, v in b.flags.items())
        lines.append(f"{b.kind:8s} {b.cell:7s} {b.name:14s} {flags}")
    return "\n".join(lines)


def not_autocast(like: Tensor | None) -> bool:
    """Available unless autocast is on for ``like``'s device (the reference's casts are autocast's)."""
    return like is None or not torch.is_autocast_enabled(like.device.type)
