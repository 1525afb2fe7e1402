"""Micro-batching: concurrent predict requests to one model become one ``predict`` call.

One asyncio queue and one worker per model. The worker takes the first waiting request,
lets others join it for up to ``wait`` seconds (or until ``max_batch`` inputs), concatenates
the inputs of those with the same options, makes one ``predict`` call in a thread, and splits
the rows back by request. Only tasks whose predict returns one row per input, independent of
the other inputs (``Inputs.per_input``), are batched. If the batched call fails, each request
is run again on its own, so only a bad request gets the error.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from .models import ServedModel

__all__ = ["MicroBatcher", "Batched", "run_predict"]

log = logging.getLogger(__name__)


async def run_predict(model: ServedModel, inputs: list[str], options: dict) -> list[dict]:
    """One predict call on ``model``: in a thread, while holding the model's lock."""
    async with model.lock:
        return await asyncio.to_thread(model.run.predict, list(inputs), **options)


class Batched(NamedTuple):
    """A request's rows, and how many inputs the predict call that made them held (all requests')."""

    rows: list[dict]
    batch_inputs: int


@dataclass(eq=False)
class _Job:
    inputs: tuple[str, ...]
    options: tuple  # sorted (name, value) pairs: requests batch only with equal options
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Batches the predict requests of one model (start it with ``start()`` inside the event loop).

    Args:
        model: the served model (its task's predict must be per input).
        max_batch: at most this many inputs per predict call (a larger request runs alone).
        wait: seconds the first request of a batch waits for others (0: only those already queued).
    """

    def __init__(self, model: ServedModel, max_batch: int, wait: float) -> None:
        self.model, self.max_batch, self.wait = model, max_batch, wait
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.calls = 0  # predict calls made (for tests and the load benchmark)
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"batcher:{self.model.name}")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    async def predict(self, inputs: tuple[str, ...], options: tuple) -> Batched:
        """The rows of ``inputs``, predicted in a batch with whatever else arrives meanwhile."""
        job = _Job(inputs, options, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def _run(self) -> None:
        held: deque[_Job] = deque()  # taken from the queue but not in the last batch
        while True:
            first = held.popleft() if held else await self.queue.get()
            batch, count = [first], len(first.inputs)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.wait
            while count < self.max_batch:
                if held:
                    job = held.popleft()
                elif not self.queue.empty():
                    job = self.queue.get_nowait()
                else:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self.queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                if job.options != first.options or count + len(job.inputs) > self.max_batch:
                    held.append(job)  # the next batch starts with it
                    break
                batch.append(job)
                count += len(job.inputs)
            await self._predict(batch)

    async def _predict(self, batch: list[_Job]) -> None:
        batch = [job for job in batch if not job.future.done()]  # (a client that went away)
        if not batch:
            return
        inputs = [s for job in batch for s in job.inputs]  # (N,) all the requests' inputs, in order
        options = dict(batch[0].options)
        try:
            self.calls += 1
            rows = await run_predict(self.model, inputs, options)
            if len(rows) != len(inputs):
                raise RuntimeError(f"predict returned {len(rows)} rows for {len(inputs)} inputs")
        except Exception as e:
            if len(batch) == 1:
                _settle(batch[0].future, error=e)
                return
            log.debug("%s: a batch of %d requests failed (%s); running them one by one", self.model.name,
                      len(batch), e)
            for job in batch:
                try:
                    self.calls += 1
                    rows = await run_predict(self.model, list(job.inputs), options)
                    _settle(job.future, Batched(rows, len(job.inputs)))
                except Exception as e1:
                    _settle(job.future, error=e1)
            return
        start = 0
        for job in batch:
            _settle(job.future, Batched(rows[start:start + len(job.inputs)], len(inputs)))
            start += len(job.inputs)


def _settle(future: asyncio.Future, result: Batched | None = None, error: Exception | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
