"""Forecasting baselines: naive, seasonal naive and (seasonal) ARIMA, from every origin at once.

Each takes the whole series ``y`` (N,) and the forecast *origins* ``t`` (n,) — the index of
the first value to forecast, so the history is ``y[:t]`` — and returns the forecasts
(n, horizon) of ``y[t], ..., y[t + horizon - 1]``: rolling-origin forecasts, the way the
forecast task evaluates its model (``rnnkit.tasks.forecast``).

- naive: the last known value (the random walk);
- seasonal naive: the last known value of the same season;
- ARIMA: a SARIMAX model (statsmodels), its order chosen by :func:`select_arima` or given as
  "p,d,q[,P,D,Q]" (:func:`parse_arima`), its parameters fitted once (:func:`fit_arima`) and
  then kept fixed while the origin rolls (:func:`arima_forecast`, one Kalman filter pass).
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["ArimaSpec", "naive_forecast", "seasonal_naive_forecast", "parse_arima", "fit_arima", "arima_forecast",
           "select_arima"]

log = logging.getLogger(__name__)


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
        raise ValueError(f"parse_arima: arima must be auto, off, 'p,d,q' or 'p,d,q,P,D,Q' "
                         f"(non-negative integers), got {text!r}")
    p, d, q = numbers[:3]
    P, D, Q = numbers[3:] if len(numbers) == 6 else (0, 0, 0)
    seasonal = (P, D, Q, season) if (P or D or Q) else (0, 0, 0, 0)
    if seasonal[3] < 2 and seasonal != (0, 0, 0, 0):
        raise ValueError(f"parse_arima: arima {text!r} has a seasonal part but the season length is {season}")
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
