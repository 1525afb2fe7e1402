"""One-to-many / many-to-many: a character (or word) language model and its sampler (seed 004).

Characters go in one at a time (embedded; an embedding of a one-hot vector is a row of the
matrix), stacked LSTM layers carry the memory, a dense layer and softmax predict the next
character; sampling feeds each drawn character back in.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

from .recurrent import make_recurrent

__all__ = ["LanguageModelConfig", "LanguageModel", "sample"]


@dataclass
class LanguageModelConfig:
    vocab_size: int = 0
    embedding_dim: int = 64
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 512
    num_layers: int = 1
    dropout: float = 0.0  # between layers and before the head


class LanguageModel(nn.Module):
    """``forward(x, state=None) -> (logits, state)``: x (B, T) ids, logits (B, T, V)."""

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.rnn = make_recurrent(config.cell, config.embedding_dim, config.hidden_size,
                                  config.num_layers, dropout=config.dropout)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, x: Tensor, state=None):
        out, state = self.rnn(self.embedding(x), state)  # (B, T, H)
        return self.head(self.dropout(out)), state  # (B, T, V)


@torch.no_grad()
def sample(model: LanguageModel, prime: list[int], length: int, temperature: float = 1.0, top_k: int = 0,
           generator: torch.Generator | None = None) -> Iterator[int]:
    """Yield ``length`` ids drawn one at a time after reading ``prime`` (at least one id).

    ``temperature`` divides the logits (below 1: safer text, above 1: wilder); ``top_k > 0``
    keeps only the k likeliest ids at each step.
    """
    if not prime:
        raise ValueError("sample: prime must hold at least one id")
    model.eval()
    logits, state = model(torch.tensor([prime]))  # read the prime in one pass
    last = logits[0, -1]  # (V,)
    for _ in range(length):
        scores = last / temperature
        if top_k:
            kth = torch.topk(scores, min(top_k, scores.numel())).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        nxt = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=generator))
        yield nxt
        with _without_onednn():  # oneDNN's fixed cost per call dominates a single step on CPU
            logits, state = model(torch.tensor([[nxt]]), state)
        last = logits[0, -1]


@contextlib.contextmanager
def _without_onednn():
    with warnings.catch_warnings():  # torch warns about TF32 on Intel GPUs whenever the flags change
        warnings.simplefilter("ignore", UserWarning)
        flags = torch.backends.mkldnn.flags(enabled=False)
        flags.__enter__()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            flags.__exit__(None, None, None)
