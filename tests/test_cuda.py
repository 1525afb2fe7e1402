"""rnnkit on CUDA: every layer configuration gives the same outputs, final states and gradients
on the GPU as on the CPU; standard configurations equal torch.nn (cuDNN) there; the variants'
fused sequence functions equal the step loop there; ``rnnkit.Stream`` (replayed as a CUDA graph)
equals the layer.

Skipped without CUDA. ``RNNKIT_TEST_DEVICE`` names the device under test (default "cuda"):
``RNNKIT_TEST_DEVICE=cpu pytest tests/test_cuda.py`` runs the same comparisons CPU against CPU,
which checks the tests themselves on a machine without a GPU (and nothing about CUDA).

On CUDA the variants run the "cuda-fused" sequence backend (cuBLAS products and the Triton step
kernels of ``rnnkit.kernels.triton_steps``) where Triton imports, else "bptt" (torch
operations), while their CPU reference here runs the compiled C++ kernels: the comparison is
across implementations. ``tests/layers/test_backends.py`` also runs its grids (every backend
over every configuration it claims, against the reference loop) on CUDA where there is a GPU;
``tests/cli/test_device_flags.py`` trains on the GPU and loads the run on the CPU.
"""
import copy
import os

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.kernels import cpu as _cpu_kernels
from rnnkit.kernels import gemm
from rnnkit.kernels.common import kernels_apply
from rnnkit.layers import backends
from rnnkit.streaming import Stream

DEVICE = torch.device(os.environ.get("RNNKIT_TEST_DEVICE", "cuda"))

pytestmark = [
    pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                       reason="CUDA is not available (torch.cuda.is_available() is False); "
                              "RNNKIT_TEST_DEVICE=cpu runs these comparisons CPU against CPU"),
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN"),
]

CONFIGS = {  # name: (layer class, keyword arguments, standard: torch.nn has it)
    "rnn_tanh": (rnnkit.RNN, {}, True),
    "rnn_relu": (rnnkit.RNN, {"nonlinearity": "relu"}, True),
    "lstm": (rnnkit.LSTM, {}, True),
    "lstm_proj": (rnnkit.LSTM, {"proj_size": 3}, True),
    "gru": (rnnkit.GRU, {}, True),
    "lstm_peephole": (rnnkit.LSTM, {"peephole": True}, False),
    "lstm_layer_norm": (rnnkit.LSTM, {"layer_norm": True}, False),
    "lstm_peephole_proj": (rnnkit.LSTM, {"peephole": True, "proj_size": 3}, False),
    "gru_reset_before": (rnnkit.GRU, {"reset_after": False}, False),
    "gru_layer_norm": (rnnkit.GRU, {"layer_norm": True}, False),
    "gru_ln_reset_before": (rnnkit.GRU, {"layer_norm": True, "reset_after": False}, False),
}
STANDARD = [name for name, (_, _, standard) in CONFIGS.items() if standard]
VARIANTS = [name for name, (_, _, standard) in CONFIGS.items() if not standard]
TOL = {torch.float32: 1e-4, torch.float64: 1e-10}
T, B, I, H = 6, 3, 4, 5  # time, batch, input, hidden
LENGTHS = [6, 2, 4]  # unsorted, one full length


@pytest.fixture(autouse=True)
def _full_float32():
    """TF32 (cuDNN's default for float32 on Ampere and later GPUs) rounds the products' inputs
    to 10-bit mantissas, far beyond 1e-4: off in these comparisons (restored after)."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def _parts(state) -> tuple:
    return state if isinstance(state, tuple) else (state,)


def _make(name: str, num_layers: int, bidirectional: bool, dtype: torch.dtype) -> torch.nn.Module:
    """A layer on the CPU with every parameter random (peepholes and layer-norm gains too)."""
    cls, kwargs, _ = CONFIGS[name]
    torch.manual_seed(num_layers + 2 * bidirectional)
    layer = cls(I, H, num_layers=num_layers, bidirectional=bidirectional, dtype=dtype, **kwargs)
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(-0.6, 0.6)
    return layer


def _inputs(layer, dtype: torch.dtype):
    """x (T, B, I), a random initial state in the layer's format, and loss weights for the
    output and each state part (so that every gradient is non-trivial)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(T, B, I, dtype=dtype, generator=gen)
    _, template = layer(x)  # the state's shapes
    state0 = tuple(torch.randn(s.shape, dtype=dtype, generator=gen) for s in _parts(template))
    out_shape = layer(x)[0].shape
    weights = (torch.randn(out_shape, dtype=dtype, generator=gen),
               *(torch.randn(s.shape, dtype=dtype, generator=gen) for s in state0))
    return x, state0, weights


