"""Live forecasting: a trained forecast run fed one observation at a time (``task.stream(model)``).

The task (``rnnkit.tasks.forecast.ForecastTask``) supplies the options, the fitted scaler and
the integration of forecast differences back to levels; ``rnnkit.models.ForecasterStream``
(``model.stream()``) supplies the recurrent state that grows by one step per observation.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from ..models.forecaster import Forecaster
    from .forecast import ForecastTask

__all__ = ["LiveForecast"]


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
        u_hat = self.task.integrate(z_hat, anchor, loc, scale)  # (1, H)
        return self.task.undo_log(u_hat)[0].numpy()
