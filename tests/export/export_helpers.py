"""What the export tests share: sizes other than the traced one, and comparing onnxruntime with rnnkit."""
from collections import Counter

import onnx

from rnnkit.export import max_abs_diff, run_onnx

SIZES = ((1, 3), (4, 11))  # (batch, time): neither is the traced (3, 6)


def agree(path, graph, batch, time, seed=0):
    """Largest |onnxruntime - rnnkit| over every output, at (batch, time)."""
    inputs = graph.example(batch, time, seed=seed)
    got, want = run_onnx(path, inputs), graph.reference(inputs)
    assert [g.shape for g in got] == [tuple(w.shape) for w in want]
    return max_abs_diff(got, want)


def ops(path) -> Counter:
    """How many nodes of each type the file's graph has (the top level, not inside a Scan)."""
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)
