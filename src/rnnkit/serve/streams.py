"""Text generation piece by piece (server-sent events) and live forecasting (a websocket).

Both run the model in a worker thread while holding its lock, so the event loop keeps
serving other requests. Sampling draws from torch's global generator, which is one per
process: every generation (of any model) holds ``SAMPLING_LOCK`` and seeds it first (the
request's ``seed``, or a fresh random one that the answer reports), so a seed always gives
the same text.
"""
from __future__ import annotations

import asyncio
import json
import math
import secrets
from typing import Any, AsyncIterator, Iterator

import torch

from .config import ServeConfig
from .models import ServedModel
from .requests import MAX_SEED, RequestError

__all__ = ["SAMPLING_LOCK", "new_seed", "generate_text", "generate_pieces", "sse_event", "forecast_session"]

SAMPLING_LOCK = asyncio.Lock()
_END = object()


def new_seed() -> int:
    return secrets.randbelow(MAX_SEED)


def _start(model: ServedModel, options: dict, seed: int) -> Iterator[str]:
    torch.manual_seed(seed)
    return model.run.stream(**options)


async def generate_text(model: ServedModel, options: dict, seed: int) -> str:
    """The whole generated text (what ``rnnkit generate`` prints, without the final newline)."""
    async with model.lock, SAMPLING_LOCK:
        return await asyncio.to_thread(lambda: "".join(_start(model, options, seed)))


async def generate_pieces(model: ServedModel, options: dict, seed: int) -> AsyncIterator[str]:
    """The generated text piece by piece, each sampled in a thread as the previous one is sent.

    If the client goes away (the response is cancelled), the piece being sampled is finished
    before the locks are released and the generator is closed.
    """
    async with model.lock, SAMPLING_LOCK:
        pieces = await asyncio.to_thread(_start, model, options, seed)
        try:
            while True:
                running = asyncio.ensure_future(asyncio.to_thread(next, pieces, _END))
                try:
                    piece = await asyncio.shield(running)
                except asyncio.CancelledError:
                    await asyncio.wait([running])  # the thread still holds the model: let it finish
                    raise
                if piece is _END:
                    return
                yield piece
        finally:
            pieces.close()


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: an optional ``event:`` line, then the JSON ``data:`` line."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, allow_nan=False)}\n\n".encode()


# -- live forecasting ------------------------------------------------------------------------

def _feed(live, values: list[float]) -> list[dict]:
    """Feed ``values`` to a LiveForecast: one answer per value (the forecast after it, or None)."""
    out = []
    for value in values:
        forecast = live.update(value)
        row = {"step": live.count, "value": value, "forecast": None}
        if forecast is not None:
            if not all(math.isfinite(v) for v in forecast):
                raise ValueError(f"the forecast after step {live.count} is not finite (NaN or inf)")
            row["forecast"] = [float(f"{v:.6g}") for v in forecast]  # as predict rounds
        out.append(row)
    return out


def _values(message: Any, config: ServeConfig) -> list[float]:
    """A message's values: ``{"value": x}`` or ``{"values": [x, ...]}``."""
    if not isinstance(message, dict) or not ({"value", "values"} & set(message)):
        raise RequestError(422, "value", 'send {"value": x}, {"values": [x, ...]} or {"reset": true}')
    values = message["values"] if "values" in message else [message["value"]]
    field = "values" if "values" in message else "value"
    if not isinstance(values, list):
        raise RequestError(422, field, f"{field} must be a list of numbers")
    if len(values) > config.max_inputs:
        raise RequestError(413, field, f"{field} has {len(values)} items, more than the {config.max_inputs} "
                                       "allowed (--max-inputs)")
    for k, v in enumerate(values):
        where = field if field == "value" else f"values[{k}]"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RequestError(422, where, f"{where} must be a finite number, got {str(v)[:40]}")
    return [float(v) for v in values]


async def forecast_session(websocket, model: ServedModel, config: ServeConfig) -> None:
    """Live forecasting over an accepted websocket, one observation at a time.

    The client sends ``{"value": x}`` (or ``{"values": [...]}``, or ``{"reset": true}``); each
    value is answered ``{"step": n, "value": x, "forecast": [h values] | null}`` (null while the
    differencing warms up). A bad message is answered ``{"error": ..., "field": ...}`` and the
    session goes on. The recurrent state is this connection's own.
    """
    try:
        async with model.lock:
            live = await asyncio.to_thread(model.task.stream, model.run.model)
    except ValueError as e:
        await websocket.send_json({"error": str(e), "field": None})
        await websocket.close(code=1008)
        return
    await websocket.send_json({"model": model.name, "task": model.task.name, "horizon": live.horizon})
    while True:
        received = await websocket.receive()
        if received["type"] == "websocket.disconnect":
            return
        try:
            if received.get("text") is None:
                raise RequestError(422, "message", "each message must be JSON text, not binary")
            try:
                message = json.loads(received["text"])
            except ValueError:
                raise RequestError(422, "message", "each message must be one JSON object") from None
            if isinstance(message, dict) and message.get("reset") is True:
                live.reset()
                await websocket.send_json({"reset": True, "step": 0})
                continue
            values = _values(message, config)
            async with model.lock:
                rows = await asyncio.to_thread(_feed, live, values)
        except RequestError as e:
            await websocket.send_json(e.body())
            continue
        except ValueError as e:
            await websocket.send_json({"error": str(e).splitlines()[0], "field": "value"})
            continue
        for row in rows:
            await websocket.send_json(row)
