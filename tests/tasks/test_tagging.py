"""tagging: the split by template and the preprocessing, the metrics against a direct count, a
falling loss, and prediction from a saved run (Python and command line); CoNLL files as data."""
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch

import rnnkit
from rnnkit.data.datasets.ner import FAKER_VERSION, NerSentence, read_conll, split_templates, write_conll
from rnnkit.models.tagger import word_case
from rnnkit.tasks.tagging import TaggingOptions, TaggingTask, load_sentences
from rnnkit.training import TrainConfig
from rnnkit.training.metrics import entity_counts, precision_recall_f1
from rnnkit.runs import evaluate, train

TINY = dict(embedding_dim=16, char_embedding_dim=8, char_channels=12, hidden_size=16, dropout=0.0)
SMALL_DATA = dict(train_sentences=300, val_sentences=60, test_sentences=100)


def _needs_faker():
    pytest.importorskip("faker", reason=f"the generated NER data needs faker (pip install faker=={FAKER_VERSION})")


# -- data and preprocessing ------------------------------------------------------------------

def test_generated_splits_use_disjoint_templates_and_train_only_vocab():
    _needs_faker()
    options = TaggingOptions(**SMALL_DATA, **TINY)
    raw = load_sentences(options, seed=0)
    assert [len(raw[k]) for k in ("train", "val", "test")] == [300, 60, 100]
    templates = {k: {s.template for s in part} for k, part in raw.items()}
    assert not (templates["train"] & templates["test"]) and not (templates["train"] & templates["val"])
    expected = split_templates((0.7, 0.15, 0.15), seed=0)
    assert templates["test"] <= set(expected[2])
    task = TaggingTask(options)
    data = task.prepare(seed=123)  # the training seed does not change the generated data
    assert load_sentences(options, seed=5) == raw
    assert task.meta["templates"] == dict(zip(("train", "val", "test"), expected))
    assert task.meta["tags"][0] == "O" and set(task.meta["tags"]) == {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}
    train_words = {re.sub(r"\d", "0", w) for s in raw["train"] for w in s.tokens}  # digits -> 0
    assert set(task.vocab.tokens) == train_words  # min_freq=1: every training word, and only those
    assert "0000" in train_words and not any(c.isdigit() and c != "0" for w in train_words for c in w)
    test = data["test"].tensors
    for b, s in enumerate(raw["test"]):
        n = int(test["lengths"][b])
        words = [re.sub(r"\d", "0", w) for w in s.tokens]
        assert n == len(s.tokens) and task.vocab.decode(test["x"][b, :n]) == [
            w if w in train_words else "<unk>" for w in words]
        assert [task.meta["tags"][i] for i in test["y"][b, :n]] == s.tags
        assert int(test["ambiguous"][b]) == s.ambiguous
        assert [int(c) for c in test["cases"][b, :n]] == [word_case(w) for w in s.tokens]
        for name in ("x", "chars", "cases"):
            assert bool((test[name][b, n:] == 0).all())  # padding
    word = raw["test"][0].tokens[0]
    assert task.chars.decode(test["chars"][0, 0]) == [c if c in task.chars else "<unk>" for c in word]
    assert task.meta["ambiguous_sentences"]["test"] == sum(s.ambiguous >= 0 for s in raw["test"]) > 10


def test_conll_data_in_bioes_and_unknown_tags(tmp_path):
    sentences = [NerSentence(["Ann", "Lee", "met", "Bo", "."], ["B-PER", "I-PER", "O", "B-PER", "O"])] * 30
    write_conll(tmp_path / "d.conll", sentences)
    task = TaggingTask(TaggingOptions(data=str(tmp_path / "d.conll"), scheme="bioes", **TINY))
    data = task.prepare(seed=0)
    assert task.meta["tags"] == ["O", "B-PER", "E-PER", "S-PER"]  # rewritten in BIOES
    assert [len(d) for d in (data["train"], data["val"], data["test"])] == [24, 3, 3]
    y = data["train"].tensors["y"][0]
    assert [task.meta["tags"][i] for i in y] == ["B-PER", "E-PER", "O", "S-PER", "O"]
    assert "templates" not in task.meta
    write_conll(tmp_path / "odd.conll", [(["Acme", "sued"], ["B-ORG", "O"])])
    with pytest.raises(ValueError, match=r"tags \['S-ORG'\] \(in the run's scheme, bioes\) that the model does not know"):
        task.load_data(str(tmp_path / "odd.conll"))
    write_conll(tmp_path / "bio.conll", [(["Ann", "Lee"], ["B-PER", "I-PER"])])
    assert [task.meta["tags"][i] for i in task.load_data(str(tmp_path / "bio.conll")).tensors["y"][0]] == ["B-PER", "E-PER"]


