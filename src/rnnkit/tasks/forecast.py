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
   lets a model trained on small cycles read larger ones (sunspots). Left at "auto" (the
   default), ``normalize`` and ``difference`` are chosen per series on the validation part
   (``rnnkit.tasks.forecast_auto``), recorded in ``meta["chosen"]`` and summary.json.

Baselines (``rnnkit.models.baselines``), evaluated on exactly the same windows and targets
(rolling origin, every step of every horizon): naive (last value), seasonal naive (the value
one season earlier), and ARIMA (order chosen on the training part, see ``select_arima``; the
parameters re-estimated on everything before the test part, then kept fixed while the
origin rolls over the test part). Their RMSE/MAE come out of ``metrics`` beside the
model's, so summary.json holds ``test_naive_rmse``, ``test_snaive_rmse``,
``test_arima_rmse`` next to ``test_rmse``.

Elsewhere: live forecasting, one observation at a time, is ``rnnkit.tasks.forecast_live``
(``task.stream(model)``); the forecast figure is ``rnnkit.viz.forecast_plots.plot_forecast``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.datasets.series import Series, load_series, read_csv_series
from ..export import ExportSpec, ForecasterGraph
from ..models.baselines import (ArimaSpec, arima_forecast, fit_arima, naive_forecast, parse_arima,
                               seasonal_naive_forecast, select_arima)
from ..models.forecaster import Forecaster, ForecasterConfig
from ..models.recurrent import CELLS
from ..training import StepOutput, module_device
from ..training.runfiles import non_empty, non_negative, positive
from .base import Task, TensorData, register
from .forecast_auto import AUTO, choose_preprocessing
from .forecast_live import LiveForecast

