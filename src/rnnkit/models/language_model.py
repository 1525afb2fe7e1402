"""One-to-many / many-to-many: a character (or word) language model and its sampler (seed 004).

Characters go in one at a time (embedded; an embedding of a one-hot vector is a row of the
matrix), stacked LSTM layers carry the memory, a dense layer and softmax predict the next
character; sampling feeds each drawn character back in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

from .recurrent import make_recurrent

__all__ = ["LanguageModelConfig", "LanguageModel", "LanguageModelStream", "sample"]


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

    def stream(self, batch_size: int = 1) -> "LanguageModelStream":
        """A ``LanguageModelStream`` over this model's current weights (rebuild it after training)."""
        return LanguageModelStream(self, batch_size)


class LanguageModelStream:
    """Feed a language model one id at a time, in O(1) memory (``rnnkit.Stream`` underneath).

    ``read(ids)`` reads a prompt (B, T) in one pass of the model (the layer's fused kernel) and
    ``step(ids)`` one id per stream (B,); both return the next-id logits (B, V) and carry the
    state. ``step`` uses the weights as they were when the stream was built (``read`` calls
    the model itself): after training, build a new stream. Dropout is not applied.

    Example:
        >>> lm = LanguageModel(LanguageModelConfig(vocab_size=10, embedding_dim=4, hidden_size=8))
        >>> stream = lm.stream()
        >>> logits = stream.read(torch.tensor([[1, 2, 3]]))
        >>> logits = stream.step(logits.argmax(-1))  # greedy: feed the best id back
        >>> tuple(logits.shape)
        (1, 10)
    """

    def __init__(self, model: LanguageModel, batch_size: int = 1) -> None:
        from ..streaming import Stream  # not at the top: rnnkit.streaming imports rnnkit.layers

        self.model, self.batch_size = model, batch_size
        self.rnn = Stream(model.rnn, batch_size)
        with torch.inference_mode():
            self._embedding = model.embedding.weight.detach().clone()  # (V, E)
            self._head_w_t = model.head.weight.detach().t().clone(memory_format=torch.contiguous_format)  # (H, V)
            self._head_b = model.head.bias.detach().clone()  # (V,)
            self._logits = torch.empty(batch_size, model.config.vocab_size, dtype=self._head_b.dtype,
                                       device=self._head_b.device)

    def read(self, ids: Tensor) -> Tensor:
        """Read ids (B, T) from the current state; returns the logits after the last one (B, V)."""
        B = self.batch_size
        if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.shape[0] != B or ids.shape[1] < 1 \
                or ids.is_floating_point():
            raise ValueError(f"LanguageModelStream.read: ids must be a (batch_size={B}, T >= 1) tensor of ids, "
                             f"got {_describe(ids)}")
        with torch.inference_mode():
            was_training = self.model.training
            self.model.eval()
            try:
                logits, state = self.model(ids, self.rnn.state)  # (B, T, V)
            finally:
                self.model.train(was_training)
        self.rnn.reset(state)
        return logits[:, -1].clone()

    def step(self, ids: Tensor) -> Tensor:
        """Feed one id per stream, ids (B,); returns the next-id logits (B, V), a new tensor."""
        B = self.batch_size
        if not isinstance(ids, Tensor) or ids.shape != (B,) or ids.is_floating_point():
            raise ValueError(f"LanguageModelStream.step: ids must be a ({B},) tensor of ids, got {_describe(ids)}")
        with torch.inference_mode():
            torch.index_select(self._embedding, 0, ids, out=self.rnn.input)  # (B, E) into the stream's input
            self.rnn.advance()
            torch.addmm(self._head_b, self.rnn.output, self._head_w_t, out=self._logits)  # (B, V)
        return self._logits.clone()  # outside inference mode: an ordinary tensor


def sample(model: LanguageModel, prime: list[int], length: int, temperature: float = 1.0, top_k: int = 0,
           generator: torch.Generator | None = None) -> Iterator[int]:
    """Yield ``length`` ids drawn one at a time after reading ``prime`` (at least one id).

    ``temperature`` divides the logits (below 1: safer text, above 1: wilder); ``top_k > 0``
    keeps only the k likeliest ids at each step. The prime is read in one pass; every drawn id
    is fed back through a ``LanguageModelStream`` (one step, O(1) memory).
    """
    if not prime:
        raise ValueError("sample: prime must hold at least one id")
    model.eval()
    device = next(model.parameters()).device
    stream = model.stream()
    last = stream.read(torch.tensor([prime], device=device))[0]  # (V,)
    nxt_t = torch.zeros(1, dtype=torch.long, device=device)
    for _ in range(length):
        with torch.inference_mode():
            scores = last / temperature
            if top_k:
                kth = torch.topk(scores, min(top_k, scores.numel())).values[-1]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            # drawn on the CPU, where the (CPU) generator lives; a no-op for a CPU model
            nxt = int(torch.multinomial(torch.softmax(scores, -1).cpu(), 1, generator=generator))
        yield nxt
        nxt_t[0] = nxt
        last = stream.step(nxt_t)[0]


def _describe(x) -> str:
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
