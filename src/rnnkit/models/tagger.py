"""Many-to-many, aligned: one tag per input token (named entities, parts of speech).

::

    words (B, T) --Embedding--> (B, T, E) --+
    chars (B, T, W) --char CNN--> (B, T, F) -+-concat-> (B, T, E+F+S) --(bi-)LSTM/GRU--> (B, T, D*H)
    cases (B, T) --Embedding--> (B, T, S) ---+          --dropout, Linear--> emissions (B, T, K)

then either a per-token softmax (loss: cross-entropy of each valid token; decoding: argmax
per token) or a CRF output layer (``models/crf.py``; loss: the sentence's negative
log-likelihood; decoding: Viterbi). The character features (optional) give the model what
a word id hides: suffixes and a spelling for words it has never seen; the case features
(optional; ``word_case``: lower, Capitalised, UPPER, digits, punctuation, mixed) say outright
whether a word is capitalised, which an unseen word's id (``<unk>``) cannot.
A unidirectional model tags token t from tokens 1..t only; a bidirectional one sees the
whole sentence, which is what "Teddy bears" vs "Teddy Roosevelt" needs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .crf import CRF
from .recurrent import CELLS, make_recurrent

__all__ = ["TaggerConfig", "SequenceTagger", "CharCNN", "word_case", "NUM_CASES"]

NUM_CASES = 7  # case ids: 0 pads, 1..6 from word_case


def word_case(token: str) -> int:
    """The case class of a token: 1 lower ("visited"), 2 Capitalised ("Teddy", "O'Keeffe", "A"),
    3 UPPER ("FC", "LLC"), 4 digits without letters ("1905"), 5 no letter or digit (",", "-"),
    6 anything else ("iPhone", "3rd")."""
    letters = [c for c in token if c.isalpha()]
    if not letters:
        return 4 if any(c.isdigit() for c in token) else 5
    if any(c.isdigit() for c in token):
        return 6
    if all(c.islower() for c in letters):
        return 1
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return 3
    return 2 if letters[0].isupper() else 6


@dataclass
class TaggerConfig:
    vocab_size: int = 0  # V: word ids 0..V-1 (0 pads)
    num_tags: int = 2  # K
    embedding_dim: int = 64  # E
    char_vocab_size: int = 0  # character ids 0..C-1 (0 pads); 0 = no character features
    char_embedding_dim: int = 16
    char_channels: int = 32  # F: convolution filters = character features per word
    char_kernel: int = 3  # characters each filter sees
    case_dim: int = 0  # S: embedding of each word's case class (word_case); 0 = no case features
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 64  # H (per direction)
    num_layers: int = 1
    bidirectional: bool = True  # D = 2 when True
    dropout: float = 0.0  # on the recurrent input, between layers and before the head
    crf: bool = False  # a CRF output layer (Viterbi decoding) instead of a per-token softmax

    def validate(self) -> None:
        owner = "TaggerConfig"
        for name in ("vocab_size", "num_tags", "embedding_dim", "hidden_size", "num_layers"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{owner}: {name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.char_vocab_size:
            for name in ("char_embedding_dim", "char_channels", "char_kernel"):
                if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                    raise ValueError(f"{owner}: {name} must be an int >= 1, got {getattr(self, name)!r}")
        if not (isinstance(self.case_dim, int) and self.case_dim >= 0):
            raise ValueError(f"{owner}: case_dim must be an int >= 0, got {self.case_dim!r}")
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1], got {self.dropout}")
        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {', '.join(CELLS)}, got {self.cell!r}")


class CharCNN(nn.Module):
    """Characters of each word -> one feature vector per word (Ma & Hovy 2016).

    ``forward(chars)``: ``chars`` (B, T, W) character ids, 0 padding (words shorter than W,
    and padded words); returns (B, T, F): the max over the word's characters of a 1-D
    convolution (``F`` filters, ``kernel`` characters wide, same padding) of their embeddings.
    A padded word (all zeros) gets zero features.
    """

    def __init__(self, num_chars: int, embedding_dim: int, channels: int, kernel: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, embedding_dim, padding_idx=0)
        self.conv = nn.Conv1d(embedding_dim, channels, kernel, padding=kernel // 2)
        self.channels = channels

    def forward(self, chars: Tensor) -> Tensor:
        B, T, W = chars.shape  # batch, words, characters per word
        flat = chars.reshape(B * T, W)
        x = self.embedding(flat).transpose(1, 2)  # (B*T, Ec, W): channels first for Conv1d
        h = self.conv(x)[:, :, :W]  # (B*T, F, W); an even kernel makes one extra step
        h = h.masked_fill((flat == 0).unsqueeze(1), float("-inf")).amax(2)  # (B*T, F): max over real chars
        h = torch.where(torch.isfinite(h), h, torch.zeros_like(h))  # words with no characters
        return h.reshape(B, T, self.channels)


class SequenceTagger(nn.Module):
    """Embedding (+ character CNN) -> recurrent layers -> per-token scores of K tags.

    ``forward(words, lengths, chars=None, cases=None) -> emissions (B, T, K)``; ``words``
    (B, T) ids, batch-first, 0 at padded steps; ``lengths`` (B,) valid steps; ``chars``
    (B, T, W) character ids, required when ``char_vocab_size > 0``; ``cases`` (B, T) case ids
    (``word_case``, 0 at padded steps), required when ``case_dim > 0``. Emissions at padded
    steps are meaningless.
    ``loss`` and ``decode`` turn emissions into a training loss and tags, through the CRF
    when ``config.crf``, else per token.
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=0)
        self.chars = (CharCNN(config.char_vocab_size, config.char_embedding_dim, config.char_channels,
                              config.char_kernel) if config.char_vocab_size else None)
        self.cases = nn.Embedding(NUM_CASES, config.case_dim, padding_idx=0) if config.case_dim else None
        in_size = (config.embedding_dim + (config.char_channels if self.chars is not None else 0)
                   + config.case_dim)
        self.rnn = make_recurrent(config.cell, in_size, config.hidden_size, config.num_layers,
                                  config.bidirectional, config.dropout)
        self.dropout = nn.Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(directions * config.hidden_size, config.num_tags)
        self.crf = CRF(config.num_tags) if config.crf else None

    def forward(self, words: Tensor, lengths: Tensor, chars: Tensor | None = None,
                cases: Tensor | None = None) -> Tensor:
        parts = [self.embedding(words)]  # (B, T, E)
        if self.chars is not None:
            if chars is None:
                raise ValueError("SequenceTagger: chars (B, T, W) are required with char_vocab_size > 0, got None")
            parts.append(self.chars(chars))  # (B, T, F)
        if self.cases is not None:
            if cases is None:
                raise ValueError("SequenceTagger: cases (B, T) are required with case_dim > 0, got None")
            parts.append(self.cases(cases))  # (B, T, S)
        x = torch.cat(parts, dim=-1)  # (B, T, E + F + S)
        out, _ = self.rnn(self.dropout(x), lengths=lengths)  # (B, T, D*H), zero past each length
        return self.head(self.dropout(out))  # (B, T, K)

    def loss(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """The loss summed over the batch: the CRF's negative log-likelihood of each sentence,
        or the cross-entropy of each valid token. Padded steps count for nothing."""
        mask = _mask(lengths, emissions.shape[1], emissions.device)  # (B, T)
        if self.crf is not None:
            return self.crf(emissions, tags, mask).sum()
        return F.cross_entropy(emissions[mask], tags[mask], reduction="sum")  # (N_valid, K) vs (N_valid,)

    @torch.no_grad()
    def decode(self, emissions: Tensor, lengths: Tensor) -> Tensor:
        """Tag ids (B, T): Viterbi with a CRF, else argmax per token; 0 at padded steps."""
        mask = _mask(lengths, emissions.shape[1], emissions.device)
        if self.crf is not None:
            return self.crf.decode(emissions, mask).tags
        return emissions.argmax(-1).masked_fill(~mask, 0)


def _mask(lengths: Tensor, T: int, device) -> Tensor:
    return torch.arange(T, device=device) < lengths.to(device).unsqueeze(1)  # (B, T)
