"""forecast: read a window of a time series, predict the next ``horizon`` values at once.

Data: sunspots (yearly), co2 (monthly), MSFT daily close, or one numeric column of a CSV
file (see :mod:`rnnkit.data.datasets.series`).

How the series becomes training data, step by step:

1. Chronological split. The last ``test_fraction`` of the values is the test part, the
   ``val_fraction`` before it the validation part, the rest the training part. A window
   belongs to the part that holds its *targets*; every target of a training window lies
   before the validation part, every validation target before the test part. The inputs
   of the first validation/test windows reach back into the earlier part: that is history
   known at the forecast origin, as it would be in use, not leakage.
2. Transform: ``u = log(y)`` with ``log``; then ``difference`` turns ``u`` into
   ``z_t = u_t`` ("none"), ``u_t - u_{t-1}`` ("first") or ``u_t - u_{t-m}`` ("seasonal",
   m = season length). The scaler (mean, std of ``z``) is fitted on the training part only.
3. Windows: at every origin ``t`` the model reads the scaled ``z[t-window:t]`` and predicts
   ``horizon`` scaled values of ``z`` from ``t`` on; these are integrated back to ``u``
   (cumulative sums, or season by season) from the last known values, so the loss
   (MSE in units of the scaler's std) and the metrics (RMSE, MAE in original units) are
   both about the forecast *levels*. With ``normalize="window"`` each window is scaled by
   its own mean and std instead of the scaler's (computed from its inputs only), which
   lets a model trained on small cycles read larger ones (sunspots).

Baselines, evaluated on exactly the same windows and targets (rolling origin, every
step of every horizon): naive (last value), seasonal naive (the value one season
earlier), and ARIMA (order chosen on the training part, see :func:`select_arima`; the
parameters re-estimated on everything before the test part, then kept fixed while the
origin rolls over the test part). Their RMSE/MAE come out of ``metrics`` beside the
model's, so summary.json holds ``test_naive_rmse``, ``test_snaive_rmse``,
``test_arima_rmse`` next to ``test_rmse``.
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.datasets.series import Series, load_series, read_csv_series
from ..models.forecaster import Forecaster, ForecasterConfig
from ..models.recurrent import CELLS
from ..training.trainer import StepOutput
from ..viz.plots import save_figure
from .base import Task, TensorData, register

__all__ = [
    "ForecastTask", "ForecastOptions", "LiveForecast", "ArimaSpec", "parse_arima", "naive_forecast",
    "seasonal_naive_forecast",
    "select_arima", "fit_arima", "arima_forecast", "plot_forecast",
]

log = logging.getLogger(__name__)

_DIFFERENCES = ("none", "first", "seasonal")
_BASELINES = ("naive", "snaive", "arima")


@dataclass
class ForecastOptions:
    data: str = "sunspots"  # sunspots | co2 | msft | path of a CSV file
    column: str = ""  # CSV only: the value column ("" = the only one besides date_column)
    date_column: str = ""  # CSV only: a column of dates/labels, kept for plots and forecasts
    season: int = 0  # season length in steps; 0 = the data's own (sunspots 11, co2 12, msft 5, CSV 1)
    window: int = 24  # input length T: values the model reads before each forecast
    horizon: int = 1  # values predicted at once from each origin
    difference: str = "none"  # none | first | seasonal: what the network reads and predicts (see above)
    log: bool = False  # model log(y) (positive series whose changes scale with the level, e.g. prices)
    normalize: str = "global"  # global: the training part's mean/std | window: each window's own (see _scale)
    val_fraction: float = 0.15  # of the series, just before the test part
    test_fraction: float = 0.15  # of the series, at its end
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 32
    num_layers: int = 1
    dropout: float = 0.0
    highway: int = 0  # > 0: add a linear term of the last `highway` inputs to the output (<= window)
    arima: str = "auto"  # ARIMA baseline: auto (search) | off | "p,d,q" | "p,d,q,P,D,Q" (season from the data)

    def __post_init__(self) -> None:
        owner = "ForecastOptions"
        for name in ("window", "horizon", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{owner}: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.highway <= self.window:
            raise ValueError(f"{owner}: highway must be in [0, window={self.window}], got {self.highway}")
        if self.season < 0:
            raise ValueError(f"{owner}: season must be >= 0 (0 = the data's own), got {self.season}")
        if self.difference not in _DIFFERENCES:
            raise ValueError(f"{owner}: difference must be one of {', '.join(_DIFFERENCES)}, got {self.difference!r}")
        if self.normalize not in ("global", "window"):
            raise ValueError(f"{owner}: normalize must be global or window, got {self.normalize!r}")
        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {', '.join(sorted(CELLS))}, got {self.cell!r}")
        if not 0.0 <= self.dropout <= 1.0:  # (NaN too)
            raise ValueError(f"{owner}: dropout must be in [0, 1], got {self.dropout}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise ValueError(f"{owner}: {name} must be in (0, 0.5), got {getattr(self, name)}")
        parse_arima(self.arima, 2)  # raises on a malformed order (the season is checked in prepare)


@dataclass
class ArimaSpec:
    """A seasonal ARIMA model: SARIMAX(order, seasonal_order, trend) and, once fitted, its parameters."""

    order: tuple[int, int, int]  # (p, d, q)
    seasonal_order: tuple[int, int, int, int] = (0, 0, 0, 0)  # (P, D, Q, m)
    trend: str = "n"  # "c" (a constant) when the model has no differencing, else "n"
    params: tuple[float, ...] = ()  # statsmodels' order: trend, ar, ma, seasonal ar, seasonal ma, sigma2

    def to_json(self) -> dict:
        return {"order": list(self.order), "seasonal_order": list(self.seasonal_order), "trend": self.trend,
                "params": list(self.params)}

    @classmethod
    def from_json(cls, d: dict) -> "ArimaSpec":
        return cls(tuple(d["order"]), tuple(d["seasonal_order"]), d["trend"], tuple(d["params"]))


# -- baselines ------------------------------------------------------------------------------

def _check_origins(owner: str, y: np.ndarray, origins: np.ndarray, horizon: int, first: int) -> np.ndarray:
    origins = np.asarray(origins, dtype=np.int64)
    if horizon < 1:
        raise ValueError(f"{owner}: horizon must be >= 1, got {horizon}")
    if len(origins) and (origins.min() < first or origins.max() > len(y)):
        raise ValueError(f"{owner}: origins must lie in [{first}, {len(y)}], got [{origins.min()}, {origins.max()}]")
    return origins


def naive_forecast(y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The random walk: every value of the horizon is the last one known, ``y[t-1]``. -> (n, horizon)."""
    origins = _check_origins("naive_forecast", y, origins, horizon, 1)
    return np.repeat(y[origins - 1][:, None], horizon, axis=1)  # (n, h)


