"""Tests for rnnkit.cells: each cell against torch.nn, each variant against its published
equations transcribed here by hand, gradients, initialisation and the docstring examples.
"""

import doctest
import importlib

import pytest
import torch
from torch import nn
from torch.func import functional_call

import rnnkit
from rnnkit.cells import GRUCell, LSTMCell, RNNCell

B, I, H = 3, 4, 5  # batch, input features, hidden units for the value comparisons
STEPS = 4  # steps run with the state fed back
TOL = dict(rtol=0, atol=1e-12)
D64 = torch.float64




# -- helpers ------------------------------------------------------------------------------


def _randomise_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter away from its init: gains around 1, everything else around 0."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            u = torch.rand(p.shape, generator=gen, dtype=p.dtype) * 2 - 1  # U(-1, 1)
            is_gain = "layer_norm" in name and "bias" not in name
            p.copy_(1 + 0.5 * u if is_gain else 0.8 * u)
    return module


def _sigmoid(z):
    return 1 / (1 + torch.exp(-z))


def _ln(z, eps=1e-5):
    """Layer norm without affine over the last dim: (z - mean) / sqrt(biased var + eps)."""
    mu = z.mean(-1, keepdim=True)
    var = ((z - mu) ** 2).mean(-1, keepdim=True)
    return (z - mu) / torch.sqrt(var + eps)


def _gate_ln(z, num_gates):
    """Layer norm of each gate's block of z (..., G*H) separately."""
    return torch.cat([_ln(block) for block in z.chunk(num_gates, -1)], -1)


def _run_cell(cell, xs, state):
    """Feed the state back for every step of xs (T, B, I); outputs (T, B, H_out), final state."""
    outs = []
    for x_t in xs:
        h, state = cell(x_t, state)
        outs.append(h)
    return torch.stack(outs), state


def _run_ref(step, xs, state):
    outs = []
    for x_t in xs:
        h, state = step(x_t, state)
        outs.append(h)
    return torch.stack(outs), state


def _assert_close(actual, expected):
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            _assert_close(a, e)
        return
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, **TOL)


def _random_state(cell, batch_size=B, gen_seed=1):
    gen = torch.Generator().manual_seed(gen_seed)
    state = cell.initial_state(batch_size, dtype=D64)
    if isinstance(state, tuple):
        return tuple(torch.randn(s.shape, generator=gen, dtype=D64) * 0.7 for s in state)
    return torch.randn(state.shape, generator=gen, dtype=D64) * 0.7


# -- standard cells against torch.nn ---------------------------------------------------------


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_matches_torch(nonlinearity):
    torch.manual_seed(0)
    ref = nn.RNNCell(I, H, nonlinearity=nonlinearity).double()
    cell = RNNCell(I, H, nonlinearity=nonlinearity).double()
    cell.load_state_dict(ref.state_dict())
    xs = torch.randn(STEPS, B, I, dtype=D64)
    h0 = torch.randn(B, H, dtype=D64)
    expected, h_ref = _run_ref(lambda x, h: (ref(x, h),) * 2, xs, h0)
    out, h = _run_cell(cell, xs, h0)
    _assert_close(out, expected)
    _assert_close(h, h_ref)


def test_lstm_cell_matches_torch():
    torch.manual_seed(0)
    ref = nn.LSTMCell(I, H).double()
    cell = LSTMCell(I, H).double()
    cell.load_state_dict(ref.state_dict())

    def ref_step(x, state):
        h, c = ref(x, state)
        return h, (h, c)

    xs = torch.randn(STEPS, B, I, dtype=D64)
    state0 = (torch.randn(B, H, dtype=D64), torch.randn(B, H, dtype=D64))
    expected, state_ref = _run_ref(ref_step, xs, state0)
    out, state = _run_cell(cell, xs, state0)
    _assert_close(out, expected)
    _assert_close(state, state_ref)


def test_gru_cell_reset_after_matches_torch():
    torch.manual_seed(0)
    ref = nn.GRUCell(I, H).double()
    cell = GRUCell(I, H, reset_after=True).double()
    cell.load_state_dict(ref.state_dict())
    xs = torch.randn(STEPS, B, I, dtype=D64)
    h0 = torch.randn(B, H, dtype=D64)
    expected, h_ref = _run_ref(lambda x, h: (ref(x, h),) * 2, xs, h0)
    out, h = _run_cell(cell, xs, h0)
    _assert_close(out, expected)
    _assert_close(h, h_ref)


