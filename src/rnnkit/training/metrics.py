"""Entity-level precision, recall and F1 for BIO / BIOES tag sequences (conlleval / seqeval style).

A tag is ``O`` or ``PREFIX-TYPE`` with the prefix one of ``B`` (begin), ``I`` (inside),
``E`` (end) or ``S`` (single); BIO uses B/I, BIOES all four. An *entity* is a
``Span(type, start, end)`` of tokens (``end`` exclusive). Tags are read the way the CoNLL
evaluation script ``conlleval`` (and seqeval's default mode) reads them, which is lenient on
ill-formed sequences:

- a token continues the entity before it iff it has the same type, its prefix is ``I`` or
  ``E``, and the previous token's prefix is ``B`` or ``I``;
- every other non-``O`` token starts a new entity (so ``O I-PER`` is an entity of one token,
  and ``B-PER I-LOC`` two entities); an entity ends after an ``E`` or ``S`` token.

A predicted entity counts as correct (a true positive) only when its type, start and end all
equal those of a gold entity. Precision = tp / predicted, recall = tp / gold, F1 their
harmonic mean, all micro-averaged over entities (as seqeval's ``f1_score``); 0 where the
denominator is 0. Counts add up across batches: ``entity_counts`` gives summable
``EntityCounts`` and ``precision_recall_f1`` turns their sum into the scores.

>>> entities(["B-PER", "I-PER", "O", "S-LOC"])
[Span(type='PER', start=0, end=2), Span(type='LOC', start=3, end=4)]
>>> precision_recall_f1(entity_counts([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]]))
Scores(precision=0.0, recall=0.0, f1=0.0)
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

__all__ = ["Span", "EntityCounts", "Scores", "split_tag", "entities", "entity_counts", "precision_recall_f1",
           "entity_report", "convert_scheme", "SCHEMES"]

SCHEMES: tuple[str, ...] = ("bio", "bioes")
_PREFIXES = ("B", "I", "E", "S")


class Span(NamedTuple):
    type: str
    start: int  # first token
    end: int  # one past the last token


class EntityCounts(NamedTuple):
    """Summable counts: entities right (tp), predicted, and in the gold tags."""

    tp: int
    predicted: int
    gold: int

    def __add__(self, other: "EntityCounts") -> "EntityCounts":  # type: ignore[override]
        return EntityCounts(self.tp + other.tp, self.predicted + other.predicted, self.gold + other.gold)


class Scores(NamedTuple):
    precision: float
    recall: float
    f1: float


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


def entity_counts(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> EntityCounts:
    """Counts over sentences: ``gold`` and ``predicted`` hold one tag sequence per sentence, pairwise of equal length."""
    if len(gold) != len(predicted):
        raise ValueError(f"entity_counts: gold and predicted must hold as many sentences, got {len(gold)} and {len(predicted)}")
    tp = n_pred = n_gold = 0
    for k, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise ValueError(f"entity_counts: sentence {k} has {len(g)} gold tags but {len(p)} predicted tags")
        gold_spans, pred_spans = set(entities(g)), set(entities(p))
        tp += len(gold_spans & pred_spans)
        n_pred += len(pred_spans)
        n_gold += len(gold_spans)
    return EntityCounts(tp, n_pred, n_gold)


def precision_recall_f1(counts: EntityCounts) -> Scores:
    """Micro precision, recall and F1 of summed counts; each is 0 where its denominator is 0."""
    tp, n_pred, n_gold = counts
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0  # = 2PR / (P + R)
    return Scores(precision, recall, f1)


def entity_report(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, dict[str, float]]:
    """Per entity type and overall (``"micro"``): ``{"precision", "recall", "f1", "support"}``.

    ``support`` is the number of gold entities of the type.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"entity_report: gold and predicted must hold as many sentences, got {len(gold)} and {len(predicted)}")
    pairs = [(set(entities(g)), set(entities(p))) for g, p in zip(gold, predicted)]
    types = sorted({s.type for g, p in pairs for s in g | p})
    report = {}
    for kind in types + ["micro"]:
        counts = EntityCounts(0, 0, 0)
        for g, p in pairs:
            if kind != "micro":
                g, p = {s for s in g if s.type == kind}, {s for s in p if s.type == kind}
            counts = counts + EntityCounts(len(g & p), len(p), len(g))
        report[kind] = {**precision_recall_f1(counts)._asdict(), "support": counts.gold}
    return report


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
