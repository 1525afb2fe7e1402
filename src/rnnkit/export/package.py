"""``--format pt2``: a graph as an AOTInductor package, compiled C++ that runs without Python.

``write_pt2(graph, path)`` exports the graph with ``torch.export`` (batch and time axes
``Dim.DYNAMIC``; every recurrent layer as the reference loop, torch's ``scan`` over the cells'
own steps, since ONNX's nodes mean nothing here) and compiles it with
``torch._inductor.aoti_compile_and_package`` (needs a C++ compiler). ``run_pt2`` loads a
package and runs it, for the same verification as the ONNX files (``export.verify``).

What torch.export or AOTInductor cannot make is refused in one line naming the graph and the
reason, through ``Pt2Error``. Compiling takes tens of seconds per graph (a C++ build); the
single-step graph (``--step``) has no loop and is the smallest package.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from .graphs import ExportGraph

__all__ = ["Pt2Error", "write_pt2", "run_pt2"]


class Pt2Error(ValueError):
    """torch.export or AOTInductor could not turn a graph into a package (the message says which, and
    why); a ValueError, so that the command reports it in one line."""


def write_pt2(graph: ExportGraph, path: Path, inputs: dict[str, Tensor], shapes: tuple) -> None:
    """Export ``graph`` on ``inputs`` (with ``shapes``, torch.export's dynamic shapes) and
    compile it into the AOTInductor package ``path``; Pt2Error when either step fails."""
    with torch.no_grad():
        try:
            program = torch.export.export(graph, tuple(inputs.values()), dynamic_shapes=shapes)
        except Exception as error:  # torch.export's errors have many types
            raise Pt2Error(f"export --format pt2: torch.export cannot export the {graph.kind} graph: "
                           f"{_first_line(error)}") from error
        try:
            torch._inductor.aoti_compile_and_package(program, package_path=str(path))
        except Exception as error:  # so have Inductor's (a C++ compiler's too)
            raise Pt2Error(f"export --format pt2: AOTInductor cannot compile the {graph.kind} graph: "
                           f"{_first_line(error)}") from error


def run_pt2(path: str | os.PathLike, inputs: dict[str, Tensor]) -> list:
    """Run an AOTInductor package on named inputs (in the graph's order) -> numpy arrays."""
    import torch._inductor

    with torch.no_grad():
        out = torch._inductor.aoti_load_package(str(path))(*inputs.values())
    return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else [out])]


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]
