"""Turning sequences into batches: padding, length bucketing, stream batching, splits.

Everything here is batch-first: a batch of ``B`` sequences of ``T`` steps with ``F``
features is ``(B, T, F)``; integer token ids are ``(B, T)``.

* :func:`pad_sequences` pads/truncates variable-length sequences and keeps true lengths.
* :class:`BucketBatchSampler` groups indices of similar length so little is padding.
* :class:`StreamBatcher` / :func:`stream_batches` cut one long sequence into ``B``
  parallel streams and walk them window by window (language models, truncated BPTT);
  they live in :mod:`rnnkit.data.streams` and are re-exported here.
* :func:`split_indices` makes reproducible train/val/test index splits.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch.utils.data import Sampler

from ..checks import check_bool, check_choice, check_int
from ..checks import check_state_dict as check_state
from .streams import StreamBatcher, StreamWindow, stream_batches

__all__ = [
    "BucketBatchSampler",
    "PaddedBatch",
    "StreamBatcher",
    "StreamWindow",
    "pad_sequences",
    "split_indices",
    "stream_batches",
]


class PaddedBatch(NamedTuple):
    """What :func:`pad_sequences` returns; unpacks as ``values, lengths = ...``."""

    values: torch.Tensor  # (B, T) or (B, T, *F), the sequences' dtype
    lengths: torch.Tensor  # (B,) int64 on the CPU: valid steps per row, after truncation


def pad_sequences(
    seqs: Sequence[Sequence[int] | Sequence[float] | torch.Tensor],
    max_len: int | None = None,
    pad_value: float = 0,
    truncate: str = "post",
    padding: str = "post",
) -> PaddedBatch:
    """Pad (and truncate) ``B`` sequences into one batch-first tensor.

    Args:
        seqs: ``B`` non-empty sequences: lists of ints/floats or tensors of shape
            ``(L,)`` or ``(L, *F)`` (all with the same ``F``). The output dtype is the
            promotion of theirs: lists of ints give int64, lists of floats float32.
        max_len: output length ``T``. ``None`` (default): the longest sequence. Longer
            sequences are truncated, shorter ones padded up to exactly ``max_len``.
        pad_value: fills padded steps; default 0 (``Vocab.pad_index``).
        truncate: ``"post"`` (default) keeps the first ``max_len`` steps, ``"pre"`` the last.
        padding: ``"post"`` (default) puts padding after the data, ``"pre"`` before it.
            rnnkit's layers and ``pack_padded_sequence`` expect ``"post"``.

    Returns:
        ``PaddedBatch(values, lengths)``: ``values`` (B, T, *F); ``lengths`` (B,) with
        ``lengths[b] = min(len(seqs[b]), T)``.
    """
    owner = "pad_sequences"
    truncate = check_choice(owner, "truncate", truncate, ("post", "pre"))
    padding = check_choice(owner, "padding", padding, ("post", "pre"))
    if max_len is not None:
        max_len = check_int(owner, "max_len", max_len, minimum=1)
    if isinstance(pad_value, bool) or not isinstance(pad_value, numbers.Real):
        raise TypeError(f"{owner}: pad_value must be a number, got {type(pad_value).__name__}")
    if not isinstance(seqs, (list, tuple)):
        raise TypeError(f"{owner}: seqs must be a list or tuple of sequences, "
                        f"got {type(seqs).__name__}")
    if len(seqs) == 0:
        raise ValueError(f"{owner}: seqs must hold at least one sequence, got an empty "
                         f"{type(seqs).__name__}")

    tensors = []
    for b, seq in enumerate(seqs):
        t = seq if isinstance(seq, torch.Tensor) else torch.as_tensor(seq)
        if t.dim() == 0 or t.shape[0] == 0:
            raise ValueError(f"{owner}: seqs[{b}] must have shape (L,) or (L, *F) with L >= 1, "
                             f"got shape {tuple(t.shape)}")
        if tensors and t.shape[1:] != tensors[0].shape[1:]:
            raise ValueError(f"{owner}: seqs[{b}] must have feature shape {tuple(tensors[0].shape[1:])} "
                             f"like seqs[0], got {tuple(t.shape[1:])}")
        tensors.append(t)

    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    if not dtype.is_floating_point and not float(pad_value).is_integer():
        raise ValueError(f"{owner}: pad_value must be a whole number for {dtype} sequences, "
                         f"got {pad_value!r}")

    B = len(tensors)
    T = max_len if max_len is not None else max(t.shape[0] for t in tensors)
    lengths = [min(t.shape[0], T) for t in tensors]
    values = torch.full((B, T, *tensors[0].shape[1:]), pad_value, dtype=dtype,
                        device=tensors[0].device)  # (B, T, *F)
    for b, (t, n) in enumerate(zip(tensors, lengths)):
        kept = t[:n] if truncate == "post" else t[t.shape[0] - n:]  # (n, *F)
        if padding == "post":
            values[b, :n] = kept
        else:
            values[b, T - n:] = kept
    return PaddedBatch(values, torch.tensor(lengths, dtype=torch.long))


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices whose sequences have similar lengths, so padding is small.

    Each epoch: (1) shuffle all indices with a ``torch.Generator`` seeded ``seed + epoch``;
    (2) cut them into chunks of ``batch_size * bucket_size_multiplier``; (3) sort each
    chunk by length (stable) and cut it into batches; (4) shuffle the order of the batches
    with the same generator. Every index appears exactly once per epoch (with
    ``drop_last``, the one short batch is left out). ``shuffle=False`` skips (1) and (4).

    Iterating to the end moves on to the next epoch by itself, so two loops give two
    different orders; ``set_epoch(e)`` jumps to epoch ``e``. The sampler counts the
    batches it has handed out: :meth:`state_dict` records ``epoch`` and ``position``, and
    after :meth:`load_state_dict` iteration resumes with the first batch not yet handed
    out. (A ``DataLoader`` with workers draws batches ahead of training; save the
    trainer's own step count as ``position`` in that case.)

    Args:
        lengths: length of each of the ``N`` sequences: ints or a 1-D integer tensor (N,).
        batch_size: indices per batch (the last batch of an epoch may be shorter).
        shuffle: shuffle indices and batch order; default True.
        seed: base seed; epoch ``e`` uses ``seed + e``. Default 0.
        bucket_size_multiplier: chunk size in batches; larger means more homogeneous
            batches and less randomness. Default 50.
        drop_last: drop the short batch, if any. Default False.
    """

    def __init__(self, lengths: Sequence[int] | torch.Tensor, batch_size: int,
                 shuffle: bool = True, seed: int = 0, bucket_size_multiplier: int = 50,
                 drop_last: bool = False) -> None:
        super().__init__()
        owner = "BucketBatchSampler"
        lengths = torch.as_tensor(lengths)
        if lengths.dim() != 1 or lengths.numel() == 0 or lengths.is_floating_point():
            raise ValueError(f"{owner}: lengths must be a non-empty 1-D sequence of ints, "
                             f"got {lengths.dtype} of shape {tuple(lengths.shape)}")
        if int(lengths.min()) < 0:
            raise ValueError(f"{owner}: lengths must be >= 0, got {int(lengths.min())}")
        self.lengths = lengths.long().cpu()  # (N,)
        self.batch_size = check_int(owner, "batch_size", batch_size, minimum=1)
        self.shuffle = check_bool(owner, "shuffle", shuffle)
        self.seed = check_int(owner, "seed", seed, minimum=0)
        self.bucket_size_multiplier = check_int(owner, "bucket_size_multiplier",
                                                bucket_size_multiplier, minimum=1)
        self.drop_last = check_bool(owner, "drop_last", drop_last)
        self._epoch = 0
        self._position = 0  # batches of this epoch already handed out

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Go to ``epoch`` from its start; the current epoch keeps its position, so a
        loop calling ``set_epoch(e)`` after :meth:`load_state_dict` still resumes."""
        epoch = check_int("BucketBatchSampler.set_epoch", "epoch", epoch, minimum=0)
        if epoch != self._epoch:
            self._epoch, self._position = epoch, 0

    def __len__(self) -> int:
        """Batches in a whole epoch (not only those left after resuming)."""
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        chunk = self.batch_size * self.bucket_size_multiplier
        batches: list[list[int]] = []
        for start in range(0, n, chunk):
            idx = order[start:start + chunk]  # (C,)
            # stable: equal lengths keep their shuffled order
            idx = idx[torch.sort(self.lengths[idx], stable=True).indices]
            batches += [idx[i:i + self.batch_size].tolist()
                        for i in range(0, len(idx), self.batch_size)]
        # Only the last chunk can end in a short batch, and it is the last one listed.
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._epoch_batches(self._epoch)
        while self._position < len(batches):
            # Count a batch before handing it out: a checkpoint saved while it is being
            # trained on must resume after it.
            self._position += 1
            yield batches[self._position - 1]
        self._epoch, self._position = self._epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        """Plain ints and bools (JSON-ready): epoch, position and the settings they need."""
        return {"epoch": self._epoch, "position": self._position, "seed": self.seed,
                "batch_size": self.batch_size, "num_samples": len(self.lengths),
                "shuffle": self.shuffle, "drop_last": self.drop_last,
                "bucket_size_multiplier": self.bucket_size_multiplier}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the settings must match this sampler's."""
        owner = "BucketBatchSampler.load_state_dict"
        check_state(owner, state, self.state_dict(), ("epoch", "position"))
        epoch = check_int(owner, "state['epoch']", state["epoch"], minimum=0)
        position = check_int(owner, "state['position']", state["position"], minimum=0)
        if position > len(self):
            raise ValueError(f"{owner}: state['position'] must be <= {len(self)}, got {position}")
        self._epoch, self._position = epoch, position