def test_lstm_cell_with_projection_matches_torch_lstm():
    torch.manual_seed(0)
    P = 3
    ref = nn.LSTM(I, H, proj_size=P).double()
    cell = LSTMCell(I, H, proj_size=P).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"):
            getattr(cell, name).copy_(getattr(ref, f"{name}_l0"))
    xs = torch.randn(STEPS, B, I, dtype=D64)
    h0, c0 = torch.randn(B, P, dtype=D64), torch.randn(B, H, dtype=D64)
    expected, (h_ref, c_ref) = ref(xs, (h0.unsqueeze(0), c0.unsqueeze(0)))
    out, (h, c) = _run_cell(cell, xs, (h0, c0))
    assert out.shape == (STEPS, B, P) and c.shape == (B, H)
    _assert_close(out, expected)
    _assert_close((h, c), (h_ref[0], c_ref[0]))


def test_cells_default_state_is_zeros():
    torch.manual_seed(0)
    x = torch.randn(B, I, dtype=D64)
    for cell in (RNNCell(I, H), LSTMCell(I, H, proj_size=2), GRUCell(I, H, reset_after=False)):
        cell = cell.double()
        h_default, state_default = cell(x)
        h_zero, state_zero = cell(x, cell.initial_state(B, dtype=D64))
        _assert_close(h_default, h_zero)
        _assert_close(state_default, state_zero)


# -- variants against their equations, transcribed by hand ---------------------------------


def _lstm_reference(cell):
    """LSTM step from the published equations (Gers & Schmidhuber peepholes, Ba et al. LN)."""
    W_ih, W_hh = cell.weight_ih, cell.weight_hh
    b = cell.bias_ih + cell.bias_hh
    peep = cell.weight_peephole
    ln = cell.layer_norm_ih is not None

    def step(x, state):
        h_tm1, c_tm1 = state
        if ln:
            gates = _gate_ln(x @ W_ih.T, 4) * cell.layer_norm_ih + _gate_ln(h_tm1 @ W_hh.T, 4) * cell.layer_norm_hh + b
        else:
            gates = x @ W_ih.T + h_tm1 @ W_hh.T + b
        a_i, a_f, a_g, a_o = gates.chunk(4, -1)
        if peep is not None:
            p_i, p_f, p_o = peep.chunk(3)
            a_i = a_i + p_i * c_tm1
            a_f = a_f + p_f * c_tm1
        i, f, g = _sigmoid(a_i), _sigmoid(a_f), torch.tanh(a_g)
        c = f * c_tm1 + i * g
        if peep is not None:
            a_o = a_o + p_o * c
        o = _sigmoid(a_o)
        c_out = _ln(c) * cell.layer_norm_c_weight + cell.layer_norm_c_bias if ln else c
        h = o * torch.tanh(c_out)
        return h, (h, c)

    return step


def _gru_reference(cell):
    """GRU step from Cho et al. (reset before) / cuDNN (reset after), optionally Ba et al.'s LN."""
    W_ir, W_iz, W_in = cell.weight_ih.chunk(3)
    W_hr, W_hz, W_hn = cell.weight_hh.chunk(3)
    b_ir, b_iz, b_in = cell.bias_ih.chunk(3)
    b_hr, b_hz, b_hn = cell.bias_hh.chunk(3)
    ln = cell.layer_norm_ih is not None
    if ln:
        g_ir, g_iz, g_in = cell.layer_norm_ih.chunk(3)
        g_hr, g_hz, g_hn = cell.layer_norm_hh.chunk(3)

    def norm(z, gain):
        return _ln(z) * gain if ln else z

    def step(x, h):
        r = _sigmoid(norm(x @ W_ir.T, g_ir if ln else None) + b_ir + norm(h @ W_hr.T, g_hr if ln else None) + b_hr)
        z = _sigmoid(norm(x @ W_iz.T, g_iz if ln else None) + b_iz + norm(h @ W_hz.T, g_hz if ln else None) + b_hz)
        x_n = norm(x @ W_in.T, g_in if ln else None) + b_in
        if cell.reset_after:
            n = torch.tanh(x_n + r * (norm(h @ W_hn.T, g_hn if ln else None) + b_hn))
        else:
            n = torch.tanh(x_n + norm((r * h) @ W_hn.T, g_hn if ln else None) + b_hn)
        h_new = (1 - z) * n + z * h
        return h_new, h_new

    return step


