"""Speech recognition with CTC: an acoustic model, greedy and prefix-beam-search decoding, CER/WER.

The acoustic model (seed 003: many-to-many, one label distribution per frame)::

    log-mel frames (B, T, F) --per-utterance mean/variance normalisation--> (B, T, F)
        --stack k frames into one step (frame subsampling)--> (B, T', kF),  T' = ceil(T / k)
        --(bi)LSTM layers--> (B, T', D*H) --Linear--> (B, T', C) --log_softmax--> log-probs

Label 0 is CTC's *blank*. CTC (Graves et al. 2006) scores a labelling ``y`` by summing over
every frame-level path that collapses to it (merge repeats, then drop blanks), so no frame
alignment is needed; ``torch.nn.CTCLoss`` computes ``-log p(y | x)``.

Decoding:

- ``ctc_greedy_decode``: the most probable label of each frame, then collapse. Fast; the
  most probable *path*, not necessarily the most probable labelling.
- ``ctc_prefix_beam_search``: keeps the ``beam_size`` most probable *prefixes*, each with the
  total probability of the paths that end in a blank (``p_b``) and in a label (``p_nb``),
  so paths that collapse to the same labelling add up (Hannun et al. 2014, without a
  language model). With an unbounded beam it returns the exact most probable labelling.
  Beam size 1 is *not* greedy decoding in general: it keeps the most probable prefix, not
  the most probable path. Where every frame's top label has probability >= 0.75 (a trained
  model's output mostly is that peaky) the two agreed on every random case tested
  (tests/models/test_ctc.py); from about 1/sqrt(2) down they can differ (a | blank | a at
  0.7 each: greedy reads "aa", the beam keeps the likelier "a").

``edit_distance`` is Levenshtein's distance; ``error_counts`` gives the character and word
edits behind CER and WER (summed over utterances, then divided by the reference lengths).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from .recurrent import CELLS, make_recurrent

__all__ = ["CTCConfig", "CTCModel", "CTCOutput", "stack_frames", "normalize_frames", "ctc_greedy_decode",
           "ctc_prefix_beam_search", "Hypothesis", "edit_distance", "ErrorCounts", "error_counts"]


@dataclass
class CTCConfig:
    num_features: int = 40  # F: features per input frame (log-mel bands)
    num_classes: int = 16  # C: output labels, the blank (index 0) included
    stack: int = 3  # k: frames stacked into one step (and the frame rate divided by k); 1 = none
    normalize: bool = True  # per-utterance mean/variance normalisation of each feature over valid frames
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 128
    num_layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.1  # between recurrent layers and before the output layer

    def __post_init__(self) -> None:
        for name in ("num_features", "stack", "hidden_size", "num_layers"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"CTCConfig: {name} must be an int >= 1, got {getattr(self, name)!r}")
        if not (isinstance(self.num_classes, int) and self.num_classes >= 2):
            raise ValueError(f"CTCConfig: num_classes must be an int >= 2 (the blank and a label), got {self.num_classes!r}")
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"CTCConfig: dropout must be in [0, 1], got {self.dropout}")
        if self.cell not in CELLS:
            raise ValueError(f"CTCConfig: cell must be one of {', '.join(CELLS)}, got {self.cell!r}")


class CTCOutput(NamedTuple):
    log_probs: Tensor  # (B, T', C) log-softmax over labels, blank = 0
    lengths: Tensor  # (B,) valid steps of each utterance, T'_b = ceil(T_b / stack)


def normalize_frames(x: Tensor, lengths: Tensor) -> Tensor:
    """Each utterance's features to mean 0, variance 1 over its valid frames; padding stays 0.

    x (B, T, F), lengths (B,). Removes the recording's gain and the channel's colouring
    (a constant offset in log-mel), which differ more between voices than the words do.
    """
    B, T, F = x.shape  # batch, frames, features
    valid = (torch.arange(T, device=x.device) < lengths.to(x.device)[:, None]).unsqueeze(-1)  # (B, T, 1)
    n = valid.sum(1).clamp(min=1)  # (B, 1)
    mean = (x * valid).sum(1, keepdim=True) / n[:, None]  # (B, 1, F)
    var = (((x - mean) * valid) ** 2).sum(1, keepdim=True) / n[:, None]  # (B, 1, F)
    return (x - mean) / torch.sqrt(var + 1e-5) * valid


def stack_frames(x: Tensor, lengths: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Frame subsampling: k consecutive frames side by side as one step.

    x (B, T, F) -> (B, ceil(T / k), k * F), zero-padded at the end; lengths -> ceil(lengths / k).
    Step s holds frames s*k .. s*k + k - 1 in order: ``out[b, s, j*F:(j+1)*F] = x[b, s*k + j]``.
    """
    B, T, F = x.shape  # batch, frames, features
    steps = -(-T // k)  # ceil
    x = nn.functional.pad(x, (0, 0, 0, steps * k - T))  # (B, steps*k, F)
    return x.reshape(B, steps, k * F), torch.div(lengths + k - 1, k, rounding_mode="floor")  # (B, T', kF), (B,)


class CTCModel(nn.Module):
    """Acoustic model: frames in, per-step label log-probabilities out (see the module docstring).

    ``forward(x, lengths) -> CTCOutput(log_probs (B, T', C), lengths (B,))``: ``x`` is (B, T, F)
    batch-first log-mel frames, zero-padded after each utterance's ``lengths[b]`` frames.
    Weights: the recurrent layers as ``rnnkit.LSTM`` (torch.nn layout), then ``head``
    (Linear D*H -> C) with torch's default initialisation.
    """

    def __init__(self, config: CTCConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = make_recurrent(config.cell, config.stack * config.num_features, config.hidden_size,
                                  config.num_layers, config.bidirectional, config.dropout)
        self.dropout = nn.Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(directions * config.hidden_size, config.num_classes)

    def forward(self, x: Tensor, lengths: Tensor) -> CTCOutput:
        if x.dim() != 3 or x.shape[-1] != self.config.num_features:
            raise ValueError(f"CTCModel: x must be (B, T, {self.config.num_features}), got {tuple(x.shape)}")
        lengths = lengths.to(torch.long).cpu()
        if self.config.normalize:
            x = normalize_frames(x, lengths)
        x, steps = stack_frames(x, lengths, self.config.stack)  # (B, T', kF), (B,)
        out, _ = self.rnn(x, lengths=steps.clamp(min=1))  # (B, T', D*H)
        logits = self.head(self.dropout(out))  # (B, T', C)
        return CTCOutput(logits.log_softmax(-1), steps)


# -- decoding ---------------------------------------------------------------------------------

def ctc_greedy_decode(log_probs: Tensor, blank: int = 0) -> list[int]:
    """Best path: the top label of each frame (T, C), repeats merged, blanks dropped."""
    best = log_probs.argmax(-1).tolist()  # (T,)
    out, prev = [], None
    for label in best:
        if label != prev and label != blank:
            out.append(label)
        prev = label
    return out


class Hypothesis(NamedTuple):
    labels: tuple[int, ...]  # the labelling (no blanks)
    log_prob: float  # log of the summed probability of every path that collapses to it (so far)


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def ctc_prefix_beam_search(log_probs: Tensor, beam_size: int = 8, blank: int = 0) -> list[Hypothesis]:
    """The ``beam_size`` most probable labellings of frames (T, C) of log-probabilities, best first.

    For each kept prefix: ``p_b`` (paths ending in blank) and ``p_nb`` (ending in its last
    label). A frame extends every prefix by (1) blank: same prefix, into p_b; (2) its last
    label again: same prefix from p_nb (merged repeat), or a new repeated label from p_b
    (a blank separated them); (3) any other label: a longer prefix from p_b + p_nb. Ties
    break by the labels, so results are deterministic.
    """
    if not (isinstance(beam_size, int) and beam_size >= 1):
        raise ValueError(f"ctc_prefix_beam_search: beam_size must be an int >= 1, got {beam_size!r}")
    if log_probs.dim() != 2:
        raise ValueError(f"ctc_prefix_beam_search: log_probs must be (T, C), got {tuple(log_probs.shape)}")
    frames = log_probs.detach().double().cpu().tolist()  # T lists of C floats
    neg = -math.inf
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg)}  # prefix -> (log p_b, log p_nb)
    for lp in frames:
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix, which, value):
            if value == neg:  # no path gets there (e.g. a repeat without a blank between)
                return
            entry = nxt.setdefault(prefix, [neg, neg])
            entry[which] = _logaddexp(entry[which], value)

        for prefix, (pb, pnb) in beams.items():
            total = _logaddexp(pb, pnb)
            add(prefix, 0, total + lp[blank])  # (1)
            last = prefix[-1] if prefix else None
            for c, lc in enumerate(lp):
                if c == blank or lc == neg:
                    continue
                if c == last:
                    add(prefix, 1, pnb + lc)  # (2) merged with the last label
                    add(prefix + (c,), 1, pb + lc)  # (2) a new label after a blank
                else:
                    add(prefix + (c,), 1, total + lc)  # (3)
        ranked = sorted(nxt.items(), key=lambda item: (-_logaddexp(*item[1]), item[0]))
        beams = {prefix: (pb, pnb) for prefix, (pb, pnb) in ranked[:beam_size]}
    return [Hypothesis(prefix, _logaddexp(pb, pnb)) for prefix, (pb, pnb) in beams.items()]


