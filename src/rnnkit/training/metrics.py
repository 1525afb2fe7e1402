"""Entity-level precision, recall and F1 for BIO / BIOES tag sequences (conlleval / seqeval style).

Entities are read from tags by the rules of :mod:`rnnkit.data.tags` (re-exported here:
``Span``, ``split_tag``, ``entities``, ``convert_scheme``, ``SCHEMES``). A predicted entity
counts as correct (a true positive) only when its type, start and end all equal those of a
gold entity. Precision = tp / predicted, recall = tp / gold, F1 their harmonic mean, all
micro-averaged over entities (as seqeval's ``f1_score``); 0 where the denominator is 0.
Counts add up across batches: ``entity_counts`` gives summable ``EntityCounts`` and
``precision_recall_f1`` turns their sum into the scores.

>>> precision_recall_f1(entity_counts([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]]))
Scores(precision=0.0, recall=0.0, f1=0.0)
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

from ..data.tags import SCHEMES, Span, convert_scheme, entities, split_tag

__all__ = ["Span", "EntityCounts", "Scores", "split_tag", "entities", "entity_counts", "precision_recall_f1",
           "entity_report", "convert_scheme", "SCHEMES"]


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
