"""Every task's baselines land in summary.json (tiny runs), beside the model on the task's metric;
the command line warns when the model loses; the shared fits against direct computations."""
import csv
import json
import math
import random
import sys

import numpy as np
import pytest
import torch

from rnnkit.cli import main as cli_main
from rnnkit.runs import evaluate, train
from rnnkit.tasks import get_task
from rnnkit.tasks.baselines import char_ngram_loss, compare, comparison_lines, majority_class, tag_by_word
from rnnkit.tasks.base import TensorData
from rnnkit.training import TrainConfig

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[2] / "benchmarks"))

TINY_TRAIN = dict(epochs=1, max_steps=2, batch_size=16, lr=1e-2, seed=0)
WORDS = ["the", "king", "queen", "love", "my", "lord", "sweet", "night"]


def _text_csv(path, n=120) -> str:
    rng = random.Random(0)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("text", "label"))
        for i in range(n):
            label = ("good", "bad")[i % 2]
            words = [rng.choice(WORDS) for _ in range(6)] + [{"good": "yummy", "bad": "yuck"}[label]]
            writer.writerow((" ".join(words), label))
    return str(path)


def _series_csv(path, n=160) -> str:
    t = np.arange(n)
    y = 50 + 0.5 * t + 5 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(0).normal(0, 0.5, n)
    path.write_text("value\n" + "\n".join(repr(float(v)) for v in y) + "\n")
    return str(path)


def _text_file(path) -> str:
    rng = random.Random(0)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(300)))
    return str(path)


# task -> (options, the baselines expected, the task's metric); the data are tiny
def _cases(tmp):
    return {
        "digits": (dict(hidden_size=8), {"majority", "pixel_lr"}),
        "sentiment": (dict(data=_text_csv(tmp / "reviews.csv"), embedding_dim=8, hidden_size=8, min_freq=1,
                           max_len=16, embedding_init="random"), {"majority", "tfidf_lr"}),
        "charlm": (dict(data=_text_file(tmp / "tiny.txt"), hidden_size=16, embedding_dim=8, seq_len=20),
                   {"trigram", "5gram"}),
        "forecast": (dict(data=_series_csv(tmp / "s.csv"), column="value", season=12, window=12, hidden_size=8,
                          arima="1,1,0"), {"naive", "snaive", "arima"}),
        "adding": (dict(seq_len=10, hidden_size=8, train_size=64, val_size=32, test_size=32), {"constant"}),
        "copy": (dict(seq_len=5, hidden_size=8, train_size=64, val_size=32, test_size=32), {"memoryless"}),
        "tagging": (dict(train_sentences=60, val_sentences=20, test_sentences=30, embedding_dim=8,
                         char_embedding_dim=4, char_channels=4, hidden_size=8), {"majority", "word_tag"}),
    }