# -- error rates ------------------------------------------------------------------------------

def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance: the fewest substitutions, deletions and insertions turning ref into hyp."""
    prev = list(range(len(hyp) + 1))  # distances from ref[:0]
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))  # delete, insert, substitute
        prev = cur
    return prev[-1]


class ErrorCounts(NamedTuple):
    char_edits: int  # edit distance between the texts as characters (spaces count)
    chars: int  # characters of the references
    word_edits: int  # edit distance between the texts as words
    words: int  # words of the references

    @property
    def cer(self) -> float:
        return self.char_edits / max(self.chars, 1)

    @property
    def wer(self) -> float:
        return self.word_edits / max(self.words, 1)


def error_counts(refs: Sequence[str], hyps: Sequence[str]) -> ErrorCounts:
    """Summed character and word edits of hypotheses against references (texts, words split on spaces)."""
    if len(refs) != len(hyps):
        raise ValueError(f"error_counts: refs and hyps must be as many, got {len(refs)} and {len(hyps)}")
    ce = cn = we = wn = 0
    for ref, hyp in zip(refs, hyps):
        ref, hyp = " ".join(ref.split()), " ".join(hyp.split())
        ce, cn = ce + edit_distance(ref, hyp), cn + len(ref)
        we, wn = we + edit_distance(ref.split(), hyp.split()), wn + len(ref.split())
    return ErrorCounts(ce, cn, we, wn)
