"""The entry points: a model and its ``ExportSpec`` in, verified ONNX files out.

``export_model(model, path, spec)`` builds the spec's graphs over a converted copy of the
model (``ExportSpec.build``), exports each with ``torch.export`` and ``torch.onnx.export(
dynamo=True)``, writes it with dynamic batch and time axes and checks it in onnxruntime
against rnnkit (``export.verify``).
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, NamedTuple, Union

import torch
from torch import nn

from .graphs import ExportGraph
from .package import run_pt2, write_pt2
from .step import StepGraph
from .verify import verify as verify_graph

__all__ = ["ExportSpec", "OnnxExport", "export_model", "write_onnx", "write_package", "dynamic_shapes", "OPSET",
           "MIN_OPSET", "TRACE_SIZE", "FORMATS"]

log = logging.getLogger(__name__)

OPSET = 18  # the default ONNX opset
MIN_OPSET = 18  # the oldest opset torch.onnx.export(dynamo=True) writes its ops in (Split's num_outputs, ...)
FORMATS = ("onnx", "pt2")  # an ONNX file; an AOTInductor package
TRACE_SIZE = (3, 6)  # (batch, time) of the traced example; verification uses other sizes


@dataclass(frozen=True)
class ExportSpec:
    """What a model is exported as: its graphs, and whether they take lengths by default.

    A task declares its own as the class attribute ``export`` (``rnnkit.tasks``)::

        export = ExportSpec(ClassifierGraph, lengths=True)

    Args:
        graph: the ``ExportGraph`` subclass that is the whole model (one file), or, for a
            model exported as several graphs, a mapping part -> subclass (seq2seq:
            ``{"encoder": EncoderGraph, "decoder": DecoderStepGraph}``), each written as
            ``<stem>.<part>.onnx``.
        lengths: give the graphs a ``lengths`` input (B,) int64 unless the caller says
            otherwise (inputs that are padded). Default False.
    """

    graph: Union[type, Mapping[str, type]]
    lengths: bool = False

    def __post_init__(self) -> None:
        for part, cls in self.parts().items():
            if not (isinstance(cls, type) and issubclass(cls, ExportGraph)):
                raise TypeError(f"ExportSpec: graph{f' {part!r}' if part else ''} must be an ExportGraph subclass, "
                                f"got {cls!r}")
        if not isinstance(self.lengths, bool):
            raise TypeError(f"ExportSpec: lengths must be a bool, got {type(self.lengths).__name__} {self.lengths!r}")

    def parts(self) -> dict[str, type[ExportGraph]]:
        """The graph classes by part: "" for a model in one graph."""
        return {"": self.graph} if isinstance(self.graph, type) else dict(self.graph)

    def build(self, model: nn.Module, lengths: bool | None = None) -> dict[str, ExportGraph]:
        """The graphs over ``model`` by part; ``lengths``: None = this spec's default."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"export: model must be an nn.Module, got {type(model).__name__}")
        if lengths is None:
            lengths = self.lengths
        if not isinstance(lengths, bool):
            raise TypeError(f"export: lengths must be a bool or None, got {type(lengths).__name__} {lengths!r}")
        return {part: cls(model, lengths) for part, cls in self.parts().items()}


class OnnxExport(NamedTuple):
    """One file ``export_model`` wrote: its path, the graph's part ("" for a whole model,
    "encoder" / "decoder" for a seq2seq model), input and output names, and the largest
    difference onnxruntime showed against rnnkit (None when not verified)."""

    path: Path
    part: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    max_abs_diff: float | None


