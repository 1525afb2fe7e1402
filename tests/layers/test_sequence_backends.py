"""Tests for the "sequence" backends (``rnnkit.layers.sequence``): whole-sequence LSTM/GRU with a
hand-written backward (``rnnkit.kernels.lstm_bptt``, ``gru_bptt``).

Each test runs once per registered sequence backend (the compiled element-wise kernels, and
torch operations), inside ``backends.only(name)``.

The oracle is the engine's own step-by-step loop over the reference step (``backends.only()``), whose gradients
come from autograd: outputs, final states and the gradients of the input, the initial state
and every parameter must agree, for every variant the fused path covers, both directions,
with and without lengths and initial states, one and two layers.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rnnkit
from rnnkit.cells import GRUCell, LSTMCell
from rnnkit.kernels import cpu as cpu_kernels
from rnnkit.kernels import gemm, triton_steps
from rnnkit.kernels.gru_bptt import gru_kernel_sequence, gru_sequence
from rnnkit.kernels.lstm_bptt import lstm_kernel_sequence, lstm_sequence
from rnnkit.layers import backends, recurrent, run_direction

D64 = torch.float64
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
# Layer norm over H = 4 units divides by small standard deviations: in float32 the step loop
# itself is only ~3e-5 (relative) from float64 there, and the fused path as close or closer.
LAYER_NORM_FLOAT32_TOLERANCE = 1e-4

# name -> (layer class, cell class, variant arguments); the fused path covers each of these
VARIANTS = {
    "lstm": (rnnkit.LSTM, LSTMCell, {}),
    "lstm_peephole": (rnnkit.LSTM, LSTMCell, dict(peephole=True)),
    "lstm_layer_norm": (rnnkit.LSTM, LSTMCell, dict(layer_norm=True)),
    "lstm_peephole_layer_norm": (rnnkit.LSTM, LSTMCell, dict(peephole=True, layer_norm=True)),
    "gru": (rnnkit.GRU, GRUCell, {}),
    "gru_reset_before": (rnnkit.GRU, GRUCell, dict(reset_after=False)),
    "gru_layer_norm": (rnnkit.GRU, GRUCell, dict(layer_norm=True)),
    "gru_reset_before_layer_norm": (rnnkit.GRU, GRUCell, dict(reset_after=False, layer_norm=True)),
}
T, B, I, H = 6, 5, 3, 4
LENGTHS = torch.tensor([3, 6, 1, 4, 2])  # unsorted, with a length-1 sequence and a full one


SEQUENCE_BACKENDS = sorted({b.name for b in backends.registered("sequence") if b.cell in ("lstm", "gru")})  # this file's cells


@pytest.fixture(autouse=True, params=SEQUENCE_BACKENDS)
def element_wise(request):
    """Every test runs once per sequence backend: each step's element-wise work in the compiled
    CPU kernels (``rnnkit.kernels.cpu``, "bptt-kernels"), in the Triton kernels ("cuda-fused",
    here only under Triton's interpreter) and in torch operations ("bptt")."""
    if request.param == "bptt-kernels" and not cpu_kernels.load():
        pytest.skip("no C++ compiler here: the kernels fall back to torch operations")
    if request.param == "cuda-fused" and not triton_steps.interpreted():
        pytest.skip("the Triton step kernels run on CUDA (tests/test_cuda.py), or here on the CPU "
                    "under TRITON_INTERPRET=1 (tests/kernels/test_triton_steps.py runs this file so)")
    previous = cpu_kernels.set_enabled(request.param != "cuda-fused")  # the interpreter: not the C++
    try:
        with backends.only(request.param, "torch"):  # standard layers keep torch's kernels
            yield request.param
    finally:
        cpu_kernels.set_enabled(previous)


def _lstm_fn(name):
    return lstm_kernel_sequence if name in ("bptt-kernels", "cuda-fused") else lstm_sequence


def _gru_fn(name):
    return gru_kernel_sequence if name in ("bptt-kernels", "cuda-fused") else gru_sequence


def _randomise_(module, seed=0):
    """Weights far from their init (peepholes and biases included), so every term matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) * 1.6 - 0.8)
    return module


def _layer(name, num_layers=1, bidirectional=False, dtype=D64, bias=True):
    layer_cls, _, kwargs = VARIANTS[name]
    torch.manual_seed(0)
    layer = layer_cls(I, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias, engine="python",
                      dtype=dtype, **kwargs)
    return _randomise_(layer)


def _state0(layer, dtype, seed=1):
    gen = torch.Generator().manual_seed(seed)
    D = 2 if layer.bidirectional else 1
    h0 = torch.randn(layer.num_layers * D, B, H, generator=gen, dtype=dtype)
    if isinstance(layer, nn.LSTM):
        return h0, torch.randn(layer.num_layers * D, B, H, generator=gen, dtype=dtype)
    return h0


def _flat(state):
    return list(state) if isinstance(state, tuple) else [state]


def _leaf(t):
    return t.detach().clone().requires_grad_()


def _run(module, x, state0=None, lengths=None):
    """Outputs, final states and the gradients of x, state0 and every parameter, for a loss
    that weighs every output and final-state entry differently."""
    x = _leaf(x)
    leaves = [x]
    if state0 is not None:
        parts = [_leaf(s) for s in _flat(state0)]
        state0 = tuple(parts) if isinstance(state0, tuple) else parts[0]
        leaves += parts
    leaves += list(module.parameters())
    out, state = module(x, state0, lengths=lengths) if lengths is not None else module(x, state0)
    results = [out] + _flat(state)
    gen = torch.Generator().manual_seed(2)
    loss = sum((r * torch.randn(r.shape, generator=gen, dtype=D64).to(r.dtype)).sum() for r in results)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [r.detach() for r in results] + list(grads)


def _assert_all_close(actual, expected, dtype, layer_norm=False):
    tol = LAYER_NORM_FLOAT32_TOLERANCE if layer_norm and dtype == torch.float32 else TOLERANCE[dtype]
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert (a is None) == (e is None)
        if a is not None:
            torch.testing.assert_close(a, e, rtol=tol, atol=tol)


def _x(dtype=D64, seed=3, T=T, B=B):
    return torch.randn(T, B, I, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# -- the layers: fused path against the step loop --------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_layer_fused_equals_step_loop(name, bidirectional, lengths, with_state, num_layers, dtype):
    layer = _layer(name, num_layers, bidirectional, dtype)
    x = _x(dtype)
    state0 = _state0(layer, dtype) if with_state else None
    got = _run(layer, x, state0, lengths)
    with backends.only():
        expected = _run(layer, x, state0, lengths)
    _assert_all_close(got, expected, dtype, layer_norm="layer_norm" in name)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_batch_first_with_lengths(name):
    # the output's gradient arrives as a transposed (non-contiguous) view
    layer_cls, _, kwargs = VARIANTS[name]
    torch.manual_seed(0)
    layer = _randomise_(layer_cls(I, H, batch_first=True, engine="python", dtype=D64, **kwargs))
    x = _x().transpose(0, 1)  # (B, T, I)
    got = _run(layer, x, lengths=LENGTHS)
    with backends.only():
        expected = _run(layer, x, lengths=LENGTHS)
    _assert_all_close(got, expected, D64)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_layer_without_bias(name):
    layer = _layer(name, num_layers=2, bidirectional=True, bias=False)
    got = _run(layer, _x(), lengths=LENGTHS)
    with backends.only():
        expected = _run(layer, _x(), lengths=LENGTHS)
    _assert_all_close(got, expected, D64)


@pytest.mark.parametrize("shape", [(1, B), (T, 1), (1, 1)], ids=["T=1", "B=1", "T=B=1"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_one_step_and_batch_of_one(name, shape):
    steps, batch = shape
    layer = _layer(name, bidirectional=True)
    x = _x(T=steps, B=batch)
    lengths = torch.full((batch,), steps)
    for kwargs in ({}, {"lengths": lengths}):
        got = _run(layer, x, **kwargs)
        with backends.only():
            expected = _run(layer, x, **kwargs)
        _assert_all_close(got, expected, D64)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_cells_through_recurrent_use_the_fused_path(name, monkeypatch):
    calls = _spy(monkeypatch)
    _, cell_cls, kwargs = VARIANTS[name]
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(lambda n: cell_cls(n, H, **kwargs), input_size=I, num_layers=2, bidirectional=True)
    layer = _randomise_(layer.double())
    state0 = layer.initial_state(B, dtype=D64)
    gen = torch.Generator().manual_seed(5)
    state0 = tuple(torch.randn(s.shape, generator=gen, dtype=D64) for s in _flat(state0))
    state0 = state0 if len(state0) > 1 else state0[0]
    got = _run(layer, _x(), state0, LENGTHS)
    assert len(calls) == 4  # one per layer and direction
    with backends.only():
        expected = _run(layer, _x(), state0, LENGTHS)
    _assert_all_close(got, expected, D64)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_no_grad_gives_the_same_values_and_no_graph(name):
    layer = _layer(name, num_layers=2, bidirectional=True)
    x = _x()
    expected = _run(layer, x, lengths=LENGTHS)
    with torch.no_grad():
        out, state = layer(x, lengths=LENGTHS)
    assert not out.requires_grad and not any(s.requires_grad for s in _flat(state))
    _assert_all_close([out] + _flat(state), expected[: 1 + len(_flat(state))], D64)
    with torch.inference_mode():
        out_inf, _ = layer(x, lengths=LENGTHS)
    torch.testing.assert_close(out_inf, out, rtol=0, atol=0)


# -- which path runs ---------------------------------------------------------------------------


def _spy(monkeypatch):
    """Record every sequence backend the engine runs."""
    calls = []
    original = recurrent.select

    def spy(*args, **kwargs):
        backend = original(*args, **kwargs)
        if backend is not None:
            calls.append(backend)
        return backend

    monkeypatch.setattr(recurrent, "select", spy)
    return calls


@pytest.mark.parametrize("name", list(VARIANTS))
def test_python_engine_runs_a_backend_and_only_nothing_runs_the_steps(name, monkeypatch):
    calls = _spy(monkeypatch)
    layer = _layer(name, num_layers=2, bidirectional=True)
    layer(_x(), lengths=LENGTHS)
    assert len(calls) == 4  # one per layer and direction
    with backends.only():
        layer(_x(), lengths=LENGTHS)
    assert len(calls) == 4


@pytest.mark.parametrize("layer_cls", [rnnkit.LSTM, rnnkit.GRU])
def test_standard_layers_keep_torchs_kernels(layer_cls, monkeypatch):
    calls = _spy(monkeypatch)
    layer = layer_cls(I, H, num_layers=2, bidirectional=True)  # engine="auto"
    out, _ = layer(_x(torch.float32), lengths=LENGTHS)
    out.sum().backward()
    assert calls == []


@pytest.mark.parametrize("kwargs", [dict(proj_size=2), dict(peephole=True, layer_norm=True, proj_size=2)])
def test_lstm_with_projection_falls_back_to_the_step_loop(kwargs, monkeypatch):
    calls = _spy(monkeypatch)
    layer = _randomise_(rnnkit.LSTM(I, H, bidirectional=True, engine="python", dtype=D64, **kwargs))
    got = _run(layer, _x(), lengths=LENGTHS)
    with backends.only():
        expected = _run(layer, _x(), lengths=LENGTHS)
    assert calls == []
    _assert_all_close(got, expected, D64)


@pytest.mark.parametrize("cell_cls", [LSTMCell, GRUCell])
def test_a_subclass_with_its_own_step_is_looped_over(cell_cls, monkeypatch):
    calls = _spy(monkeypatch)

    class Halved(cell_cls):
        def step(self, xp_t, state):
            h, state = super().step(xp_t, state)
            return h / 2, state  # the output differs from the state: only this step knows

    torch.manual_seed(0)
    layer = rnnkit.Recurrent(lambda n: Halved(n, H), input_size=I).double()
    out, state = layer(_x(), lengths=LENGTHS)
    assert calls == []
    h_final = state[0] if isinstance(state, tuple) else state
    for b, n in enumerate(LENGTHS.tolist()):
        torch.testing.assert_close(out[n - 1, b], h_final[0, b] / 2, rtol=0, atol=1e-12)


def test_only_restores_the_choice_after_an_error():
    config = rnnkit.cells.LSTMConfig(I, H, peephole=True)
    before = backends.select("sequence", config, _x())
    with pytest.raises(KeyError):
        with backends.only():
            raise KeyError
    assert before is not None and backends.select("sequence", config, _x()) is before


# -- the autograd Functions directly -----------------------------------------------------------


def _mask(seed=0, T=4, B=3):
    """A mask that is not a prefix of each sequence: the Functions take any (T, B) pattern."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(T, B, generator=gen) < 0.6
    mask[:, 0] = True
    mask[0, 1] = False  # masked at the very first step: h0 itself passes through
    return mask


def _tensors(*shapes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(s, generator=gen, dtype=D64) * 1.6 - 0.8).requires_grad_() for s in shapes]