VARIANTS = {
    "lstm_peephole": lambda: LSTMCell(I, H, peephole=True),
    "lstm_layer_norm": lambda: LSTMCell(I, H, layer_norm=True),
    "lstm_peephole_layer_norm": lambda: LSTMCell(I, H, peephole=True, layer_norm=True),
    "gru_reset_before": lambda: GRUCell(I, H, reset_after=False),
    "gru_layer_norm_reset_after": lambda: GRUCell(I, H, reset_after=True, layer_norm=True),
    "gru_layer_norm_reset_before": lambda: GRUCell(I, H, reset_after=False, layer_norm=True),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_cell_matches_its_equations(name):
    torch.manual_seed(0)
    cell = _randomise_(VARIANTS[name]().double(), seed=3)
    reference = _lstm_reference(cell) if isinstance(cell, LSTMCell) else _gru_reference(cell)
    xs = torch.randn(STEPS, B, I, dtype=D64)
    state0 = _random_state(cell)
    with torch.no_grad():
        expected, state_ref = _run_ref(reference, xs, state0)
        out, state = _run_cell(cell, xs, state0)
    _assert_close(out, expected)
    _assert_close(state, state_ref)


def test_gru_reset_before_differs_from_reset_after():
    """Same weights, different equations: the flag must really change the result."""
    torch.manual_seed(0)
    before = _randomise_(GRUCell(I, H, reset_after=False).double())
    after = GRUCell(I, H, reset_after=True).double()
    after.load_state_dict(before.state_dict())
    x, h0 = torch.randn(B, I, dtype=D64), torch.randn(B, H, dtype=D64)
    assert not torch.allclose(before(x, h0)[0], after(x, h0)[0])


# -- gradients -------------------------------------------------------------------------------

GB, GI, GH = 2, 3, 4  # small sizes for gradcheck

GRAD_CELLS = {
    "lstm_peephole": lambda: LSTMCell(GI, GH, peephole=True),
    "lstm_layer_norm": lambda: LSTMCell(GI, GH, layer_norm=True),
    "lstm_peephole_layer_norm": lambda: LSTMCell(GI, GH, peephole=True, layer_norm=True),
    "lstm_proj": lambda: LSTMCell(GI, GH, proj_size=2),
    "lstm_proj_peephole_layer_norm": lambda: LSTMCell(GI, GH, proj_size=2, peephole=True, layer_norm=True),
    "gru_reset_before": lambda: GRUCell(GI, GH, reset_after=False),
    "gru_layer_norm_reset_after": lambda: GRUCell(GI, GH, reset_after=True, layer_norm=True),
    "gru_layer_norm_reset_before": lambda: GRUCell(GI, GH, reset_after=False, layer_norm=True),
    "rnn_tanh": lambda: RNNCell(GI, GH),
}


@pytest.mark.parametrize("name", list(GRAD_CELLS))
def test_variant_cell_gradcheck(name):
    torch.manual_seed(0)
    cell = _randomise_(GRAD_CELLS[name]().double(), seed=5)
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in cell.named_parameters()]
    x = torch.randn(2, GB, GI, dtype=D64, requires_grad=True)  # two steps: the state path too
    state0 = _random_state(cell, GB)
    is_tuple = isinstance(state0, tuple)
    state0 = tuple(s.requires_grad_() for s in (state0 if is_tuple else (state0,)))
    n_state = len(state0)

    def f(x, *rest):
        state = rest[:n_state] if is_tuple else rest[0]
        weights = dict(zip(names, rest[n_state:]))
        outs = []
        for x_t in x:
            h, state = functional_call(cell, weights, (x_t, state))
            outs.append(h)
        return (torch.stack(outs),) + (state if is_tuple else (state,))

    assert torch.autograd.gradcheck(f, (x, *state0, *params))


# -- initialisation --------------------------------------------------------------------------


def test_lstm_forget_bias_default_is_one_in_bias_ih_and_zero_in_bias_hh():
    cell = LSTMCell(I, H)
    assert torch.equal(cell.bias_ih[H : 2 * H], torch.ones(H))
    assert torch.equal(cell.bias_hh[H : 2 * H], torch.zeros(H))
    bound = H**-0.5
    others = torch.cat([cell.bias_ih[:H], cell.bias_ih[2 * H :], cell.bias_hh[:H], cell.bias_hh[2 * H :]])
    assert others.abs().max() <= bound and others.abs().max() > 0


def test_lstm_forget_bias_value_is_used():
    cell = LSTMCell(I, H, forget_bias=2.5)
    assert torch.equal(cell.bias_ih[H : 2 * H], torch.full((H,), 2.5))
    assert torch.equal(cell.bias_hh[H : 2 * H], torch.zeros(H))


