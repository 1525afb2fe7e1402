"""Sequence to vector: read a window of a time series, predict the next ``horizon`` values at once."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .recurrent import CELLS, final_hidden, make_recurrent

__all__ = ["ForecasterConfig", "Forecaster", "ForecasterStream"]


@dataclass
class ForecasterConfig:
    horizon: int = 1  # values predicted at once (direct multi-step output)
    input_size: int = 1  # features per time step (1 for a univariate series)
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 32
    num_layers: int = 1
    dropout: float = 0.0  # between recurrent layers and before the head
    highway: int = 0  # > 0: add a linear map of the last `highway` input steps to the output (LSTNet's AR part)

    def __post_init__(self) -> None:
        for name in ("horizon", "input_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"ForecasterConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.highway < 0:
            raise ValueError(f"ForecasterConfig: highway must be >= 0 (0 = off), got {self.highway}")
        if self.cell not in CELLS:
            raise ValueError(f"ForecasterConfig: cell must be one of {', '.join(sorted(CELLS))}, got {self.cell!r}")
        if not 0.0 <= self.dropout <= 1.0:  # (NaN too)
            raise ValueError(f"ForecasterConfig: dropout must be in [0, 1], got {self.dropout}")


class Forecaster(nn.Module):
    """Many-to-one forecaster: recurrent layers over the window -> final state -> dense head.

    The head ``V`` maps the last layer's final hidden state ``s_T`` to all ``horizon``
    future values at once, ``y_hat = V s_T + b`` ("direct" multi-step forecasting: no
    forecast is fed back, so errors do not compound within a horizon). What the values
    mean (scaled levels or scaled differences) is the task's business.

    With ``highway = k > 0`` a linear autoregressive term of the last ``k`` input steps is
    added, ``y_hat = V s_T + b + A x_{T-k+1..T}`` (the "highway" of LSTNet, Lai et al. 2018):
    the linear part of the dynamics is learned exactly and the recurrent part models what
    is left; ``A`` starts at zero, so training starts from the plain model.

    ``forward(x) -> (B, horizon)`` with ``x`` of shape (B, T, input_size), batch-first;
    T >= highway. The head is a standard ``nn.Linear`` (PyTorch's uniform initialisation).
    """

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = make_recurrent(config.cell, config.input_size, config.hidden_size, config.num_layers,
                                  bidirectional=False, dropout=config.dropout)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.horizon)  # V
        self.highway = None
        if config.highway:
            self.highway = nn.Linear(config.highway * config.input_size, config.horizon, bias=False)  # A
            nn.init.zeros_(self.highway.weight)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.config.input_size:
            raise ValueError(f"Forecaster: x must be (B, T, {self.config.input_size}), got {tuple(x.shape)}")
        _, state = self.rnn(x)  # state: h or (h, c), each (L, B, H)
        s_T = final_hidden(state, 1)  # (B, H)
        y_hat = self.head(self.dropout(s_T))  # (B, horizon)
        if self.highway is not None:
            k = self.config.highway
            if x.shape[1] < k:
                raise ValueError(f"Forecaster: highway {k} needs at least {k} time steps, got {x.shape[1]}")
            y_hat = y_hat + self.highway(x[:, -k:].flatten(1))  # (B, k*I) -> (B, horizon)
        return y_hat

    def stream(self, batch_size: int = 1) -> "ForecasterStream":
        """A ``ForecasterStream`` over this model's current weights (rebuild it after training)."""
        return ForecasterStream(self, batch_size)


class ForecasterStream:
    """Feed a forecaster one time step at a time, in O(1) memory (``rnnkit.Stream`` underneath).

    ``step(x_t)`` takes x_t (B, input_size) and returns the forecast (B, horizon) after every
    step fed so far: the same as ``model(x[:, : t + 1])`` on the whole history, so while the
    history is exactly the model's training window long it is the model's windowed forecast,
    and later it is the model reading a longer window. With ``highway = k``, the highway reads
    the last k steps, zeros before the first k (``forward`` refuses windows shorter than k).
    The weights are read when the stream is built; dropout is not applied.
    """

    def __init__(self, model: Forecaster, batch_size: int = 1) -> None:
        from ..streaming import Stream  # not at the top: rnnkit.streaming imports rnnkit.layers

        self.config, self.batch_size = model.config, batch_size
        self.rnn = Stream(model.rnn, batch_size)
        with torch.inference_mode():
            self._head_w_t = model.head.weight.detach().t().clone(memory_format=torch.contiguous_format)  # (H, horizon)
            self._head_b = model.head.bias.detach().clone()  # (horizon,)
            highway = model.highway
            self._highway_w_t = None if highway is None else highway.weight.detach().clone().t()  # (k*I, horizon)
            self._y = torch.empty(batch_size, model.config.horizon, dtype=self._head_b.dtype)
            k, I = model.config.highway, model.config.input_size
            self._recent = torch.zeros(batch_size, k, I, dtype=self._head_b.dtype)  # the last k steps, oldest first

    def reset(self) -> None:
        """Forget everything fed so far."""
        self.rnn.reset()
        with torch.inference_mode():
            self._recent.zero_()

    def step(self, x_t: Tensor) -> Tensor:
        """Feed x_t (B, input_size); returns the forecast (B, horizon) after it, a new tensor."""
        shape = (self.batch_size, self.config.input_size)
        if not isinstance(x_t, Tensor) or x_t.shape != shape:
            got = f"shape {tuple(x_t.shape)}" if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"ForecasterStream.step: x_t must be a tensor of shape {shape} (batch_size, input_size), "
                             f"got {got}")
        with torch.inference_mode():
            self.rnn.input.copy_(x_t)  # (B, I) into the stream's buffer
            self.rnn.advance()
            torch.addmm(self._head_b, self.rnn.output, self._head_w_t, out=self._y)  # (B, horizon)
            if self._highway_w_t is not None:
                self._recent.copy_(torch.cat([self._recent[:, 1:], self.rnn.input.unsqueeze(1)], 1))  # (B, k, I)
                self._y.addmm_(self._recent.flatten(1), self._highway_w_t)
        return self._y.clone()  # outside inference mode: an ordinary tensor
