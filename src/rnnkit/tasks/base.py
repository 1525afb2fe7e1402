"""What a task is: one data source, one model, one loss, its metrics and its decoding.

Adding a task is adding one module that subclasses :class:`Task` and registers it
(``@register``); nothing else changes. What each part of rnnkit asks of a task:

- the trainer: ``step``, ``metrics``, ``split_time``, ``stateful`` — the rules are
  ``rnnkit.training.protocol.TrainingTask``'s;
- training into a run directory (``rnnkit.training.fit_run``): ``name``, ``options``,
  ``metric``, ``mode``, ``meta``, ``prepare``, ``build_model``, ``loader`` — the rules are
  ``rnnkit.training.protocol.RunTask``'s;
- the command line and ``rnnkit.load`` (``rnnkit.runs``): the class attributes
  ``description``, ``default_data``, ``Options``, ``train_defaults``, ``PredictOptions``,
  ``GenerateOptions`` and the methods ``load_data``, ``predict``, ``generate`` (below);
- the run code and ``rnnkit evaluate``: ``baselines`` (below; ``rnnkit.tasks.baselines``).

Every ``*Options`` class is a dataclass: the command line maps one ``--flag`` per field onto
it (``hidden_size`` -> ``--hidden-size``, typed by the field's annotation: int, float, str or
bool), its ``__post_init__`` validates, and ``config.json`` saves it with
``dataclasses.asdict``.

Registration: the modules of this package register their tasks when ``all_tasks`` imports
them; a task defined elsewhere is registered by calling ``register(MyTask)`` before the
command line runs (``rnnkit.cli.main([...])`` in the same process), or, for the ``rnnkit``
command itself, by an installed package that declares an entry point in the group
``rnnkit.tasks`` (``mytask = "mypackage.mytask:MyTask"``).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping

import torch
from torch import nn

from ..data import Vocab
from ..export import ExportSpec
from ..training import StepOutput, module_device, move_to_device
from ..training.runfiles import CheckpointError
from .loaders import IndexLoader, StreamLoader, TensorData

__all__ = ["Task", "NoOptions", "IndexLoader", "StreamLoader", "TensorData", "register", "get_task", "all_tasks",
           "TASKS", "ENTRY_POINT_GROUP", "vocab_field",
           "argmax_over_split"]

log = logging.getLogger(__name__)

TASKS: dict[str, type["Task"]] = {}  # name -> task class, filled by register
ENTRY_POINT_GROUP = "rnnkit.tasks"  # installed packages declare their tasks here
_plugins_loaded = False


@dataclass
class NoOptions:
    """The options of a task (or of its predict) that takes none."""


class Task:
    """Base class of every task; subclasses fill in the class attributes and methods.

    Class attributes:
        name: the registered name (``rnnkit train NAME``); letters, digits, ``_`` and ``-``.
        description: one line for ``rnnkit tasks`` and ``rnnkit train NAME --help``.
        default_data: one line for ``rnnkit tasks``: the data it trains on by default.
        metric: the validation metric that picks the best weights (a key of ``metrics()``);
            reported as ``test_<metric>`` in summary.json.
        mode: "max" if a larger ``metric`` is better, "min" if a smaller one is.
        Options: dataclass of the task's options (model and data): ``rnnkit train`` flags.
        train_defaults: ``TrainConfig`` values that suit this task (the flags' defaults).
        stateful: carry the recurrent state from batch to batch (stream batching).
        PredictOptions: dataclass of ``predict``'s options: ``rnnkit predict RUN`` flags and
            ``rnnkit.load(RUN).predict(inputs, **options)`` keywords.
        GenerateOptions: dataclass of ``generate``'s options (``rnnkit generate RUN`` flags,
            ``rnnkit.load(RUN).generate(...)`` arguments), or None for a task that does not
            generate text.
        export: the task's ONNX export, ``rnnkit.export.ExportSpec(graph class or {part: graph
            class}, lengths=default)`` (``rnnkit export RUN``), or None: not exportable.
        meta_schema: what ``meta`` must hold, checked when a run's preprocess.json is read
            back (``rnnkit.training.runfiles.check_fields``: ``{"labels": non_empty(str)}``);
            None: not checked (a wrong file then fails wherever the task reads it).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_data: ClassVar[str] = ""
    metric: ClassVar[str] = "accuracy"
    mode: ClassVar[str] = "max"
    Options: ClassVar[type] = NoOptions
    train_defaults: ClassVar[dict] = {}
    stateful: ClassVar[bool] = False
    PredictOptions: ClassVar[type] = NoOptions
    GenerateOptions: ClassVar[type | None] = None
    export: ClassVar[ExportSpec | None] = None
    meta_schema: ClassVar[Any] = None

    def __init__(self, options) -> None:
        self.options = options
        self.meta: dict[str, Any] = {}  # JSON-able preprocessing state (labels, vocab, scalers)

    # -- data and model (rnnkit.training.protocol.RunTask) ----------------------------------
    def prepare(self, seed: int) -> dict[str, Any]:
        """Load the data, fit preprocessing on the training split (fills self.meta), return
        the ``"train"``, ``"val"`` and ``"test"`` splits; the same for the same seed."""
        raise NotImplementedError

    def load_data(self, path: str) -> Any:
        """A user's file in the task's format, preprocessed with self.meta, as one split
        (``rnnkit evaluate RUN --data PATH``)."""
        raise ValueError(f"task {self.name} cannot read data files")

    def build_model(self) -> nn.Module:
        """A fresh model sized from self.options and self.meta."""
        raise NotImplementedError

    def loader(self, data: Any, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1):
        """Batches of a split (see ``RunTask.loader``); by default an exactly resumable IndexLoader."""
        return IndexLoader(data, batch_size, shuffle, seed, rank, world)

    # -- training (rnnkit.training.protocol.TrainingTask) -----------------------------------
    def step(self, model: nn.Module, batch, state=None) -> StepOutput:
        """The loss of a batch SUMMED over its items, their count, summable stats, the state."""
        raise NotImplementedError

    def metrics(self, totals: dict) -> dict[str, float]:
        """Metrics from summed statistics; the default knows loss and accuracy."""
        count = max(totals["count"], 1)
        out = {"loss": totals["loss_sum"] / count}
        if "correct" in totals:
            out["accuracy"] = totals["correct"] / count
        return out

    def split_time(self, batch, window: int) -> list:
        raise ValueError(f"task {self.name} does not support truncated BPTT (--bptt)")

    # -- whole-split results (optional hooks, looked up by rnnkit.training.run) -----------------
    # split_metrics(model, data) -> {name: float}: metrics that need the whole split at once
    #     (not sums over batches: where in a whole signal an alarm fires); they join the
    #     batch metrics as test_<name> (training and `rnnkit evaluate`).
    # label_predictions(model, data) -> (targets, predictions): a classifier's class ids over
    #     the split, for the test confusion matrix (plots/confusion.png) and the per-class
    #     report (summary.json's test_class_report); labels are meta["labels"].
    # Both are called with the model in eval mode under torch.no_grad().

    # -- reference points -------------------------------------------------------------------
    def baselines(self, splits: Mapping[str, Any]) -> dict[str, dict[str, float]]:
        """The practitioner's baselines, on the split the model's test metrics come from.

        ``splits`` is what ``prepare`` returned (``"train"``, ``"val"``, ``"test"``; for
        ``rnnkit evaluate RUN --data FILE``, ``"test"`` is ``load_data(FILE)``). Fit on train
        (and val, to pick a setting), measure on test, and return ``{name: {metric: value}}``
        with at least the task's ``metric`` in each, in the units of ``metrics()`` (its
        direction is the task's ``mode``). Keep the cost bounded (cap the rows fitted on):
        it runs after every training. summary.json gets ``baseline_<name>_test_<metric>``.
        The default: no baselines.
        """
        return {}

    # -- using a trained model --------------------------------------------------------------
    def predict(self, model: nn.Module, inputs: list[str], options) -> list[dict]:
        """One JSON-able dict per input (``rnnkit predict`` prints one line each).

        ``options`` is an instance of ``PredictOptions``; ``model`` is in eval mode, float32, on
        the device ``rnnkit.load`` put it on: inputs go to ``rnnkit.training.module_device(model)``.
        """
        raise ValueError(f"task {self.name} has no predict")

    def generate(self, model: nn.Module, options) -> Iterator[str]:
        """Generated text piece by piece, so the command line can stream it.

        ``options`` is an instance of ``GenerateOptions``; ``model`` is in eval mode, on any
        device (as for ``predict``).
        """
        raise ValueError(f"task {self.name} does not generate text; use `rnnkit predict`")


