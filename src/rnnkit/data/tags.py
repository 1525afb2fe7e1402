"""Tagging schemes: how BIO / BIOES tag sequences encode entity spans.

A tag is ``O`` or ``PREFIX-TYPE`` with the prefix one of ``B`` (begin), ``I`` (inside),
``E`` (end) or ``S`` (single); BIO uses B/I, BIOES all four. An *entity* is a
``Span(type, start, end)`` of tokens (``end`` exclusive). Tags are read the way the CoNLL
evaluation script ``conlleval`` (and seqeval's default mode) reads them, which is lenient on
ill-formed sequences:

- a token continues the entity before it iff it has the same type, its prefix is ``I`` or
  ``E``, and the previous token's prefix is ``B`` or ``I``;
- every other non-``O`` token starts a new entity (so ``O I-PER`` is an entity of one token,
  and ``B-PER I-LOC`` two entities); an entity ends after an ``E`` or ``S`` token.

Data readers use :func:`split_tag` to check tags; the entity-level scores built on
:func:`entities` live in ``rnnkit.training.metrics``.

>>> entities(["B-PER", "I-PER", "O", "S-LOC"])
[Span(type='PER', start=0, end=2), Span(type='LOC', start=3, end=4)]
>>> convert_scheme(["B-PER", "I-PER", "O", "B-LOC"], "bioes")
['B-PER', 'E-PER', 'O', 'S-LOC']
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

__all__ = ["SCHEMES", "Span", "split_tag", "entities", "convert_scheme"]

SCHEMES: tuple[str, ...] = ("bio", "bioes")
_PREFIXES = ("B", "I", "E", "S")


class Span(NamedTuple):
    type: str
    start: int  # first token
    end: int  # one past the last token


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``. The type may itself hold dashes.

    Raises ValueError for anything else (``"PER"``, ``"X-PER"``, ``"B-"``, ``"B"``).
    """
    if tag == "O":
        return "O", ""
    if not isinstance(tag, str):
        raise TypeError(f"split_tag: tag must be a str, got {type(tag).__name__} {tag!r}")
    prefix, dash, kind = tag.partition("-")
    if prefix not in _PREFIXES or not dash or not kind:
        raise ValueError(f"split_tag: tag must be O or B-/I-/E-/S- followed by a type (BIO/BIOES), got {tag!r}")
    return prefix, kind


def entities(tags: Sequence[str]) -> list[Span]:
    """The entities of one sentence's tags, in order (see the module docstring for the rules)."""
    spans: list[Span] = []
    start, kind, prev = -1, "", "O"  # the open entity (start -1: none) and the previous prefix
    for t, tag in enumerate(tags):
        prefix, tag_kind = split_tag(tag)
        continues = start >= 0 and tag_kind == kind and prev in ("B", "I") and prefix in ("I", "E")
        if start >= 0 and not continues:  # the open entity ended before token t
            spans.append(Span(kind, start, t))
            start = -1
        if prefix != "O" and not continues:
            start, kind = t, tag_kind
        if prefix in ("E", "S") and start >= 0:  # it ends with token t
            spans.append(Span(kind, start, t + 1))
            start = -1
        prev = prefix
    if start >= 0:
        spans.append(Span(kind, start, len(tags)))
    return spans


def convert_scheme(tags: Sequence[str], scheme: str) -> list[str]:
    """The same entities (as ``entities`` reads them) written in ``scheme``: "bio" or "bioes".

    Well-formed BIO and BIOES convert to each other and back losslessly; ill-formed input
    (``O I-PER``) comes out well-formed.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"convert_scheme: scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    out = ["O"] * len(tags)
    for kind, start, end in entities(tags):
        if scheme == "bio":
            out[start : end] = [f"B-{kind}"] + [f"I-{kind}"] * (end - start - 1)
        elif end - start == 1:
            out[start] = f"S-{kind}"
        else:
            out[start : end] = [f"B-{kind}"] + [f"I-{kind}"] * (end - start - 2) + [f"E-{kind}"]
    return out
