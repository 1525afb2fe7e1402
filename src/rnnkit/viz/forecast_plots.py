"""The forecast figure: history, truth and each method's rolling-origin forecasts, in three panels."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .plots import save_figure

__all__ = ["plot_forecast"]


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