def seasonal_naive_forecast(y: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Each value is the last known one of the same season: ``y[t + k - m * (k // m + 1)]``. -> (n, horizon)."""
    if season < 1:
        raise ValueError(f"seasonal_naive_forecast: season must be >= 1, got {season}")
    origins = _check_origins("seasonal_naive_forecast", y, origins, horizon, season)
    k = np.arange(horizon)  # steps ahead, 0-based
    index = origins[:, None] + k[None, :] - season * (k[None, :] // season + 1)  # (n, h), all < origin
    return y[index]


def parse_arima(text: str, season: int) -> ArimaSpec | None:
    """None for "auto"/"off"; an ArimaSpec (unfitted) for "p,d,q" or "p,d,q,P,D,Q"."""
    if text in ("auto", "off"):
        return None
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) not in (3, 6) or min(numbers) < 0:
        raise ValueError(f"ForecastOptions: arima must be auto, off, 'p,d,q' or 'p,d,q,P,D,Q' "
                         f"(non-negative integers), got {text!r}")
    p, d, q = numbers[:3]
    P, D, Q = numbers[3:] if len(numbers) == 6 else (0, 0, 0)
    seasonal = (P, D, Q, season) if (P or D or Q) else (0, 0, 0, 0)
    if seasonal[3] < 2 and seasonal != (0, 0, 0, 0):
        raise ValueError(f"ForecastOptions: arima {text!r} has a seasonal part but the season length is {season}")
    return ArimaSpec((p, d, q), seasonal, "c" if d + D == 0 else "n")


def _sarimax(y: np.ndarray, spec: ArimaSpec, **kwargs):
    try:
        from statsmodels.tsa.statespace.sarimax import SARIMAX
    except ImportError:
        raise ValueError("the ARIMA baseline needs the statsmodels package: pip install statsmodels "
                         "(or pass --arima off)") from None
    return SARIMAX(y, order=spec.order, seasonal_order=spec.seasonal_order, trend=spec.trend, **kwargs)


def fit_arima(y: np.ndarray, spec: ArimaSpec, start: tuple[float, ...] = ()) -> tuple[ArimaSpec, float]:
    """Maximum-likelihood parameters of ``spec`` on ``y``: (the fitted spec, its AIC)."""
    with warnings.catch_warnings():  # convergence chatter of the optimiser on poor candidates
        warnings.simplefilter("ignore")
        result = _sarimax(y, spec).fit(disp=False, cov_type="none", start_params=list(start) or None)
    return ArimaSpec(spec.order, spec.seasonal_order, spec.trend, tuple(float(v) for v in result.params)), float(result.aic)


def arima_forecast(y: np.ndarray, origins: np.ndarray, horizon: int, spec: ArimaSpec) -> np.ndarray:
    """Forecasts of a fitted ``spec`` from every origin, parameters fixed. -> (n, horizon).

    One Kalman filter pass over ``y[:max(origins)]`` gives the one-step-ahead state
    ``a_{t|t-1}`` at every origin ``t`` (from ``y[:t]`` only); the ``k``-step forecast
    follows by applying the transition ``k`` times: ``a <- T a + c``, ``y_hat = Z a + d``.
    This equals statsmodels' ``apply(y[:t]).forecast(horizon)`` for each origin (tested),
    in one pass instead of one filter per origin.
    """
    if not spec.params:
        raise ValueError("arima_forecast: spec has no parameters; fit it first with fit_arima")
    origins = _check_origins("arima_forecast", y, origins, horizon, 1)
    if len(origins) == 0:
        return np.zeros((0, horizon))
    end = int(origins.max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _sarimax(y[:end], spec).filter(np.asarray(spec.params))
    ssm = result.model.ssm
    k = ssm.k_states
    T = np.asarray(ssm["transition"]).reshape(k, k, -1)[:, :, 0]  # (k, k), time-invariant
    c = np.asarray(ssm["state_intercept"]).reshape(k, -1)[:, 0]  # (k,)
    Z = np.asarray(ssm["design"]).reshape(1, k, -1)[:, :, 0]  # (1, k)
    d = np.asarray(ssm["obs_intercept"]).reshape(-1)[0]
    a = result.filter_results.predicted_state[:, origins].T  # (n, k): a_{t|t-1}
    steps = []
    for _ in range(horizon):
        steps.append(a @ Z.T + d)  # (n, 1)
        a = a @ T.T + c
    return np.concatenate(steps, axis=1)  # (n, h)


def select_arima(y: np.ndarray, season: int) -> ArimaSpec:
    """Choose an ARIMA model for ``y`` (the training part) the way auto_arima does, on a small grid.

    1. Differencing by unit-root tests, as pmdarima's auto_arima: D from the OCSB test
       (seasonal, m > 1 only), then d from the KPSS test on the seasonally differenced series.
    2. Seasonal part by AIC: (P, Q) in {0, 1}^2 (m > 1 only), with (p, q) = (1, 1).
    3. Orders by AIC with that seasonal part: p in {0..5} x q in {0..2}.

    At most 22 fits; a candidate that fails to fit is skipped. The constant is kept when
    there is no differencing (d + D = 0). Returns the spec without parameters.
    """
    if len(y) < 10 + 2 * season:
        raise ValueError(f"select_arima: needs at least {10 + 2 * season} values for season {season}, got {len(y)}")
    try:
        from pmdarima.arima import ndiffs, nsdiffs
    except ImportError:
        raise ValueError("the ARIMA baseline's order search (--arima auto) needs the pmdarima package: "
                         "pip install pmdarima (or give an order, --arima p,d,q, or --arima off)") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        D = int(nsdiffs(y, m=season, max_D=1, test="ocsb")) if season > 1 else 0
        d = int(ndiffs(y[season * D:] - y[:-season * D] if D else y, max_d=1, test="kpss"))
    trend = "c" if d + D == 0 else "n"
    aics: dict[tuple, float] = {}

    def aic(order: tuple[int, int, int], seasonal: tuple[int, int, int, int]) -> float:
        if (order, seasonal) not in aics:
            try:
                _, value = fit_arima(y, ArimaSpec(order, seasonal, trend))
            except (ValueError, np.linalg.LinAlgError) as e:
                log.info("select_arima: %s x %s failed (%s)", order, seasonal, e)
                value = math.inf
            aics[(order, seasonal)] = value if math.isfinite(value) else math.inf
        return aics[(order, seasonal)]

    seasonals = [(P, D, Q, season) for P in (0, 1) for Q in (0, 1)] if season > 1 else [(0, 0, 0, 0)]
    seasonal = min(seasonals, key=lambda s: aic((1, d, 1), s))
    if seasonal[:3] == (0, 0, 0):
        seasonal = (0, 0, 0, 0)
    order = min(((p, d, q) for p in range(6) for q in range(3)), key=lambda o: aic(o, seasonal))
    if not math.isfinite(aics[(order, seasonal)]):
        raise ValueError("select_arima: no candidate ARIMA model could be fitted")
    log.info("select_arima: chose %s x %s (AIC %.1f, %d candidates)", order, seasonal, aics[(order, seasonal)], len(aics))
    return ArimaSpec(order, seasonal, trend)


# -- the task -------------------------------------------------------------------------------

@register
class ForecastTask(Task):
    name = "forecast"
    description = "many-to-one forecasting of a time series: window of T values -> next `horizon` values"
    default_data = "statsmodels sunspots (default) and co2, pmdarima MSFT close (--data msft), or --data FILE.csv --column NAME"
    metric, mode = "rmse", "min"
    Options = ForecastOptions
    train_defaults = {"epochs": 200, "batch_size": 32, "lr": 3e-3, "patience": 40}
    predict_options = ("horizon",)

    # -- data --------------------------------------------------------------------------------
    def series(self) -> Series:
        """The series named by the options (data, column, date_column, season)."""
        o = self.options
        return load_series(o.data, o.column, o.date_column, o.season)

    def prepare(self, seed: int) -> dict[str, TensorData]:
        o = self.options
        series = self.series()
        y, m = series.values, series.season
        n = len(y)
        n_test, n_val = round(n * o.test_fraction), round(n * o.val_fraction)
        val_start, test_start = n - n_test - n_val, n - n_test  # parts: [0, a) [a, b) [b, n)
        lag = self._lag(m)
        first = max(o.window + lag, m)  # inputs need `lag` values before them; snaive needs a season
        parts = {"train": (first, val_start), "val": (val_start, test_start), "test": (test_start, n)}
        origins = {name: np.arange(lo, hi - o.horizon + 1) for name, (lo, hi) in parts.items()}
        for name, (lo, hi) in parts.items():
            if len(origins[name]) == 0:
                raise ValueError(
                    f"forecast: the {name} part of {series.name} (values {lo}..{hi - 1} of {n}) holds no window of "
                    f"{o.window} inputs and {o.horizon} targets; shorten --window/--horizon or use a longer series")
        u = self._to_u(y, series.name)
        z = _difference(u, o.difference, m)  # (n,), NaN for the first `lag` values
        z_train = z[lag:val_start]  # training part only
        mean, std = float(z_train.mean()), float(z_train.std())
        if not std > 0:
            raise ValueError(f"forecast: the training part of {series.name} is constant after differencing; "
                             "nothing to learn")
        self.meta = {
            "series": series.name, "season": m, "n": n, "lag": lag,
            "parts": {"train": [0, val_start], "val": [val_start, test_start], "test": [test_start, n]},
            "scaler": {"mean": mean, "std": std},  # of z on the training part
            # what predict() starts from when given no history, and the last date for labels:
            "history": [float(v) for v in y[-(o.window + lag):]],
            "dates": list(series.dates[-(o.window + lag):]) if series.dates else None,
            "arima": self._arima_meta(y, m, test_start, val_start),
        }
        out = {}
        for name, t in origins.items():
            data = self._windows(y, u, z, t, m)
            data["naive"] = torch.from_numpy(naive_forecast(y, t, o.horizon))
            data["snaive"] = torch.from_numpy(seasonal_naive_forecast(y, t, o.horizon, m))
            if name == "test" and self.meta["arima"] is not None:
                spec = ArimaSpec.from_json(self.meta["arima"])
                data["arima"] = torch.from_numpy(arima_forecast(y, t, o.horizon, spec))
            out[name] = TensorData(data)
        return out

    def load_data(self, path: str) -> TensorData:
        """Every window of a CSV file's series (the run's column and date column), scaled as in training."""
        o = self.options
        series = read_csv_series(path, o.column, o.date_column or None, self.meta["season"])
        y, m = series.values, series.season
        first = max(o.window + self.meta["lag"], m)
        t = np.arange(first, len(y) - o.horizon + 1)
        if len(t) == 0:
            raise ValueError(f"forecast: --data {path} has {len(y)} values; a window needs at least "
                             f"{first + o.horizon}")
        u = self._to_u(y, series.name)
        data = self._windows(y, u, _difference(u, o.difference, m), t, m)
        data["naive"] = torch.from_numpy(naive_forecast(y, t, o.horizon))
        data["snaive"] = torch.from_numpy(seasonal_naive_forecast(y, t, o.horizon, m))
        return TensorData(data)

    def _lag(self, season: int) -> int:
        return {"none": 0, "first": 1, "seasonal": season}[self.options.difference]

    def _to_u(self, y: np.ndarray, name: str) -> np.ndarray:
        if not self.options.log:
            return y
        if y.min() <= 0:
            raise ValueError(f"forecast: --log needs positive values, {name} has {y.min()} at index {int(y.argmin())}")
        return np.log(y)

    def _windows(self, y: np.ndarray, u: np.ndarray, z: np.ndarray, origins: np.ndarray, season: int) -> dict:
        """Inputs, targets and integration anchors of the windows at ``origins``."""
        o = self.options
        T, H = o.window, o.horizon
        steps_in = origins[:, None] + np.arange(-T, 0)[None, :]  # (n, T)
        steps_out = origins[:, None] + np.arange(H)[None, :]  # (n, H)
        anchor_len = season if o.difference == "seasonal" else 1
        steps_anchor = origins[:, None] + np.arange(-anchor_len, 0)[None, :]  # (n, A)
        x, loc, scale = self._scale(z[steps_in])  # (n, T), (n,), (n,)
        return {
            "x": torch.from_numpy(x).float().unsqueeze(-1),  # (n, T, 1)
            "loc": torch.from_numpy(loc),  # (n,) what the model's 0 means, in units of z
            "scale": torch.from_numpy(scale),  # (n,) what the model's 1 means, in units of z
            "u": torch.from_numpy(u[steps_out]),  # (n, H) targets, model units, float64
            "y": torch.from_numpy(y[steps_out]),  # (n, H) targets, original units, float64
            "anchor": torch.from_numpy(u[steps_anchor]),  # (n, A) last known u values
            "origin": torch.from_numpy(origins.astype(np.int64)),  # (n,) index of the first target
        }

    def _arima_meta(self, y: np.ndarray, season: int, test_start: int, val_start: int) -> dict | None:
        o = self.options
        if o.arima == "off":
            return None
        saved = self.meta.get("arima") if isinstance(self.meta, dict) else None
        if saved and saved.get("option") == o.arima:  # a loaded run (evaluate): reuse its fitted baseline
            return saved
        spec = parse_arima(o.arima, season)
        if spec is None:  # auto: the order is chosen on the training part
            spec = select_arima(y[:val_start], season)
        fitted, aic = fit_arima(y[:test_start], spec)  # parameters: everything before the test part
        return {**fitted.to_json(), "option": o.arima, "aic": aic, "fitted_on": [0, test_start]}

    # -- model and training ------------------------------------------------------------------
    def build_model(self) -> Forecaster:
        o = self.options
        return Forecaster(ForecasterConfig(horizon=o.horizon, input_size=1, cell=o.cell, hidden_size=o.hidden_size,
                                           num_layers=o.num_layers, dropout=o.dropout, highway=o.highway))

    def _scale(self, z_windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model inputs from windows of z (n, T): (x (n, T), loc (n,), scale (n,)), x = (z - loc) / scale.

        normalize="global": loc, scale = the training part's mean and std for every window.
        normalize="window": each window's own mean and std (reversible instance normalisation,
        Kim et al. 2022), so a level or an amplitude never seen in training reads like a
        familiar one; the std is floored at 1% of the global one, for flat windows.
        """
        scaler = self.meta["scaler"]
        n = len(z_windows)
        if self.options.normalize == "global":
            loc, scale = np.full(n, scaler["mean"]), np.full(n, scaler["std"])
        else:
            loc, scale = z_windows.mean(1), np.maximum(z_windows.std(1), 0.01 * scaler["std"])
        return (z_windows - loc[:, None]) / scale[:, None], loc, scale

    def _integrate(self, z_hat: torch.Tensor, anchor: torch.Tensor, loc: torch.Tensor,
                   scale: torch.Tensor) -> torch.Tensor:
        """Scaled predictions of z (B, H) -> forecasts of u (B, H), float64."""
        dz = z_hat.double() * scale[:, None] + loc[:, None]  # (B, H) in units of z
        difference = self.options.difference
        if difference == "none":
            return dz
        if difference == "first":
            return anchor[:, -1:] + dz.cumsum(1)  # u_{t+k} = u_{t-1} + z_t + ... + z_{t+k}
        m = anchor.shape[1]  # seasonal: u_{t+k} = u_{t+k-m} + z_{t+k}, the earlier u known or forecast
        u_hat = []
        for k in range(dz.shape[1]):
            before = anchor[:, k] if k < m else u_hat[k - m]
            u_hat.append(before + dz[:, k])
        return torch.stack(u_hat, 1)  # (B, H)

    def _to_y(self, u: torch.Tensor) -> torch.Tensor:
        return u.exp() if self.options.log else u

    def step(self, model, batch, state=None) -> StepOutput:
        z_hat = model(batch["x"])  # (B, H), scaled
        u_hat = self._integrate(z_hat, batch["anchor"], batch["loc"], batch["scale"])  # (B, H)
        scaled_error = (u_hat - batch["u"]) / self.meta["scaler"]["std"]  # (B, H)
        loss_sum = scaled_error.pow(2).sum().float()
        with torch.no_grad():
            y = batch["y"]  # (B, H), original units
            stats = _error_stats("", self._to_y(u_hat) - y)
            for name in _BASELINES:
                if name in batch:
                    stats.update(_error_stats(f"{name}_", batch[name] - y))
        return StepOutput(loss_sum, y.numel(), stats)

    def metrics(self, totals: dict) -> dict[str, float]:
        """loss (MSE in scaled units), rmse and mae in original units, and the same for each baseline present."""
        count = max(totals["count"], 1)
        out = {"loss": totals["loss_sum"] / count}
        for prefix in ("",) + tuple(f"{name}_" for name in _BASELINES):
            if f"{prefix}sq" in totals:
                out[f"{prefix}rmse"] = math.sqrt(totals[f"{prefix}sq"] / count)
                out[f"{prefix}mae"] = totals[f"{prefix}abs"] / count
        return out

    # -- using a trained model ---------------------------------------------------------------
    @torch.no_grad()
    def forecast_windows(self, model, data: TensorData, batch_size: int = 256) -> np.ndarray:
        """The model's forecasts for every window of ``data`` (a split from prepare or load_data).

        -> (n, horizon) in original units, aligned with ``data.tensors["y"]`` and the baselines.
        """
        model.eval()
        out = []
        for lo in range(0, len(data), batch_size):
            batch = data.take(list(range(lo, min(lo + batch_size, len(data)))))
            u_hat = self._integrate(model(batch["x"]), batch["anchor"], batch["loc"], batch["scale"])  # (B, H)
            out.append(self._to_y(u_hat).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.options.horizon))

    @torch.no_grad()
    def predict(self, model, inputs: list[str], horizon: int | None = None) -> list[dict]:
        """Forecast ``horizon`` values (default: the model's) after a history.

        No inputs: after the end of the series the model was trained on. Otherwise the
        inputs are the history, oldest first, as numbers. Horizons beyond the model's are
        forecast recursively: its forecasts are appended to the history and read again.
        """
        o, meta = self.options, self.meta
        horizon = o.horizon if horizon is None else horizon
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"forecast: horizon must be a positive integer, got {horizon!r}")
        if inputs:
            history = np.asarray([_number(s, k) for k, s in enumerate(inputs)], dtype=np.float64)
            dates = None
        else:
            history, dates = np.asarray(meta["history"], dtype=np.float64), meta["dates"]
        need = max(o.window + meta["lag"], meta["season"] if o.difference == "seasonal" else 1)
        if len(history) < need:
            raise ValueError(f"forecast: predict needs a history of at least {need} values "
                             f"(window {o.window}, difference {o.difference!r}), got {len(history)}")
        model.eval()
        forecast = self._forecast(model, history, horizon)
        row = {"after": dates[-1] if dates else None, "horizon": horizon,
               "forecast": [float(f"{v:.6g}") for v in forecast]}
        future = _future_dates(dates, horizon) if dates else None
        if future:
            row["dates"] = future
        return [row]

    def _forecast(self, model, history: np.ndarray, horizon: int) -> np.ndarray:
        """The next ``horizon`` values after ``history`` (original units), recursively past the model's horizon."""
        o, m = self.options, self.meta["season"]
        anchor_len = m if o.difference == "seasonal" else 1
        y = history.copy()
        while len(y) < len(history) + horizon:
            u = self._to_u(y, "the history")
            z = _difference(u, o.difference, m)
            x, loc, scale = self._scale(z[None, len(y) - o.window:])  # (1, T), (1,), (1,)
            z_hat = model(torch.from_numpy(x).float().unsqueeze(-1))  # (1, H)
            anchor = torch.from_numpy(u[None, len(y) - anchor_len:])  # (1, A)
            u_hat = self._integrate(z_hat, anchor, torch.from_numpy(loc), torch.from_numpy(scale))  # (1, H)
            y = np.concatenate([y, self._to_y(u_hat)[0].numpy()])
        return y[len(history):len(history) + horizon]

    def stream(self, model) -> "LiveForecast":
        """Live forecasting: a ``LiveForecast`` that takes one observation at a time (see there)."""
        return LiveForecast(self, model)


class LiveForecast:
    """A trained forecaster fed one observation at a time, in O(1) time and memory per value.

    ``update(value)`` takes the next observation (original units) and returns the forecast of
    the ``horizon`` values after it (a float64 array, original units), or None while the
    differencing still lacks earlier values (the first ``lag`` observations). The recurrent
    state carries everything seen so far (``rnnkit.models.ForecasterStream``): once ``window + lag``
    values are in, the forecast equals ``predict`` on that history; after that the model keeps
    reading instead of sliding a ``window``-long view (which would cost a window per value).
    Needs ``normalize="global"``: a window's own mean and std change with every value.

    Example (with a trained run): ``live = run.task.stream(run.model)``, then
    ``for y in feed: forecast = live.update(y)``.
    """

    def __init__(self, task: ForecastTask, model: Forecaster) -> None:
        o, meta = task.options, task.meta
        if o.normalize != "global":
            raise ValueError(f"forecast: live forecasting needs normalize='global' (a window's own mean and std "
                             f"change with every value), got normalize={o.normalize!r}")
        self.task, self.horizon = task, o.horizon
        self._lag, self._season = meta["lag"], meta["season"]
        self._anchor_len = self._season if o.difference == "seasonal" else 1
        self._keep = max(self._lag, self._anchor_len, 1)  # the u values differencing and integration need
        self._mean, self._std = meta["scaler"]["mean"], meta["scaler"]["std"]  # of z, the training part's
        model.eval()
        self.stream = model.stream()
        self.reset()

    def reset(self) -> None:
        """Forget every observation so far."""
        self.stream.reset()
        self._u: list[float] = []  # the last `_keep` values of u, oldest first
        self.count = 0

    def update(self, value: float) -> np.ndarray | None:
        """Add the next observation; the forecast of the next ``horizon`` values, or None (warming up)."""
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
            raise ValueError(f"forecast: update takes one finite number (the next observation), got {value!r}")
        if self.task.options.log and value <= 0:
            raise ValueError(f"forecast: --log needs positive values, got {value!r} as observation {self.count + 1}")
        u = math.log(value) if self.task.options.log else float(value)
        self.count += 1
        history = self._u
        if self._lag and len(history) < self._lag:  # z = u_t - u_{t-lag} is not defined yet
            history.append(u)
            return None
        z = u - history[-self._lag] if self._lag else u
        history.append(u)
        del history[: -self._keep]
        x = (z - self._mean) / self._std
        z_hat = self.stream.step(torch.tensor([[x]], dtype=self.stream.rnn.dtype))  # (1, H), scaled
        anchor = torch.tensor([history[-self._anchor_len:]], dtype=torch.float64)  # (1, A): the last u values
        loc, scale = torch.tensor([self._mean], dtype=torch.float64), torch.tensor([self._std], dtype=torch.float64)
        u_hat = self.task._integrate(z_hat, anchor, loc, scale)  # (1, H)
        return self.task._to_y(u_hat)[0].numpy()


def _difference(u: np.ndarray, how: str, season: int) -> np.ndarray:
    """z with z[t] = u[t], u[t] - u[t-1] or u[t] - u[t-m]; NaN where undefined (the first lag values)."""
    if how == "none":
        return u.copy()
    lag = 1 if how == "first" else season
    z = np.full_like(u, np.nan)
    z[lag:] = u[lag:] - u[:-lag]
    return z


def _error_stats(prefix: str, error: torch.Tensor) -> dict[str, float]:
    return {f"{prefix}sq": float(error.pow(2).sum()), f"{prefix}abs": float(error.abs().sum())}


def _number(text: str, k: int) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"forecast: INPUT {k + 1} must be a finite number (a history value), got {text!r}")
    return value


def _future_dates(dates: list[str], n: int) -> list[str] | None:
    """The next ``n`` dates after ``dates`` when they are regular (years, months, days), else None."""
    try:
        import pandas as pd

        index = pd.to_datetime(list(dates[-24:]), format="ISO8601")
        with warnings.catch_warnings():  # pandas 3 announces that infer_freq will return an offset
            warnings.simplefilter("ignore")
            freq = pd.infer_freq(index) if len(index) >= 3 else None
    except (ImportError, ValueError, TypeError):
        return None
    if freq is None:
        return None
    future = pd.date_range(index[-1], periods=n + 1, freq=freq)[1:]
    fmt = {4: "%Y", 7: "%Y-%m"}.get(len(dates[-1]), "%Y-%m-%d")
    return [d.strftime(fmt) for d in future]


# -- plot -----------------------------------------------------------------------------------

def plot_forecast(path: str | os.PathLike, y: np.ndarray, origins: np.ndarray, forecasts: dict[str, np.ndarray],
                  dates: list[str] | None = None, test_start: int | None = None, context: int | None = None,
                  title: str = "") -> Path:
    """A PNG of the history, the truth over the forecast span and each method's forecasts.

    Args:
        path: the PNG to write.
        y: the whole series (N,), original units.
        origins: (n,) consecutive forecast origins (index of each window's first target).
        forecasts: name -> (n, H) forecasts from each origin, e.g. {"rnnkit": ..., "ARIMA": ...}.
        dates: N labels for the x axis (ISO dates or years), or None for the index.
        test_start: where the shaded test span begins (default: the first origin).
        context: how many values before the test span to show (default: as many as it holds).
        title: the plot's title.

    Top panel: each method's forecast ``H`` steps ahead, made at every origin (the hardest
    lead, aligned with the value it forecasts). Middle panel: whole ``H``-step paths from the
    origins ``t0, t0 + H, t0 + 2H, ...``, one after the other, as a forecaster in use would
    issue them. Bottom panel: the error of the top panel's forecasts (forecast - truth),
    where small differences between methods show.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    origins = np.asarray(origins)
    test_start = int(origins[0]) if test_start is None else test_start
    n, H = next(iter(forecasts.values())).shape
    lo = max(0, test_start - (context if context is not None else len(y) - test_start))
    x = _x_axis(dates, len(y))
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True, gridspec_kw={"height_ratios": [3, 3, 2]})
    styles = {"rnnkit": dict(color="tab:red", lw=1.8), "ARIMA": dict(color="tab:blue", lw=1.2, ls="--"),
              "seasonal naive": dict(color="tab:green", lw=1.0, ls=":"), "naive": dict(color="tab:gray", lw=1.0, ls="-.")}
    for ax in axes[:2]:
        ax.plot(x[lo:test_start + 1], y[lo:test_start + 1], color="black", lw=1.0, label="history")
        ax.plot(x[test_start:], y[test_start:], color="black", lw=1.0, alpha=0.45, label="truth (test span)")
        ax.axvspan(x[test_start], x[-1], color="0.92", zorder=0)
        ax.grid(alpha=0.3)
    for name, f in forecasts.items():
        style = styles.get(name, {})
        lead = origins + H - 1  # the index each last-step forecast is about
        axes[0].plot(x[lead], f[:, -1], label=name, **style)
        truth = y[lead]
        rmse = float(np.sqrt(np.mean((f[:, -1] - truth) ** 2)))
        axes[2].plot(x[lead], f[:, -1] - truth, label=f"{name} (RMSE {rmse:.3g})", **style)
        for j, i in enumerate(range(0, n, H)):
            steps = origins[i] + np.arange(H)
            axes[1].plot(x[steps], f[i], label=name if j == 0 else None, **style)
    axes[0].set_title(f"{title}: forecasts {H} step{'s' if H > 1 else ''} ahead, rolling origin" if title else
                      f"forecasts {H} steps ahead, rolling origin")
    axes[1].set_title(f"{H}-step forecast paths from every {H}th origin" if H > 1 else "one-step forecasts")
    axes[2].axhline(0, color="black", lw=0.8)
    axes[2].axvspan(x[test_start], x[-1], color="0.92", zorder=0)
    axes[2].grid(alpha=0.3)
    axes[2].set_title(f"error of the forecasts {H} step{'s' if H > 1 else ''} ahead")
    for ax in axes:
        ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)


def _x_axis(dates: list[str] | None, n: int) -> np.ndarray:
    if dates is not None:
        try:
            return np.array(list(dates), dtype="datetime64[D]")
        except ValueError:
            pass
    return np.arange(n)