@pytest.mark.parametrize("mask", [None, "mask"])
@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("peephole", [False, True])
def test_lstm_sequence_gradcheck(peephole, layer_norm, mask, element_wise):
    T_, B_, H_ = 4, 3, 3
    gx, h0, c0, w = _tensors((T_, B_, 4 * H_), (B_, H_), (B_, H_), (4 * H_, H_))
    p = _tensors((3 * H_,), seed=1)[0] if peephole else None
    gain, c_weight, c_bias = _tensors((4 * H_,), (H_,), (H_,), seed=2) if layer_norm else (None, None, None)
    m = _mask() if mask else None

    def fn(gx, h0, c0, w, p, gain, c_weight, c_bias):
        return _lstm_fn(element_wise)(gx, h0, c0, w, p, m, gain, c_weight, c_bias)

    assert torch.autograd.gradcheck(fn, (gx, h0, c0, w, p, gain, c_weight, c_bias))


@pytest.mark.parametrize("mask", [None, "mask"])
@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_sequence_gradcheck(reset_after, bias, layer_norm, mask, element_wise):
    T_, B_, H_ = 4, 3, 3
    gx, h0, w = _tensors((T_, B_, 3 * H_), (B_, H_), (3 * H_, H_))
    b = _tensors((3 * H_,), seed=1)[0] if bias else None
    gain = _tensors((3 * H_,), seed=2)[0] if layer_norm else None
    m = _mask() if mask else None
    fn = lambda gx, h0, w, b, gain: _gru_fn(element_wise)(gx, h0, w, b, m, reset_after, gain)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (gx, h0, w, b, gain))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_any_mask_pattern_equals_the_step_loop(name):
    # The engine builds prefix masks from lengths; the Functions follow run_direction for any mask.
    layer = _layer(name)
    view = layer.cell(0)
    x, mask = _x(T=6, B=5), _mask(seed=4, T=6, B=5)
    state0 = _state0(layer, D64)
    state0 = tuple(s[0] for s in state0) if isinstance(state0, tuple) else state0[0]

    def run():
        out, state = run_direction(view, x, state0, mask)
        return [out] + _flat(state)

    got = run()
    with backends.only():
        expected = run()
    _assert_all_close(got, expected, D64)


