"""digits in bfloat16 autocast on the CPU: it learns as well as float32 (same settings, same seed),
saves float32 weights, and its run loads, evaluates, predicts and resumes in float32 on the CPU.

The band was set from quick runs (12 epochs, hidden 32, lr 0.01, one thread; test accuracy,
float32 / bf16): seed 0 0.972 / 0.956, seed 1 0.950 / 0.950, seed 2 0.956 / 0.956.
"""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import rnnkit
from rnnkit.runs import evaluate, train
from rnnkit.tasks.digits import DigitsOptions
from rnnkit.training import TrainConfig

SETTINGS = dict(epochs=12, lr=0.01, batch_size=64, device="cpu")  # 276 steps, ~1-3 s each run


def _train(out, precision: str, resume: bool = False, **changes) -> dict:
    config = TrainConfig(precision=precision, **{**SETTINGS, **changes})
    return train("digits", DigitsOptions(hidden_size=32), config, out, resume=resume, progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    return {p: (root / p, _train(root / p, p)) for p in ("32", "bf16")}


def test_bf16_reaches_the_float32_accuracy_band(runs):
    (_, f32), (_, bf16) = runs["32"], runs["bf16"]
    assert f32["test_accuracy"] >= 0.9 and bf16["test_accuracy"] >= 0.9
    assert abs(bf16["test_accuracy"] - f32["test_accuracy"]) <= 0.05
    assert abs(bf16["best_val_accuracy"] - f32["best_val_accuracy"]) <= 0.05


def test_summary_records_the_device_and_the_precision(runs):
    for precision, (run_dir, summary) in runs.items():
        saved = json.loads((run_dir / "summary.json").read_text())
        assert (saved["device"], saved["precision"]) == ("cpu", precision)
        assert (summary["device"], summary["precision"]) == ("cpu", precision)
        train_config = json.loads((run_dir / "config.json").read_text())["train"]
        assert (train_config["device"], train_config["precision"]) == ("cpu", precision)


def test_a_bf16_run_saves_float32_weights_and_optimizer_state(runs):
    run_dir, _ = runs["bf16"]
    for name in ("model.safetensors", "checkpoints/last/model.safetensors"):
        assert {t.dtype for t in load_file(run_dir / name).values()} == {torch.float32}, name
    moments = {k: t.dtype for k, t in load_file(run_dir / "checkpoints/last/optimizer.safetensors").items()
               if k.endswith(("exp_avg", "exp_avg_sq"))}
    assert moments and set(moments.values()) == {torch.float32}


def test_a_bf16_run_loads_evaluates_and_predicts_in_float32_on_the_cpu(runs):
    from sklearn.datasets import load_digits

    run_dir, summary = runs["bf16"]
    for device in (None, "cpu") + (() if torch.cuda.is_available() else ("auto",)):  # (auto: the CPU here)
        run = rnnkit.load(run_dir, device=device)
        assert run.device == torch.device("cpu")
        assert {p.dtype for p in run.parameters()} == {torch.float32}
    # float32 evaluation of the bf16-trained weights: the summary's figures (computed under autocast), nearly
    metrics = evaluate(run_dir, device="cpu")
    assert metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1.5 / 180)
    assert metrics["test_loss"] == pytest.approx(summary["test_loss"], rel=0.02)
    targets = load_digits().target[:100]
    labels = [int(r["label"]) for r in run.predict([str(i) for i in range(100)])]
    assert sum(p == t for p, t in zip(labels, targets)) >= 85


def test_a_bf16_run_resumes_in_float32(runs, tmp_path):
    run_dir, _ = runs["bf16"]
    copy = tmp_path / "more"
    shutil.copytree(run_dir, copy)
    summary = _train(copy, "32", resume=True, epochs=13)  # one more epoch, in float32
    assert (summary["steps"], summary["epochs"], summary["precision"], summary["device"]) == (299, 13, "32", "cpu")
    assert summary["test_accuracy"] >= 0.9
    records = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "val"] == [23 * (k + 1) for k in range(13)]
