"""Verification: run an exported file in onnxruntime and compare it with rnnkit.

``verify(graph, path)`` runs the file on inputs of two batch sizes and lengths that differ
from the traced ones (so a size fixed by mistake in the graph shows) and compares every
output with the unconverted model's (``graph.reference``); above ``TOLERANCE`` it raises.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
from torch import Tensor

__all__ = ["TOLERANCE", "CHECK_SIZES", "verify", "run_onnx", "max_abs_diff"]

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # largest |onnxruntime - rnnkit| that verify accepts
CHECK_SIZES = ((2, 9), (5, 4))  # (batch, time) of the checks: neither is the traced (3, 6)


def verify(graph, path: str | os.PathLike, run=None, runtime: str = "onnxruntime") -> float:
    """Largest |runtime - rnnkit| over the check sizes; RuntimeError above TOLERANCE.

    ``graph`` is the ``ExportGraph`` that was written to ``path``; ``run(path, inputs)`` runs
    the file (default ``run_onnx``), ``runtime`` names it in messages.
    """
    run = run or run_onnx
    diff = 0.0
    for seed, (batch, time) in enumerate(CHECK_SIZES):
        check = graph.example(batch, time, seed=seed + 1)
        diff = max(diff, max_abs_diff(run(path, check), graph.reference(check)))
    if not diff <= TOLERANCE:  # (NaN too)
        raise RuntimeError(f"export: {runtime}'s outputs differ from rnnkit's by {diff:.3g} > {TOLERANCE} "
                           f"in {Path(path)}")
    log.info("export: %s agrees with rnnkit on %s within %.3g", runtime, path, diff)
    return diff


def max_abs_diff(got: list, want: list[Tensor]) -> float:
    """Largest |got - want| over outputs (numpy arrays from onnxruntime against tensors);
    inf when the number of outputs or a shape differs."""
    if len(got) != len(want):
        return math.inf
    diff = 0.0
    for g, w in zip(got, want):
        g, w = np.asarray(g, dtype=np.float64), w.detach().double().numpy()
        if g.shape != w.shape:
            return math.inf
        if g.size:
            diff = max(diff, float(np.abs(g - w).max()))
    return diff


def run_onnx(path: str | os.PathLike, inputs: dict[str, Tensor]) -> list:
    """Run an exported file in onnxruntime (CPU, one thread) on named inputs -> numpy arrays."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {name: value.numpy() for name, value in inputs.items()})
