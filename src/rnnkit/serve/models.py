"""The models a server holds: one trained run each, named by its run directory's name.

What a request may send to a model's ``predict`` depends on what its task reads (``Inputs``):
texts go in as they are; a task whose predict reads *files* (digits and mnist images, speech
audio) gets them only as uploads, written by the server to private temporary files, never a
path from the request. A task outside rnnkit declares what it reads with a class attribute
``serve_inputs = rnnkit.serve.Inputs(...)``; a task that declares nothing is refused at start-up
(serve cannot tell whether its predict would open a path a request names).
"""
from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runs import RunModel, load, task_class
from ..tasks import Task

__all__ = ["Inputs", "TASK_INPUTS", "IMAGE_SUFFIXES", "AUDIO_SUFFIXES", "ServedModel", "load_models", "inputs_of"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".pgm")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class Inputs:
    """What a task's ``predict`` reads, as the server sees it.

    Args:
        json: what a JSON request's ``inputs`` may hold: "text" (strings), "index" (whole
            numbers >= 0, e.g. an image of the task's bundled data set), "number" (finite
            numbers, e.g. a series' history) or "none" (uploads only).
        files: the file suffixes an upload may have (empty: the task takes no uploads).
        per_input: predict returns one row per input, in order, whatever the other inputs:
            such requests can be micro-batched (concatenated, then split back).
        empty_ok: ``inputs`` may be empty (forecast: after the end of the training series).
    """

    json: str = "text"
    files: tuple[str, ...] = ()
    per_input: bool = True
    empty_ok: bool = False

    def __post_init__(self) -> None:
        if self.json not in ("text", "index", "number", "none"):
            raise ValueError(f"Inputs: json must be text, index, number or none, got {self.json!r}")


# rnnkit's own tasks; charlm has no predict (it generates)
TASK_INPUTS: dict[str, Inputs] = {
    "sentiment": Inputs("text"), "tagging": Inputs("text"), "translate": Inputs("text"),
    "adding": Inputs("text"), "copy": Inputs("text"),
    "digits": Inputs("index", IMAGE_SUFFIXES), "mnist": Inputs("index", IMAGE_SUFFIXES),
    "speech": Inputs("none", AUDIO_SUFFIXES),
    "forecast": Inputs("number", per_input=False, empty_ok=True),
    "charlm": Inputs("none"),
    "genome": Inputs("text"), "recommend": Inputs("text"), "caption": Inputs("index", IMAGE_SUFFIXES),
    "sensors": Inputs("none", (".ts", ".csv")),
    "alarm": Inputs("none", (".csv",), per_input=False),  # one row per alarm, not per input
    "music": Inputs("none", (".mid", ".midi", ".musicxml", ".xml", ".mxl")),
}


def inputs_of(task_cls: type[Task]) -> Inputs:
    """What the task's predict reads: its ``serve_inputs`` attribute, else rnnkit's table."""
    declared = getattr(task_cls, "serve_inputs", None)
    if isinstance(declared, Inputs):
        return declared
    if task_cls.name in TASK_INPUTS and task_cls.__module__.startswith("rnnkit.tasks."):
        return TASK_INPUTS[task_cls.name]
    raise ValueError(f"serve: task {task_cls.name!r} does not say what its predict reads; give its class "
                     "serve_inputs = rnnkit.serve.Inputs(...) (texts, or files that serve uploads)")


@dataclass(eq=False)
class ServedModel:
    """One loaded run: its public name, the ``RunModel``, what its predict reads, and the lock
    that lets one inference at a time use it (predict, generate and live streams alike)."""

    name: str
    run: RunModel
    inputs: Inputs
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def task(self) -> Task:
        return self.run.task

    @property
    def predicts(self) -> bool:
        """Whether the task has a predict of its own (charlm only generates)."""
        return type(self.task).predict is not Task.predict

    @property
    def generates(self) -> bool:
        return self.task.GenerateOptions is not None

    @property
    def streams(self) -> bool:
        """Live forecasting over a websocket: the task has ``stream(model)`` (forecast)."""
        return callable(getattr(self.task, "stream", None))

    def describe(self) -> dict[str, Any]:
        """``GET /v1/models``' entry: name, task, what it does and takes."""
        task = self.task
        return {
            "name": self.name, "task": task.name, "description": task.description,
            "predict": self.predicts, "generate": self.generates, "stream": self.streams,
            "inputs": self.inputs.json, "uploads": list(self.inputs.files),
            "predict_options": _fields(task.PredictOptions),
            "generate_options": _fields(task.GenerateOptions) if self.generates else None,
            "horizon": getattr(task.options, "horizon", None),
        }


def _fields(cls) -> dict[str, Any]:
    """The options a request may set, with their defaults (not those that name a file to write)."""
    return {f.name: f.default for f in dataclasses.fields(cls) if not f.metadata.get("writes_file")}


def load_models(run_dirs: list[str | Path], device: str = "cpu") -> dict[str, ServedModel]:
    """Load each run directory (``rnnkit.load``), keyed by its directory's name.

    Two runs with the same directory name, a missing directory, or a task that does not say
    what its predict reads (see ``inputs_of``) is a ValueError before anything is served.
    """
    if not run_dirs:
        raise ValueError("serve: give at least one run directory")
    paths: dict[str, Path] = {}
    for run_dir in run_dirs:  # every name is checked before anything is loaded
        path = Path(run_dir)
        if not path.is_dir():
            raise ValueError(f"serve: run directory {run_dir} does not exist")
        name = path.resolve().name
        if name in paths:
            raise ValueError(f"serve: two runs are named {name!r} (models are named by their run directory's "
                             "name; rename one)")
        inputs_of(task_class(path))  # (config.json only: a task serve cannot serve is refused before loading)
        paths[name] = path
    models: dict[str, ServedModel] = {}
    for name, path in paths.items():
        run = load(path, device)
        models[name] = ServedModel(name, run, inputs_of(type(run.task)))
    return models