def argmax_over_split(task: Task, model: nn.Module, data: Any, logits_of) -> tuple[torch.Tensor, torch.Tensor]:
    """A classifier's ``label_predictions``: the targets ``batch["y"]`` and the argmax of
    ``logits_of(model, batch)`` ((B, C) logits) over every batch of ``data`` (the task's loader,
    unshuffled), as two 1-D CPU tensors of class ids."""
    device = module_device(model)
    targets, predictions = [], []
    for batch in task.loader(data, 256, shuffle=False):
        batch = move_to_device(batch, device)
        targets.append(batch["y"].cpu())
        predictions.append(logits_of(model, batch).argmax(-1).cpu())  # (B,)
    return torch.cat(targets), torch.cat(predictions)


def vocab_field(min_specials: int = 2):
    """A ``meta_schema`` spec: a ``Vocab.to_dict()`` with at least ``min_specials`` specials
    (4 where bos and eos are used)."""
    def check(value, where) -> None:
        try:
            vocab = Vocab.from_dict(value)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{where[0]}: field {where[1]!r} is not a vocabulary ({e})") from None
        if len(vocab.specials) < min_specials:
            raise CheckpointError(f"{where[0]}: field {where[1]!r} must have at least {min_specials} specials, "
                                  f"got {list(vocab.specials)!r:.60}")
    check.describe = "a vocabulary"
    return check


