"""alarm: an online anomaly alarm for a monitored signal (patient surveillance).

Data: UCR anomaly archive no. 135, InternalBleeding16 (arterial blood pressure, 7,501 values,
one labelled anomaly at rows 4187-4198), as aeon bundles it (``KDD-TSAD_135``), or a CSV file
in the same layout: a header row, an optional ``timestamp`` column, one or more value columns
and ``is_anomaly`` (0/1) (see :mod:`rnnkit.data.datasets.anomaly`).

How the alarm is built, step by step:

1. The normal part. The signal's first ``train_length`` rows are its normal training part
   (KDD-TSAD_135: its 1,200-row TRAIN file; a CSV: ``--train-length N``, or by default the
   first half of the rows before its first labelled anomaly). Its last ``val_fraction`` is the
   validation part, the rest the training part, in time order; the rows after the normal
   part are the test part. A labelled anomaly inside the normal part is refused.
2. The model: a unidirectional recurrent next-value predictor (``rnnkit.models.Forecaster``,
   horizon = one value per column) reads ``window`` values scaled by the training part's
   mean and std and predicts the next row; loss = mean squared error in those units.
3. Scoring, online: the model streams through the whole signal with ``rnnkit.Stream``
   (``Forecaster.stream()``: one step at a time, memory that does not grow), predicting each
   row before it arrives. The score of row t is the squared prediction error averaged over
   the columns and over the last ``smooth`` rows; rows before ``window + smooth - 1`` have
   none (warm-up).
4. The threshold: ``margin`` x the ``quantile`` of the validation part's scores, streamed the
   same way (the normal part's rows, kept in ``meta["calibration"]``). A row whose score
   exceeds it is in alarm; an *alarm* is the first row of each run of such rows.
5. Metrics, as the UCR anomaly archive scores (``split_metrics``; summary.json's ``test_*``):
   ``located`` (1 if the highest score of the scored part lies in a labelled region widened
   by ``tolerance`` rows on each side, else 0), ``detection_delay`` (rows from a region's
   start to the first alarming row inside its widened region, 0 when it alarms before the
   start, averaged over the regions; a region never alarmed gets the scored part's length,
   worse than any real delay), ``false_alarms_per_10k`` (alarms outside every widened region
   per 10,000 scored rows), ``separation`` (highest score inside a widened region over the
   highest outside it: > 1 when located) and ``threshold``. The scored part is the test part
   (training), or a ``--data`` file's rows from ``window`` on (``rnnkit evaluate``). The best
   weights are picked on the validation loss.

Baselines, scored the same way (smoothing, calibration on the validation part, metrics):
a rolling z-score of the signal over one season (window = the season; score = squared
z-score, its "prediction" the rolling mean) and the seasonal-naive prediction error (the
value one season earlier), the season being the lag of the highest autocorrelation of the
training part after it first turns negative.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..data.datasets.anomaly import LabelledSignal, anomaly_regions, load_anomaly_signal, read_anomaly_csv
from ..export import ExportSpec, ForecasterGraph
from ..models.forecaster import Forecaster, ForecasterConfig
from ..models.recurrent import CELLS
from ..training import StepOutput, module_device
from ..training.runfiles import non_empty, non_negative, positive
from .base import Task, TensorData, register

__all__ = ["AlarmTask", "AlarmOptions", "AlarmPredictOptions", "AlarmScores", "alarm_metrics", "alarm_starts",
           "season_of", "smoothed"]

CALIBRATION_ROWS = 20_000  # most normal rows kept in meta to calibrate the threshold


@dataclass
class AlarmOptions:
    data: str = "KDD-TSAD_135"  # KDD-TSAD_135 | path of a CSV file (value columns and is_anomaly 0/1)
    columns: str = ""  # CSV only: value columns, comma-separated ("" = all but timestamp and is_anomaly)
    train_length: int = 0  # rows of the normal part; 0 = the data's own (a CSV: half the rows before its first anomaly)
    val_fraction: float = 0.25  # of the normal part, at its end: validation and the threshold's calibration
    window: int = 128  # input length T of the training windows; scoring starts after it
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 32
    num_layers: int = 1
    dropout: float = 0.0
    smooth: int = 8  # score = squared prediction error averaged over the last `smooth` rows
    quantile: float = 0.99  # threshold = margin x this quantile of the validation part's scores
    margin: float = 6.0  # see quantile (the validation part is short: normal beats vary more than it shows)
    tolerance: int = 100  # rows on each side of a labelled region where a detection still counts (UCR: 100)

    def __post_init__(self) -> None:
        owner = "AlarmOptions"
        for name in ("window", "hidden_size", "num_layers", "smooth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{owner}: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_length", "tolerance"):
            if getattr(self, name) < 0:
                raise ValueError(f"{owner}: {name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.val_fraction < 1.0:  # (NaN too)
            raise ValueError(f"{owner}: val_fraction must be in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.quantile <= 1.0:
            raise ValueError(f"{owner}: quantile must be in (0, 1], got {self.quantile}")
        if not self.margin > 0 or not math.isfinite(self.margin):
            raise ValueError(f"{owner}: margin must be a finite number > 0, got {self.margin}")
        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {', '.join(sorted(CELLS))}, got {self.cell!r}")
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1], got {self.dropout}")


@dataclass
class AlarmPredictOptions:
    """What ``rnnkit predict RUN`` takes for an alarm run."""

    threshold: float = 0.0  # alarm above this score; 0 = the run's calibrated threshold

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not math.isfinite(self.threshold) or self.threshold < 0:
            raise ValueError(f"AlarmPredictOptions: threshold must be a finite number >= 0, got {self.threshold!r}")


class AlarmScores(NamedTuple):
    """A signal's scores (N,) float64, NaN during warm-up, and its squared prediction errors (N,), NaN likewise."""

    scores: np.ndarray
    errors: np.ndarray