__all__ = ["ForecastTask", "ForecastOptions", "ForecastPredictOptions", "integrate_differences"]

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
    difference: str = "auto"  # auto | none | first | seasonal: what the network reads and predicts (see above)
    log: bool = False  # model log(y) (positive series whose changes scale with the level, e.g. prices)
    normalize: str = "auto"  # auto | global: the training part's mean/std | window: each window's own (see _scale)
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
        if self.difference not in (AUTO, *_DIFFERENCES):
            raise ValueError(f"{owner}: difference must be one of {', '.join(_DIFFERENCES)}, got {self.difference!r} "
                             "(or auto: chosen on the validation part)")
        if self.normalize not in (AUTO, "global", "window"):
            raise ValueError(f"{owner}: normalize must be global or window, got {self.normalize!r} "
                             "(or auto: chosen on the validation part)")
        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {', '.join(sorted(CELLS))}, got {self.cell!r}")
        if not 0.0 <= self.dropout <= 1.0:  # (NaN too)
            raise ValueError(f"{owner}: dropout must be in [0, 1], got {self.dropout}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise ValueError(f"{owner}: {name} must be in (0, 0.5), got {getattr(self, name)}")
        try:
            parse_arima(self.arima, 2)  # a malformed order (the season is checked in prepare)
        except ValueError:
            raise ValueError(f"{owner}: arima must be auto, off, 'p,d,q' or 'p,d,q,P,D,Q' (non-negative integers), "
                             f"got {self.arima!r}") from None


@dataclass
class ForecastPredictOptions:
    """What ``rnnkit predict RUN`` (and ``rnnkit.load(RUN).predict``) takes for a forecast run."""

    horizon: int | None = field(default=None, metadata={
        "help": "steps to forecast (default: the model's own horizon; longer horizons are forecast recursively)"})

    def __post_init__(self) -> None:
        if self.horizon is not None and (isinstance(self.horizon, bool) or not isinstance(self.horizon, int)
                                         or self.horizon < 1):
            raise ValueError(f"ForecastPredictOptions: horizon must be a positive integer, got {self.horizon!r}")


def integrate_differences(z_hat: torch.Tensor, anchor: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                          difference: str) -> torch.Tensor:
    """Forecasts of the model's scaled differences back to levels of ``u`` (step 3 of the module docstring).

    Args:
        z_hat: (B, H) predictions of ``z`` in the model's units, ``(z - loc) / scale``.
        anchor: (B, A) the last known values of ``u`` before each origin, oldest first:
            A >= 1 for "first", A = m (the season) for "seasonal"; unused for "none".
        loc, scale: (B,) what the model's 0 and 1 mean in units of ``z`` (per window).
        difference: "none" (z = u), "first" (z_t = u_t - u_{t-1}) or "seasonal"
            (z_t = u_t - u_{t-m}).

    Returns:
        (B, H) float64 forecasts of ``u``: ``z`` itself, its cumulative sums from the last
        known value, or season by season from the value one season before (known or
        forecast). Applied to the true ``z`` it gives back the true ``u`` exactly.
    """
    dz = z_hat.double() * scale[:, None] + loc[:, None]  # (B, H) in units of z
    if difference == "none":
        return dz
    if difference == "first":
        return anchor[:, -1:] + dz.cumsum(1)  # u_{t+k} = u_{t-1} + z_t + ... + z_{t+k}
    if difference != "seasonal":
        raise ValueError(f"integrate_differences: difference must be one of {', '.join(_DIFFERENCES)}, "
                         f"got {difference!r}")
    m = anchor.shape[1]  # seasonal: u_{t+k} = u_{t+k-m} + z_{t+k}, the earlier u known or forecast
    u_hat = []
    for k in range(dz.shape[1]):
        before = anchor[:, k] if k < m else u_hat[k - m]
        u_hat.append(before + dz[:, k])
    return torch.stack(u_hat, 1)  # (B, H)


# -- the task -------------------------------------------------------------------------------

@register
class ForecastTask(Task):
    name = "forecast"
    description = "many-to-one forecasting of a time series: window of T values -> next `horizon` values"
    default_data = "statsmodels sunspots (default) and co2, pmdarima MSFT close (--data msft), or --data FILE.csv --column NAME"
    metric, mode = "rmse", "min"
    Options = ForecastOptions
    export = ExportSpec(ForecasterGraph, lengths=False)  # windows of one length
    meta_schema = {"season": positive(int), "lag": non_negative(int), "scaler": {"mean": float, "std": positive(float)},
                   "history": non_empty(float), "dates": (None, [str]), "arima?": (None, dict)}
    PredictOptions = ForecastPredictOptions
    train_defaults = {"epochs": 200, "batch_size": 32, "lr": 3e-3, "patience": 40}

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
        origins = self._origins(series, val_start, test_start)
        chosen = choose_preprocessing(self, y, m, val_start, test_start, series.name)  # "auto" options
        if chosen is not None:
            o = self.options
            origins = self._origins(series, val_start, test_start)
        lag = self._lag(m)
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
        if chosen is not None:
            self.meta["chosen"] = chosen
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

    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """naive, snaive and arima (when fitted): rmse and mae over the test windows' targets,
        the same rolling-origin forecasts as the ``test_<name>_rmse`` metrics."""
        t = splits["test"].tensors
        out = {}
        for name in _BASELINES:
            if name in t:
                error = t[name] - t["y"]  # (n, H), original units
                out[name] = {"rmse": float(error.pow(2).mean().sqrt()), "mae": float(error.abs().mean())}
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

    def _origins(self, series: Series, val_start: int, test_start: int) -> dict[str, np.ndarray]:
        """The forecast origins of each part; a ValueError naming the part that holds no window."""
        o, n, m = self.options, len(series.values), series.season
        first = max(o.window + self._lag(m), m)  # inputs need `lag` values before them; snaive needs a season
        parts = {"train": (first, val_start), "val": (val_start, test_start), "test": (test_start, n)}
        origins = {name: np.arange(lo, hi - o.horizon + 1) for name, (lo, hi) in parts.items()}
        for name, (lo, hi) in parts.items():
            if len(origins[name]) == 0:
                raise ValueError(
                    f"forecast: the {name} part of {series.name} (values {lo}..{hi - 1} of {n}) holds no window of "
                    f"{o.window} inputs and {o.horizon} targets; shorten --window/--horizon or use a longer series")
        return origins

    def _lag(self, season: int) -> int:
        """Values lost to differencing (none while the difference is still "auto")."""
        return {"none": 0, "first": 1, "seasonal": season, AUTO: 0}[self.options.difference]

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

    def integrate(self, z_hat: torch.Tensor, anchor: torch.Tensor, loc: torch.Tensor,
                  scale: torch.Tensor) -> torch.Tensor:
        """Scaled predictions of z (B, H) -> forecasts of u (B, H), float64, with this task's
        differencing (see :func:`integrate_differences` for the arguments)."""
        return integrate_differences(z_hat, anchor, loc, scale, self.options.difference)

    def undo_log(self, u: torch.Tensor) -> torch.Tensor:
        """Values of u -> the series' original units: ``exp(u)`` with ``log``, else u itself."""
        return u.exp() if self.options.log else u

    def step(self, model, batch, state=None) -> StepOutput:
        z_hat = model(batch["x"])  # (B, H), scaled
        u_hat = self.integrate(z_hat, batch["anchor"], batch["loc"], batch["scale"])  # (B, H)
        scaled_error = (u_hat - batch["u"]) / self.meta["scaler"]["std"]  # (B, H)
        loss_sum = scaled_error.pow(2).sum().float()
        with torch.no_grad():
            y = batch["y"]  # (B, H), original units
            stats = _error_stats("", self.undo_log(u_hat) - y)
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
            z_hat = model(batch["x"].to(module_device(model))).cpu()  # (B, H), scaled
            u_hat = self.integrate(z_hat, batch["anchor"], batch["loc"], batch["scale"])  # (B, H)
            out.append(self.undo_log(u_hat).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.options.horizon))

    @torch.no_grad()
    def predict(self, model, inputs: list[str], options: ForecastPredictOptions) -> list[dict]:
        """Forecast ``options.horizon`` values (default: the model's) after a history.

        No inputs: after the end of the series the model was trained on. Otherwise the
        inputs are the history, oldest first, as numbers. Horizons beyond the model's are
        forecast recursively: its forecasts are appended to the history and read again.
        """
        o, meta = self.options, self.meta
        horizon = o.horizon if options.horizon is None else options.horizon
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
            z_hat = model(torch.from_numpy(x).float().unsqueeze(-1).to(module_device(model))).cpu()  # (1, H)
            anchor = torch.from_numpy(u[None, len(y) - anchor_len:])  # (1, A)
            u_hat = self.integrate(z_hat, anchor, torch.from_numpy(loc), torch.from_numpy(scale))  # (1, H)
            y = np.concatenate([y, self.undo_log(u_hat)[0].numpy()])
        return y[len(history):len(history) + horizon]

    def stream(self, model: Forecaster) -> LiveForecast:
        """Live forecasting: a ``LiveForecast`` that takes one observation at a time (see there)."""
        return LiveForecast(self, model)


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
