"""Runs by task name: train a registered task, load a run directory back, evaluate it.

The application layer under the command line: it looks tasks up by name (``rnnkit.tasks``),
trains them with the task-agnostic ``rnnkit.training.fit_run``, and rebuilds a run's task and
model from its directory (``rnnkit.load``). The layout of a run directory is described in
``rnnkit.training.run``.

>>> run = rnnkit.load("runs/digits")                   # doctest: +SKIP
>>> run.predict(["0", "5"])                            # doctest: +SKIP
[{'input': '0', 'label': '0', 'probability': 0.99}, ...]
>>> rnnkit.load("runs/digits", device="cuda").device   # doctest: +SKIP
device(type='cuda', index=0)

A run loads on any device whatever it was trained on, and in float32 whatever the precision
of its training (autocast keeps float32 weights).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from .tasks import ENTRY_POINT_GROUP, Task, get_task
from .training import TrainConfig, evaluate_batches, fit_run
from .training.checkpoint import CheckpointError, load_weights
from .training.device import module_device, resolve_device

__all__ = ["train", "load", "load_task", "task_class", "evaluate", "RunModel"]


def train(task_name: str, options, config: TrainConfig, out: str | Path, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train the task registered as ``task_name``, with ``options`` (an instance of its
    ``Options`` dataclass), into the run directory ``out``; returns the summary."""
    cls = get_task(task_name)
    if not isinstance(options, cls.Options):
        raise TypeError(f"train: options of task {task_name} must be a {cls.Options.__name__}, "
                        f"got {type(options).__name__}")
    return fit_run(cls(options), config, out, resume=resume, progress=progress)


class RunModel(nn.Module):
    """A trained model with its task, ready for use: ``rnnkit.load(run_dir)``.

    ``forward`` is the model's; ``predict(inputs, **options)`` decodes as the task does, with
    the task's ``PredictOptions`` as keywords (forecast: ``horizon``); ``generate(...)`` and
    ``stream(...)`` take the task's ``GenerateOptions`` (charlm: ``prime, length, temperature,
    top_k``). The model's weights are float32 on ``device``; ``predict`` and ``generate`` take
    their inputs there (move the model with ``run.to(...)``, and ``device`` follows).
    """

    def __init__(self, model: nn.Module, task: Task, config: dict) -> None:
        super().__init__()
        self.model, self.task, self.config = model, task, config

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return module_device(self.model)

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def predict(self, inputs: list[str], **options) -> list[dict]:
        """One dict per input (for a forecast run with no inputs: one forecast)."""
        chosen = _options(self.task.PredictOptions, f"{self.task.name}: predict", (), options)
        return self.task.predict(self.model, list(inputs), chosen)

    def stream(self, *args, **options) -> Iterator[str]:
        """Generated text, piece by piece as it is sampled (arguments: the task's GenerateOptions)."""
        if self.task.GenerateOptions is None:
            raise ValueError(f"task {self.task.name} does not generate text; use `rnnkit predict`")
        chosen = _options(self.task.GenerateOptions, f"{self.task.name}: generate", args, options)
        return self.task.generate(self.model, chosen)

    def generate(self, *args, **options) -> str:
        """The whole generated text (arguments: the task's GenerateOptions, e.g. ``generate("the ", 50)``)."""
        return "".join(self.stream(*args, **options))


def task_class(run_dir: str | Path) -> type[Task]:
    """The task class of a run directory, from its config.json (nothing else is read)."""
    return _task_class(Path(run_dir), _read_json(Path(run_dir), "config.json"))


def load_task(run_dir: str | Path) -> tuple[Task, dict]:
    """The task of a run, with its options and preprocessing state restored, and the run's config."""
    run_dir = Path(run_dir)
    config = _read_json(run_dir, "config.json")
    meta = _read_json(run_dir, "preprocess.json")
    cls = _task_class(run_dir, config)
    try:
        task = cls(cls.Options(**config["options"]))
    except (KeyError, TypeError) as e:  # JSON, but not a run's config
        raise CheckpointError(f"{run_dir}/config.json is not an rnnkit run config ({type(e).__name__}: {e})") from None
    task.meta = meta
    return task, config


def load(run_dir: str | Path, device: str | torch.device | None = None) -> RunModel:
    """Load a run directory's best weights into its model, in eval mode, in float32.

    ``device``: "cpu" (None, the default), "auto" (CUDA when there is a GPU), "cuda" or
    "cuda:N", whatever device and precision the run was trained with; a CUDA device the
    machine lacks raises a one-line ValueError before anything is read.
    """
    device = resolve_device("cpu" if device is None else device, "load", "device")
    task, config = load_task(run_dir)
    model = task.build_model()
    try:
        model.load_state_dict(load_weights(Path(run_dir) / "model.safetensors"))  # (read onto the CPU)
    except RuntimeError as e:
        raise CheckpointError(f"{run_dir}/model.safetensors does not fit the model: {str(e).splitlines()[0]}") from None
    return RunModel(model.to(device), task, config).eval()


def evaluate(run_dir: str | Path, data: str | None = None, device: str | torch.device | None = None) -> dict[str, float]:
    """Metrics of a trained run on its test split (re-made from its seed) or on a data file,
    computed in float32 on ``device`` (as for :func:`load`: None is the CPU).

    Keys are ``test_<metric>`` for the test split, ``data_<metric>`` for a file.
    """
    run = load(run_dir, device)
    task, train_cfg = run.task, TrainConfig(**run.config["train"])
    if data is None:
        meta = dict(task.meta)
        dataset = task.prepare(train_cfg.seed)["test"]
        task.meta = meta  # keep the preprocessing the model was trained with
    else:
        dataset = task.load_data(data)
    metrics = evaluate_batches(task, run.model, task.loader(dataset, train_cfg.batch_size, shuffle=False), run.device)
    return {f"{'test' if data is None else 'data'}_{k}": v for k, v in metrics.items()}


def _read_json(run_dir: Path, name: str) -> Any:
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    try:
        return json.loads((run_dir / name).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir} is not a run directory ({name} is missing)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{run_dir}: {name} is corrupt ({e})") from None


def _task_class(run_dir: Path, config: Any) -> type[Task]:
    if not isinstance(config, dict) or not isinstance(config.get("task"), str):
        found = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{run_dir}/config.json is not an rnnkit run config (no task name; found {found})")
    try:
        return get_task(config["task"])
    except ValueError:
        raise CheckpointError(
            f"{run_dir} is a run of task {config['task']!r}, which is not registered (a task defined outside rnnkit "
            f"must be registered first: rnnkit.tasks.register, or an entry point in the group {ENTRY_POINT_GROUP})"
        ) from None


def _options(cls: type, owner: str, args: tuple, values: dict):
    """An instance of the options dataclass ``cls``; a clear error for options it does not have."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        known = f" (its options: {', '.join(names)})" if names else ""
        raise ValueError(f"{owner} takes no option {', '.join(unknown)}{known}")
    if len(args) > len(names):
        raise TypeError(f"{owner} takes at most {len(names)} options by position ({', '.join(names)}), got {len(args)}")
    return cls(*args, **values)