@pytest.mark.parametrize("field, value, words", [
    ("train_sentences", 0, "train_sentences must be an int >= 1, got 0"),
    ("scheme", "iob1", "scheme must be one of bio, bioes, got 'iob1'"),
    ("cell", "transformer", "cell must be one of .*got 'transformer'"),
    ("ambiguous_fraction", 1.5, r"ambiguous_fraction must be in \[0, 1\], got 1.5"),
    ("val_fraction", 0.0, r"val_fraction must be in \(0, 0.5\), got 0.0"),
    ("test_data", "t.conll", "test_data needs data"),
])
def test_options_reject_bad_values(field, value, words):
    with pytest.raises(ValueError, match=f"TaggingOptions: {words}"):
        TaggingOptions(**{field: value})


def test_metrics_from_summed_batches_equal_a_direct_count():
    task = TaggingTask(TaggingOptions())
    task.meta = {"tags": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]}
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 7, (40,), generator=g)
    y = torch.randint(0, 5, (40, 6), generator=g)
    pred = torch.where(torch.rand(40, 6, generator=g) < 0.7, y, torch.randint(0, 5, (40, 6), generator=g))
    ambiguous = torch.where(torch.rand(40, generator=g) < 0.3, torch.zeros(40, dtype=torch.long), -1)
    totals = {"loss_sum": 8.0, "count": int(lengths.sum())}
    for start in range(0, 40, 16):  # as the trainer sums each batch's statistics
        part = slice(start, start + 16)
        for k, v in task._stats(pred[part], y[part], lengths[part], ambiguous[part]).items():
            totals[k] = totals.get(k, 0) + v
    metrics = task.metrics(totals)

    tags = task.meta["tags"]
    gold = [[tags[i] for i in y[b, :n]] for b, n in enumerate(lengths.tolist())]
    guess = [[tags[i] for i in pred[b, :n]] for b, n in enumerate(lengths.tolist())]
    scores = precision_recall_f1(entity_counts(gold, guess))
    amb = [b for b in range(40) if ambiguous[b] >= 0]
    amb_scores = precision_recall_f1(entity_counts([gold[b] for b in amb], [guess[b] for b in amb]))
    assert metrics["f1"] == pytest.approx(scores.f1) and metrics["precision"] == pytest.approx(scores.precision)
    assert metrics["recall"] == pytest.approx(scores.recall) and metrics["ambiguous_f1"] == pytest.approx(amb_scores.f1)
    assert metrics["ambiguous_word_accuracy"] == pytest.approx(sum(int(pred[b, 0] == y[b, 0]) for b in amb) / len(amb))
    valid = torch.arange(6) < lengths.unsqueeze(1)
    assert metrics["accuracy"] == pytest.approx(float(((pred == y) & valid).sum()) / int(lengths.sum()))
    assert metrics["loss"] == pytest.approx(8.0 / int(lengths.sum()))
    assert task.metrics({"loss_sum": 2.0, "count": 4}) == {"loss": 0.5}  # a training step: loss only


# -- training and prediction -----------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    _needs_faker()
    root = tmp_path_factory.mktemp("tagging")
    options = TaggingOptions(**SMALL_DATA, **TINY, crf=True)
    summary = train("tagging", options, TrainConfig(epochs=5, batch_size=16, lr=0.02, seed=0), root / "run",
                    progress=False)
    return root / "run", summary


