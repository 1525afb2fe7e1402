"""digits: the loss really falls in a short run, a seed fixes the result, and a run loads back."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file

import rnnkit
from rnnkit.tasks.digits import DigitsOptions
from rnnkit.training import TrainConfig
from rnnkit.runs import train

CONFIG = dict(epochs=2, lr=0.02, batch_size=64)  # 46 steps


def _train(out, seed=0) -> dict:
    return train("digits", DigitsOptions(hidden_size=16), TrainConfig(seed=seed, **CONFIG), out, progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    return {name: (root / name, _train(root / name, seed)) for name, seed in (("a", 0), ("b", 0), ("c", 1))}


def test_the_loss_really_falls(runs):
    run_dir, summary = runs["a"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["train_loss"] for r in records if r["split"] == "train"]
    assert train_losses[0] == pytest.approx(math.log(10), abs=0.15)  # chance at the start
    assert train_losses[-1] < 0.5 * math.log(10)
    assert summary["val_accuracy"] > 0.6 and summary["test_accuracy"] > 0.6
    assert summary["val_loss"] < 0.5 * math.log(10)


def test_a_seed_gives_identical_results(runs):
    (dir_a, a), (dir_b, b), (dir_c, c) = runs["a"], runs["b"], runs["c"]
    assert a["test_loss"] == b["test_loss"] and a["val_loss"] == b["val_loss"]
    wa, wb, wc = (load_file(d / "model.safetensors") for d in (dir_a, dir_b, dir_c))
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    assert any(not torch.equal(wa[name], wc[name]) for name in wa)  # another seed, another model


def test_a_run_loads_back_and_predicts_labels(runs):
    from sklearn.datasets import load_digits

    run_dir, _ = runs["a"]
    model = rnnkit.load(run_dir)
    assert not model.training
    rows = model.predict(["0"])
    assert len(rows) == 1 and isinstance(rows[0]["label"], str) and rows[0]["label"] in "0123456789"

    # The preprocessing is the training's: most of the first 100 images come out right.
    targets = load_digits().target[:100]
    labels = [int(r["label"]) for r in model.predict([str(i) for i in range(100)])]
    assert sum(p == t for p, t in zip(labels, targets)) > 60


@pytest.mark.parametrize("row, message", [
    ("nan," + "0," * 63 + "3", r"row 1: pixels must be finite numbers in \[0, 16\]"),
    ("17," + "0," * 63 + "3", r"row 1: pixels must be finite numbers in \[0, 16\], got 17"),
    ("0," * 64 + "3.5", r"row 1: the label must be a whole number in 0..9, got 3.5"),
    ("0," * 64 + "99", r"row 1: the label must be a whole number in 0..9, got 99"),
])
def test_evaluate_data_with_bad_pixels_or_labels_is_one_error(tmp_path, row, message):
    from rnnkit.tasks.digits import DigitsTask

    task = DigitsTask(DigitsOptions())
    task.prepare(0)  # fills meta: pixel_max, labels
    path = tmp_path / "bad.csv"
    path.write_text(row + "\n")
    with pytest.raises(ValueError, match=message):
        task.load_data(str(path))


def test_an_oversized_image_is_refused_before_decoding(tmp_path):
    from PIL import Image

    from rnnkit.tasks.digits import MAX_IMAGE_PIXELS, image_file_to_rows

    path = tmp_path / "big.png"
    Image.new("L", (8000, 7000)).save(path)  # 56 M pixels: over the limit
    assert 8000 * 7000 > MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match="pixels, more than"):
        image_file_to_rows(str(path), 8)
