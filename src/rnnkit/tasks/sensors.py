"""sensors: many-to-one classification of real-valued multivariate series of any length.

Default data: JapaneseVowels (UEA archive, bundled with aeon: 270 train / 370 test
utterances of 9 speakers, 12 LPC channels, 7-29 steps). ``--data`` takes any classification
set bundled with aeon by name (BasicMotions, PickupGestureWiimoteZ, GunPoint, ...; the error
for a wrong name lists what the installed aeon holds) or a ``.ts`` file
(``rnnkit.data.datasets.archive``).

The pipeline::

    series (C, T_i) --standardise per channel (train mean/std)--> (T_i, C)
        --pad to the longest, lengths kept--> (B, T, C) --bi-LSTM/GRU, masked by length--> (B, T, 2H)
        --pool (mean|max|last over the valid steps)--> (B, 2H) --Linear--> logits (B, K)

The archive's own train/test split is kept; validation is a seeded stratified share of the
training set (``val_fraction``), used to pick the best epoch. A lone ``.ts`` file (no
``X_TRAIN.ts`` / ``X_TEST.ts`` pair) gives test too, a stratified ``test_fraction`` of it.
In training, the standardised series may get Gaussian noise (``noise``) and a random scale
per series and channel (``scale``), a small augmentation for sets of a few dozen series.

Baselines (``baselines``): MiniRocket (aeon's ``MiniRocketClassifier``, 10,000 kernels, ridge
classifier, random_state 0) and 1-NN DTW (aeon's ``KNeighborsTimeSeriesClassifier``, full
window), both fitted on the archive's whole training set (train + val) of raw series, as the
published archive results are.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets.archive import SeriesSet, load_archive, read_series_csv, read_ts_file, stratified_holdout
from ..export import ClassifierGraph, ExportSpec
from ..models import CELLS, ClassifierConfig, SequenceClassifier
from ..training import StepOutput, module_device
from ..training.runfiles import non_empty, positive
from .base import NoOptions, Task, TensorData, argmax_over_split, register
from .baselines import evenly_spaced

__all__ = ["SensorsTask", "SensorsOptions", "minirocket_accuracy", "dtw_accuracy", "pad_edge",
           "DTW_MAX_CELLS", "MINIROCKET_MAX_ROWS"]

log = logging.getLogger(__name__)

DTW_MAX_CELLS = 2e9  # DTW's budget of cost-matrix cells (train rows x test rows x T^2): test rows are capped to fit
MINIROCKET_MAX_ROWS = 10_000  # training series MiniRocket fits on (evenly spaced)


@dataclass
class SensorsOptions:
    # -- data
    data: str = "JapaneseVowels"  # a classification set bundled with aeon (JapaneseVowels, BasicMotions, GunPoint, ...) or a .ts file
    val_fraction: float = 0.2  # of each class of the training set, held out (seeded) to pick the best epoch
    test_fraction: float = 0.3  # of each class of a lone .ts file (no _TRAIN/_TEST pair), held out as test
    # -- model
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = True  # read each series both ways
    pooling: str = "max"  # last | mean | max over the valid steps' outputs
    dropout: float = 0.2  # before the head (and between layers)
    # -- augmentation (training only, on the standardised series)
    noise: float = 0.2  # standard deviation of Gaussian noise added to every value; 0 = off
    scale: float = 0.3  # each series' channels are multiplied by 1 + N(0, scale); 0 = off
    crop: float = 0.0  # each series is cut to a random window of at least (1 - crop) of its steps; 0 = off

    def __post_init__(self) -> None:
        owner = "SensorsOptions"
        if not self.data:
            raise ValueError(f"{owner}: data must be a bundled set's name or a .ts file, got ''")
        for name in ("hidden_size", "num_layers"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{owner}: {name} must be an int >= 1, got {getattr(self, name)!r}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:  # (NaN too)
                raise ValueError(f"{owner}: {name} must be in (0, 0.5), got {getattr(self, name)}")
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1], got {self.dropout}")
        for name in ("noise", "scale", "crop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{owner}: {name} must be in [0, 1], got {getattr(self, name)}")
        choices = {"cell": tuple(CELLS), "pooling": ("last", "mean", "max")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{owner}: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")


@register
class SensorsTask(Task):
    name = "sensors"
    description = "many-to-one classification of multivariate sensor series of any length (UEA/UCR archive)"
    default_data = ("JapaneseVowels (UEA, bundled with aeon: 270/370 utterances, 12 channels, 7-29 steps); "
                    "any aeon-bundled set by name or a .ts file with --data")
    metric, mode = "accuracy", "max"
    Options = SensorsOptions
    export = ExportSpec(ClassifierGraph, lengths=True)  # series of different lengths, padded
    meta_schema = {"labels": non_empty(str), "channels": positive(int), "mean": [float], "std": [float]}
    # 270 (JapaneseVowels) or 40 (BasicMotions) training series: small batches, many epochs.
    # The last epoch's weights (keep = last), validated each epoch for the curve only: a
    # validation set of 8-54 series reaches its best accuracy in the first 5-15 epochs, by luck,
    # and the best-epoch rule (the first best wins) then kept that early model, 1-2 points worse
    # on test than the last epoch of the cosine schedule (measured: docs/results-sensors.md).
    train_defaults = {"epochs": 60, "batch_size": 8, "lr": 3e-3, "schedule": "cosine", "keep": "last"}

    # -- data -------------------------------------------------------------------------------
    def prepare(self, seed: int) -> dict[str, TensorData]:
        o = self.options
        train, test = load_archive(o.data, owner="sensors")
        if test is None:  # a lone file: a stratified share of it is the test set
            kept, held = stratified_holdout(train.labels, o.test_fraction, seed)
            train, test = train.take(kept), train.take(held)
        kept, held = stratified_holdout(train.labels, o.val_fraction, seed)
        fit, val = train.take(kept), train.take(held)
        if not len(fit) or not len(val) or not len(test):
            raise ValueError(f"sensors: --data {o.data} has too few series ({len(train)} train, {len(test)} test) "
                             f"for non-empty train/val/test splits")
        if test.channels != train.channels:
            raise ValueError(f"sensors: --data {o.data} test series have {test.channels} channels, "
                             f"train series {train.channels}")
        # Standardisation per channel, from the training series' values only (val and test unseen).
        values = np.concatenate(fit.series, axis=1)  # (C, sum of T_i)
        mean, std = values.mean(1), values.std(1)
        self.meta = {
            "labels": _label_order(set(train.labels) | set(test.labels)), "channels": int(train.channels),
            "mean": [float(v) for v in mean], "std": [float(v) if v > 1e-12 else 1.0 for v in std],
            "data": o.data, "sizes": {"train": len(fit), "val": len(val), "test": len(test)},
            "lengths": {"min": int(train.lengths.min()), "max": int(train.lengths.max())},
        }
        unseen = sorted(set(test.labels) - set(fit.labels))
        if unseen:
            log.warning("sensors: test labels %s never occur in the training split", unseen)
        # raw keeps each series' place in the archive's training set: the baselines refit on it in its order.
        return {"train": self._encode(fit, kept), "val": self._encode(val, held), "test": self._encode(test)}

    def load_data(self, path: str) -> TensorData:
        """A set's test split: a bundled set's name, a ``X_TRAIN.ts`` / ``X_TEST.ts`` pair (its TEST
        file), or a lone labelled ``.ts`` file (all its series)."""
        train, test = load_archive(path, owner="sensors")
        data = test if test is not None else train
        if data.channels != self.meta["channels"]:
            raise ValueError(f"sensors: --data {path} has {data.channels} channels, the model was trained on "
                             f"{self.meta['channels']}")
        unknown = sorted(set(data.labels) - set(self.meta["labels"]))
        if unknown:
            raise ValueError(f"sensors: --data {path} has labels {unknown[:10]} that the model does not know; "
                             f"it knows {self.meta['labels'][:20]}")
        return self._encode(data)

    def standardise(self, series: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Series (C, T_i) -> x (N, T, C) float32, standardised with meta's mean/std and zero-padded
        to the longest, and lengths (N,) int64."""
        mean = np.asarray(self.meta["mean"])[:, None]  # (C, 1)
        std = np.asarray(self.meta["std"])[:, None]
        lengths = torch.tensor([s.shape[1] for s in series], dtype=torch.long)  # (N,)
        x = torch.zeros(len(series), int(lengths.max()), self.meta["channels"])  # (N, T, C)
        for i, s in enumerate(series):
            x[i, : s.shape[1]] = torch.from_numpy(((s - mean) / std).T)  # (T_i, C)
        return x, lengths

    def _encode(self, data: SeriesSet, positions: Sequence[int] | None = None) -> TensorData:
        """Tensors of a set; ``raw`` = (the set, each series' position in the archive's training set)."""
        x, lengths = self.standardise(data.series)
        index = {label: k for k, label in enumerate(self.meta["labels"])}
        y = torch.tensor([index[label] for label in data.labels], dtype=torch.long)  # (N,)
        places = tuple(positions) if positions is not None else tuple(range(len(data)))
        return TensorData({"x": x, "lengths": lengths, "y": y}, raw=(data, places))

    # -- baselines --------------------------------------------------------------------------
    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """minirocket and dtw (1-NN), fitted on train + val (the archive's training set), raw
        series; test accuracy (DTW on at most as many test series as DTW_MAX_CELLS allows)."""
        train = _in_archive_order(splits["train"].raw, splits["val"].raw)
        test = splits["test"].raw[0]
        return {"minirocket": {"accuracy": minirocket_accuracy(train, test)},
                "dtw": {"accuracy": dtw_accuracy(train, test)}}

    # -- model and loss ---------------------------------------------------------------------
    def build_model(self) -> SequenceClassifier:
        o = self.options
        return SequenceClassifier(ClassifierConfig(
            num_classes=len(self.meta["labels"]), input_size=self.meta["channels"], cell=o.cell,
            hidden_size=o.hidden_size, num_layers=o.num_layers, bidirectional=o.bidirectional,
            dropout=o.dropout, pooling=o.pooling,
        ))

    def step(self, model, batch, state=None) -> StepOutput:
        lengths = batch["lengths"]  # (B,)
        x = batch["x"][:, : int(lengths.max())]  # (B, T, C): the batch's longest series, no more padding
        if model.training:
            x, lengths = self._augment(x, lengths)
        logits = model(x, lengths)  # (B, K)
        loss_sum = F.cross_entropy(logits, batch["y"], reduction="sum")
        correct = (logits.argmax(-1) == batch["y"]).sum().item()
        return StepOutput(loss_sum, len(batch["y"]), {"correct": correct})

    def _augment(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A random window of each series (``crop``), a random scale per series and channel
        (``scale``), then Gaussian noise (``noise``). Draws from torch's global generator (seeded
        and resumable). Padded steps change too; the model never reads them."""
        o = self.options
        B, T, C = x.shape
        if o.crop > 0:
            keep = torch.rand(B, device=x.device) * o.crop  # (B,) share of steps dropped
            new = (lengths.to(x.device) * (1 - keep)).ceil().long().clamp(min=1)  # (B,)
            start = (torch.rand(B, device=x.device) * (lengths.to(x.device) - new + 1)).floor().long()  # (B,)
            steps = (start[:, None] + torch.arange(T, device=x.device)).clamp(max=T - 1)  # (B, T)
            x = x.gather(1, steps[:, :, None].expand(B, T, C))  # (B, T, C), the window first
            lengths = new.to(lengths.device)
        if o.scale > 0:
            x = x * (1 + o.scale * torch.randn(B, 1, C, device=x.device))  # (B, T, C)
        if o.noise > 0:
            x = x + o.noise * torch.randn_like(x)
        return x, lengths

    def label_predictions(self, model, data: TensorData) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's true and predicted classes (the run's confusion matrix)."""
        def logits_of(model, batch):
            lengths = batch["lengths"]  # (B,)
            return model(batch["x"][:, : int(lengths.max())], lengths)  # (B, K)

        return argmax_over_split(self, model, data, logits_of)

    # -- using a trained model --------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model, inputs: list[str], options: NoOptions) -> list[dict]:
        """Each input is a .ts file holding one series or a CSV file (a row per time step, a
        column per channel); returns its label and the probability of every label."""
        if not inputs:
            raise ValueError("sensors: predict needs at least one INPUT, a .ts or .csv file holding one series")
        series = [self._read_input(text) for text in inputs]
        labels = self.meta["labels"]
        rows = []
        for start in range(0, len(series), 256):
            x, lengths = self.standardise(series[start : start + 256])  # (N, T, C), (N,)
            probs = torch.softmax(model(x.to(module_device(model)), lengths), -1)  # (N, K)
            for text, p in zip(inputs[start : start + 256], probs):
                rows.append({"input": text, "label": labels[int(p.argmax())],
                             "probabilities": {label: round(float(q), 4) for label, q in zip(labels, p)}})
        return rows

    def _read_input(self, text: str) -> np.ndarray:
        path = Path(text)
        suffix = path.suffix.lower()
        if suffix not in (".ts", ".csv"):
            raise ValueError(f"sensors: INPUT must be a .ts or .csv file holding one series, got {text!r}")
        if not path.is_file():
            raise ValueError(f"sensors: INPUT {text} does not exist or is not a file")
        if suffix == ".csv":
            series = read_series_csv(path, owner="sensors")  # (C, T)
        else:
            found = read_ts_file(path, owner="sensors", labelled=False)
            if len(found) != 1:
                raise ValueError(f"sensors: INPUT {text} must hold one series, got {len(found)} "
                                 "(rnnkit evaluate RUN --data FILE takes many)")
            series = found.series[0]
        if series.shape[0] != self.meta["channels"]:
            raise ValueError(f"sensors: INPUT {text} has {series.shape[0]} channels, the model was trained on "
                             f"{self.meta['channels']}")
        return series