def split_indices(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                  seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into ``len(fractions)`` parts.

    Part ``k`` holds about ``fractions[k] * n`` indices (boundaries are rounded cumulative
    sums), as an int64 tensor (n_k,); the parts partition ``range(n)`` exactly. Small
    ``n`` can leave a part empty. ``fractions`` must be positive and sum to 1 (within 1e-6).
    """
    owner = "split_indices"
    n = check_int(owner, "n", n, minimum=0)
    seed = check_int(owner, "seed", seed, minimum=0)
    if not isinstance(fractions, (list, tuple)) or len(fractions) == 0:
        raise ValueError(f"{owner}: fractions must be a non-empty list or tuple, got {fractions!r}")
    for k, f in enumerate(fractions):
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0 < f <= 1:
            raise ValueError(f"{owner}: fractions[{k}] must be a number in (0, 1], got {f!r}")
    if abs(math.fsum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"{owner}: fractions must sum to 1, got {fractions!r} "
                         f"(sum {math.fsum(fractions)!r})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # (n,)
    bounds = [0] + [min(n, math.floor(math.fsum(fractions[:k + 1]) * n + 0.5))
                    for k in range(len(fractions) - 1)] + [n]
    return tuple(perm[a:b].clone() for a, b in zip(bounds, bounds[1:]))