@pytest.mark.parametrize("name", ["digits", "sentiment", "charlm", "forecast", "adding", "copy", "tagging"])
def test_summary_holds_every_baseline_on_the_task_metric(tmp_path, name):
    if name == "tagging":
        pytest.importorskip("faker")
    if name == "forecast":
        pytest.importorskip("statsmodels")
    options, expected = _cases(tmp_path)[name]
    cls = get_task(name)
    summary = train(name, cls.Options(**options), TrainConfig(**TINY_TRAIN), tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    for baseline in expected:
        key = f"baseline_{baseline}_test_{cls.metric}"
        assert math.isfinite(saved[key]), key
        assert saved[key] == summary[key]
    c = compare(saved, cls.metric, cls.mode)
    assert set(c.baselines) == expected and c.model == saved[f"test_{cls.metric}"]
    # evaluate re-makes the same test split and the same baselines
    again = evaluate(tmp_path / "run")
    for baseline in expected:
        key = f"baseline_{baseline}_test_{cls.metric}"
        assert again[key] == pytest.approx(saved[key], rel=1e-9), key


def test_a_model_that_loses_is_warned_about_in_train_and_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(["train", "digits", "--max-steps", "1", "--hidden-size", "4", "--no-progress",
                     "--out", str(out)]) == 0  # one step: far below logistic regression on pixels
    captured = capsys.readouterr()
    last = captured.out.strip().splitlines()[-1]
    assert last.startswith("model test_accuracy ") and "pixel_lr" in last and "majority" in last
    warning = [line for line in captured.err.splitlines() if "warning: the model" in line]
    assert len(warning) == 1 and "is worse than the pixel_lr baseline" in warning[0], captured.err
    assert cli_main(["evaluate", str(out)]) == 0
    captured = capsys.readouterr()
    assert "baseline_pixel_lr_test_accuracy:" in captured.out
    assert "is worse than the pixel_lr baseline" in captured.err
    assert cli_main(["evaluate", str(out), "--json"]) == 0  # stdout stays one JSON line
    captured = capsys.readouterr()
    assert "baseline_pixel_lr_test_accuracy" in json.loads(captured.out)
    assert "is worse than" in captured.err


def test_speech_and_mnist_baselines_on_tiny_splits():
    speech = get_task("speech")(get_task("speech").Options())
    speech.meta = {"tokens": ["<blank>", "zero", "one", "two"], "labels": "words"}

    def utterances(rows):
        width = max(len(r) for r in rows)
        targets = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        return TensorData({"targets": targets, "target_lengths": torch.tensor([len(r) for r in rows])})

    train_split = utterances([[1, 2], [1, 2], [3]])  # "zero one" most often
    test_split = utterances([[1, 2], [3, 3]])  # 0 word edits, then 2 substitutions (of 2 + 2 words)
    scores = speech.baselines({"train": train_split, "test": test_split})["majority"]
    assert scores["wer"] == pytest.approx(2 / 4)
    mnist = get_task("mnist")(get_task("mnist").Options())
    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 2
    x = torch.rand(40, 28, 28, generator=g) * 0.1 + y.view(-1, 1, 1) * 0.5  # brighter for class 1
    result = mnist.baselines({"train": TensorData({"x": x[:30], "y": y[:30]}),
                              "test": TensorData({"x": x[30:], "y": y[30:]})})
    assert result["pixel_lr"]["accuracy"] == 1.0 and result["majority"]["accuracy"] == 0.5


def test_char_ngram_equals_the_benchmark_script():
    charlm_ngram = pytest.importorskip("charlm_ngram")
    rng = random.Random(1)
    text = "\n".join(" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(120))
    train_text, test_text = text[:3000], text[3000:]
    chars = sorted(set(train_text))
    index = {c: k + 2 for k, c in enumerate(chars)}
    ids = lambda t: torch.tensor([index.get(c, 1) for c in t])  # noqa: E731
    V = len(chars) + 2
    for order in (1, 3, 5):
        expected = charlm_ngram.nats_per_char(charlm_ngram.fit(train_text, order), test_text, train_text, V)
        assert char_ngram_loss(ids(train_text), ids(test_text), V, order) == pytest.approx(expected, rel=1e-12)


def test_tag_by_word_and_majority():
    x = torch.tensor([[2, 3, 4], [2, 5, 0]])
    y = torch.tensor([[1, 0, 0], [1, 2, 0]])
    pred = tag_by_word(x, y, torch.tensor([3, 2]), torch.tensor([[5, 2, 7]]))
    assert pred.tolist() == [[2, 1, 0]]  # 7 never seen: the default tag
    assert majority_class(["a", "a", "b"], ["a", "b"]) == {"accuracy": 0.5, "f1": pytest.approx(1 / 3)}


@pytest.mark.parametrize("mode, model, loses", [("min", 86.7, True), ("min", 12.9, False), ("max", 0.8, True),
                                                ("min", float("nan"), True)])
def test_compare_knows_the_direction(mode, model, loses):
    metrics = {"test_rmse": model, "baseline_arima_test_rmse": 17.2, "baseline_naive_test_rmse": 68.4,
               "baseline_arima_test_mae": 1.0}
    c = compare(metrics, "rmse", mode)
    assert c.best == (("arima", 17.2) if mode == "min" else ("naive", 68.4))
    line, warning = comparison_lines(c)
    assert line.startswith("model test_rmse ") and "arima 17.2" in line
    assert (warning is not None) == loses
    if loses and mode == "min":
        assert warning.startswith("the model (test_rmse ") and "worse than the arima baseline (17.2)" in warning
