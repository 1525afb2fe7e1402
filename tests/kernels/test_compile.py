"""``torch.compile`` sees through the compiled CPU kernels: they are torch custom operators
(``rnnkit::lstm_sequence_forward``/``_backward``, ``rnnkit::gru_sequence_*``, ``rnnkit::gate_norm_*``)
with fake implementations and registered autograd.

Here: no graph break from rnnkit's kernels (``torch._dynamo.explain``, and ``fullgraph=True``),
forward and backward, with and without a mask; compiled results and gradients equal eager ones
(float64); the one-time checks (building the library, oneDNN's check) run outside the trace; and
``torch.library.opcheck`` on every operator. Compiled with the "eager" and "aot_eager" backends
(no code generation): AOTAutograd traces the backward operator through its fake implementation.
"""
import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

import rnnkit
from rnnkit.kernels import cpu as cpu_kernels
from rnnkit.kernels import gemm
from rnnkit.kernels.gate_norm import gate_norm
from rnnkit.kernels.gru_bptt import gru_kernel_sequence
from rnnkit.kernels.lstm_bptt import lstm_kernel_sequence

pytestmark = pytest.mark.skipif(not cpu_kernels.load(), reason="no C++ compiler: torch operations run instead")

D64 = torch.float64
T, B, H = 4, 3, 3  # time, batch, hidden
EXACT = dict(rtol=1e-12, atol=1e-12)  # the same kernels run compiled and eager


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from scratch (no cache of another test's graphs, no recompile limit)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _tensors(*shapes, seed=0, dtype=D64):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(s, generator=gen, dtype=dtype) * 1.6 - 0.8).requires_grad_() for s in shapes]


def _mask(seed=3):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(T, B, generator=gen) < 0.6
    mask[:, 0] = True
    mask[0, 1] = False  # masked at the very first step: h0 itself passes through
    return mask


def _loss(outputs):
    """A sum that weighs every output differently, so that each one's gradient counts."""
    return sum((o * torch.linspace(0.5, 1.5, o.numel(), dtype=o.dtype).view(o.shape)).sum() for o in outputs)


def _recording_aot_eager(graphs: list):
    """"aot_eager" that keeps the code of each graph it gets (forward, then backward at the first backward)."""
    def keep(gm, example_inputs):
        graphs.append(gm.code)
        return make_boxed_func(gm.forward)
    return aot_autograd(fw_compiler=keep, bw_compiler=keep)


def _assert_no_break_and_equal(fn, inputs, forward_op, backward_op):
    """fn(*inputs) -> tensors: one graph, no break; compiled outputs and gradients equal eager ones;
    the operators in the forward and backward graphs (not torch operations in their place)."""
    explained = torch._dynamo.explain(fn)(*inputs)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    torch._dynamo.reset()
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    expected = fn(*inputs)
    expected_grads = torch.autograd.grad(_loss(expected), leaves)
    graphs = []
    compiled = torch.compile(fn, fullgraph=True, backend=_recording_aot_eager(graphs))
    got = compiled(*inputs)
    got_grads = torch.autograd.grad(_loss(got), leaves)
    torch.testing.assert_close(list(got), list(expected), **EXACT)
    torch.testing.assert_close(list(got_grads), list(expected_grads), **EXACT)
    assert len(graphs) == 2 and forward_op in graphs[0] and backward_op in graphs[1]


@pytest.mark.parametrize("mask", [None, "mask"])
def test_lstm_with_peephole_and_layer_norm_compiles_without_a_break(mask):
    gx, h0, c0, w = _tensors((T, B, 4 * H), (B, H), (B, H), (4 * H, H))
    p, gain, c_weight, c_bias = _tensors((3 * H,), (4 * H,), (H,), (H,), seed=1)
    m = _mask() if mask else None

    def fn(gx, h0, c0, w, p, gain, c_weight, c_bias):
        return lstm_kernel_sequence(gx, h0, c0, w, p, m, gain, c_weight, c_bias)

    _assert_no_break_and_equal(fn, (gx, h0, c0, w, p, gain, c_weight, c_bias),
                               "rnnkit.lstm_sequence_forward", "rnnkit.lstm_sequence_backward")


@pytest.mark.parametrize("mask", [None, "mask"])
def test_gru_reset_before_with_layer_norm_compiles_without_a_break(mask):
    gx, h0, w = _tensors((T, B, 3 * H), (B, H), (3 * H, H))
    (gain,) = _tensors((3 * H,), seed=1)
    m = _mask() if mask else None

    def fn(gx, h0, w, gain):
        return gru_kernel_sequence(gx, h0, w, None, m, False, gain)

    _assert_no_break_and_equal(fn, (gx, h0, w, gain), "rnnkit.gru_sequence_forward", "rnnkit.gru_sequence_backward")


def test_gate_norm_compiles_without_a_break():
    z, gain, bias = _tensors((T, B, 4 * H), (4 * H,), (4 * H,))

    def fn(z, gain, bias):
        return (gate_norm(z, gain, 4, bias),)

    _assert_no_break_and_equal(fn, (z, gain, bias), "rnnkit.gate_norm_forward", "rnnkit.gate_norm_backward")


def test_no_grad_calls_compile_to_the_operator():
    # Eagerly, no_grad calls the kernels directly (no operator); compiled, the operator.
    gx, h0, c0, w, p = (t.detach() for t in _tensors((T, B, 4 * H), (B, H), (B, H), (4 * H, H), (3 * H,)))

    def fn(gx, h0, c0, w, p):
        return lstm_kernel_sequence(gx, h0, c0, w, p)

    with torch.no_grad():
        explained = torch._dynamo.explain(fn)(gx, h0, c0, w, p)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0)
        expected = fn(gx, h0, c0, w, p)
        got = torch.compile(fn, fullgraph=True, backend="eager")(gx, h0, c0, w, p)
    torch.testing.assert_close(list(got), list(expected), **EXACT)


