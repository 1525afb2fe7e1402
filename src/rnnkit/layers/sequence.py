"""The "sequence" backends: one direction of a layer over time, derived from the reference step.

Each runs the cell's own projection (``lstm_project`` with oneDNN's products and the compiled
per-gate layer norm passed in, where they apply) and then a whole-sequence BPTT of
``rnnkit.kernels``: each step one product (oneDNN on the CPU, cuBLAS on CUDA) and one call of a
step kernel (``bptt-kernels``: the compiled C++; ``cuda-fused``: Triton), or torch operations:

========  ============  =====================================================================
cell      name          declares
========  ============  =====================================================================
lstm      bptt-kernels  bias, peephole, layer_norm any; proj_size 0. CPU, float32/64, compiler
lstm      cuda-fused    the same with the Triton step kernels: CUDA, float32/64, Triton
lstm      bptt          the same on torch operations: any device and dtype
gru       bptt-kernels  bias, reset_after, layer_norm any. CPU, float32/64, compiler
gru       cuda-fused    the same with the Triton step kernels: CUDA, float32/64, Triton
gru       bptt          the same on torch operations
========  ============  =====================================================================

Neither runs under autocast (the reference loop's casts are autocast's). The Elman RNN has no
sequence backend: its standard layers run on torch's kernels and its step is one ``addmm``.
Every declaration is pinned to the reference by ``tests/layers/test_backends.py``.
"""
from __future__ import annotations

from torch import Tensor

from ..cells.gru import GRUConfig, GRUWeights, gru_project
from ..cells.lstm import LSTMConfig, LSTMWeights, lstm_project
from ..kernels import cpu, triton_steps
from ..kernels.gate_norm import gate_norm
from ..kernels.gemm import linear
from ..kernels.gru_bptt import gru_kernel_sequence, gru_sequence
from ..kernels.lstm_bptt import lstm_kernel_sequence, lstm_sequence
from .backends import ANY, Backend, not_autocast, register

__all__ = ["LSTM_FLAGS", "GRU_FLAGS"]

LSTM_FLAGS = {"bias": ANY, "proj_size": (0,), "peephole": (False, True), "layer_norm": (False, True)}
GRU_FLAGS = {"bias": ANY, "reset_after": (False, True), "layer_norm": (False, True)}


def _kernels_available(like: Tensor | None) -> bool:
    return not_autocast(like) and (like is None or cpu.kernels_for(like) is not None)


def _triton_available(like: Tensor | None) -> bool:
    """CUDA tensors (or CPU ones under Triton's interpreter, for tests), float32/64, Triton."""
    return like is not None and not_autocast(like) and triton_steps.applies(like)


def _lstm_runner(sequence):
    def run(config: LSTMConfig, w: LSTMWeights, x: Tensor, state0, mask: Tensor | None):
        gx = lstm_project(w, x, linear, gate_norm)  # (T, B, 4H)
        h0, c0 = state0
        out, h, c = sequence(gx, h0, c0, w.weight_hh, w.weight_peephole, mask, w.layer_norm_hh,
                             w.layer_norm_c_weight, w.layer_norm_c_bias)
        return out, (h, c)
    return run


def _gru_runner(sequence):
    def run(config: GRUConfig, w: GRUWeights, x: Tensor, h0: Tensor, mask: Tensor | None):
        gx = gru_project(w, x, config.reset_after, linear, gate_norm)  # (T, B, 3H)
        return sequence(gx, h0, w.weight_hh, w.bias_hh, mask, config.reset_after, w.layer_norm_hh)
    return run


register(Backend("bptt-kernels", "sequence", "lstm", LSTM_FLAGS, _lstm_runner(lstm_kernel_sequence),
                 _kernels_available, "rnnkit.kernels.lstm_bptt on the compiled CPU kernels"))
register(Backend("cuda-fused", "sequence", "lstm", LSTM_FLAGS, _lstm_runner(lstm_kernel_sequence),
                 _triton_available, "rnnkit.kernels.lstm_bptt on cuBLAS and the Triton step kernels"))
register(Backend("bptt", "sequence", "lstm", LSTM_FLAGS, _lstm_runner(lstm_sequence), not_autocast,
                 "rnnkit.kernels.lstm_bptt on torch operations"))
register(Backend("bptt-kernels", "sequence", "gru", GRU_FLAGS, _gru_runner(gru_kernel_sequence),
                 _kernels_available, "rnnkit.kernels.gru_bptt on the compiled CPU kernels"))
register(Backend("cuda-fused", "sequence", "gru", GRU_FLAGS, _gru_runner(gru_kernel_sequence),
                 _triton_available, "rnnkit.kernels.gru_bptt on cuBLAS and the Triton step kernels"))
register(Backend("bptt", "sequence", "gru", GRU_FLAGS, _gru_runner(gru_sequence), not_autocast,
                 "rnnkit.kernels.gru_bptt on torch operations"))
