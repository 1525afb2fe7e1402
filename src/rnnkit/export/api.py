"""The entry points: a model and its ``ExportSpec`` in, verified ONNX files out.

``export_model(model, path, spec)`` builds the spec's graphs over a converted copy of the
model (``ExportSpec.build``), traces each with torch's TorchScript exporter, writes it with
dynamic batch and time axes and checks it in onnxruntime against rnnkit (``export.verify``).
"""
from __future__ import annotations

import contextlib
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
from .loop import layer_norm_symbolic
from .verify import verify as verify_graph

__all__ = ["ExportSpec", "OnnxExport", "export_model", "write_onnx", "OPSET", "MIN_OPSET", "TRACE_SIZE"]

log = logging.getLogger(__name__)

OPSET = 17  # the default ONNX opset (LayerNormalization is 17's)
MIN_OPSET = 14  # the layouts of ONNX's LSTM and GRU nodes that rnnkit needs
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


def export_model(model: nn.Module, path: str | os.PathLike, spec: ExportSpec, *, lengths: bool | None = None,
                 opset: int = OPSET, verify: bool = True) -> list[OnnxExport]:
    """Write ``model`` as ONNX, with dynamic batch and time axes: one file per graph of ``spec``.

    Args:
        model: the model (an ``nn.Module``); not changed, the export works on a copy in eval mode.
        path: the ``.onnx`` file to write (its folder is created). A model of several graphs is
            written beside it, as ``<stem>.<part>.onnx``.
        spec: its graphs (a task's ``export`` declaration).
        lengths: whether the graphs take a ``lengths`` input (B,) int64; None = ``spec.lengths``.
        opset: the ONNX opset, >= 14. Default 17.
        verify: run each file in onnxruntime on inputs of two other batch sizes and lengths than
            the traced ones and compare with rnnkit's own layers; a difference above
            ``TOLERANCE`` (1e-4) raises RuntimeError. Needs onnxruntime.

    Returns:
        One ``OnnxExport(path, part, inputs, outputs, max_abs_diff)`` per file written.
    """
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"export: path must end in .onnx, got {str(path)!r}")
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"export: opset must be an int >= {MIN_OPSET} (ONNX LSTM/GRU with the layouts rnnkit needs), "
                         f"got {opset!r}")
    if not isinstance(spec, ExportSpec):
        raise TypeError(f"export: spec must be an ExportSpec, got {type(spec).__name__}")
    graphs = spec.build(model, lengths)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for part, graph in graphs.items():
        file = path if not part else path.with_name(f"{path.stem}.{part}.onnx")
        names, outputs = write_onnx(graph, file, opset)
        diff = verify_graph(graph, file) if verify else None
        written.append(OnnxExport(file, part, tuple(names), tuple(outputs), diff))
    return written


def write_onnx(graph: ExportGraph, path: Path, opset: int = OPSET) -> tuple[list[str], list[str]]:
    """Trace ``graph`` at the trace size and write it with dynamic axes -> (input names, output names)."""
    inputs = graph.example(*TRACE_SIZE)
    names, outputs = list(inputs), graph.output_names()
    dynamic_axes = {name: graph.dynamic_axes(name) for name in names + outputs}
    with warnings.catch_warnings(), torch.no_grad(), layer_norm_symbolic(opset):
        # The tracer warns about each Python-level check it turns into a constant (the shape
        # and lengths checks at the layers' boundary, which are for eager callers), and the
        # TorchScript exporter about itself.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.nn\.modules\.rnn")
        with _cpp_warnings_to_log():
            torch.onnx.export(graph, tuple(inputs.values()), str(path), dynamo=False, input_names=names,
                              output_names=outputs, dynamic_axes=dynamic_axes, opset_version=opset)
    log.info("export: wrote %s (%s: inputs %s, outputs %s)", path, graph.kind, names, outputs)
    return names, outputs


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