@dataclass
class _Signal:
    """A whole scaled signal for ``split_metrics`` and the baselines (a split's ``raw``)."""

    x: np.ndarray  # (N, C) float64, scaled by the training part's mean and std
    labels: np.ndarray  # (N,) 0/1
    scored_from: int  # rows before it are history (normal part, warm-up), not scored


# -- scoring, shared by the model and the baselines -----------------------------------------------

def smoothed(errors: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``errors`` (N,) over the last ``k`` rows; NaN where one of them is NaN or missing."""
    valid = np.isfinite(errors)
    total = np.concatenate([[0.0], np.cumsum(np.where(valid, errors, 0.0))])  # (N + 1,)
    count = np.concatenate([[0], np.cumsum(valid)])  # (N + 1,)
    out = np.full(len(errors), np.nan)
    if len(errors) >= k:
        full = (count[k:] - count[:-k]) == k  # (N - k + 1,): rows k-1.. with k valid errors
        out[k - 1:] = np.where(full, (total[k:] - total[:-k]) / k, np.nan)
    return out


def alarm_starts(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Rows where the score rises above ``threshold`` (the first row of each run above it)."""
    above = np.nan_to_num(scores, nan=-np.inf) > threshold
    return np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))


def alarm_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float, scored_from: int,
                  tolerance: int) -> dict[str, float]:
    """located, detection_delay, false_alarms_per_10k, separation, threshold over rows ``scored_from:``
    (see the module docstring); ``scores`` and ``labels`` are (N,)."""
    s, n = scores[scored_from:], len(scores) - scored_from
    regions = [(max(a - tolerance, 0), b + tolerance) for a, b in anomaly_regions(labels[scored_from:])]
    near = np.zeros(n, dtype=bool)
    for lo, hi in regions:
        near[lo:hi] = True
    finite = np.nan_to_num(s, nan=-np.inf)
    out = {"located": 0.0, "detection_delay": float(n), "separation": 0.0, "threshold": float(threshold)}
    if regions and np.isfinite(finite).any():
        out["located"] = float(near[int(np.argmax(finite))])
        inside, outside = finite[near].max(initial=-np.inf), finite[~near].max(initial=-np.inf)
        out["separation"] = float(inside / outside) if outside > 0 and np.isfinite(inside) else 0.0
        delays = []
        for (a, _), (lo, hi) in zip(anomaly_regions(labels[scored_from:]), regions):
            hits = np.flatnonzero(finite[lo:hi] > threshold)
            delays.append(max(lo + int(hits[0]) - a, 0) if len(hits) else n)
        out["detection_delay"] = float(np.mean(delays))
    starts = alarm_starts(s, threshold)
    out["false_alarms_per_10k"] = float((~near[starts]).sum() * 10_000 / max(n, 1))
    return out


