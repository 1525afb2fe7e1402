"""The sequence backends' CPU-only parts (oneDNN's products, the compiled kernels of
``rnnkit.kernels.cpu``) are chosen for CPU tensors only: a tensor on another device
(here "meta", which runs on any machine: shapes without data) gets the torch-operation path.
tests/test_cuda.py checks the numbers on a GPU.
"""
import pytest
import torch

from rnnkit.kernels import cpu as _cpu_kernels
from rnnkit.kernels import gemm
from rnnkit.kernels.common import kernels_apply
from rnnkit.kernels.gru_bptt import gru_kernel_sequence
from rnnkit.kernels.lstm_bptt import lstm_kernel_sequence

T, B, H = 5, 3, 4  # time, batch, hidden


def _meta(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, device="meta", requires_grad=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_selection_declines_non_cpu_tensors(dtype):
    meta, cpu = torch.empty(2, 3, device="meta", dtype=dtype), torch.empty(2, 3, dtype=dtype)
    assert gemm.gemm_for(meta) is None
    assert _cpu_kernels.kernels_for(meta) is None
    assert not kernels_apply(meta, meta)
    assert not kernels_apply(cpu, meta)  # one tensor elsewhere is enough to decline
    # on the CPU the same tensors get the kernels (where a compiler built them) and oneDNN (float32)
    assert kernels_apply(cpu, cpu) == bool(_cpu_kernels.load())
    if dtype == torch.float32 and torch.backends.mkldnn.is_available() and gemm.onednn_op():
        assert gemm.gemm_for(cpu) is not None


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "layer_norm"])
def test_lstm_sequence_runs_off_the_cpu(layer_norm):
    """Forward and backward on meta tensors: a CPU-only path would fail on them (no data)."""
    ln = {}
    if layer_norm:
        ln = dict(layer_norm_hh=_meta(4 * H), layer_norm_c_weight=_meta(H), layer_norm_c_bias=_meta(H))
    gx, h0, c0, w = _meta(T, B, 4 * H), _meta(B, H), _meta(B, H), _meta(4 * H, H)
    out, h, c = lstm_kernel_sequence(gx, h0, c0, w, peephole=_meta(3 * H), **ln)
    (out.sum() + h.sum() + c.sum()).backward()
    assert out.shape == (T, B, H) and out.device.type == "meta"
    assert gx.grad.shape == gx.shape and w.grad.shape == w.shape and h0.grad.shape == h0.shape


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "layer_norm"])
def test_gru_sequence_runs_off_the_cpu(reset_after, layer_norm):
    gx, h0, w, b = _meta(T, B, 3 * H), _meta(B, H), _meta(3 * H, H), _meta(3 * H)
    out, h = gru_kernel_sequence(gx, h0, w, b, None, reset_after, _meta(3 * H) if layer_norm else None)
    (out.sum() + h.sum()).backward()
    assert out.shape == (T, B, H) and out.device.type == "meta"
    assert gx.grad.shape == gx.shape and w.grad.shape == w.shape