def test_lstm_forget_bias_none_keeps_torch_uniform_init():
    torch.manual_seed(123)
    cell = LSTMCell(I, H, forget_bias=None)
    torch.manual_seed(123)
    ref = nn.LSTMCell(I, H)
    bound = H**-0.5
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        value = getattr(cell, name)
        assert value.abs().max() <= bound
        assert torch.equal(value, getattr(ref, name)), name
    assert not torch.equal(cell.bias_ih[H : 2 * H], torch.ones(H))
    assert not torch.equal(cell.bias_hh[H : 2 * H], torch.zeros(H))


def test_weights_are_uniform_within_torch_bound():
    torch.manual_seed(0)
    bound = H**-0.5
    for cell in (RNNCell(I, H), LSTMCell(I, H, peephole=True, proj_size=2, forget_bias=None), GRUCell(I, H)):
        for name, p in cell.named_parameters():
            assert p.abs().max() <= bound, name


def test_layer_norm_gains_start_at_one_and_shift_at_zero():
    lstm = LSTMCell(I, H, layer_norm=True)
    assert torch.equal(lstm.layer_norm_ih, torch.ones(4 * H))
    assert torch.equal(lstm.layer_norm_hh, torch.ones(4 * H))
    assert torch.equal(lstm.layer_norm_c_weight, torch.ones(H))
    assert torch.equal(lstm.layer_norm_c_bias, torch.zeros(H))
    for reset_after in (True, False):
        gru = GRUCell(I, H, layer_norm=True, reset_after=reset_after)
        assert torch.equal(gru.layer_norm_ih, torch.ones(3 * H))
        assert torch.equal(gru.layer_norm_hh, torch.ones(3 * H))


def test_peephole_weights_have_three_gates_and_are_initialised():
    cell = LSTMCell(I, H, peephole=True)
    assert cell.weight_peephole.shape == (3 * H,)
    assert 0 < cell.weight_peephole.abs().max() <= H**-0.5


@pytest.mark.parametrize(
    "make, num_gates",
    [
        (lambda: RNNCell(I, H, recurrent_init="orthogonal"), 1),
        (lambda: LSTMCell(I, H, recurrent_init="orthogonal"), 4),
        (lambda: GRUCell(I, H, recurrent_init="orthogonal"), 3),
        (lambda: GRUCell(I, H, reset_after=False, layer_norm=True, recurrent_init="orthogonal"), 3),
    ],
)
def test_orthogonal_recurrent_init_gives_orthogonal_gate_blocks(make, num_gates):
    torch.manual_seed(0)
    cell = make()
    blocks = cell.weight_hh.detach().double().chunk(num_gates, 0)
    assert len(blocks) == num_gates
    for block in blocks:
        assert block.shape == (H, H)
        torch.testing.assert_close(block.T @ block, torch.eye(H, dtype=D64), rtol=0, atol=1e-5)
    # the whole stacked matrix is not orthogonal by accident: the blocks are independent
    if num_gates > 1:
        assert not torch.allclose(blocks[0], blocks[1])


def test_orthogonal_recurrent_init_with_projection_has_orthonormal_columns():
    torch.manual_seed(0)
    P = 2
    cell = LSTMCell(I, H, proj_size=P, recurrent_init="orthogonal")
    for block in cell.weight_hh.detach().double().chunk(4, 0):
        assert block.shape == (H, P)
        torch.testing.assert_close(block.T @ block, torch.eye(P, dtype=D64), rtol=0, atol=1e-5)


def test_orthogonal_init_keeps_lstm_forget_bias():
    cell = LSTMCell(I, H, recurrent_init="orthogonal")
    assert torch.equal(cell.bias_ih[H : 2 * H], torch.ones(H))


@pytest.mark.parametrize(
    "make",
    [
        lambda: RNNCell(I, H, recurrent_init="xavier"),
        lambda: LSTMCell(I, H, recurrent_init="xavier"),
        lambda: GRUCell(I, H, recurrent_init="xavier"),
        lambda: RNNCell(I, H, nonlinearity="sigmoid"),
        lambda: LSTMCell(I, H, proj_size=H),
        lambda: GRUCell(0, H),
    ],
)
def test_bad_constructor_arguments_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_cells_follow_the_protocol():
    for cell in (RNNCell(I, H), LSTMCell(I, H), GRUCell(I, H)):
        assert isinstance(cell, rnnkit.cells.Cell)
        assert (cell.input_size, cell.hidden_size) == (I, H)
    assert LSTMCell(I, H, proj_size=2).output_size == 2


# -- docstring examples ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "module_name",
    [
        "rnnkit.cells.rnn",
        "rnnkit.cells.lstm",
        "rnnkit.cells.gru",
        "rnnkit.layers.recurrent",
        "rnnkit.layers.native",
    ],
)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, report=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
