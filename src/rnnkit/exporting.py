"""Export by task: a run directory, a loaded run, or a model and its task's name, as ONNX
(or as an AOTInductor package, ``format="pt2"``).

The application layer over ``rnnkit.export``, which takes a model and an ``ExportSpec`` and
knows no task: here a run directory is loaded (``rnnkit.runs``) and a task's own declaration
of its export (the ``export`` class attribute of every task, ``rnnkit.tasks``) is looked up by
name. The ``rnnkit export`` command calls ``export_onnx``.

>>> [info] = export_onnx("runs/sentiment", "sentiment.onnx")  # doctest: +SKIP
>>> info.inputs, info.outputs  # doctest: +SKIP
(('x', 'lengths'), ('logits',))
"""
from __future__ import annotations

import os

from torch import nn

from .export import OPSET, ExportGraph, ExportSpec, OnnxExport, export_model
from .runs import RunModel, load
from .tasks import Task, all_tasks

__all__ = ["export_onnx", "export_graphs", "task_export", "exportable_tasks"]


def export_onnx(run_or_model, path: str | os.PathLike, *, task: str | None = None, lengths: bool | None = None,
                opset: int = OPSET, verify: bool = True, step: bool = False, format: str = "onnx") -> list[OnnxExport]:
    """Write a run's model as ONNX, with dynamic batch and time axes: one file per graph.

    Args:
        run_or_model: a run directory (str or Path), a ``RunModel`` (``rnnkit.load``), or a
            bare ``nn.Module`` together with ``task``.
        path: the ``.onnx`` file to write. A seq2seq model is two graphs, written beside it as
            ``<stem>.encoder.onnx`` and ``<stem>.decoder.onnx``.
        task: the registered name of the model's task, for a bare module (ignored otherwise).
        lengths, opset, verify, step, format: as ``rnnkit.export.export_model``'s (lengths None:
            the task's; step: the recurrent stack as one step, state in and out; format "onnx"
            or "pt2", an AOTInductor package, path then ending in .pt2).

    Returns:
        One ``OnnxExport(path, part, inputs, outputs, max_abs_diff)`` per file written.
    """
    model, spec = _model_and_spec(run_or_model, task)
    return export_model(model, path, spec, lengths=lengths, opset=opset, verify=verify, step=step, format=format)


def export_graphs(run_or_model, *, task: str | None = None, lengths: bool | None = None) -> dict[str, ExportGraph]:
    """The graphs ``export_onnx`` traces, by part ("" for a whole model; "encoder" and "decoder"
    for seq2seq). A graph's ``example(batch, time)`` makes inputs and ``reference(inputs)``
    computes rnnkit's outputs, so a test or a server can compare onnxruntime with rnnkit."""
    model, spec = _model_and_spec(run_or_model, task)
    return spec.build(model, lengths)


def exportable_tasks() -> dict[str, ExportSpec]:
    """Every registered task that declares its export, by name."""
    tasks = all_tasks().items()
    return {name: cls.export for name, cls in tasks if isinstance(getattr(cls, "export", None), ExportSpec)}


def task_export(task: str | type[Task] | Task) -> ExportSpec:
    """The export a task declares (by registered name, class or instance); ValueError if none."""
    spec = getattr(all_tasks().get(task) if isinstance(task, str) else task, "export", None)
    if not isinstance(spec, ExportSpec):
        name = task if isinstance(task, str) else task.name
        raise ValueError(f"export_onnx: task {name!r} has no ONNX export; exportable: "
                         f"{', '.join(sorted(exportable_tasks()))}")
    return spec


def _model_and_spec(run_or_model, task: str | None) -> tuple[nn.Module, ExportSpec]:
    if isinstance(run_or_model, (str, os.PathLike)):
        run_or_model = load(run_or_model)
    if isinstance(run_or_model, RunModel):
        return run_or_model.model, task_export(run_or_model.task)
    if isinstance(run_or_model, nn.Module):
        if task is None:
            raise ValueError("export_onnx: a bare model needs task=<task name>, got task=None")
        return run_or_model, task_export(task)
    raise TypeError("export_onnx: run_or_model must be a run directory, a RunModel or an nn.Module, "
                    f"got {type(run_or_model).__name__}")
