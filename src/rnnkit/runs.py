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
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .tasks import ENTRY_POINT_GROUP, Task, get_task
from .training import Callback, TrainConfig, evaluate_batches, fit_run
from .training.checkpoint import CheckpointError, load_weights
from .training.device import module_device, resolve_device
from .training.run import baseline_metrics, split_metrics
from .training.runfiles import check_fields, read_run_json, sha256_path, warn_unverified

log = logging.getLogger(__name__)

# config.json: what fit_run writes (options and train are checked against the task's dataclasses)
CONFIG_SCHEMA = {"task": str, "options": dict, "train": dict,
                 "data_files?": {"*": {"path": str, "sha256": str}}}

__all__ = ["train", "load", "load_task", "task_class", "evaluate", "RunModel", "read_config", "CONFIG_SCHEMA"]


def train(task_name: str, options, config: TrainConfig, out: str | Path, resume: bool = False,
          progress: bool = True, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train the task registered as ``task_name``, with ``options`` (an instance of its
    ``Options`` dataclass), into the run directory ``out``; returns the summary. ``callbacks``
    are called beside the run's own (metrics.jsonl, progress bar)."""
    cls = get_task(task_name)
    if not isinstance(options, cls.Options):
        raise TypeError(f"train: options of task {task_name} must be a {cls.Options.__name__}, "
                        f"got {type(options).__name__}")
    return fit_run(cls(options), config, out, resume=resume, progress=progress, callbacks=callbacks)


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
        """One dict per input (for a forecast run with no inputs: one forecast).

        ``inputs`` is a list of inputs, each one a string in the task's format (a text, a path, a
        number for forecast): a bare string or a list of lists is refused with a ValueError.
        """
        owner = f"{self.task.name}: predict"
        if isinstance(inputs, (str, bytes)):
            raise ValueError(f"{owner}: inputs must be a list of inputs, got a {type(inputs).__name__} "
                             f"({str(inputs)[:30]!r}); pass [{str(inputs)[:30]!r}] for one input")
        inputs = list(inputs)
        for k, item in enumerate(inputs):
            if isinstance(item, (list, tuple, dict, set)):
                raise ValueError(f"{owner}: inputs[{k}] must be one input (a str, or a number for forecast), got a "
                                 f"{type(item).__name__}; pass a flat list such as ['1.5', '2.0', ...]")
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


def read_config(run_dir: str | Path) -> tuple[type[Task], dict, TrainConfig]:
    """A run's config.json, verified against its manifest and checked field by field:
    (the task class, its options as a dict, the TrainConfig). Every error is one
    CheckpointError naming config.json and the field."""
    run_dir = Path(run_dir)
    config = _read_json(run_dir, "config.json")
    cls = _task_class(run_dir, config)
    path = run_dir / "config.json"
    check_fields(path, config, CONFIG_SCHEMA)
    options = _dataclass_from(path, "options", cls.Options, config["options"])
    train_cfg = _dataclass_from(path, "train", TrainConfig, config["train"])
    try:
        train_cfg.validate()
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: field 'train' is not a valid TrainConfig ({e})") from None
    return cls, options, train_cfg


def load_task(run_dir: str | Path) -> tuple[Task, dict]:
    """The task of a run, with its options and preprocessing state restored, and the run's config."""
    run_dir = Path(run_dir)
    cls, options, _ = read_config(run_dir)
    config = _read_json(run_dir, "config.json")
    meta = read_run_json(run_dir, "preprocess.json", dict)
    if cls.meta_schema is not None:
        check_fields(run_dir / "preprocess.json", meta, cls.meta_schema)
    task = cls(options)
    task.meta = meta
    return task, config


def load(run_dir: str | Path, device: str | torch.device | None = None) -> RunModel:
    """Load a run directory's best weights into its model, in eval mode, in float32.

    ``device``: "cpu" (None, the default), "auto" (CUDA when there is a GPU), "cuda" or
    "cuda:N", whatever device and precision the run was trained with; a CUDA device the
    machine lacks raises a one-line ValueError before anything is read.
    """
    device = resolve_device("cpu" if device is None else device, "load", "device")
    run_dir = Path(run_dir)
    task, config = load_task(run_dir)
    weights = load_weights(run_dir / "model.safetensors", run_dir=run_dir)  # verified, finite, on the CPU
    _check_size(run_dir, task, weights)  # before anything of the config's size is allocated
    model = _build(run_dir, task)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"{run_dir}/model.safetensors does not fit the model: {str(e).splitlines()[0]}") from None
    warn_unverified(run_dir)  # a run from before manifests: read, but not verified
    return RunModel(model.to(device), task, config).eval()


