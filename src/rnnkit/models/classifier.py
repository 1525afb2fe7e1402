"""Many-to-one: read a whole sequence, predict one label (sentiment, intent, digit images)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .recurrent import final_hidden, make_recurrent

__all__ = ["ClassifierConfig", "SequenceClassifier"]


@dataclass
class ClassifierConfig:
    num_classes: int = 2
    input_size: int = 0  # features per step, for real-valued input (0 when vocab_size is set)
    vocab_size: int = 0  # > 0: input is token ids, read through an embedding
    embedding_dim: int = 64  # only with vocab_size
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between recurrent layers and before the head
    pooling: str = "last"  # "last" (final state), "mean" or "max" over valid steps


class SequenceClassifier(nn.Module):
    """embedding or features -> recurrent layers -> pooled state -> dense head (logits).

    In the notes' terms the head is ``V``: ``o = softmax(V s_T)``; the model returns the
    logits ``V s_T`` and the loss applies the softmax.

    ``forward(x, lengths=None) -> logits (B, C)``: ``x`` is (B, T) token ids or (B, T, I)
    features, batch-first; ``lengths`` (B,) marks the valid steps of padded batches.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        if config.pooling not in ("last", "mean", "max"):
            raise ValueError(f"SequenceClassifier: pooling must be 'last', 'mean' or 'max', got {config.pooling!r}")
        if (config.vocab_size > 0) == (config.input_size > 0):
            raise ValueError(
                "SequenceClassifier: set exactly one of vocab_size (token ids) and input_size (features), "
                f"got vocab_size={config.vocab_size}, input_size={config.input_size}"
            )
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=0) if config.vocab_size else None
        in_size = config.embedding_dim if config.vocab_size else config.input_size
        self.rnn = make_recurrent(
            config.cell, in_size, config.hidden_size, config.num_layers, config.bidirectional, config.dropout
        )
        self.num_directions = 2 if config.bidirectional else 1
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.num_directions * config.hidden_size, config.num_classes)  # V

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if self.embedding is not None:
            x = self.embedding(x)  # (B, T) -> (B, T, E)
        out, state = self.rnn(x, lengths=lengths)  # out (B, T, D*H)
        if self.config.pooling == "last":
            pooled = final_hidden(state, self.num_directions)  # (B, D*H)
        else:
            pooled = _pool(out, lengths, self.config.pooling)
        return self.head(self.dropout(pooled))  # (B, C)


def _pool(out: Tensor, lengths: Tensor | None, how: str) -> Tensor:
    """Mean or max over the valid steps of out (B, T, F) -> (B, F)."""
    if lengths is None:
        return out.mean(1) if how == "mean" else out.amax(1)
    valid = torch.arange(out.shape[1], device=out.device) < lengths.to(out.device).unsqueeze(1)  # (B, T)
    valid = valid.unsqueeze(-1)
    if how == "mean":
        return (out * valid).sum(1) / valid.sum(1)
    return out.masked_fill(~valid, float("-inf")).amax(1)
