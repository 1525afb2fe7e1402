"""What a run reports beyond the batch metrics: a classifier's confusion matrix and per-class
report on the test split, and a task's whole-split metrics (the optional task hooks)."""
import json

import pytest
import torch

from rnnkit.runs import train
from rnnkit.tasks.digits import DigitsOptions, DigitsTask
from rnnkit.training import TrainConfig, fit_run

TINY = dict(epochs=1, max_steps=3, batch_size=32, lr=1e-2, seed=0)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    summary = train("digits", DigitsOptions(hidden_size=8), TrainConfig(**TINY), out, progress=False)
    return out, summary


def test_a_classifier_run_draws_its_confusion_matrix_and_reports_each_class(digits_run):
    out, summary = digits_run
    assert (out / "plots" / "confusion.png").stat().st_size > 1000
    report = json.loads((out / "summary.json").read_text())["test_class_report"]
    labels = [str(c) for c in range(10)]
    assert list(report) == labels + ["macro avg"]
    total = report["macro avg"]["support"]
    assert total == sum(report[c]["support"] for c in labels) > 0
    # recall weighted by support is the accuracy the batch metrics measured on the same split
    correct = sum(report[c]["recall"] * report[c]["support"] for c in labels)
    assert correct / total == pytest.approx(summary["test_accuracy"], abs=1e-9)
    assert report["macro avg"]["f1"] == pytest.approx(sum(report[c]["f1"] for c in labels) / 10)


class _Counting(DigitsTask):
    """digits plus a whole-split metric: the hook sees the whole test split at once, in eval mode."""

    def split_metrics(self, model, data):
        assert not model.training and not torch.is_grad_enabled()
        return {"items_seen_at_once": len(data)}


def test_whole_split_metrics_join_the_test_metrics(tmp_path):
    task = _Counting(DigitsOptions(hidden_size=8))
    summary = fit_run(task, TrainConfig(**TINY), tmp_path / "run", progress=False)
    assert summary["test_items_seen_at_once"] == sum(report["support"] for name, report in
                                                     summary["test_class_report"].items() if name != "macro avg")
