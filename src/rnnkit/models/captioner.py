"""Image captioner: an image read column by column, written out as words (vector -> sequence).

A :class:`Captioner` is a :class:`~rnnkit.models.seq2seq.Seq2Seq` whose source is an image
instead of token ids; the decoder, its attention choices, teacher forcing,
:func:`~rnnkit.models.seq2seq.greedy_decode` and :func:`~rnnkit.models.seq2seq.beam_search`
are Seq2Seq's, unchanged::

    image (B, R, W) --columns--> features (B, S, F) --bidirectional LSTM/GRU (lengths)--> memory (B, S, 2H)
                                           final states --bridge--> decoder state (L, B, D = 2H)
    y_{t-1} --Embedding--> (B, E) --decoder LSTM/GRU [+ summary or attention]--> logits (B, V)

With ``attention="none"`` (the default) the decoder sees the image only as one vector: its
initial state ``tanh(W_b [h_fwd; h_bwd])`` and the summary ``[h_fwd; h_bwd]`` fed at every step
(one-to-many). The columns' features (``encoder=``):

* ``"lstm"``: each column's R pixels as they are (S = W, F = R);
* ``"cnn"``: two 3x3 convolutions (``channels`` and ``2 * channels``, ReLU), each followed by
  2x2 max pooling, so S = W // 4 columns of F = 2 * channels * (R // 4) features.

The source goes in as Seq2Seq's decoders take it, a 2-D tensor: the image's columns one after
another, ``source (B, W * R)`` with ``source.view(B, W, R)[:, t]`` column ``t``, and
``lengths (B,)`` the columns holding the image (the rest is padding, zero).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .recurrent import CELLS, make_recurrent
from .seq2seq import ATTENTIONS, Memory, Seq2Seq, Seq2SeqConfig

__all__ = ["CaptionerConfig", "Captioner", "IMAGE_ENCODERS", "images_to_source"]

IMAGE_ENCODERS = ("cnn", "lstm")


@dataclass
class CaptionerConfig:
    target_vocab_size: int
    rows: int = 28  # R, the pixels of one column
    encoder: str = "cnn"  # cnn | lstm: what turns the columns into the recurrent encoder's inputs
    channels: int = 32  # of the first convolution (the second has twice as many); "cnn" only
    embedding_dim: int = 64  # E of the target words
    cell: str = "lstm"  # one of models.CELLS, for the encoder and the decoder
    hidden_size: int = 128  # H of each encoder direction; the decoder has D = 2H
    num_layers: int = 1  # of the encoder and of the decoder
    attention: str = "none"  # none (the image as one vector) | luong | bahdanau
    dropout: float = 0.1  # on the embeddings, before the output layer, and between layers
    pad_index: int = 0  # the Vocab's specials: <pad>, <unk>, <bos>, <eos>
    unk_index: int = 1
    bos_index: int = 2
    eos_index: int = 3

    def __post_init__(self) -> None:
        owner = "CaptionerConfig"
        for name in ("target_vocab_size", "rows", "channels", "embedding_dim", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{owner}: {name} must be an int >= 1, got {value!r}")
        if self.encoder not in IMAGE_ENCODERS:
            raise ValueError(f"{owner}: encoder must be one of {', '.join(IMAGE_ENCODERS)}, got {self.encoder!r}")
        if self.encoder == "cnn" and self.rows < 4:
            raise ValueError(f"{owner}: rows must be >= 4 with encoder cnn (two 2x2 poolings), got {self.rows}")
        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"{owner}: attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1], got {self.dropout}")


def images_to_source(images: Tensor) -> Tensor:
    """Images (B, R, W) -> the source a Captioner reads, (B, W * R): column after column."""
    if images.dim() != 3:
        raise ValueError(f"images_to_source: images must be (B, R, W), got shape {tuple(images.shape)}")
    B = images.shape[0]
    return images.transpose(1, 2).reshape(B, -1)  # (B, W * R)


class _ConvColumns(nn.Module):
    """Two conv + ReLU + 2x2 max-pool stages: columns (B, W, R) -> (B, W // 4, 2C * (R // 4))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        C = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, C, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(C, 2 * C, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )

    def forward(self, columns: Tensor) -> Tensor:
        x = columns.transpose(1, 2)[:, None]  # (B, 1, R, W)
        x = self.net(x)  # (B, 2C, R // 4, W // 4)
        B, C, R, S = x.shape  # batch, channels, rows, steps
        return x.permute(0, 3, 1, 2).reshape(B, S, C * R)  # (B, S, 2C * R // 4)


class Captioner(Seq2Seq):
    """Image columns -> bidirectional encoder -> Seq2Seq's decoder (see the module docstring)."""

    def __init__(self, config: CaptionerConfig) -> None:
        c = config
        super().__init__(Seq2SeqConfig(
            source_vocab_size=1, target_vocab_size=c.target_vocab_size, embedding_dim=c.embedding_dim, cell=c.cell,
            hidden_size=c.hidden_size, num_layers=c.num_layers, attention=c.attention, dropout=c.dropout,
            pad_index=c.pad_index, unk_index=c.unk_index, bos_index=c.bos_index, eos_index=c.eos_index,
        ))
        self.image_config = c
        del self.source_embedding  # the source is pixels, not ids
        if c.encoder == "cnn":
            self.columns = _ConvColumns(c.channels)
            features, self.stride = 2 * c.channels * (c.rows // 4), 4
        else:
            self.columns = nn.Identity()
            features, self.stride = c.rows, 1
        self.encoder = make_recurrent(c.cell, features, c.hidden_size, c.num_layers, bidirectional=True,
                                      dropout=c.dropout)

    def encode(self, source: Tensor, lengths: Tensor) -> tuple[Memory, object]:
        """source (B, W * R) columns, lengths (B,) columns -> (Memory, the decoder's initial state)."""
        B = source.shape[0]
        R = self.image_config.rows
        x = self.columns(source.view(B, -1, R))  # (B, S, F)
        S = x.shape[1]
        steps = torch.clamp(lengths.to(source.device) // self.stride, 1, S)  # (B,) encoder steps
        return self.encode_inputs(self.dropout(x), steps)