def season_of(x: np.ndarray, max_lag: int) -> int:
    """The lag of the highest autocorrelation of ``x`` (N, C), averaged over columns, after it
    first turns negative (the period of a cycle), at most ``max_lag``; 1 when it never does."""
    z = x - x.mean(0)
    total = (z * z).sum()
    if not total > 0 or max_lag < 2:
        return 1
    acf = np.array([(z[:-k] * z[k:]).sum() / total for k in range(1, max_lag + 1)])  # (max_lag,)
    negative = np.flatnonzero(acf < 0)
    if not len(negative):
        return 1
    return int(negative[0] + np.argmax(acf[negative[0]:]) + 1)


def _calibrate(scores: np.ndarray, quantile: float, margin: float) -> float:
    finite = scores[np.isfinite(scores)]
    return float(margin * np.quantile(finite, quantile)) if len(finite) else math.inf


# -- the task -------------------------------------------------------------------------------------

@register
class AlarmTask(Task):
    name = "alarm"
    description = "online anomaly alarm: a recurrent next-value predictor streams through a signal, alarms on its error"
    default_data = "aeon's KDD-TSAD_135 (UCR anomaly archive: InternalBleeding16 blood pressure), or --data FILE.csv"
    metric, mode = "loss", "min"
    Options = AlarmOptions
    PredictOptions = AlarmPredictOptions
    export = ExportSpec(ForecasterGraph, lengths=False)  # windows of one length; --step exports the streaming step
    meta_schema = {"columns": non_empty(str), "train_length": positive(int), "season": positive(int),
                   "scaler": {"mean": non_empty(float), "std": non_empty(float)},
                   "calibration": {"values": non_empty(float), "val_from": non_negative(int)}}
    train_defaults = {"epochs": 30, "batch_size": 32, "lr": 3e-3, "patience": 8}

    # -- data ------------------------------------------------------------------------------------
    def signal(self) -> LabelledSignal:
        """The training signal of ``options.data``."""
        return load_anomaly_signal(self.options.data, self.options.columns)

    def prepare(self, seed: int) -> dict[str, TensorData]:
        """Windows of the training and validation parts and of the test part; fills meta (see the module docstring)."""
        o, sig = self.options, self.signal()
        n = o.train_length or sig.train_length or _half_before_first_anomaly(sig)
        if n > len(sig) - 1:
            raise ValueError(f"alarm: train_length must be < the {len(sig)} rows of {sig.name}, got {n}")
        if sig.labels[:n].any():
            raise ValueError(f"alarm: the normal part of {sig.name} (its first {n} rows) holds a labelled anomaly "
                             f"at row {int(np.argmax(sig.labels[:n]))}; lower --train-length")
        val_start = n - max(int(round(o.val_fraction * n)), 1)
        if val_start - o.window < 2 * o.window:
            raise ValueError(f"alarm: the training part of {sig.name} ({val_start} rows) is too short for windows of "
                             f"{o.window}; lower --window or give a longer normal part")
        mean, std = sig.values[:val_start].mean(0), sig.values[:val_start].std(0)
        if not (std > 0).all():
            raise ValueError(f"alarm: a column of {sig.name} is constant over the training part; nothing to learn")
        start = max(0, n - CALIBRATION_ROWS)
        self.meta = {
            "signal": sig.name, "columns": list(sig.columns), "train_length": n,
            "parts": {"train": [0, val_start], "val": [val_start, n], "test": [n, len(sig)]},
            "scaler": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
            "season": season_of(sig.values[:val_start], val_start // 2),
            "calibration": {"values": [float(v) for v in sig.values[start:n].ravel()],  # the last normal rows
                            "val_from": max(val_start - start, 0)},  # where the validation part starts in them
        }
        x = self._scale(sig.values)  # (N, C)
        normal = _Signal(x[:n], sig.labels[:n], val_start)
        return {"train": TensorData(self._windows(x, o.window, val_start), normal),
                "val": TensorData(self._windows(x[:n], val_start, n), normal),
                "test": TensorData(self._windows(x, n, len(x)), _Signal(x, sig.labels, n))}

    def load_data(self, path: str) -> TensorData:
        """A labelled CSV file (the run's columns) as one split, scored from row ``window`` on."""
        sig = read_anomaly_csv(path, ",".join(self.meta["columns"]))
        if len(sig) <= self.options.window:
            raise ValueError(f"alarm: --data {path} has {len(sig)} rows; scoring needs more than {self.options.window}")
        x = self._scale(sig.values)
        return TensorData(self._windows(x, self.options.window, len(x)), _Signal(x, sig.labels, self.options.window))

    def _scale(self, values: np.ndarray) -> np.ndarray:
        s = self.meta["scaler"]
        return (values - np.asarray(s["mean"])) / np.asarray(s["std"])  # (N, C)

    def _windows(self, x: np.ndarray, lo: int, hi: int) -> dict[str, torch.Tensor]:
        """Inputs x[t - window : t] and targets x[t] for t in [lo, hi)."""
        T = self.options.window
        t = np.arange(max(lo, T), hi)
        steps = t[:, None] + np.arange(-T, 0)[None, :]  # (n, T)
        return {"x": torch.from_numpy(x[steps]).float(),  # (n, T, C)
                "y": torch.from_numpy(x[t]).float()}  # (n, C)

    # -- model and training ------------------------------------------------------------------------
    def build_model(self) -> Forecaster:
        o, C = self.options, len(self.meta["columns"])
        return Forecaster(ForecasterConfig(horizon=C, input_size=C, cell=o.cell, hidden_size=o.hidden_size,
                                           num_layers=o.num_layers, dropout=o.dropout))

    def step(self, model, batch, state=None) -> StepOutput:
        y_hat = model(batch["x"])  # (B, C): the next row, scaled
        return StepOutput((y_hat - batch["y"]).pow(2).sum().float(), batch["y"].numel(), {})

    # -- scoring ------------------------------------------------------------------------------------
    def score(self, model: Forecaster, x: np.ndarray) -> AlarmScores:
        """Stream ``x`` (N, C), scaled, through the model one row at a time: the scores of every row."""
        o = self.options
        stream = model.stream()  # rnnkit.Stream under the head: O(1) memory per step
        device = module_device(model)
        rows = torch.from_numpy(x).to(device=device, dtype=stream.rnn.dtype)  # (N, C)
        predicted = torch.empty_like(rows)  # (N, C): row t = the forecast made after row t - 1
        for t in range(len(rows) - 1):
            predicted[t + 1] = stream.step(rows[t : t + 1])[0]
        errors = (predicted - rows).pow(2).mean(1).double().cpu().numpy()  # (N,)
        errors[: o.window] = np.nan  # the model reads `window` rows before its forecasts count
        return AlarmScores(smoothed(errors, o.smooth), errors)

    def threshold(self, model: Forecaster) -> float:
        """``margin`` x the ``quantile`` of the validation part's scores (the normal rows in meta)."""
        cal, C = self.meta["calibration"], len(self.meta["columns"])
        x = self._scale(np.asarray(cal["values"], dtype=np.float64).reshape(-1, C))
        scores = self.score(model, x).scores
        return _calibrate(scores[cal["val_from"]:], self.options.quantile, self.options.margin)

    def split_metrics(self, model: Forecaster, data: TensorData) -> dict[str, float]:
        """The alarm's metrics over the split's scored part (see the module docstring)."""
        sig = data.raw
        scores = self.score(model, sig.x).scores
        return alarm_metrics(scores, sig.labels, self.threshold(model), sig.scored_from, self.options.tolerance)

    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """zscore (rolling over one season) and snaive (the value one season earlier): loss on the
        scored rows, and the alarm metrics with their own calibrated thresholds."""
        o, m = self.options, self.meta["season"]
        normal, sig = splits["val"].raw, splits["test"].raw
        out = {}
        for name in ("zscore", "snaive"):
            cal = _baseline(name, normal.x, m, o.smooth)
            threshold = _calibrate(cal.scores[normal.scored_from:], o.quantile, o.margin)
            test = _baseline(name, sig.x, m, o.smooth)
            loss = test.errors[sig.scored_from:]
            out[name] = {"loss": float(np.nanmean(loss)) if np.isfinite(loss).any() else math.inf,
                         **alarm_metrics(test.scores, sig.labels, threshold, sig.scored_from, o.tolerance)}
        return out

    # -- using a trained model ---------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model, inputs: list[str], options: AlarmPredictOptions) -> list[dict]:
        """The alarms of each input: one dict per alarm (its first row ``index``, its ``score``,
        the ``threshold``, the ``peak`` score of its run above the threshold and that run's
        last row ``end``); an input without alarms gives none.

        The inputs are CSV files (the run's columns; ``is_anomaly`` not needed), each streamed
        from its first row, or, for a one-column run, numbers: one signal, oldest first.
        """
        if not inputs:
            raise ValueError("alarm: predict needs CSV files or the signal's values as numbers")
        model.eval()
        threshold = options.threshold or self.threshold(model)
        if all(_is_number(s) for s in inputs):
            if len(self.meta["columns"]) != 1:
                raise ValueError(f"alarm: numbers as inputs need a one-column run, this one reads "
                                 f"{len(self.meta['columns'])} columns; give CSV files")
            signals = [("values", np.asarray([float(s) for s in inputs])[:, None])]
        else:
            signals = [(s, read_anomaly_csv(s, ",".join(self.meta["columns"]), labels_required=False).values)
                       for s in inputs]
        rows = []
        for name, values in signals:
            scores = self.score(model, self._scale(values)).scores
            above = np.nan_to_num(scores, nan=-np.inf) > threshold
            for t in alarm_starts(scores, threshold):
                end = t + int(np.argmin(np.append(above[t:], False))) - 1
                rows.append({"input": name, "index": int(t), "score": float(f"{scores[t]:.6g}"),
                             "threshold": float(f"{threshold:.6g}"), "end": int(end),
                             "peak": float(f"{scores[t : end + 1].max():.6g}")})
        return rows


def _baseline(name: str, x: np.ndarray, season: int, smooth: int) -> AlarmScores:
    """A baseline's scores and squared prediction errors (scaled units) on ``x`` (N, C)."""
    N = len(x)
    errors, scores = np.full(N, np.nan), np.full(N, np.nan)
    if N > season:
        if name == "snaive":
            errors[season:] = ((x[season:] - x[:-season]) ** 2).mean(1)
            scores = smoothed(errors, smooth)
        else:  # zscore: mean and std of the `season` rows before each row
            c1 = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, 0)])  # (N + 1, C)
            c2 = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x * x, 0)])
            mean = (c1[season:-1] - c1[:-season - 1]) / season  # (N - season, C): rows season..N-1
            var = np.maximum((c2[season:-1] - c2[:-season - 1]) / season - mean**2, 1e-12)
            errors[season:] = ((x[season:] - mean) ** 2).mean(1)
            scores = smoothed(((x[season:] - mean) ** 2 / var).mean(1), smooth)
            scores = np.concatenate([np.full(season, np.nan), scores])
    return AlarmScores(scores, errors)


def _half_before_first_anomaly(sig: LabelledSignal) -> int:
    if not sig.labels.any():
        raise ValueError(f"alarm: {sig.name} has no labelled anomaly; give the normal part's length with "
                         "--train-length")
    return int(np.argmax(sig.labels)) // 2


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
