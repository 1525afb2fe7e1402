"""The layers of the post-2017 cells (MinGRU, MinLSTM, IndRNN, SRU, SLSTM, MLSTM): the layer API
of rnnkit.LSTM, their parallel backends against the reference loop with a given state (values,
gradients, float64 gradcheck), Stream, the inspector, gradient flow and the cell names of the models.

(tests/layers/test_backends.py runs every backend over every configuration it declares, with
lengths and both directions, from a zero state; tests/cells/ holds each cell against its paper.)
"""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.layers import backends
from rnnkit.models import CELLS, make_recurrent

D64 = torch.float64
T, B, I, H = 7, 3, 4, 6
LENGTHS = torch.tensor([7, 2, 5])
LAYERS = {"mingru": rnnkit.MinGRU, "minlstm": rnnkit.MinLSTM, "indrnn": rnnkit.IndRNN, "sru": rnnkit.SRU,
          "slstm": rnnkit.SLSTM, "mlstm": rnnkit.MLSTM}
FLAGS = {"mlstm": {"num_heads": 2}, "sru": {}, "indrnn": {"nonlinearity": "tanh"}}
PARALLEL = {"mingru": "scan", "minlstm": "scan", "sru": "scan", "mlstm": "chunkwise"}


def _layer(name, **kwargs):
    torch.manual_seed(0)
    return LAYERS[name](I, H, dtype=D64, **FLAGS.get(name, {}), **kwargs)


def _random_state(layer, batch=B, seed=1):
    gen = torch.Generator().manual_seed(seed)
    template = layer.initial_state(batch, dtype=D64)
    parts = template if isinstance(template, tuple) else (template,)
    # m (the stabiliser of sLSTM / mLSTM) anywhere; the rest moderate
    parts = tuple(torch.randn(p.shape, generator=gen, dtype=D64) * 0.5 for p in parts)
    return parts if isinstance(template, tuple) else parts[0]


def _flat(state):
    return list(state) if isinstance(state, tuple) else [state]


def _requires_grad(state):
    return tuple(s.requires_grad_() for s in state) if isinstance(state, tuple) else state.requires_grad_()


