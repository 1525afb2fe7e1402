"""The "scan" backends: cells whose recurrence is linear in the state, solved over time at once.

Once the gates read only the input, a whole direction is one matrix product (the cell's own
projection), its coefficients (the cell's own function, the one its reference step calls), and
the linear recurrence ``h_t = a_t * h_{t-1} + b_t`` solved by ``rnnkit.kernels.scan.linear_scan``:

=======  ============  ===========================================================
cell     name          declares
=======  ============  ===========================================================
mingru   scan-kernels  bias any. CPU, float32/64, a compiler (``kernels.min_scan``: the
                       gates and the recurrence fused, one pass each way)
mingru   scan          bias any. Any device; float dtypes (``kernels.scan``)
minlstm  scan-kernels  the same as minGRU's
minlstm  scan          the same as minGRU's
sru      scan          bias any, peephole False (with peepholes the gates read c_tm1: not linear).
                       Any device, float dtypes: c by ``kernels.scan``, then every h at once
mlstm    chunkwise     bias, num_heads any. Any device, float dtypes (``kernels.mlstm_chunkwise``:
                       within chunks of 64 steps an attention-like product with the gates'
                       decay, across chunks the matrix memory carried)
=======  ============  ===========================================================

Neither runs under autocast (the reference loop's casts are autocast's).

Lengths: a step past a sequence's length becomes ``a = 1, b = 0`` (the state is kept, exactly)
and its output is zeroed afterwards; the reverse direction is the engine's (``run_layers``
reverses each sequence within its length before calling the backend). Pinned to the reference
by ``tests/layers/test_backends.py`` like every other backend.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..cells.minrnn import MinGRUConfig, min_project, mingru_coefficients, minlstm_coefficients
from ..cells.sru import SRUConfig, SRUWeights, sru_coefficients, sru_output, sru_project
from ..kernels import cpu
from ..kernels.gemm import linear
from ..kernels.min_scan import min_scan
from ..kernels.mlstm_chunkwise import mlstm_sequence
from ..kernels.scan import linear_scan
from .backends import ANY, Backend, not_autocast, register

__all__ = ["MIN_FLAGS", "masked_scan"]

MIN_FLAGS = {"bias": ANY}


def masked_scan(a: Tensor, b: Tensor, h0: Tensor, mask: Tensor | None) -> Tensor:
    """``linear_scan`` with the engine's masking: past a sequence's length (mask (T, B) False)
    the state is kept. Returns every state (T, B, ...); the outputs there are the caller's to zero."""
    if mask is not None:
        keep = mask.view(mask.shape + (1,) * (a.dim() - 2))
        a = torch.where(keep, a, torch.ones_like(a))
        b = torch.where(keep, b, torch.zeros_like(b))
    return linear_scan(a, b, h0)


def _zero_past_lengths(out: Tensor, mask: Tensor | None) -> Tensor:
    return out if mask is None else out * mask.unsqueeze(-1).to(out.dtype)


def _min_runner(coefficients):
    def run(config: MinGRUConfig, w, x: Tensor, h0: Tensor, mask: Tensor | None):
        a, b = coefficients(min_project(w, x, linear))  # each (T, B, H)
        h = masked_scan(a, b, h0, mask)
        return _zero_past_lengths(h, mask), h[-1]
    return run


def _kernels_available(like: Tensor | None) -> bool:
    return not_autocast(like) and (like is None or cpu.kernels_for(like) is not None)


def _min_kernels_runner(cell: str):
    def run(config: MinGRUConfig, w, x: Tensor, h0: Tensor, mask: Tensor | None):
        hs = min_scan(min_project(w, x, linear), h0, mask, cell)  # (T, B, H)
        return _zero_past_lengths(hs, mask), hs[-1]
    return run


for _cell, _coefficients in (("mingru", mingru_coefficients), ("minlstm", minlstm_coefficients)):
    register(Backend("scan-kernels", "sequence", _cell, MIN_FLAGS, _min_kernels_runner(_cell), _kernels_available,
                     "rnnkit.kernels.min_scan: gates and recurrence fused in the compiled CPU kernels"))
    register(Backend("scan", "sequence", _cell, MIN_FLAGS, _min_runner(_coefficients), not_autocast,
                     f"{_cell}'s recurrence by rnnkit.kernels.scan (chunked parallel scan, torch operations)"))

register(Backend("chunkwise", "sequence", "mlstm", {"bias": ANY, "num_heads": ANY}, mlstm_sequence, not_autocast,
                 "rnnkit.kernels.mlstm_chunkwise: the mLSTM's chunkwise parallel form (torch operations)"))


def _sru_run(config: SRUConfig, w: SRUWeights, x: Tensor, state0, mask: Tensor | None):
    xp = sru_project(w, x, config.hidden_size, linear)  # (T, B, 4H)
    a, b = sru_coefficients(w, xp)
    c = masked_scan(a, b, state0[1], mask)  # (T, B, H)
    h = sru_output(w, xp, c)
    if mask is None:
        return h, (h[-1], c[-1])
    # past a length h is computed from padding: the final h is each sequence's last valid one
    last = (mask.sum(0) - 1).clamp_min(0).view(1, -1, 1).expand(1, -1, h.shape[-1])
    h_final = torch.where(mask.any(0).unsqueeze(-1), h.gather(0, last)[0], state0[0])
    return _zero_past_lengths(h, mask), (h_final, c[-1])


register(Backend("scan", "sequence", "sru", {"bias": ANY, "peephole": (False,)}, _sru_run, not_autocast,
                 "SRU's cell state by rnnkit.kernels.scan, then every output at once (torch operations)"))