def export_model(model: nn.Module, path: str | os.PathLike, spec: ExportSpec | None, *, lengths: bool | None = None,
                 opset: int = OPSET, verify: bool = True, step: bool = False,
                 format: str = "onnx") -> list[OnnxExport]:
    """Write ``model`` as ONNX (or a pt2 package), with dynamic batch and time axes: one file per
    graph of ``spec``.

    Args:
        model: the model (an ``nn.Module``); not changed, the export works on a copy in eval mode.
        path: the ``.onnx`` (``.pt2``) file to write (its folder is created). A model of several
            graphs is written beside it, as ``<stem>.<part>.onnx``.
        spec: its graphs (a task's ``export`` declaration); may be None with ``step``.
        lengths: whether the graphs take a ``lengths`` input (B,) int64; None = ``spec.lengths``.
        opset: the ONNX opset, >= 18 (the dynamo exporter's ops). Default 18.
        verify: run each file in onnxruntime on inputs of two other batch sizes and lengths than
            the traced ones and compare with rnnkit's own layers; a difference above
            ``TOLERANCE`` (1e-4) raises RuntimeError. Needs onnxruntime.
        step: write the model's recurrent stack as one time step instead, the state in and out
            (``StepGraph``: x_t, h [, c] -> y_t, h_n [, c_n]); ``spec`` (may be None) and
            ``lengths`` are then not used. ValueError for a model without a unidirectional
            rnnkit stack ``rnn``.
        format: "onnx" (``torch.onnx.export(dynamo=True)``, checked in onnxruntime) or "pt2"
            (an AOTInductor package, ``export.package``, checked by loading it; ``opset`` is not
            used). Pt2Error, one line, when torch.export or AOTInductor cannot make it.

    Returns:
        One ``OnnxExport(path, part, inputs, outputs, max_abs_diff)`` per file written.
    """
    path = Path(path)
    if format not in FORMATS:
        raise ValueError(f"export: format must be one of {', '.join(FORMATS)}, got {format!r}")
    if path.suffix != f".{format}":
        raise ValueError(f"export: path must end in .{format}, got {str(path)!r}")
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"export: opset must be an int >= {MIN_OPSET} (the opset torch.onnx's dynamo exporter "
                         f"writes), got {opset!r}")
    if not (isinstance(spec, ExportSpec) or (step and spec is None)):
        raise TypeError(f"export: spec must be an ExportSpec, got {type(spec).__name__}")
    graphs = {"": StepGraph(model)} if step else spec.build(model, lengths)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for part, graph in graphs.items():
        file = path if not part else path.with_name(f"{path.stem}.{part}{path.suffix}")
        if format == "pt2":
            names, outputs = write_package(graph, file)
            diff = verify_graph(graph, file, run_pt2, "the AOTInductor package") if verify else None
        else:
            names, outputs = write_onnx(graph, file, opset)
            diff = verify_graph(graph, file) if verify else None
        written.append(OnnxExport(file, part, tuple(names), tuple(outputs), diff))
    return written


def write_package(graph: ExportGraph, path: Path) -> tuple[list[str], list[str]]:
    """Export ``graph`` at the trace size with ``torch.export`` and compile it into the
    AOTInductor package ``path`` (``export.package``) -> (input names, output names)."""
    inputs = graph.example(*TRACE_SIZE)
    names, outputs = list(inputs), graph.output_names()
    shapes = dynamic_shapes(graph, names, torch.export.Dim.DYNAMIC)
    with _quiet():
        write_pt2(graph, path, inputs, shapes)
    log.info("export: wrote %s (%s: inputs %s, outputs %s)", path, graph.kind, names, outputs)
    return names, outputs


def write_onnx(graph: ExportGraph, path: Path, opset: int = OPSET) -> tuple[list[str], list[str]]:
    """Export ``graph`` at the trace size with ``torch.onnx.export(dynamo=True)`` and write it
    with dynamic axes -> (input names, output names)."""
    inputs = graph.example(*TRACE_SIZE)
    names, outputs = list(inputs), graph.output_names()
    with _quiet(), torch.no_grad():
        torch.onnx.export(graph, tuple(inputs.values()), str(path), dynamo=True, input_names=names,
                          output_names=outputs, dynamic_shapes=dynamic_shapes(graph, names), opset_version=opset,
                          external_data=False, verbose=False)
    log.info("export: wrote %s (%s: inputs %s, outputs %s)", path, graph.kind, names, outputs)
    return names, outputs


def dynamic_shapes(graph: ExportGraph, names: list[str], dim=None) -> tuple:
    """``torch.export``'s dynamic shapes of the graph's inputs, structured as ``graph.forward``
    takes them (``*inputs``, or named parameters): ``graph.dynamic_axes`` as they are, each
    axis label a string, which ``torch.onnx.export`` reads as ``Dim.DYNAMIC`` (torch.export
    infers each axis's range and its relations, e.g. T' = ceil(T / k)) and writes as the
    axis's name in the file. ``dim``: what every dynamic axis is instead (``Dim.DYNAMIC`` for
    ``torch.export`` itself, which takes no strings)."""
    specs = [{axis: dim or label for axis, label in graph.dynamic_axes(name).items()} or None for name in names]
    shapes = []
    for parameter in inspect.signature(graph.forward).parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:  # forward(*inputs): the rest as one tuple, if any
            shapes += [tuple(specs)] if specs else []
            specs = []
        elif specs:
            shapes.append(specs.pop(0))
    return tuple(shapes)


@contextlib.contextmanager
def _quiet():
    """torch.export's and the ONNX exporter's warnings and log lines (about themselves, the
    layers' eager-only checks, optional packages) go to the log at debug level, so that a
    command's output stays one line per file."""
    with warnings.catch_warnings(record=True) as caught, _cpp_warnings_to_log():
        warnings.simplefilter("always")
        loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
    for warning in caught:
        log.debug("torch.onnx: %s", warning.message)


@contextlib.contextmanager
def _cpp_warnings_to_log():
    """Send what torch's C++ exporter writes to file descriptor 2 to the log (debug level),
    so that a command's output stays one line per file."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines():
                log.debug("torch.onnx: %s", line)