def register(cls: type[Task]) -> type[Task]:
    """Make ``cls`` known by its ``name`` to ``get_task``, ``rnnkit.load`` and the command line.

    Usable as a class decorator. Registering a class again (a reloaded module) replaces it;
    another class under a name already taken raises ValueError.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register: expected a task class, got {type(cls).__name__} {cls!r}")
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"register: {cls.__qualname__}.name must be letters, digits, _ and -, got {name!r}")
    if getattr(cls, "mode", None) not in ("max", "min"):
        raise ValueError(f"register: {cls.__qualname__}.mode must be max or min, got {getattr(cls, 'mode', None)!r}")
    for attr in ("Options", "PredictOptions", "GenerateOptions"):
        value = getattr(cls, attr, None)
        if not (value is None and attr == "GenerateOptions") and not dataclasses.is_dataclass(value):
            raise TypeError(f"register: {cls.__qualname__}.{attr} must be a dataclass, got {value!r}")
    old = TASKS.get(name)
    if old is not None and old is not cls and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"register: task name {name!r} is taken by {old.__module__}.{old.__qualname__}")
    TASKS[name] = cls
    return cls


def all_tasks() -> dict[str, type[Task]]:
    """Every task, by name: this package's (each module registers its task when imported),
    those of installed packages (entry points ``rnnkit.tasks``) and those registered by hand."""
    import importlib
    import pkgutil

    from .. import tasks

    for module in pkgutil.iter_modules(tasks.__path__):
        if module.name != "base":
            importlib.import_module(f"{tasks.__name__}.{module.name}")
    _load_plugins()
    return dict(TASKS)


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``; ValueError naming the choices otherwise."""
    known = all_tasks()
    if name not in known:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(sorted(known))}")
    return known[name]


def _load_plugins() -> None:
    """Import the tasks of installed packages, once. A plugin that fails to load is skipped with a warning."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry.load()
            if isinstance(cls, type) and TASKS.get(getattr(cls, "name", "")) is not cls:
                register(cls)
        except Exception as e:  # a broken plugin must not break every other task
            log.warning("task plugin %s = %s could not be loaded: %s: %s", entry.name, entry.value, type(e).__name__, e)
