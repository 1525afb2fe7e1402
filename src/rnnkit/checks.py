"""Argument checks shared by every package: one-line errors that name the owner (class or
function), the argument, what was expected and what was received, as STYLE.md asks::

    ValueError("LSTM: dropout must be a number in [0, 1), got 1.5")

The one rnnkit module that every package may import (``cells`` and ``data`` import nothing
else of rnnkit).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Iterator, Mapping
from typing import Any

__all__ = ["check_int", "check_size", "check_bool", "check_choice", "check_dropout", "check_state_dict",
           "nonfinite_places"]


def check_int(owner: str, name: str, value: object, minimum: int | None = None) -> int:
    """Return ``value`` as an ``int``; reject bools, floats and values below ``minimum``."""
    # bool is a subclass of int, but `batch_size=True` is always a mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")
    return value


def check_size(owner: str, name: str, value: object, minimum: int = 1) -> None:
    """A size argument: an int (TypeError otherwise) of at least ``minimum`` (ValueError)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        expected = "a positive int" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{owner}: {name} must be {expected}, got {value}")


def check_bool(owner: str, name: str, value: object) -> bool:
    """Return ``value`` if it is a ``bool``; ``0``/``1``/strings are rejected."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def check_choice(owner: str, name: str, value: object, choices: Collection[str]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{owner}: {name} must be one of {options}, got {value!r}")
    return str(value)


def check_dropout(owner: str, dropout: object) -> None:
    """Dropout probability: a number in [0, 1)."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"{owner}: dropout must be a number in [0, 1), got {dropout!r}")


def check_state_dict(owner: str, state: object, mine: Mapping[str, Any], progress_keys: Collection[str]) -> None:
    """Check a loaded ``state`` dict against ``mine`` (the object's own ``state_dict()``).

    Every key of ``mine`` must be present; all but ``progress_keys`` (epoch, position)
    must be equal, since resuming with other settings would silently give other batches.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"{owner}: state must be a dict, got {type(state).__name__}")
    missing = sorted(set(mine) - set(state))
    if missing:
        raise ValueError(f"{owner}: state must have keys {sorted(mine)}, missing {missing}")
    for key, value in mine.items():
        if key not in progress_keys and state[key] != value:
            raise ValueError(f"{owner}: state[{key!r}] must equal this object's {value!r}, got {state[key]!r}")


def nonfinite_places(obj: Any, where: str = "") -> Iterator[str]:
    """The places (``probability``, ``[2].score``) of the non-finite floats (NaN, inf) in a
    JSON-like ``obj`` (dicts, lists, tuples): what strict JSON cannot print."""
    if isinstance(obj, float) and not math.isfinite(obj):
        yield where or "the value"
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from nonfinite_places(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from nonfinite_places(v, f"{where}[{i}]")