def evaluate(run_dir: str | Path, data: str | None = None, device: str | torch.device | None = None) -> dict[str, float]:
    """Metrics of a trained run on its test split (re-made from its seed) or on a data file,
    computed in float32 on ``device`` (as for :func:`load`: None is the CPU).

    Keys are ``test_<metric>`` for the test split, ``data_<metric>`` for a file, and the task's
    baselines on the same items, ``baseline_<name>_test_<metric>`` (``_data_`` for a file),
    fitted on the run's training split (``Task.baselines``; for a file, only when the training
    data can still be prepared). Without ``data``, the data files the run trained on
    (config.json's ``data_files``) must be unchanged: one whose sha256 differs is a ValueError
    (pass ``data`` to evaluate on it).
    """
    run = load(run_dir, device)
    task, train_cfg = run.task, TrainConfig(**run.config["train"])
    meta = dict(task.meta)
    splits = None
    if data is None:
        _check_data_files(run.task, run.config.get("data_files", {}))
        splits = task.prepare(train_cfg.seed)
        dataset = splits["test"]
        task.meta = meta  # keep the preprocessing the model was trained with
    else:
        dataset = task.load_data(data)
    metrics = evaluate_batches(task, run.model, task.loader(dataset, train_cfg.batch_size, shuffle=False), run.device)
    metrics.update(split_metrics(task, run.model, dataset))
    split = "test" if data is None else "data"
    out = {f"{split}_{k}": v for k, v in metrics.items()}
    if splits is None:  # a file: the baselines still fit on the run's own training split
        try:
            splits = {**task.prepare(train_cfg.seed), "test": dataset}
        except (ValueError, OSError) as e:
            log.warning("evaluate: no baselines for %s (the run's training data: %s)", data, e)
        task.meta = meta
    if splits is not None:
        out.update(baseline_metrics(task, splits, split))
        task.meta = meta
    return out


def _read_json(run_dir: Path, name: str) -> Any:
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    return read_run_json(run_dir, name)


def _dataclass_from(path: Path, field: str, cls: type, values: dict):
    """An instance of the dataclass ``cls`` from config.json's ``field``: known keys, typed as
    the fields are (int, float, bool, str); a missing key takes the field's default."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise CheckpointError(f"{path}: field '{field}.{unknown[0]}' is not an option of {cls.__name__}")
    for name, value in values.items():
        kind = _field_kind(fields[name])
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise CheckpointError(f"{path}: field '{field}.{name}' must be {kind.__name__}, "
                                  f"got {type(value).__name__} {str(value)[:40]!r}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: field '{field}' is not valid ({str(e).splitlines()[0] if str(e) else e!r})") from None


def _field_kind(f) -> type:
    name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "object")
    return {"int": int, "float": float, "bool": bool, "str": str}.get(name.split("|")[0].strip(), object)


def _build(run_dir: Path, task: Task) -> nn.Module:
    """The task's model from config.json and preprocess.json; what they hold that cannot build
    it is a CheckpointError naming them."""
    try:
        return task.build_model()
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RuntimeError) as e:
        # (RuntimeError: torch refusing a size, e.g. one whose byte count overflows)
        raise CheckpointError(f"{run_dir}/config.json and preprocess.json do not build a {task.name} model "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _memory_bytes() -> int:
    """The machine's physical memory (or 2**62 where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _check_size(run_dir: Path, task: Task, weights: dict[str, torch.Tensor]) -> None:
    """Refuse a config.json whose model would not fit in memory or does not have the tensors of
    model.safetensors, from a model built on the meta device (sizes only, nothing allocated)."""
    try:
        with torch.device("meta"):
            skeleton = _build(run_dir, task)
    except NotImplementedError as e:  # a model with an operation that the meta device lacks
        log.debug("%s: no size check (the model cannot be built on the meta device: %s)", run_dir, e)
        return
    shapes = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    need = sum(v.numel() * v.element_size() for v in skeleton.state_dict().values())
    if need > _memory_bytes():
        sizes = {k: v for k, v in dataclasses.asdict(task.options).items()
                 if isinstance(v, int) and not isinstance(v, bool)}
        biggest = max(sizes, key=sizes.get) if sizes else "its sizes"
        raise CheckpointError(f"{run_dir}/config.json: the model it describes needs {need / 2**30:,.1f} GiB, more than "
                              f"this machine's memory ({_memory_bytes() / 2**30:,.1f} GiB); check "
                              f"options.{biggest} = {sizes.get(biggest)}")
    for name, shape in shapes.items():
        if name in weights and tuple(weights[name].shape) != shape:
            raise CheckpointError(f"{run_dir}/model.safetensors does not fit the model of config.json and "
                                  f"preprocess.json: tensor {name!r} is {tuple(weights[name].shape)} in the file, "
                                  f"{shape} in the model")
    missing, unexpected = sorted(set(shapes) - set(weights)), sorted(set(weights) - set(shapes))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"{run_dir}/model.safetensors does not fit the model of config.json and "
                              f"preprocess.json: tensors {what}")


def _check_data_files(task: Task, recorded: dict) -> None:
    """The data files a run trained on, as its options name them now, must have their recorded sha256."""
    for field, entry in recorded.items():
        path = getattr(task.options, field, entry["path"])
        if not Path(path).exists():
            raise ValueError(f"evaluate: data file {path} (options.{field}) that the run trained on is missing; "
                             "pass --data to evaluate on another file")
        now = sha256_path(path)
        if now != entry["sha256"]:
            raise ValueError(f"evaluate: data file {path} changed since training (sha256 {entry['sha256'][:12]}... "
                             f"then, {now[:12]}... now); pass --data to evaluate on it")


def _task_class(run_dir: Path, config: Any) -> type[Task]:
    if not isinstance(config, dict) or not isinstance(config.get("task"), str):
        found = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{run_dir}/config.json is not an rnnkit run config (no task name; found {found})")
    try:
        return get_task(config["task"])
    except ValueError:
        raise CheckpointError(
            f"{run_dir}/config.json: a run of task {config['task']!r}, which is not registered (a task defined outside rnnkit "
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