def test_double_backward_is_refused(element_wise):
    gx, h0, c0, w = _tensors((3, 2, 8), (2, 2), (2, 2), (8, 2))
    out, _, _ = _lstm_fn(element_wise)(gx, h0, c0, w)
    (grad,) = torch.autograd.grad(out.sum(), w, create_graph=True)
    with pytest.raises(RuntimeError):  # no graph of the gradient: backward is once differentiable
        grad.sum().backward()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradient_of_the_final_state_alone(name):
    # The output gets no gradient (autograd hands backward zeros): only the state's flows back.
    layer = _layer(name, bidirectional=True)
    x = _leaf(_x())

    def grads():
        _, state = layer(x, lengths=LENGTHS)
        return torch.autograd.grad(sum(s.sum() for s in _flat(state)), [x] + list(layer.parameters()))

    got = grads()
    with backends.only():
        expected = grads()
    _assert_all_close(got, expected, D64)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_backward_twice_with_retain_graph_gives_the_same_gradients(name):
    layer = _layer(name, bidirectional=True)
    out, _ = layer(_x(), lengths=LENGTHS)
    first = torch.autograd.grad(out.sum(), list(layer.parameters()), retain_graph=True)
    second = torch.autograd.grad(out.sum(), list(layer.parameters()))
    _assert_all_close(second, first, D64)