# -- a layer ---------------------------------------------------------------------------------------
# rnnkit's layers subclass torch.nn's (rnnkit.LSTM is an nn.LSTM), and Dynamo refuses to trace
# any nn.RNN/GRU/LSTM unless torch._dynamo.config.allow_rnn: without it, Dynamo breaks the graph
# at the layer's call and in its methods, before rnnkit's code runs. With it, nothing breaks.
# Lengths add data-dependent checks at the layer's boundary (rnnkit.layers.boundary), so the
# layers are called without lengths here.


@pytest.mark.parametrize("layer_cls, variant", [
    (rnnkit.LSTM, dict(peephole=True)),
    (rnnkit.LSTM, dict(peephole=True, layer_norm=True)),
    (rnnkit.GRU, dict(reset_after=False, layer_norm=True)),
], ids=["lstm_peephole", "lstm_peephole_layer_norm", "gru_reset_before_layer_norm"])
def test_a_layer_compiles_without_a_break(layer_cls, variant):
    torch.manual_seed(0)
    layer = layer_cls(3, H, engine="python", dtype=D64, **variant)
    (x,) = _tensors((T, B, 3))
    inputs = (x, *layer.parameters())

    def fn(x, *parameters):
        out, state = layer(x)
        return (out, *(state if isinstance(state, tuple) else (state,)))

    name = "lstm" if layer_cls is rnnkit.LSTM else "gru"
    with torch._dynamo.config.patch(allow_rnn=True):
        _assert_no_break_and_equal(fn, inputs, f"rnnkit.{name}_sequence_forward", f"rnnkit.{name}_sequence_backward")


def test_a_float32_layer_on_onednn_products_compiles_without_a_break(monkeypatch):
    # float32: the projections go through oneDNN (rnnkit.kernels.gemm.linear) and the per-gate norm.
    monkeypatch.setattr(gemm, "_ONEDNN_MIN_MACS", 0)  # even these small products
    torch.manual_seed(0)
    layer = rnnkit.LSTM(3, H, peephole=True, layer_norm=True, engine="python")
    x = torch.randn(T, B, 3)

    def fn(x):
        return layer(x)[0]

    with torch._dynamo.config.patch(allow_rnn=True):
        explained = torch._dynamo.explain(fn)(x)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
        torch._dynamo.reset()
        got = torch.compile(fn, fullgraph=True, backend="aot_eager")(x)
    got.sum().backward()
    torch.testing.assert_close(got, fn(x), rtol=1e-6, atol=1e-6)


# -- the one-time checks run outside the trace ------------------------------------------------------


