"""Tests for rnnkit.kernels.cpu: the compiled element-wise step kernels of the "bptt-kernels" backend.

Their agreement with the step loop, for every variant, is in tests/layers/test_sequence_backends.py
(which runs every test once per sequence backend); here: float32 activations against float64 torch, the build and
its cache, the fallback without a compiler, and which tensors they take.
"""
import logging

import pytest
import torch

import rnnkit
from rnnkit.cells.base import gate_norm as reference_gate_norm
from rnnkit.kernels import cpu as _cpu_kernels
from rnnkit.kernels import lstm_bptt
from rnnkit.kernels.gate_norm import gate_norm
from rnnkit.layers import backends

pytestmark = pytest.mark.skipif(not _cpu_kernels.load(), reason="no C++ compiler: torch operations run instead")


def _one_step_lstm(gx: torch.Tensor) -> torch.Tensor:
    """h after one step from zero state and zero W_hh: o * tanh(i * g), gates from gx alone."""
    T, B, G = gx.shape
    H = G // 4
    zeros = gx.new_zeros(B, H)
    with torch.no_grad():
        out, _, c = lstm_bptt.lstm_kernel_sequence(gx, zeros, zeros, gx.new_zeros(G, H))
    return out[0], c


def test_float32_activations_match_float64_torch():
    # i, f, g, o pre-activations over the whole float range the kernels clamp, and near 0
    values = torch.cat([torch.linspace(-100, 100, 2001), torch.logspace(-8, 1, 500), -torch.logspace(-8, 1, 500)])
    gx = values.view(1, -1, 1).expand(1, values.numel(), 4).reshape(1, values.numel(), 4)  # H = 1
    gx = gx.contiguous()
    h, c = _one_step_lstm(gx)
    x = values.double()
    c_ref = torch.sigmoid(x) * torch.tanh(x)
    h_ref = torch.sigmoid(x) * torch.tanh(c_ref)
    torch.testing.assert_close(c[:, 0].double(), c_ref, rtol=1e-6, atol=1e-30)  # a few ulp
    torch.testing.assert_close(h[:, 0].double(), h_ref, rtol=1e-6, atol=1e-30)  # a few ulp


def test_nan_propagates():
    gx = torch.zeros(1, 2, 4)
    gx[0, 0, 2] = float("nan")  # g of the first sequence
    h, c = _one_step_lstm(gx)
    assert torch.isnan(c[0]).all() and torch.isnan(h[0]).all()
    assert torch.isfinite(c[1]).all() and torch.isfinite(h[1]).all()


def test_fresh_cache_builds_and_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(_cpu_kernels, "_library", None)
    lib = _cpu_kernels.load()
    assert lib
    built = list(tmp_path.glob("fused_kernels_*.so"))
    assert len(built) == 1 and not list(tmp_path.glob("tmp*"))  # the temporary build folder is gone
    monkeypatch.setattr(_cpu_kernels, "_library", None)
    assert _cpu_kernels.load() and list(tmp_path.glob("fused_kernels_*.so")) == built  # reused


def test_without_a_compiler_torch_operations_run(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))  # nothing cached here
    monkeypatch.setenv("CXX", "")
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler on it
    monkeypatch.setattr(_cpu_kernels, "_library", None)
    torch.manual_seed(0)
    layer = rnnkit.LSTM(3, 4, peephole=True, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with caplog.at_level(logging.WARNING, logger=_cpu_kernels.__name__):
        out, _ = layer(x)
    assert _cpu_kernels.load() is False and "unavailable" in caplog.text
    with backends.only():
        expected, _ = layer(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, used", [(torch.float32, True), (torch.float64, True), (torch.bfloat16, False)])
def test_which_dtypes_use_the_kernels(dtype, used, monkeypatch):
    calls = []
    original = lstm_bptt._lstm_kernel_forward
    monkeypatch.setattr(lstm_bptt, "_lstm_kernel_forward", lambda *a: calls.append(1) or original(*a))
    layer = rnnkit.LSTM(3, 4, layer_norm=True, dtype=dtype)
    out, _ = layer(torch.randn(5, 2, 3, dtype=dtype))
    out.float().sum().backward()
    assert len(calls) == int(used)
    with backends.only("bptt"):  # the torch-operation backend
        layer(torch.randn(5, 2, 3, dtype=dtype))
    assert len(calls) == int(used)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("num_gates", [3, 4])
def test_gate_norm_equals_the_reference(num_gates, bias, threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)  # the kernel's own row split
    gen = torch.Generator().manual_seed(0)
    H = 5
    z = (torch.randn(7, 3, num_gates * H, generator=gen, dtype=torch.float64) * 3 + 1).requires_grad_()
    gain = torch.randn(num_gates * H, generator=gen, dtype=torch.float64).requires_grad_()
    b = torch.randn(num_gates * H, generator=gen, dtype=torch.float64).requires_grad_() if bias else None
    leaves = [z, gain] + [b] * bias
    weights = torch.randn(z.shape, generator=gen, dtype=torch.float64)
    got = gate_norm(z, gain, num_gates, b)
    got_grads = torch.autograd.grad((got * weights).sum(), leaves)
    assert torch.autograd.gradcheck(lambda *a: gate_norm(a[0], a[1], num_gates, a[2] if bias else None), (z, gain, b))
    expected = reference_gate_norm(z, gain, num_gates) + (0 if b is None else b)
    expected_grads = torch.autograd.grad((expected * weights).sum(), leaves)
    for a, e in zip([got, *got_grads], [expected, *expected_grads]):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
    z32, gain32 = z.detach().float().requires_grad_(), gain.detach().float().requires_grad_()
    out32 = gate_norm(z32, gain32, num_gates)
    torch.testing.assert_close(out32, reference_gate_norm(z32, gain32, num_gates), rtol=1e-5, atol=1e-5)
