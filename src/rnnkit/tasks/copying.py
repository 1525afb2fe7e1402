"""copy: the copy (memory) task, a long-memory benchmark (Arjovsky et al. 2016, section 4.1).

The model reads ``copy_len`` = 10 symbols from an alphabet of ``num_symbols`` = 8, then
``seq_len`` = T steps of blanks whose last is a delimiter, then must write the 10 symbols
back, one per step, while reading blanks (:func:`rnnkit.data.datasets.memory.copy_task`)::

    input   s1 .. s10  0 0 ... 0 :   0 .. 0        (T + 20 steps; ":" the delimiter)
    target  0  ..  0   0 0 ... 0 0   s1 .. s10

Model: many-to-many (``rnnkit.models.LanguageModel`` over the ``num_symbols + 2`` ids):
embedding -> recurrent layers -> dense head at every step. Loss: cross-entropy at every step,
averaged over all steps, as Arjovsky et al. report it. Guessing blanks and then uniformly among
the symbols scores ``10 log 8 / (T + 20)`` (``baseline_loss``); a model that remembers goes
to 0.

Metrics: ``loss``, ``baseline_loss`` and ``accuracy``, the fraction of the copied symbols
(the last 10 steps) predicted right; 1/8 is chance.

"Solved" (used by ``rnnkit experiment memory``): copy accuracy of at least
``SOLVED_ACCURACY = 0.99``. Arjovsky et al. define no threshold (they plot the loss against
the baseline); this one is ours: 99 of every 100 recalled symbols right.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.datasets.memory import GeneratedData, GeneratedLoader, copy_baseline_loss, copy_task, stream_generator
from ..export import ExportSpec, LanguageModelGraph
from ..models.language_model import LanguageModel, LanguageModelConfig
from ..models.recurrent import CELLS
from ..training import StepOutput, module_device
from .base import IndexLoader, NoOptions, Task, TensorData, register

__all__ = ["CopyTask", "CopyOptions", "SOLVED_ACCURACY"]

SOLVED_ACCURACY = 0.99  # copy accuracy counted as "solved" (our threshold, see the module docstring)


@dataclass
class CopyOptions:
    seq_len: int = 100  # T: steps between the end of the symbols and the first recall (blanks + delimiter)
    num_symbols: int = 8  # K: data symbols are ids 1..K; 0 is the blank, K + 1 the delimiter
    copy_len: int = 10  # L: symbols to remember
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 128
    num_layers: int = 1
    embedding_dim: int = 16
    train_size: int = 100_000  # sequences per training epoch, drawn afresh every epoch
    val_size: int = 1_000  # fixed validation sequences (seeded)
    test_size: int = 10_000  # fixed test sequences (seeded)

    def __post_init__(self) -> None:
        owner = "CopyOptions"
        for name in ("seq_len", "num_symbols", "copy_len", "hidden_size", "num_layers", "embedding_dim",
                     "train_size", "val_size", "test_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{owner}: {name} must be an int >= 1, got {value!r}")
        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {', '.join(sorted(CELLS))}, got {self.cell!r}")


def _copy_batch(o: CopyOptions):
    def make(num: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        data = copy_task(num, o.seq_len, generator, o.num_symbols, o.copy_len)
        return {"x": data.x, "y": data.y}  # (N, T + 2L) each
    return make


@register
class CopyTask(Task):
    name = "copy"
    description = "the copy task: remember 10 symbols across T blank steps, then write them back"
    default_data = ("generated: 10 symbols of 8, T blanks ending in a delimiter, recall (Arjovsky et al. 2016); "
                    "fresh training batches, seeded val/test sets")
    metric, mode = "accuracy", "max"
    Options = CopyOptions
    export = ExportSpec(LanguageModelGraph, lengths=False)  # a LanguageModel over the symbols
    train_defaults = {"epochs": 10, "batch_size": 50, "lr": 1e-3, "clip_norm": 1.0, "eval_every": 200}

    def prepare(self, seed: int) -> dict:
        o = self.options
        make = _copy_batch(o)
        self.meta = {"seq_len": o.seq_len, "num_symbols": o.num_symbols, "copy_len": o.copy_len,
                     "baseline_loss": copy_baseline_loss(o.seq_len, o.num_symbols, o.copy_len),
                     "solved_accuracy": SOLVED_ACCURACY,
                     "sizes": {"train_per_epoch": o.train_size, "val": o.val_size, "test": o.test_size}}
        val = make(o.val_size, stream_generator(seed, 1))
        test = make(o.test_size, stream_generator(seed, 2))
        return {"train": GeneratedData(make, o.train_size), "val": TensorData(val), "test": TensorData(test)}

    def loader(self, data, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1):
        if isinstance(data, GeneratedData):
            return GeneratedLoader(data, batch_size, seed, rank, world)
        return IndexLoader(data, batch_size, shuffle, seed, rank, world)

    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """memoryless: blanks, then uniform guesses (Arjovsky et al. 2016): its loss per step and
        its accuracy on the recalled symbols, 1 / num_symbols."""
        o = self.options
        return {"memoryless": {"loss": copy_baseline_loss(o.seq_len, o.num_symbols, o.copy_len),
                               "accuracy": 1.0 / o.num_symbols}}

    def build_model(self) -> LanguageModel:
        o = self.options
        return LanguageModel(LanguageModelConfig(vocab_size=o.num_symbols + 2, embedding_dim=o.embedding_dim,
                                                 cell=o.cell, hidden_size=o.hidden_size, num_layers=o.num_layers))

    def step(self, model, batch, state=None) -> StepOutput:
        x, y = batch["x"], batch["y"]  # (B, T + 2L) each
        if x.dim() != 2 or x.shape != y.shape:
            raise ValueError(f"copy: x and y must both be (B, T + 2L) ids, got {tuple(x.shape)} and {tuple(y.shape)}")
        logits, _ = model(x)  # (B, T + 2L, V)
        B, S, V = logits.shape
        loss_sum = F.cross_entropy(logits.reshape(B * S, V), y.reshape(B * S), reduction="sum")
        L = self.options.copy_len
        correct = (logits[:, -L:].detach().argmax(-1) == y[:, -L:]).sum()  # the recalled part only
        return StepOutput(loss_sum, B * S, {"correct": int(correct), "symbols": B * L})

    def metrics(self, totals: dict) -> dict[str, float]:
        """loss (cross-entropy per step), baseline_loss and accuracy (of the recalled symbols)."""
        o = self.options
        return {"loss": totals["loss_sum"] / max(totals["count"], 1),
                "baseline_loss": copy_baseline_loss(o.seq_len, o.num_symbols, o.copy_len),
                "accuracy": totals.get("correct", 0.0) / max(totals.get("symbols", 0.0), 1)}

    # -- using a trained model --------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model, inputs: list[str], options: NoOptions) -> list[dict]:
        """Each input is the ``copy_len`` symbols as digits 1..num_symbols (e.g. ``"3141592653"``
        with the defaults, where 9 and 0 are not symbols); returns what the model writes back
        after the trained ``seq_len`` steps (``output``, a list of ids) and how many are right."""
        o = self.options
        if not inputs:
            raise ValueError('copy: predict needs at least one INPUT, e.g. rnnkit predict RUN "1234567812"')
        rows = []
        for text in inputs:
            symbols = text.replace(" ", "").split(",") if "," in text else list(text.replace(" ", ""))
            try:
                ids = [int(s) for s in symbols]
            except ValueError:
                ids = []
            if len(ids) != o.copy_len or not all(1 <= i <= o.num_symbols for i in ids):
                raise ValueError(f"copy: an input must be {o.copy_len} symbols in 1..{o.num_symbols} "
                                 f"(digits, or comma-separated), got {text!r}")
            x = torch.zeros(1, o.seq_len + 2 * o.copy_len, dtype=torch.long)
            x[0, : o.copy_len] = torch.tensor(ids)
            x[0, o.copy_len + o.seq_len - 1] = o.num_symbols + 1  # the delimiter
            logits, _ = model(x.to(module_device(model)))  # (1, T + 2L, V)
            recalled = logits[0, -o.copy_len :].argmax(-1).tolist()
            rows.append({"input": text, "output": recalled, "correct": sum(a == b for a, b in zip(recalled, ids))})
        return rows
