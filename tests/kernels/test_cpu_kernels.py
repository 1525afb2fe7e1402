"""Tests for rnnkit.kernels.cpu: the compiled element-wise step kernels of the "bptt-kernels" backend.

Their agreement with the step loop, for every variant, is in tests/layers/test_sequence_backends.py
(which runs every test once per sequence backend); here: float32 activations against float64 torch, the build and
its cache, the fallback without a compiler, which tensors they take, and their rows split over threads.
"""
import logging

import pytest
import torch

import rnnkit
from rnnkit.cells.base import gate_norm as reference_gate_norm
from rnnkit.kernels import cpu as _cpu_kernels
from rnnkit.kernels import lstm_bptt
from rnnkit.kernels.gate_norm import gate_norm
from rnnkit.kernels.gru_bptt import gru_kernel_sequence
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


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _kernel_results(T, B, H, dtype):
    """Outputs and gradients of every step kernel configuration (masked, layer norm, both GRU forms)."""
    gen = torch.Generator().manual_seed(0)

    def t(*shape):
        return (torch.rand(shape, generator=gen, dtype=dtype) * 1.6 - 0.8).requires_grad_()

    mask = torch.rand(T, B, generator=gen) < 0.7
    gx, h0, c0, w, p = t(T, B, 4 * H), t(B, H), t(B, H), t(4 * H, H), t(3 * H)
    gain, c_weight, c_bias = t(4 * H), t(H), t(H)
    gx3, w3, b3, gain3 = t(T, B, 3 * H), t(3 * H, H), t(3 * H), t(3 * H)
    calls = [(lstm_bptt.lstm_kernel_sequence, (gx, h0, c0, w, p, mask, gain, c_weight, c_bias)),
             (lstm_bptt.lstm_kernel_sequence, (gx, h0, c0, w, None, None)),
             (gru_kernel_sequence, (gx3, h0, w3, b3, mask, True, gain3)),
             (gru_kernel_sequence, (gx3, h0, w3, None, mask, False, gain3)),
             (gru_kernel_sequence, (gx3, h0, w3, None, None, False, None))]
    results = []
    for fn, args in calls:
        outs = fn(*args)
        leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        results += [o.detach() for o in outs] + list(torch.autograd.grad(sum((o * o).sum() for o in outs), leaves))
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_split_over_threads_give_the_same_bits(dtype, two_threads):
    # B * H = 8192 hidden units per step: enough for the step kernels to split the rows over threads
    split = _kernel_results(3, 32, 256, dtype)
    torch.set_num_threads(1)
    one = _kernel_results(3, 32, 256, dtype)
    assert all(torch.equal(a, b) for a, b in zip(split, one))


def test_another_openmp_runtime_keeps_the_kernels_on_one_thread(monkeypatch, caplog):
    # torch's OpenMP runtime before loading, a second one after: two pools would fight over the cores
    torchs = frozenset({"/torch/lib/libgomp.so.1"})
    runtimes = iter([torchs, torchs | {"/usr/lib/libomp.so"}])
    monkeypatch.setattr(_cpu_kernels, "_openmp_runtimes", lambda: next(runtimes))
    monkeypatch.setattr(_cpu_kernels, "_library", None)
    try:
        with caplog.at_level(logging.INFO, logger=_cpu_kernels.__name__):
            assert _cpu_kernels.load()
        assert "run on one thread" in caplog.text
    finally:  # the same library (one handle per process) for the tests that follow: no limit again
        _cpu_kernels.load().rnnkit_set_thread_limit(2 ** 63 - 1)