def test_first_use_under_compile_builds_and_checks_outside_the_trace(monkeypatch):
    # Neither the library nor oneDNN's check has run yet: compiling must not trace them (ctypes,
    # the build, a comparison of real tensors), and their answers are there afterwards.
    monkeypatch.setattr(cpu_kernels, "_library", None)
    monkeypatch.setattr(gemm, "_onednn", None)
    monkeypatch.setattr(gemm, "_ONEDNN_MIN_MACS", 0)
    shapes = (T, B, 4 * H), (B, H), (B, H), (4 * H, H), (T, B, 5), (4 * H, 5)
    gx, h0, c0, w, x, lw = _tensors(*shapes, dtype=torch.float32)

    def fn(gx, h0, c0, w, x, lw):
        return lstm_kernel_sequence(gx + gemm.linear(x, lw), h0, c0, w)

    got = torch.compile(fn, fullgraph=True, backend="eager")(gx, h0, c0, w, x, lw)
    assert cpu_kernels._library and gemm._onednn is not None
    torch.testing.assert_close(list(got), list(fn(gx, h0, c0, w, x, lw)), rtol=0, atol=0)


# -- opcheck ---------------------------------------------------------------------------------------
# test_schema (no input mutated, no output aliasing), test_autograd_registration, test_faketensor
# (the fake implementations' shapes, dtypes and strides against the real ones) and
# test_aot_dispatch_dynamic (AOTAutograd with dynamic shapes: outputs, and for the forward
# operators the gradients through the backward operators, against eager).


def _lstm_inputs(peephole, layer_norm, mask):
    gx, h0, c0, w = _tensors((T, B, 4 * H), (B, H), (B, H), (4 * H, H))
    p, gain, c_weight, c_bias = _tensors((3 * H,), (4 * H,), (H,), (H,), seed=1)
    if not peephole:
        p = None
    if not layer_norm:
        gain = c_weight = c_bias = None
    return (gx, h0, c0, w, p, gain, c_weight, c_bias, _mask() if mask else None)


def _gru_inputs(reset_after, layer_norm, mask):
    gx, h0, w = _tensors((T, B, 3 * H), (B, H), (3 * H, H))
    b, gain = _tensors((3 * H,), (3 * H,), seed=1)
    return (gx, h0, w, b if reset_after else None, gain if layer_norm else None, _mask() if mask else None,
            reset_after)


def _detached(values):
    return [v.detach() if isinstance(v, torch.Tensor) else v for v in values]


@pytest.mark.parametrize("mask", [False, True], ids=["", "mask"])
@pytest.mark.parametrize("peephole, layer_norm", [(False, False), (True, True), (True, False), (False, True)])
def test_opcheck_lstm(peephole, layer_norm, mask):
    inputs = _lstm_inputs(peephole, layer_norm, mask)
    torch.library.opcheck(torch.ops.rnnkit.lstm_sequence_forward.default, inputs)
    gx, h0, c0, w, p, gain, c_weight, c_bias, m = _detached(inputs)
    out, h_n, c_n, hs, *buffers = torch.ops.rnnkit.lstm_sequence_forward(*_detached(inputs))
    d_out, d_hn, d_cn = (t.detach() for t in _tensors(out.shape, h_n.shape, c_n.shape, seed=5))
    states = out if m is None else hs
    torch.library.opcheck(torch.ops.rnnkit.lstm_sequence_backward.default,
                          (d_out, d_hn, d_cn, h0, w, p, gain, c_weight, c_bias, m, states, *buffers, [True] * 5))


@pytest.mark.parametrize("mask", [False, True], ids=["", "mask"])
@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("reset_after", [True, False])
def test_opcheck_gru(reset_after, layer_norm, mask):
    inputs = _gru_inputs(reset_after, layer_norm, mask)
    torch.library.opcheck(torch.ops.rnnkit.gru_sequence_forward.default, inputs)
    gx, h0, w, b, gain, m, _ = _detached(inputs)
    out, h_n, hs, *buffers = torch.ops.rnnkit.gru_sequence_forward(*_detached(inputs))
    d_out, d_hn = (t.detach() for t in _tensors(out.shape, h_n.shape, seed=5))
    states = out if m is None else hs
    torch.library.opcheck(torch.ops.rnnkit.gru_sequence_backward.default,
                          (d_out, d_hn, h0, w, b, gain, m, states, *buffers, reset_after, [True] * 3))


@pytest.mark.parametrize("bias", [False, True])
def test_opcheck_gate_norm(bias):
    z, gain, b = _tensors((T, B, 4 * H), (4 * H,), (4 * H,))
    inputs = (z, gain, b if bias else None, 4)
    torch.library.opcheck(torch.ops.rnnkit.gate_norm_forward.default, inputs)
    _, xhat, rstd = torch.ops.rnnkit.gate_norm_forward(*_detached(inputs))
    (dy,) = (t.detach() for t in _tensors(z.shape, seed=5))
    torch.library.opcheck(torch.ops.rnnkit.gate_norm_backward.default, (dy, xhat, rstd, gain.detach(), 4, bias))
