"""adding: the adding problem, a long-memory benchmark (Hochreiter & Schmidhuber 1997).

Each step of a sequence of length ``T`` (``--seq-len``) carries a value from U(0, 1) and a
marker; two markers are 1, one in each half of the sequence (Le et al. 2015). The model
reads the whole sequence and must output the sum of the two marked values, so it has to
keep the first marked value for up to ``T`` steps while ignoring everything else
(:func:`rnnkit.data.datasets.memory.adding_problem`).

Model: a many-to-one regressor (``rnnkit.models.Forecaster`` with 2 input features and one
output): recurrent layers over the sequence, the last layer's final state, a dense head.
Loss: the squared error, summed over the batch (metric ``mse``, lower is better).

Data: training batches are drawn afresh (``train_size`` sequences per epoch, none ever
repeated); the validation and test sets are fixed by the seed (``val_size``, ``test_size``).

Metrics, on any split:

- ``mse`` (= ``loss``): mean squared error of the predicted sums;
- ``baseline_mse``: the MSE of always predicting 1.0, the mean target, on the same
  sequences (1/6 ~ 0.167 in expectation): a model that has learned nothing sits here;
- ``accuracy``: the fraction of sequences with absolute error below 0.04, Hochreiter &
  Schmidhuber's "processed correctly".

"Solved" (used by ``rnnkit experiment memory``): MSE below ``SOLVED_MSE = 0.01``, Hochreiter &
Schmidhuber's (1997) stopping criterion for this problem (average training error below 0.01),
6% of the baseline; Le et al. and Arjovsky et al. only plot the MSE against the 0.167 line.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.datasets.memory import ADDING_BASELINE_MSE, GeneratedData, GeneratedLoader, adding_problem, stream_generator
from ..export import ExportSpec, ForecasterGraph
from ..models.forecaster import Forecaster, ForecasterConfig
from ..models.recurrent import CELLS
from ..training import StepOutput, module_device
from .base import IndexLoader, NoOptions, Task, TensorData, register

__all__ = ["AddingTask", "AddingOptions", "SOLVED_MSE", "CORRECT_ERROR"]

SOLVED_MSE = 0.01  # Hochreiter & Schmidhuber 1997: the adding problem is solved below this MSE
CORRECT_ERROR = 0.04  # ... and a sequence is processed correctly when |error| < 0.04


@dataclass
class AddingOptions:
    seq_len: int = 100  # T: steps per sequence (>= 2); the marked values lie up to T - 1 steps apart
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 128  # (Arjovsky et al. 2016 use 128 units; Le et al. 2015, 100)
    num_layers: int = 1
    train_size: int = 100_000  # sequences per training epoch, drawn afresh every epoch
    val_size: int = 1_000  # fixed validation sequences (seeded), for model selection and curves
    test_size: int = 10_000  # fixed test sequences (seeded), as Le et al.'s 10,000

    def __post_init__(self) -> None:
        owner = "AddingOptions"
        minimum = {"seq_len": 2, "hidden_size": 1, "num_layers": 1, "train_size": 1, "val_size": 1, "test_size": 1}
        for name, low in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{owner}: {name} must be an int >= {low}, got {value!r}")
        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {', '.join(sorted(CELLS))}, got {self.cell!r}")


def _adding_batch(seq_len: int):
    def make(num: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        data = adding_problem(num, seq_len, generator)
        return {"x": data.x, "y": data.y}  # (N, T, 2), (N,)
    return make


@register
class AddingTask(Task):
    name = "adding"
    description = "the adding problem: read T (value, marker) pairs, output the sum of the two marked values"
    default_data = ("generated: values U(0,1), one marker in each half (Le et al. 2015); fresh training "
                    "batches, seeded val/test sets; predicting 1.0 gives MSE 1/6")
    metric, mode = "mse", "min"
    Options = AddingOptions
    export = ExportSpec(ForecasterGraph, lengths=False)  # a Forecaster: 2 features in, horizon 1
    # Adam at 1e-3 with clipping at 1 (Arjovsky et al. clip too); evaluations every 200 steps
    # give learning curves and the step at which the MSE first drops below SOLVED_MSE.
    train_defaults = {"epochs": 10, "batch_size": 50, "lr": 1e-3, "clip_norm": 1.0, "eval_every": 200}

    def prepare(self, seed: int) -> dict:
        o = self.options
        make = _adding_batch(o.seq_len)
        self.meta = {"seq_len": o.seq_len, "baseline_mse": ADDING_BASELINE_MSE, "solved_mse": SOLVED_MSE,
                     "sizes": {"train_per_epoch": o.train_size, "val": o.val_size, "test": o.test_size}}
        # Streams 1 and 2 of the seed: never the training batches' stream 0.
        val = make(o.val_size, stream_generator(seed, 1))
        test = make(o.test_size, stream_generator(seed, 2))
        return {"train": GeneratedData(make, o.train_size), "val": TensorData(val), "test": TensorData(test)}

    def loader(self, data, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1):
        if isinstance(data, GeneratedData):
            return GeneratedLoader(data, batch_size, seed, rank, world)
        return IndexLoader(data, batch_size, shuffle, seed, rank, world)

    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """constant: always 1.0, the mean target (what a model that learned nothing does): test mse."""
        y = splits["test"].tensors["y"]  # (N,)
        return {"constant": {"mse": float(((y - 1.0) ** 2).mean())}}

    def build_model(self) -> Forecaster:
        o = self.options
        return Forecaster(ForecasterConfig(horizon=1, input_size=2, cell=o.cell, hidden_size=o.hidden_size,
                                           num_layers=o.num_layers))

    def step(self, model, batch, state=None) -> StepOutput:
        x, y = batch["x"], batch["y"]  # (B, T, 2), (B,)
        if x.dim() != 3 or x.shape[-1] != 2:
            raise ValueError(f"adding: x must be (B, T, 2) (value, marker) pairs, got {tuple(x.shape)}")
        y_hat = model(x)[:, 0]  # (B, 1) -> (B,)
        error = y_hat - y
        stats = {"correct": int((error.detach().abs() < CORRECT_ERROR).sum()),
                 "baseline_sum": float(((y - 1.0) ** 2).sum())}
        return StepOutput((error ** 2).sum(), len(y), stats)

    def metrics(self, totals: dict) -> dict[str, float]:
        """mse (= loss), baseline_mse (always predicting 1.0) and accuracy (|error| < 0.04)."""
        count = max(totals["count"], 1)
        mse = totals["loss_sum"] / count
        return {"loss": mse, "mse": mse, "baseline_mse": totals.get("baseline_sum", 0.0) / count,
                "accuracy": totals.get("correct", 0.0) / count}

    # -- using a trained model --------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model, inputs: list[str], options: NoOptions) -> list[dict]:
        """Each input is a sequence of values separated by spaces or commas, two of them marked
        with a trailing ``*`` (e.g. ``"0.3 0.5* 0.1 0.9* 0.2"``); returns the predicted and the
        true sum. Any length >= 2 is read, not only the trained ``seq_len``."""
        if not inputs:
            raise ValueError('adding: predict needs at least one INPUT, e.g. rnnkit predict RUN "0.3 0.5* 0.1 0.9* 0.2"')
        rows = []
        for text in inputs:
            x = _parse_marked(text)  # (T, 2)
            y_hat = float(model(x.unsqueeze(0).to(module_device(model)))[0, 0])
            target = float((x[:, 0] * x[:, 1]).sum())
            rows.append({"input": text, "sum": round(y_hat, 4), "target": round(target, 4)})
        return rows


def _parse_marked(text: str) -> torch.Tensor:
    """"0.3 0.5* 0.1 0.9*" -> (T, 2) (value, marker); exactly two values marked."""
    pairs = []
    for token in text.replace(",", " ").split():
        marked = token.endswith("*")
        try:
            value = float(token.rstrip("*"))
        except ValueError:
            raise ValueError(f"adding: input values must be numbers, optionally marked with a trailing *, "
                             f"got {token!r} in {text!r}") from None
        pairs.append((value, 1.0 if marked else 0.0))
    marks = sum(m for _, m in pairs)
    if len(pairs) < 2 or marks != 2:
        raise ValueError(f"adding: an input needs at least 2 values with exactly 2 marked by a trailing *, "
                         f"got {len(pairs)} values with {int(marks)} marked in {text!r}")
    return torch.tensor(pairs, dtype=torch.float32)
