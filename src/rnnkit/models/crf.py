"""A linear-chain conditional random field (CRF) output layer, batch-first, with masks.

For emissions ``e`` (B, T, K) (the tagger's per-token scores of the K tags) and a tag path
``y_1 .. y_L`` of a sentence of length L, the CRF scores the whole path::

    score(y) = start[y_1] + sum_{t=1..L} e_t[y_t] + sum_{t=2..L} A[y_{t-1}, y_t] + end[y_L]
    p(y | x) = exp(score(y)) / Z,    log Z = logsumexp over all K^L paths of score(y)

``A`` (K, K) holds the transition scores (row: the tag before, column: the tag after);
``start`` and ``end`` (K,) score the first and last tag. Training minimises the negative
log-likelihood ``log Z - score(gold)``.

- ``log_partition``: ``log Z`` by the forward algorithm, ``alpha_t[j] = e_t[j] +
  logsumexp_i(alpha_{t-1}[i] + A[i, j])``, in O(L K^2) instead of K^L.
- ``decode``: the best path by Viterbi (the same recursion with max in place of logsumexp,
  plus back-pointers).
- ``score``: ``score(y)`` of given tags.

Masks: ``mask`` (B, T) is True at each sentence's valid steps, a prefix of every row
(padding after the words) with ``mask[:, 0]`` all True. Steps past a sentence's end change
nothing: the recursions carry ``alpha`` through them unchanged.

All three are tested against brute-force enumeration of every path on tiny inputs
(``tests/models/test_crf.py``).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["CRF", "ViterbiPath"]


class ViterbiPath(NamedTuple):
    tags: Tensor  # (B, T) long: the best path; 0 at padded steps
    score: Tensor  # (B,): its score(y)


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags.

    Args:
        num_tags: K >= 1.

    Parameters (initialised uniformly in [-0.1, 0.1], as pytorch-crf does):
        transitions (K, K): ``A[i, j]``, the score of tag j right after tag i.
        start_transitions (K,), end_transitions (K,): scores of the first and the last tag.
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if not (isinstance(num_tags, int) and num_tags >= 1):
            raise ValueError(f"CRF: num_tags must be an int >= 1, got {num_tags!r}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in (self.transitions, self.start_transitions, self.end_transitions):
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    # -- the three computations -----------------------------------------------------------
    def forward(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """Negative log-likelihood ``log Z - score(tags)`` of each sentence: (B,).

        ``emissions`` (B, T, K); ``tags`` (B, T) long (any value at padded steps);
        ``mask`` (B, T) bool or None (all steps valid).
        """
        mask = self._check(emissions, mask, tags)
        return self._log_partition(emissions, mask) - self._score(emissions, tags, mask)

    def log_partition(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """``log Z`` of each sentence (B,), by the forward algorithm."""
        return self._log_partition(emissions, self._check(emissions, mask))

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """``score(tags)`` of each sentence (B,)."""
        return self._score(emissions, tags, self._check(emissions, mask, tags))

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor | None = None) -> ViterbiPath:
        """The highest-scoring path of each sentence, by Viterbi."""
        mask = self._check(emissions, mask)
        B, T, K = emissions.shape  # batch, time, tags
        best = self.start_transitions + emissions[:, 0]  # (B, K): best score of a path ending in each tag
        pointers = []  # T - 1 tensors (B, K): the tag before, on the best path into each tag
        for t in range(1, T):
            # (B, K, 1) + (K, K) -> (B, K_before, K_after)
            candidates = best.unsqueeze(2) + self.transitions
            step_best, step_arg = candidates.max(dim=1)  # (B, K) each
            step_best = step_best + emissions[:, t]
            valid = mask[:, t].unsqueeze(1)  # (B, 1)
            best = torch.where(valid, step_best, best)
            # Past a sentence's end the pointer is the identity, so backtracking walks through padding.
            pointers.append(torch.where(valid, step_arg, torch.arange(K, device=emissions.device)))
        best = best + self.end_transitions
        score, last = best.max(dim=1)  # (B,), (B,)
        path = [last]
        for step_arg in reversed(pointers):
            last = step_arg.gather(1, last.unsqueeze(1)).squeeze(1)  # (B,)
            path.append(last)
        tags = torch.stack(path[::-1], dim=1)  # (B, T)
        return ViterbiPath(tags.masked_fill(~mask, 0), score)

    # -- internals ----------------------------------------------------------------------------
    def _log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        B, T, K = emissions.shape
        alpha = self.start_transitions + emissions[:, 0]  # (B, K): log-sum of paths ending in each tag
        for t in range(1, T):
            # (B, K_before, 1) + (K, K) -> logsumexp over the tag before -> (B, K_after)
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
        return torch.logsumexp(alpha + self.end_transitions, dim=1)  # (B,)

    def _score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        B, T, K = emissions.shape
        tags = tags.masked_fill(~mask, 0)  # padded steps may hold anything (e.g. -100)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T): e_t[y_t]
        trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T - 1): A[y_{t-1}, y_t]
        m = mask.to(emissions.dtype)
        lengths = mask.sum(1)  # (B,)
        last = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (B,): y_L
        return (self.start_transitions[tags[:, 0]] + (emit * m).sum(1) + (trans * m[:, 1:]).sum(1)
                + self.end_transitions[last])

    def _check(self, emissions: Tensor, mask: Tensor | None, tags: Tensor | None = None) -> Tensor:
        """Validate the shapes; return the mask as bool (B, T)."""
        if emissions.dim() != 3 or emissions.shape[2] != self.num_tags or emissions.shape[1] < 1:
            raise ValueError(f"CRF: emissions must have shape (B, T >= 1, {self.num_tags}), got {tuple(emissions.shape)}")
        B, T, _ = emissions.shape
        if tags is not None and tuple(tags.shape) != (B, T):
            raise ValueError(f"CRF: tags must have shape {(B, T)} like the emissions, got {tuple(tags.shape)}")
        if mask is None:
            return torch.ones(B, T, dtype=torch.bool, device=emissions.device)
        if tuple(mask.shape) != (B, T):
            raise ValueError(f"CRF: mask must have shape {(B, T)} like the emissions, got {tuple(mask.shape)}")
        mask = mask.to(device=emissions.device, dtype=torch.bool)
        if not bool(mask[:, 0].all()):
            raise ValueError("CRF: mask[:, 0] must be all True (every sentence needs at least one step)")
        if T > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
            raise ValueError("CRF: mask must be a prefix of valid steps in every row (padding only at the end)")
        return mask