def test_modifying_the_output_in_place_is_caught(element_wise):
    gx, h0, c0, w = _tensors((3, 2, 8), (2, 2), (2, 2), (8, 2))
    out, _, _ = _lstm_fn(element_wise)(gx, h0, c0, w)
    out.mul_(2)  # the output is also what backward reads as h_tm1
    with pytest.raises(RuntimeError, match="inplace"):
        out.sum().backward()


# -- the matrix products -----------------------------------------------------------------------


@pytest.fixture
def onednn_always(monkeypatch):
    """Send even the tests' tiny products to oneDNN (where torch has it), not torch.mm."""
    monkeypatch.setattr(gemm, "_ONEDNN_MIN_MACS", 0)


@pytest.mark.parametrize("loss", ["square", "sum"])  # "sum": an expanded (stride 0) output gradient
@pytest.mark.parametrize("batch_first", [False, True])  # True: x is a transposed view
@pytest.mark.parametrize("bias", [False, True])
def test_linear_equals_f_linear(bias, batch_first, loss, onednn_always):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, 6, generator=gen).requires_grad_()
    w = torch.randn(9, 6, generator=gen).requires_grad_()
    b = torch.randn(9, generator=gen).requires_grad_() if bias else None
    leaves = [x, w] + [b] * bias
    x_in = x.transpose(0, 1) if batch_first else x
    reduce = (lambda y: (y * y).sum()) if loss == "square" else (lambda y: y.sum())  # noqa: E731
    y = gemm.linear(x_in, w, b)
    grads = torch.autograd.grad(reduce(y), leaves)
    y_ref = F.linear(x_in, w, b)
    grads_ref = torch.autograd.grad(reduce(y_ref), leaves)
    for a, e in zip([y] + list(grads), [y_ref] + list(grads_ref)):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("products", ["onednn", "torch.mm"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_float32_products_equal_step_loop(name, products, monkeypatch):
    if products == "onednn":
        monkeypatch.setattr(gemm, "_ONEDNN_MIN_MACS", 0)
    else:
        monkeypatch.setattr(gemm, "_onednn", False)  # as where torch lacks the oneDNN op
    layer = _layer(name, num_layers=2, bidirectional=True, dtype=torch.float32)
    got = _run(layer, _x(torch.float32), lengths=LENGTHS)
    with backends.only():
        expected = _run(layer, _x(torch.float32), lengths=LENGTHS)
    _assert_all_close(got, expected, torch.float32, layer_norm="layer_norm" in name)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")  # mkldnn.flags() also sets oneDNN's TF32 switch
def test_onednn_products_follow_torchs_mkldnn_switch():
    x = torch.randn(2, 3)
    if gemm.onednn_op():
        assert gemm.gemm_for(x) is not None
    with torch.backends.mkldnn.flags(enabled=False):
        assert gemm.gemm_for(x) is None
    assert gemm.gemm_for(x.double()) is None