def _run(layer, x, state0, weights, lengths, device, torch_layer: bool = False):
    """Forward and backward on ``device``: (output, final state parts, x grad, state0 grads,
    {parameter name: grad}), all moved to the CPU."""
    x = x.to(device).requires_grad_()
    state0 = tuple(s.to(device).requires_grad_() for s in state0)
    state = state0 if len(state0) == 2 else state0[0]
    if torch_layer and lengths is not None:  # torch.nn takes lengths as a PackedSequence
        packed = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
        out, final = layer(packed, state)
        out = pad_packed_sequence(out, total_length=T)[0]
    elif lengths is not None:
        out, final = layer(x, state, lengths=torch.tensor(lengths, device=device))  # lengths on the device
    else:
        out, final = layer(x, state)
    loss = (out * weights[0].to(device)).sum()
    for s, w in zip(_parts(final), weights[1:]):
        loss = loss + (s * w.to(device)).sum()
    layer.zero_grad(set_to_none=True)
    loss.backward()
    assert out.device.type == device.type and all(s.device.type == device.type for s in _parts(final))
    grads = {name: p.grad.cpu() for name, p in layer.named_parameters()}
    return out.detach().cpu(), [s.detach().cpu() for s in _parts(final)], x.grad.cpu(), \
        [s.grad.cpu() for s in state0], grads