@pytest.mark.parametrize("name", sorted(PARALLEL))
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_the_parallel_backend_equals_the_reference_from_a_given_state(name, lengths, bidirectional):
    layer = _layer(name, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(T, B, I, dtype=D64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    state = _requires_grad(_random_state(layer))
    leaves = [x] + _flat(state) + list(layer.parameters())

    def results():
        out, final = layer(x, state, lengths=lengths)
        parts = [out] + _flat(final)
        gen = torch.Generator().manual_seed(3)
        loss = sum((p * torch.randn(p.shape, generator=gen, dtype=D64)).sum() for p in parts)
        return [p.detach() for p in parts] + list(torch.autograd.grad(loss, leaves, allow_unused=True))

    chosen = backends.select("sequence", layer.cell_config(), x)
    assert chosen is not None and chosen.name.startswith(PARALLEL[name])
    fast = results()
    with backends.only():
        reference = results()
    for got, expected, like in zip(fast, reference, fast[: len(fast) - len(leaves)] + leaves):
        # a leaf the loop never reads (mLSTM's h0 when every sequence has a step) has no gradient
        # there, and a zero one where the backend selects it away: the same
        zero = torch.zeros_like(like)
        torch.testing.assert_close(zero if got is None else got, zero if expected is None else expected,
                                   rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(PARALLEL))
def test_the_parallel_backend_passes_gradcheck(name):
    torch.manual_seed(0)
    layer = LAYERS[name](3, 4, dtype=D64, **({"num_heads": 2} if name == "mlstm" else {}))
    x = torch.randn(5, 2, 3, dtype=D64, requires_grad=True)
    state = _requires_grad(_random_state(layer, batch=2))
    lengths = torch.tensor([5, 3])

    def run(x, *state):
        out, final = layer(x, state if len(state) > 1 else state[0], lengths=lengths)
        return (out,) + tuple(_flat(final))

    assert backends.select("sequence", layer.cell_config(), x) is not None
    assert torch.autograd.gradcheck(run, (x, *_flat(state)))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_a_layer_takes_what_rnnkit_lstm_takes(name):
    layer = _layer(name, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(B, T, I, dtype=D64)
    y, state = layer(x, lengths=LENGTHS)
    assert y.shape == (B, T, 2 * H)
    assert all(p.shape[:2] == (4, B) for p in _flat(state))
    assert _flat(state)[0].shape == (4, B, H)  # the state's first part is h
    assert y[1, 2:].abs().max() == 0  # zero past the length
    # each sequence alone (no padding) gives the same output and final state
    for b, n in enumerate(LENGTHS.tolist()):
        y_b, state_b = layer(x[b : b + 1, :n])
        torch.testing.assert_close(y_b[0], y[b, :n])
        for part_b, part in zip(_flat(state_b), _flat(state)):
            torch.testing.assert_close(part_b[:, 0], part[:, b])
    # a PackedSequence in, a PackedSequence out, the same numbers
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    y_packed, _ = layer(packed)
    torch.testing.assert_close(pad_packed_sequence(y_packed, batch_first=True, total_length=T)[0], y)
    # unbatched input takes and gives 2-D states
    y_one, state_one = layer(x[0])
    assert y_one.shape == (T, 2 * H) and _flat(state_one)[0].shape == (4, H)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_a_bad_state_gets_one_clear_error(name):
    layer = _layer(name)
    x = torch.randn(T, B, I, dtype=D64)
    with pytest.raises((TypeError, ValueError), match=f"{LAYERS[name].__name__}: state"):
        layer(x, torch.zeros(2, B, H, dtype=D64) if layer.kind.state_names is None else (torch.zeros(1, B, H, dtype=D64),))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_stream_equals_the_whole_forward(name):
    layer = _layer(name, num_layers=2).eval()
    x = torch.randn(T, B, I, dtype=D64)
    state = _random_state(layer)
    y, final = layer(x, state)
    stream = rnnkit.Stream(layer, batch_size=B, state=state)
    ys = torch.stack([stream.step(x_t) for x_t in x])
    torch.testing.assert_close(ys, y)
    for got, expected in zip(_flat(stream.state), _flat(final)):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_the_inspector_records_every_gate_of_the_kind(name):
    layer = _layer(name, bidirectional=True).eval()
    x = torch.randn(T, B, I, dtype=D64)
    with rnnkit.viz.record(layer) as rec:  # checks the recomputed h against the layer's output
        layer(x, lengths=LENGTHS)
    assert len(rec.layers) == 2
    for record in rec.layers:
        assert record.kind == name
        assert set(record.keys()) == set(layer.kind.gates)
        assert record["hidden"].shape == (T, B, H)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_the_models_build_every_cell_by_name(name):
    assert name in CELLS
    hidden = 8  # divisible by mLSTM's 4 heads
    model = make_recurrent(name, I, hidden, num_layers=2, bidirectional=True, dropout=0.1)
    assert isinstance(model, LAYERS[name]) and model.batch_first
    y, _ = model(torch.randn(B, T, I), lengths=LENGTHS)
    assert y.shape == (B, T, 2 * hidden)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_gradient_flow_reads_the_new_layers():
    from rnnkit.viz.gradients import last_recurrent_layer

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnnkit.MinGRU(I, H)

    model = Model()
    assert last_recurrent_layer(model) is model.rnn


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_minlstm_backends_stay_exact_where_both_gates_saturate(dtype):
    """f / (f + i) with both sigmoids below the smallest float: the reference takes it from
    log-sigmoids, the fused kernel from scaled exponentials; both must give the exact ratio."""
    torch.manual_seed(0)
    layer = rnnkit.MinLSTM(4, 3, dtype=dtype)
    with torch.no_grad():  # f~, i~ rows: (-800, -900), (-800, -750), (300, -300)
        layer.bias_ih_l0.copy_(torch.tensor([-800.0, -800, 300, -900, -750, -300, 1, 2, 3], dtype=dtype))
    x = torch.randn(5, 2, 4, dtype=dtype, requires_grad=True)
    results = {}
    for names in [("scan-kernels",), ("scan",), ()]:
        with backends.only(*names):
            y, h = layer(x)
            results[names] = (y, *torch.autograd.grad(y.sum(), [x, layer.bias_ih_l0]))
    for names, got in results.items():
        for a, b in zip(got, results[()]):
            assert torch.isfinite(a).all(), names
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # unit 0 forgets nothing new (f' = 1 - e^-100), unit 1 takes in everything (f' = e^-50)
    h0 = torch.randn(1, 2, 3, dtype=dtype)
    y, _ = layer(x, h0)
    torch.testing.assert_close(y[:, :, 0], h0[0, :, 0].expand(5, 2))
