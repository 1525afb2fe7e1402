"""Entity-level metrics: entities read from BIO / BIOES tags (hand-made cases, ill-formed ones
included), precision / recall / F1, scheme conversion, and a cross-check against seqeval."""
import random

import pytest

from rnnkit.training.metrics import (EntityCounts, Span, convert_scheme, entities, entity_counts, entity_report,
                                     precision_recall_f1, split_tag)


@pytest.mark.parametrize("tags, expected", [
    ([], []),
    (["O", "O"], []),
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
    (["B-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),  # B starts a new entity
    (["B-ORG", "I-ORG", "I-ORG"], [("ORG", 0, 3)]),  # an entity at the very end
    # BIOES
    (["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "S-ORG"], [("PER", 0, 1), ("LOC", 1, 4), ("ORG", 5, 6)]),
    (["B-LOC", "E-LOC", "S-LOC"], [("LOC", 0, 2), ("LOC", 2, 3)]),
    (["S-PER", "S-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    # ill-formed, read as conlleval does
    (["O", "I-PER", "I-PER"], [("PER", 1, 3)]),  # I without B starts an entity
    (["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),  # a type change starts another
    (["E-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 2)]),  # E ends an entity; I after it starts one
    (["B-PER", "I-PER", "E-PER", "E-PER"], [("PER", 0, 3), ("PER", 3, 4)]),
    (["S-PER", "I-PER", "E-PER"], [("PER", 0, 1), ("PER", 1, 3)]),
    (["B-MISC-X", "I-MISC-X"], [("MISC-X", 0, 2)]),  # a type may hold dashes
])
def test_entities_hand_made(tags, expected):
    assert entities(tags) == [Span(*e) for e in expected]


def test_counts_and_scores_hand_made():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["S-ORG", "O"], ["O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"],  # PER right, LOC typed wrong
            ["B-ORG", "I-ORG"],  # boundary wrong
            ["B-LOC"]]  # spurious
    counts = entity_counts(gold, pred)
    assert counts == EntityCounts(tp=1, predicted=4, gold=3)
    p, r, f1 = precision_recall_f1(counts)
    assert (p, r) == (0.25, 1 / 3) and f1 == pytest.approx(2 * p * r / (p + r))
    assert precision_recall_f1(EntityCounts(0, 0, 0)) == (0.0, 0.0, 0.0)
    assert precision_recall_f1(EntityCounts(0, 0, 5)) == (0.0, 0.0, 0.0)
    assert precision_recall_f1(EntityCounts(3, 3, 3)) == (1.0, 1.0, 1.0)
    # Counts add up across batches to the counts of the whole.
    assert entity_counts(gold[:1], pred[:1]) + entity_counts(gold[1:], pred[1:]) == counts


def test_report_per_type():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["S-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["S-ORG", "O"]]
    report = entity_report(gold, pred)
    assert set(report) == {"LOC", "ORG", "PER", "micro"}
    assert report["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert report["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["ORG"]["precision"] == 0.5 and report["ORG"]["recall"] == 1.0
    assert report["micro"]["f1"] == pytest.approx(precision_recall_f1(entity_counts(gold, pred)).f1)


@pytest.mark.parametrize("tag", ["PER", "X-PER", "B-", "B", "b-PER", ""])
def test_bad_tags_are_named(tag):
    with pytest.raises(ValueError, match=f"tag must be O or B-/I-/E-/S- followed by a type .*got {tag!r}"):
        split_tag(tag)
    with pytest.raises(ValueError, match="split_tag"):
        entities(["O", tag])


def test_length_mismatch_is_named():
    with pytest.raises(ValueError, match="sentence 1 has 2 gold tags but 1 predicted tags"):
        entity_counts([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="as many sentences, got 2 and 1"):
        entity_counts([["O"], ["O"]], [["O"]])


def test_convert_scheme_round_trips_and_repairs():
    bio = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
    bioes = ["B-PER", "I-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC", "O", "S-ORG"]
    assert convert_scheme(bio, "bioes") == bioes
    assert convert_scheme(bioes, "bio") == bio
    assert convert_scheme(bio, "bio") == bio and convert_scheme(bioes, "bioes") == bioes
    assert convert_scheme(["O", "I-PER", "I-PER"], "bio") == ["O", "B-PER", "I-PER"]  # ill-formed -> well-formed
    with pytest.raises(ValueError, match="scheme must be one of bio, bioes, got 'iob1'"):
        convert_scheme(bio, "iob1")


def _random_tags(rng: random.Random, n: int, prefixes: str) -> list[str]:
    kinds = ["PER", "LOC"]
    return ["O" if rng.random() < 0.35 else f"{rng.choice(prefixes)}-{rng.choice(kinds)}" for _ in range(n)]


@pytest.mark.parametrize("prefixes", ["BI", "BIES"])
def test_agrees_with_seqeval_on_random_tags(prefixes):
    seqeval = pytest.importorskip("seqeval.metrics", reason="the cross-check needs seqeval (pip install seqeval)")
    from seqeval.metrics.sequence_labeling import get_entities

    rng = random.Random(len(prefixes))
    for _ in range(20):  # 20 corpora of up to 12 sentences, ill-formed sequences included
        gold = [_random_tags(rng, rng.randint(1, 10), prefixes) for _ in range(rng.randint(1, 12))]
        pred = [_random_tags(rng, len(g), prefixes) for g in gold]
        for tags in gold:
            assert entities(tags) == [Span(t, s, e + 1) for t, s, e in get_entities(tags)]
        p, r, f1 = precision_recall_f1(entity_counts(gold, pred))
        assert p == pytest.approx(seqeval.precision_score(gold, pred, zero_division=0))
        assert r == pytest.approx(seqeval.recall_score(gold, pred, zero_division=0))
        assert f1 == pytest.approx(seqeval.f1_score(gold, pred, zero_division=0))
        # Converting to either scheme keeps the entities.
        for scheme in ("bio", "bioes"):
            assert [entities(convert_scheme(t, scheme)) for t in gold] == [entities(t) for t in gold]