def test_the_loss_really_falls(run):
    run_dir, summary = run
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["train_loss"] for r in records if r["split"] == "train"]
    assert train_losses[0] > 0.8 * math.log(7)  # near chance (7 tags) at the start
    assert train_losses[-1] < 0.3 * train_losses[0]
    assert summary["test_f1"] > 0.4 and summary["test_accuracy"] > 0.85  # on templates never seen in training
    for key in ("test_loss", "test_accuracy", "test_precision", "test_recall", "test_f1", "test_ambiguous_f1",
                "test_ambiguous_word_accuracy", "val_f1", "best_val_f1"):
        assert key in summary
    assert (run_dir / "plots" / "loss.png").exists()


def test_a_run_predicts_tokens_tags_and_entities(run):
    run_dir, _ = run
    model = rnnkit.load(run_dir)
    rows = model.predict(["Teddy Roosevelt visited Paris", "", "Michael Smith works for Acme Inc."])
    first = rows[0]
    assert first["input"] == "Teddy Roosevelt visited Paris"
    assert first["tokens"] == ["Teddy", "Roosevelt", "visited", "Paris"] and len(first["tags"]) == 4
    assert first["tagged"] == " ".join(f"{w}/{t}" for w, t in zip(first["tokens"], first["tags"]))
    assert set(first["tags"]) <= set(model.task.meta["tags"])
    assert rows[1] == {"input": "", "tagged": "", "tokens": [], "tags": [], "entities": []}
    for row in rows:
        for e in row["entities"]:
            assert e["text"] == " ".join(row["tokens"][e["start"] : e["end"]]) and e["type"] in ("PER", "LOC", "ORG")
    assert model.predict(["Teddy Roosevelt visited Paris"])[0] == first  # batching does not change the tags
    with pytest.raises(ValueError, match="tagging: predict needs at least one INPUT"):
        model.predict([])


def test_predict_from_the_command_line(run):
    run_dir, _ = run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "rnnkit", "predict", str(run_dir), "Teddy Roosevelt visited Paris"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["tokens"] == ["Teddy", "Roosevelt", "visited", "Paris"]
    assert row["tagged"].startswith("Teddy/") and len(row["tags"]) == 4


def test_evaluate_on_the_test_split_written_as_conll(run, tmp_path):
    """The CoNLL path (read, rewrite, encode, mark ambiguous words) gives exactly the test split's metrics."""
    run_dir, summary = run
    task = rnnkit.load(run_dir).task
    write_conll(tmp_path / "test.conll", load_sentences(task.options, seed=0)["test"])
    assert [s.ambiguous for s in read_conll(tmp_path / "test.conll")] == [
        s.ambiguous for s in load_sentences(task.options, seed=0)["test"]]
    metrics = evaluate(run_dir, str(tmp_path / "test.conll"))
    for name in ("f1", "precision", "recall", "accuracy", "ambiguous_f1", "ambiguous_word_accuracy"):
        assert metrics[f"data_{name}"] == pytest.approx(summary[f"test_{name}"]), name
    assert evaluate(run_dir)["test_f1"] == pytest.approx(summary["test_f1"])  # the test split, re-made


def test_train_on_a_conll_file_with_softmax_and_a_gru(tmp_path):
    """A user file, no Faker: names after "met" are people, after "in" places; BIOES, unidirectional."""
    people, places = ["Ann", "Bo", "Cy", "Di", "Ed", "Flo"], ["Rome", "Oslo", "Lima", "Kiev"]
    sentences = []
    for k in range(120):
        p, q = people[k % 6], places[k % 4]
        sentences.append(([p, "met", people[(k + 1) % 6], "in", q, "."], ["B-PER", "O", "B-PER", "O", "B-LOC", "O"]))
    write_conll(tmp_path / "d.conll", sentences)
    options = TaggingOptions(data=str(tmp_path / "d.conll"), scheme="bioes", cell="gru", bidirectional=False,
                             char_features=False, case_features=False, **TINY)  # word embeddings alone
    summary = train("tagging", options, TrainConfig(epochs=4, batch_size=16, lr=0.03, seed=0), tmp_path / "run",
                    progress=False)
    assert summary["test_f1"] > 0.9 and "test_ambiguous_f1" not in summary  # no ambiguous word in the file
    (row,) = rnnkit.load(tmp_path / "run").predict(["Bo met Flo in Oslo ."])
    assert row["tags"] == ["S-PER", "O", "S-PER", "O", "S-LOC", "O"]
