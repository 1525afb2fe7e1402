"""forecast's ``--normalize auto`` / ``--difference auto``: the preprocessing picked per series.

Why: a network of saturating units can only produce what it saw in the scaled training
windows. With the training part's mean and std ("global", no differencing), a trending
series (air passengers, a stock index) reaches levels in the validation and test parts that
training never showed, and the forecasts flatten out far below them; differencing or each
window's own scaling ("window") turns those levels into familiar shapes. Which one helps
depends on the series, so it is measured, not guessed:

1. Candidates: every combination of the options left at "auto" (normalize: global, window;
   difference: none, first, and seasonal when the season is > 1), the others as given.
2. For each, the training windows are scaled exactly as the network would see them, and a
   5-nearest-neighbour forecaster (scikit-learn; at most 20,000 training windows, evenly
   spaced) maps each window to its scaled targets. Like the network, it can only produce
   what it has seen, so it fails where a choice leaves the validation windows unlike the
   training ones; it takes milliseconds where training a network per candidate takes minutes.
3. Its forecasts are integrated back to levels and scored by RMSE (original units) on the
   validation part; the lowest wins (ties: the first in the order above). The test part is
   never looked at.

The choice and every candidate's score go to ``meta["chosen"]`` (preprocess.json, and
summary.json's ``chosen``), and the task's options take the chosen values, so config.json
records them and a loaded run needs no choice again.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import TYPE_CHECKING

import numpy as np
import torch

from .baselines import evenly_spaced

if TYPE_CHECKING:
    from .forecast import ForecastTask

__all__ = ["AUTO", "choose_preprocessing"]

AUTO = "auto"
_NEIGHBOURS = 5
_MAX_WINDOWS = 20_000


def choose_preprocessing(task: ForecastTask, y: np.ndarray, season: int, val_start: int, test_start: int,
                         name: str) -> dict | None:
    """Pick the options left at "auto" (steps 1-3 above) for the series ``y`` (N,), whose
    validation part is ``[val_start, test_start)``; None when nothing is left at "auto".

    Sets ``task.options`` to the chosen values and returns the record for ``meta["chosen"]``:
    ``{"normalize", "difference", "by", "val_rmse": {"normalize/difference": rmse, ...}}``.
    """
    o = task.options
    normalizes = ("global", "window") if o.normalize == AUTO else (o.normalize,)
    differences = (("none", "first") + (("seasonal",) if season > 1 else ())) if o.difference == AUTO else (o.difference,)
    if len(normalizes) == 1 and len(differences) == 1:
        return None
    scores = {}
    for normalize, difference in itertools.product(normalizes, differences):
        rmse = _score(task, dataclasses.replace(o, normalize=normalize, difference=difference, arima="off"),
                      y, season, val_start, test_start, name)
        if rmse is not None:
            scores[f"{normalize}/{difference}"] = rmse
    if not scores:
        raise ValueError(f"forecast: no --normalize/--difference choice fits {name} (window {o.window}, "
                         f"season {season}); give them explicitly")
    best = min(scores, key=scores.get)  # the first of equals: dicts keep the order of the candidates
    normalize, difference = best.split("/")
    task.options = dataclasses.replace(o, normalize=normalize, difference=difference)
    return {"normalize": normalize, "difference": difference,
            "by": f"validation RMSE of a {_NEIGHBOURS}-nearest-neighbour forecaster on the scaled windows",
            "val_rmse": {k: round(v, 6) for k, v in scores.items()}}


def _score(task: ForecastTask, options, y: np.ndarray, season: int, val_start: int, test_start: int,
           name: str) -> float | None:
    """Validation RMSE of the k-NN forecaster under ``options``; None if they leave no training window."""
    from sklearn.neighbors import KNeighborsRegressor

    from .forecast import _difference

    candidate = type(task)(options)
    H, lag = options.horizon, candidate._lag(season)
    first = max(options.window + lag, season)
    train_t = np.arange(first, val_start - H + 1)
    val_t = np.arange(val_start, test_start - H + 1)
    if len(train_t) < 2 or len(val_t) == 0:
        return None
    u = candidate._to_u(y, name)
    z = _difference(u, options.difference, season)  # (N,), NaN for the first `lag` values
    z_train = z[lag:val_start]
    if not z_train.std() > 0:
        return None
    candidate.meta = {"scaler": {"mean": float(z_train.mean()), "std": float(z_train.std())}}
    train_t = train_t[evenly_spaced(len(train_t), _MAX_WINDOWS)]
    train = candidate._windows(y, u, z, train_t, season)
    val = candidate._windows(y, u, z, val_t, season)
    steps = train_t[:, None] + np.arange(H)[None, :]  # (n, H)
    target = (z[steps] - train["loc"].numpy()[:, None]) / train["scale"].numpy()[:, None]  # (n, H) scaled
    knn = KNeighborsRegressor(n_neighbors=min(_NEIGHBOURS, len(train_t))).fit(train["x"][..., 0].numpy(), target)
    z_hat = torch.from_numpy(knn.predict(val["x"][..., 0].numpy()).reshape(len(val_t), H))  # (n, H)
    u_hat = candidate.integrate(z_hat, val["anchor"], val["loc"], val["scale"])  # (n, H)
    error = candidate.undo_log(u_hat) - val["y"]
    rmse = float(error.pow(2).mean().sqrt())
    return rmse if np.isfinite(rmse) else None
