"""Live CTC transcription: greedy decoding of per-frame scores as the frames arrive."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

__all__ = ["CTCStreamDecoder"]


class CTCStreamDecoder:
    """Greedy CTC decoding of frames as they arrive: text out as soon as it is decided.

    Greedy decoding takes the best label of every frame, collapses runs of the same label and
    drops blanks. A label is decided at its first frame (later frames can only repeat it or
    end the run), so each call returns the characters its frames start; a run that crosses a
    call boundary is still collapsed, because the last frame's label is remembered.

    Args:
        labels: the text of each class, index = class id (the blank's entry is never output).
        blank: the blank's class id. Default 0.

    ``feed(log_probs)`` takes (T, C) frames (or one frame (C,)) of scores (log-probabilities or
    logits: only the argmax matters) and returns the new text. ``text`` and ``ids`` hold
    everything emitted so far; ``reset()`` starts a new utterance.

    Example:
        >>> import torch
        >>> dec = CTCStreamDecoder(["-", "a", "b"])
        >>> frames = torch.eye(3).log()  # one-hot frames: blank, a, b
        >>> dec.feed(frames[[1, 1]]), dec.feed(frames[[1, 0, 1, 2]]), dec.text
        ('a', 'ab', 'aab')
    """

    def __init__(self, labels: Sequence[str], blank: int = 0) -> None:
        if isinstance(labels, str) or not isinstance(labels, Sequence) or not all(isinstance(s, str) for s in labels):
            raise TypeError(f"CTCStreamDecoder: labels must be a sequence of strings, got {type(labels).__name__}")
        if len(labels) < 2:
            raise ValueError(f"CTCStreamDecoder: labels must hold the blank and at least one label, got {len(labels)}")
        if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < len(labels):
            raise ValueError(f"CTCStreamDecoder: blank must be an int in [0, {len(labels)}), got {blank!r}")
        self.labels, self.blank = list(labels), blank
        self.reset()

    def reset(self) -> None:
        self.ids: list[int] = []
        self._pieces: list[str] = []
        self._prev: int | None = None  # the previous frame's best label (None before any frame)

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def feed(self, log_probs: Tensor) -> str:
        """Frames (T, C) or (C,) -> the text they add (possibly empty)."""
        if not isinstance(log_probs, Tensor):
            raise TypeError(f"CTCStreamDecoder.feed: log_probs must be a Tensor (T, C), got {type(log_probs).__name__}")
        C = len(self.labels)
        if log_probs.dim() == 1:
            log_probs = log_probs.unsqueeze(0)
        if log_probs.dim() != 2 or log_probs.shape[1] != C:
            raise ValueError(f"CTCStreamDecoder.feed: log_probs must be (T, {C}) or ({C},), one score per label, "
                             f"got shape {tuple(log_probs.shape)}")
        new = []
        for k in log_probs.argmax(1).tolist():  # (T,) best label per frame
            if k != self._prev and k != self.blank:
                new.append(k)
            self._prev = k
        self.ids += new
        piece = "".join(self.labels[k] for k in new)
        self._pieces.append(piece)
        return piece