def _assert_same(got, expected, tol: float) -> None:
    out, final, dx, dstate0, grads = got
    out_e, final_e, dx_e, dstate0_e, grads_e = expected
    close = dict(atol=tol, rtol=tol)
    torch.testing.assert_close(out, out_e, **close, msg=lambda m: "output: " + m)
    for a, b in zip(final, final_e, strict=True):
        torch.testing.assert_close(a, b, **close, msg=lambda m: "final state: " + m)
    torch.testing.assert_close(dx, dx_e, **close, msg=lambda m: "x.grad: " + m)
    for a, b in zip(dstate0, dstate0_e, strict=True):
        torch.testing.assert_close(a, b, **close, msg=lambda m: "state0.grad: " + m)
    assert grads.keys() == grads_e.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], grads_e[name], **close, msg=lambda m, name=name: f"{name}.grad: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_device_equals_cpu(name, num_layers, bidirectional, lengths, dtype):
    layer = _make(name, num_layers, bidirectional, dtype)
    x, state0, weights = _inputs(layer, dtype)
    expected = _run(layer, x, state0, weights, lengths, torch.device("cpu"))
    on_device = copy.deepcopy(layer).to(DEVICE)
    _assert_same(_run(on_device, x, state0, weights, lengths, DEVICE), expected, TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("name", STANDARD)
def test_standard_equals_torch_nn_on_device(name, lengths, dtype):
    layer = _make(name, 2, True, dtype).to(DEVICE)
    reference = layer.to_torch()  # torch.nn's layer, the same weights (cuDNN on CUDA)
    assert isinstance(reference, torch.nn.RNNBase)
    assert all(p.device.type == DEVICE.type for p in reference.parameters())
    x, state0, weights = _inputs(layer, dtype)
    expected = _run(reference, x, state0, weights, lengths, DEVICE, torch_layer=True)
    _assert_same(_run(layer, x, state0, weights, lengths, DEVICE), expected, TOL[dtype])


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("name", VARIANTS)
def test_fused_path_equals_step_loop_on_device(name, lengths):
    """The variants' whole-sequence autograd Functions against the plain step loop, both on
    the device (float64: they differ only in rounding)."""
    layer = _make(name, 2, True, torch.float64).to(DEVICE)
    x, state0, weights = _inputs(layer, torch.float64)
    with backends.only():
        expected = _run(layer, x, state0, weights, lengths, DEVICE)
    _assert_same(_run(layer, x, state0, weights, lengths, DEVICE), expected, TOL[torch.float64])


@pytest.mark.skipif(DEVICE.type != "cuda", reason="the CUDA backends")
@pytest.mark.parametrize("name", [n for n in VARIANTS if "proj" not in n])
def test_variants_on_cuda_run_the_triton_backend_where_triton_imports(name):
    pytest.importorskip("triton")
    layer = _make(name, 1, False, torch.float32).to(DEVICE)
    x = torch.randn(T, B, I, device=DEVICE)
    chosen = backends.select("sequence", layer.cell(0).config, x)
    assert chosen is not None and chosen.name == "cuda-fused"


@pytest.mark.parametrize("name", ["lstm", "lstm_peephole", "gru"])
def test_stream_on_device_follows_reset_and_state(name):
    """After a reset (to zeros or to a given state), the stream (a replayed CUDA graph on CUDA)
    continues from that state: it equals the layer run from it."""
    layer = _make(name, 2, False, torch.float32).to(DEVICE)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(T, B, I, generator=gen).to(DEVICE)
    stream = Stream(layer, batch_size=B)
    for x_t in x:  # captured and replayed by now
        stream.step(x_t)
    _, template = layer(x)
    state0 = tuple(torch.randn(s.shape, generator=gen).to(DEVICE) for s in _parts(template))
    state0 = state0 if len(state0) > 1 else state0[0]
    for start in (None, state0):
        stream.reset(start)
        ys = torch.stack([stream.step(x_t) for x_t in x])
        with torch.no_grad():
            out, final = layer(x, start)
        torch.testing.assert_close(ys, out, atol=TOL[torch.float32], rtol=TOL[torch.float32])
        for s, ref in zip(_parts(stream.state), _parts(final), strict=True):
            torch.testing.assert_close(s, ref, atol=TOL[torch.float32], rtol=TOL[torch.float32])


def test_cpu_only_paths_decline_device_tensors():
    """oneDNN's products and the compiled kernels are for CPU tensors: on another device
    their selection functions say no (on the CPU they may say yes)."""
    x = torch.randn(3, 4, device=DEVICE)
    if DEVICE.type != "cpu":
        assert gemm.gemm_for(x) is None
        assert _cpu_kernels.kernels_for(x) is None
        assert not kernels_apply(x, x)
    assert not kernels_apply(torch.randn(3, 4), torch.randn(3, 4, device="meta"))  # mixed devices


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_stream_on_device_equals_the_layer(name, dtype):
    layer = _make(name, 2, False, dtype).to(DEVICE)
    x = torch.randn(T, B, I, dtype=dtype, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    with torch.no_grad():
        out, state = layer(x)
    stream = Stream(layer, batch_size=B)
    ys = torch.stack([stream.step(x_t) for x_t in x])  # (T, B, H_out)
    assert ys.device.type == DEVICE.type
    torch.testing.assert_close(ys, out, atol=TOL[dtype], rtol=TOL[dtype])
    for s, ref in zip(_parts(stream.state), _parts(state), strict=True):
        torch.testing.assert_close(s, ref, atol=TOL[dtype], rtol=TOL[dtype])


def test_language_model_stream_on_device():
    """A character LM on the device: its stream's logits equal the whole-sequence model's."""
    from rnnkit.models import LanguageModel, LanguageModelConfig

    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(vocab_size=9, embedding_dim=4, hidden_size=6, num_layers=2)).to(DEVICE)
    lm.eval()
    ids = torch.randint(0, 9, (2, 7), generator=torch.Generator().manual_seed(2)).to(DEVICE)  # (B, T)
    with torch.no_grad():
        logits, _ = lm(ids)  # (B, T, V)
    stream = lm.stream(batch_size=2)
    first = stream.read(ids[:, :1])  # (B, V) after the first step
    steps = [first] + [stream.step(ids[:, t]) for t in range(1, 7)]
    torch.testing.assert_close(torch.stack(steps, 1), logits, atol=1e-5, rtol=1e-5)


def test_sampling_from_a_model_on_the_device_draws_what_the_cpu_model_draws():
    from rnnkit.models import LanguageModel, LanguageModelConfig, sample

    torch.manual_seed(0)
    cpu = LanguageModel(LanguageModelConfig(vocab_size=9, embedding_dim=4, hidden_size=6, num_layers=2)).double()
    dev = copy.deepcopy(cpu).to(DEVICE)
    draw = [list(sample(m, [1, 2, 3], 20, generator=torch.Generator().manual_seed(5))) for m in (cpu, dev)]
    assert draw[0] == draw[1]