def _label_order(labels: set[str]) -> list[str]:
    """Numeric labels in numeric order ("2" before "10"), others alphabetically."""
    def number(label: str) -> float | None:
        try:
            return float(label)
        except ValueError:
            return None

    if all(number(label) is not None for label in labels):
        return sorted(labels, key=lambda label: (number(label), label))
    return sorted(labels)


def _in_archive_order(*parts: tuple[SeriesSet, tuple[int, ...]]) -> SeriesSet:
    """The (set, positions) parts joined, in the order of their positions: MiniRocket's fit
    depends on the order of its training series, and in the archive's order it does not
    depend on the validation cut (the seed)."""
    items = sorted(((place, data.series[i], data.labels[i]) for data, places in parts
                    for i, place in enumerate(places)), key=lambda item: item[0])
    return SeriesSet(tuple(s for _, s, _ in items), tuple(y for _, _, y in items), parts[0][0].source)


def pad_edge(series: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Series (C, T_i), T_i <= length -> (N, C, length), each lengthened by repeating its last value."""
    return np.stack([np.pad(s, ((0, 0), (0, length - s.shape[1])), mode="edge") for s in series])


def minirocket_accuracy(train: SeriesSet, test: SeriesSet, seed: int = 0,
                        max_rows: int = MINIROCKET_MAX_ROWS) -> float:
    """aeon's MiniRocketClassifier (random_state ``seed``) fitted on at most ``max_rows`` training
    series (evenly spaced): accuracy on ``test``.

    aeon's MiniRocket takes equal-length series only: unequal ones are padded by repeating
    their last value (edge) to the longest of train and test, and to at least 9 steps (its
    shortest kernel's length).
    """
    from aeon.classification.convolution_based import MiniRocketClassifier

    keep = evenly_spaced(len(train), max_rows)
    length = max(9, int(train.lengths.max()), int(test.lengths.max()))
    model = MiniRocketClassifier(random_state=seed)
    model.fit(pad_edge([train.series[i] for i in keep], length), np.array([train.labels[i] for i in keep]))
    pred = model.predict(pad_edge(test.series, length))
    return float(np.mean(pred == np.array(test.labels)))


def dtw_accuracy(train: SeriesSet, test: SeriesSet, max_cells: float = DTW_MAX_CELLS) -> float:
    """1-NN under DTW (aeon's KNeighborsTimeSeriesClassifier, full window, dependent over the
    channels): accuracy on ``test``, unequal lengths as they are.

    Its cost is train rows x test rows x T^2 cells: when that passes ``max_cells``, only as many
    test series as fit (evenly spaced, at least one) are classified; the log says so.
    """
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

    length = float(max(train.lengths.max(), test.lengths.max()))
    fits = max(1, int(max_cells // (len(train) * length * length)))
    rows = evenly_spaced(len(test), fits)
    if len(rows) < len(test):
        log.info("sensors: dtw baseline on %d of %d test series (cost cap %.0e cells)", len(rows), len(test), max_cells)
    model = KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1)
    with warnings.catch_warnings():  # numba's "unsafe cast from uint64 to int64" inside aeon's dtw
        warnings.simplefilter("ignore")
        model.fit(list(train.series), np.array(train.labels))
        pred = model.predict([test.series[i] for i in rows])
    return float(np.mean(pred == np.array([test.labels[i] for i in rows])))
