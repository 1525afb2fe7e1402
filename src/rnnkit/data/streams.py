"""Seed 004's sequence batching for language models: one long sequence, ``B`` streams.

A corpus is one sequence of ``N`` token ids. It is cut into ``B`` contiguous streams
that are read in parallel, window after window, so row ``b`` of window ``k + 1``
continues row ``b`` of window ``k`` and an RNN can carry its hidden state across
windows (truncated backpropagation through time). Batch-first throughout: a window is
``(B, l)`` for token ids, ``(B, l, *F)`` for feature vectors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch

from ..checks import check_int
from ..checks import check_state_dict as check_state

__all__ = ["StreamBatcher", "StreamWindow", "stream_batches"]


class StreamWindow(NamedTuple):
    """One window of :class:`StreamBatcher`; unpacks as ``x, y = window``."""

    inputs: torch.Tensor  # (B, l, *F), l <= seq_len
    targets: torch.Tensor  # (B, l, *F): inputs one step later, in the same stream


class StreamBatcher:
    """Seed 004's sequence batching: one long sequence as ``B`` parallel streams.

    ``n = len(data) // batch_size``; the tail beyond ``B * n`` steps is dropped, and
    ``streams = data[:B * n].view(B, n, *F)``: stream ``b`` is the ``b``-th contiguous
    chunk of ``data``. Windows walk the streams in steps of ``seq_len``: window ``k`` has
    ``inputs = streams[:, t:e]`` and ``targets = streams[:, t+1:e+1]`` with
    ``t = k * seq_len``, ``e = min(t + seq_len, n - 1)``. A stream of ``n`` steps holds
    ``n - 1`` (input, next-step target) pairs, so the last window may be shorter. Row
    ``b`` of consecutive windows continues the same text, so an RNN can carry its state
    from one window into the next (truncated BPTT).

    Args:
        data: one sequence, shape ``(N,)`` (token ids) or ``(N, *F)``; a list of ints works.
        batch_size: number of streams ``B``; needs ``N >= 2 * B``.
        seq_len: steps per window (the BPTT length).

    The batcher counts windows handed out (``state_dict()["position"]``) so an interrupted
    pass resumes where it stopped; finishing a pass starts the next one from window 0.
    """

    def __init__(self, data: Sequence[int] | torch.Tensor, batch_size: int, seq_len: int) -> None:
        owner = "StreamBatcher"
        self.batch_size = check_int(owner, "batch_size", batch_size, minimum=1)
        self.seq_len = check_int(owner, "seq_len", seq_len, minimum=1)
        data = torch.as_tensor(data)
        if data.dim() == 0 or len(data) < 2 * self.batch_size:
            raise ValueError(f"{owner}: data must have shape (N,) or (N, *F) with "
                             f"N >= 2 * batch_size = {2 * self.batch_size}, got {tuple(data.shape)}")
        B, N = self.batch_size, len(data)
        n = N // B  # steps per stream
        self.num_steps = N
        self.streams = data[:B * n].reshape(B, n, *data.shape[1:])  # (B, n, *F)
        self._position = 0  # windows handed out in this pass

    def __len__(self) -> int:
        """Windows per pass: ``ceil((n - 1) / seq_len)``."""
        return -(-(self.streams.shape[1] - 1) // self.seq_len)

    def __iter__(self) -> Iterator[StreamWindow]:
        last = self.streams.shape[1] - 1  # the final step of a stream is only a target
        while self._position < len(self):
            t = self._position * self.seq_len
            e = min(t + self.seq_len, last)
            self._position += 1  # counted before handing out, as in BucketBatchSampler
            # contiguous, so the usual `targets.view(-1)` in a loss works
            yield StreamWindow(self.streams[:, t:e].contiguous(),  # (B, e - t, *F)
                               self.streams[:, t + 1:e + 1].contiguous())  # (B, e - t, *F)
        self._position = 0

    def state_dict(self) -> dict[str, Any]:
        """Plain ints (JSON-ready): position and the settings it depends on."""
        return {"position": self._position, "batch_size": self.batch_size,
                "seq_len": self.seq_len, "num_steps": self.num_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the settings must match this batcher's."""
        owner = "StreamBatcher.load_state_dict"
        check_state(owner, state, self.state_dict(), ("position",))
        position = check_int(owner, "state['position']", state["position"], minimum=0)
        if position > len(self):
            raise ValueError(f"{owner}: state['position'] must be <= {len(self)}, got {position}")
        self._position = position


def stream_batches(data: Sequence[int] | torch.Tensor, batch_size: int,
                   seq_len: int) -> Iterator[StreamWindow]:
    """Iterate over one pass of :class:`StreamBatcher` windows (see there for the layout).

    The notes' example: data 1..12 as 2 streams, ``[1..6]`` and ``[7..12]``; 5
    (input, target) pairs per stream make a window of 3 steps and one of 2:

    >>> windows = list(stream_batches(torch.arange(1, 13), batch_size=2, seq_len=3))
    >>> x, y = windows[0]
    >>> x
    tensor([[1, 2, 3],
            [7, 8, 9]])
    >>> y
    tensor([[ 2,  3,  4],
            [ 8,  9, 10]])
    >>> windows[1].inputs.tolist(), windows[1].targets.tolist()
    ([[4, 5], [10, 11]], [[5, 6], [11, 12]])
    """
    return iter(StreamBatcher(data, batch_size, seq_len))
