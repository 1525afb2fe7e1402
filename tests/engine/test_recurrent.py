"""Tests for rnnkit.Recurrent (the generic engine) and the layers' variants that run on it.

The oracle is a hand-written loop that runs each sequence alone, cut to its length, through
each layer and direction, so lengths, reversal, stacking and state handling are all checked
against the plainest possible code.
"""

import re

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.cells import GRUCell, LSTMCell

D64 = torch.float64
TOL = dict(rtol=0, atol=1e-12)




# -- cells defined only here -----------------------------------------------------------------


class MinimalGatedUnit(nn.Module):
    """Zhou et al.'s minimal gated unit: one forget gate, protocol only (no project_input/step).

    f = sigmoid(W_f x + U_f h + b_f);  n = tanh(W_n x + U_n (f * h) + b_n);  h = (1 - f) h + f n
    """

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.randn(2 * hidden_size, input_size) * 0.6)
        self.weight_fh = nn.Parameter(torch.randn(hidden_size, hidden_size) * 0.6)
        self.weight_nh = nn.Parameter(torch.randn(hidden_size, hidden_size) * 0.6)
        self.bias = nn.Parameter(torch.randn(2 * hidden_size) * 0.3)

    def initial_state(self, batch_size, device=None, dtype=None):
        dtype = dtype or self.weight_ih.dtype
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def forward(self, x_t, h_tm1):
        gx_f, gx_n = (x_t @ self.weight_ih.T + self.bias).chunk(2, -1)  # each (B, H)
        f = torch.sigmoid(gx_f + h_tm1 @ self.weight_fh.T)
        n = torch.tanh(gx_n + (f * h_tm1) @ self.weight_nh.T)
        h = (1 - f) * h_tm1 + f * n
        return h, h


class TinyLSTM(nn.Module):
    """An LSTM-like cell with a tuple state (h, c) and nothing but the protocol."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.randn(4 * hidden_size, input_size) * 0.5)
        self.weight_hh = nn.Parameter(torch.randn(4 * hidden_size, hidden_size) * 0.5)
        self.bias = nn.Parameter(torch.randn(4 * hidden_size) * 0.3)

    def initial_state(self, batch_size, device=None, dtype=None):
        dtype = dtype or self.weight_ih.dtype
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return zeros, zeros.clone()

    def forward(self, x_t, state):
        h_tm1, c_tm1 = state
        i, f, g, o = (x_t @ self.weight_ih.T + h_tm1 @ self.weight_hh.T + self.bias).chunk(4, -1)
        c = torch.sigmoid(f) * c_tm1 + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


# -- helpers ---------------------------------------------------------------------------------


def _map(fn, state):
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


def _assert_close(actual, expected, **tol):
    tol = tol or TOL
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            _assert_close(a, e, **tol)
        return
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, **tol)


def _reference(cells, x, lengths, num_layers, num_directions, state0=None):
    """Each sequence alone, cut to its length; forward loop, and the reverse loop on the
    reversed slice; per-layer concat. Returns output (T, B, D*H) zero past each length and
    the final states (L*D, B, ...) indexed layer * D + direction."""
    T, B, _ = x.shape
    out_rows, finals = [], [[None] * B for _ in cells]
    for b in range(B):
        n = int(lengths[b])
        inp = x[:n, b : b + 1]  # (n, 1, I)
        for layer in range(num_layers):
            outs = []
            for d in range(num_directions):
                k = layer * num_directions + d
                cell = cells[k]
                seq = inp if d == 0 else inp.flip(0)
                if state0 is None:
                    state = cell.initial_state(1, dtype=x.dtype)
                else:
                    state = _map(lambda s: s[k, b : b + 1], state0)
                hs = []
                for t in range(n):
                    h, state = cell(seq[t], state)
                    hs.append(h)
                hs = torch.stack(hs)  # (n, 1, H)
                outs.append(hs if d == 0 else hs.flip(0))
                finals[k][b] = state
            inp = torch.cat(outs, -1)  # (n, 1, D*H)
        out_rows.append(torch.cat([inp[:, 0], inp.new_zeros(T - n, inp.shape[-1])]))
    out = torch.stack(out_rows, 1)  # (T, B, D*H)
    per_cell = []
    for k in range(len(cells)):
        parts = finals[k]
        if isinstance(parts[0], tuple):
            per_cell.append(tuple(torch.cat([p[j] for p in parts]) for j in range(len(parts[0]))))
        else:
            per_cell.append(torch.cat(parts))
    if isinstance(per_cell[0], tuple):
        return out, tuple(torch.stack([s[j] for s in per_cell]) for j in range(len(per_cell[0])))
    return out, torch.stack(per_cell)


def _params_and_call(module):
    """Parameters as gradcheck inputs, and a function of (x, *params) running the module."""
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]

    def call(x, *weights, state=None, lengths=None):
        out, final = functional_call(module, dict(zip(names, weights)), (x, state), {"lengths": lengths})
        return (out,) + (final if isinstance(final, tuple) else (final,))

    return params, call


def _randomise_(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            u = torch.rand(p.shape, generator=gen, dtype=p.dtype) * 2 - 1
            is_gain = "layer_norm" in name and "bias" not in name
            p.copy_(1 + 0.5 * u if is_gain else 0.8 * u)
    return module


_LAYER_PARAM = re.compile(r"^(?P<base>.+)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")


def _copy_layer_to_cells(layer_params, recurrent, num_directions=2):
    """weight_ih_l1_reverse -> recurrent.cells[1 * D + 1].weight_ih, for every parameter;
    returns the set of (cell index, name) pairs written."""
    written = set()
    with torch.no_grad():
        for name, p in layer_params:
            m = _LAYER_PARAM.match(name)
            assert m, name
            k = int(m["layer"]) * num_directions + (1 if m["reverse"] else 0)
            getattr(recurrent.cells[k], m["base"]).copy_(p)
            written.add((k, m["base"]))
    return written


T, B, I, H = 5, 4, 3, 3
LENGTHS = torch.tensor([3, 5, 1, 4])  # unsorted, with a length-1 sequence and a full one


def _data(seed=0, T=T, B=B, I=I):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, I, generator=gen, dtype=D64)


# -- a user-defined cell through the engine --------------------------------------------------


def _mgu_layer(**kwargs):
    torch.manual_seed(0)
    return rnnkit.Recurrent(lambda n: MinimalGatedUnit(n, H), input_size=I, **kwargs).double()


def test_user_cell_bidirectional_two_layers_matches_hand_loop():
    layer = _mgu_layer(num_layers=2, bidirectional=True)
    x = _data()
    out, h = layer(x, lengths=LENGTHS)
    expected, h_ref = _reference(layer.cells, x, LENGTHS, 2, 2)
    assert out.shape == (T, B, 2 * H) and h.shape == (4, B, H)
    _assert_close(out, expected)
    _assert_close(h, h_ref)
    assert torch.count_nonzero(out[1:, 2]) == 0  # the length-1 sequence is zero after step 0


def test_user_cell_bidirectional_two_layers_gradcheck():
    layer = _mgu_layer(num_layers=2, bidirectional=True)
    x = _data(T=4, B=3).requires_grad_()
    lengths = torch.tensor([2, 4, 1])
    params, call = _params_and_call(layer)
    assert len(params) == 4 * 4  # four cells, four tensors each
    assert torch.autograd.gradcheck(lambda x, *w: call(x, *w, lengths=lengths), (x, *params))


def test_user_cell_with_tuple_state():
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(lambda n: TinyLSTM(n, H), input_size=I, num_layers=2, bidirectional=True).double()
    x = _data(1)
    out, (h, c) = layer(x, lengths=LENGTHS)
    assert out.shape == (T, B, 2 * H)
    assert h.shape == (4, B, H) and c.shape == (4, B, H)
    expected, state_ref = _reference(layer.cells, x, LENGTHS, 2, 2)
    _assert_close(out, expected)
    _assert_close((h, c), state_ref)
    # a given tuple state is used, per cell and per sequence
    gen = torch.Generator().manual_seed(7)
    state0 = tuple(torch.randn(4, B, H, generator=gen, dtype=D64) for _ in range(2))
    out, state = layer(x, state0, lengths=LENGTHS)
    expected, state_ref = _reference(layer.cells, x, LENGTHS, 2, 2, state0)
    _assert_close(out, expected)
    _assert_close(state, state_ref)


def test_user_cell_with_tuple_state_gradcheck():
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(lambda n: TinyLSTM(n, 2), input_size=2, num_layers=1, bidirectional=True).double()
    x = _data(T=3, B=2, I=2).requires_grad_()
    gen = torch.Generator().manual_seed(3)
    h0, c0 = (torch.randn(2, 2, 2, generator=gen, dtype=D64).requires_grad_() for _ in range(2))
    params, call = _params_and_call(layer)
    lengths = torch.tensor([1, 3])
    fn = lambda x, h0, c0, *w: call(x, *w, state=(h0, c0), lengths=lengths)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, h0, c0, *params))


# -- rnnkit's cells through the engine -------------------------------------------------------


def test_recurrent_over_peephole_lstm_cell_gradcheck():
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(lambda n: LSTMCell(n, 2, peephole=True), input_size=2, bidirectional=True).double()
    _randomise_(layer)
    x = _data(T=3, B=3, I=2).requires_grad_()
    lengths = torch.tensor([2, 3, 1])
    params, call = _params_and_call(layer)
    assert torch.autograd.gradcheck(lambda x, *w: call(x, *w, lengths=lengths), (x, *params))


def test_recurrent_over_peephole_lstm_cell_matches_hand_loop():
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(lambda n: LSTMCell(n, H, peephole=True), input_size=I, num_layers=2, bidirectional=True)
    layer = _randomise_(layer.double())
    x = _data(2)
    out, state = layer(x, lengths=LENGTHS)
    expected, state_ref = _reference(layer.cells, x, LENGTHS, 2, 2)
    _assert_close(out, expected)
    _assert_close(state, state_ref)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_over_standard_cells_matches_torch_on_packed_data(kind):
    torch.manual_seed(0)
    ref = getattr(nn, kind)(I, H, num_layers=2, bidirectional=True).double()
    cell_cls = LSTMCell if kind == "LSTM" else GRUCell
    layer = rnnkit.Recurrent(lambda n: cell_cls(n, H), input_size=I, num_layers=2, bidirectional=True).double()
    written = _copy_layer_to_cells(ref.named_parameters(), layer)
    assert written == {(k, n) for k, cell in enumerate(layer.cells) for n, _ in cell.named_parameters()}
    x = _data(3)
    packed = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    gen = torch.Generator().manual_seed(4)
    h0 = torch.randn(4, B, H, generator=gen, dtype=D64)
    state0 = (h0, torch.randn(4, B, H, generator=gen, dtype=D64)) if kind == "LSTM" else h0
    out_ref, state_ref = ref(packed, state0)
    out, state = layer(packed, state0)
    assert isinstance(out, PackedSequence)
    assert torch.equal(out.batch_sizes, out_ref.batch_sizes)
    assert torch.equal(out.sorted_indices, out_ref.sorted_indices)
    assert torch.equal(out.unsorted_indices, out_ref.unsorted_indices)
    _assert_close(out.data, out_ref.data)
    _assert_close(state, state_ref)


# -- the layers' variants: gradients, and equality with Recurrent over the cells ------------

LAYER_VARIANTS = {
    "lstm_peephole": ("LSTM", dict(peephole=True)),
    "lstm_layer_norm": ("LSTM", dict(layer_norm=True)),
    "lstm_peephole_layer_norm": ("LSTM", dict(peephole=True, layer_norm=True)),
    "lstm_peephole_proj": ("LSTM", dict(peephole=True, proj_size=2)),
    "gru_reset_before": ("GRU", dict(reset_after=False)),
    "gru_layer_norm": ("GRU", dict(layer_norm=True)),
    "gru_layer_norm_reset_before": ("GRU", dict(reset_after=False, layer_norm=True)),
}


def _layer_and_cells(name, input_size, hidden_size):
    kind, kwargs = LAYER_VARIANTS[name]
    torch.manual_seed(0)
    layer = getattr(rnnkit, kind)(input_size, hidden_size, num_layers=2, bidirectional=True, dtype=D64, **kwargs)
    _randomise_(layer, seed=11)
    cell_cls = LSTMCell if kind == "LSTM" else GRUCell
    cells = rnnkit.Recurrent(
        lambda n: cell_cls(n, hidden_size, **kwargs), input_size=input_size, num_layers=2, bidirectional=True
    ).double()
    written = _copy_layer_to_cells(layer.named_parameters(), cells)
    assert written == {(k, n) for k, cell in enumerate(cells.cells) for n, _ in cell.named_parameters()}
    return layer, cells


@pytest.mark.parametrize("name", list(LAYER_VARIANTS))
def test_variant_layer_equals_recurrent_over_cells(name):
    layer, cells = _layer_and_cells(name, I, H)
    assert not layer.is_standard
    x = _data(5)
    template = cells.initial_state(B, dtype=D64)
    gen = torch.Generator().manual_seed(6)
    state0 = _map(lambda s: torch.randn(s.shape, generator=gen, dtype=D64), template)
    out, state = layer(x, state0, lengths=LENGTHS)
    out_cells, state_cells = cells(x, state0, lengths=LENGTHS)
    _assert_close(out, out_cells)
    _assert_close(state, state_cells)
    # and both equal the hand-written loop
    expected, state_ref = _reference(cells.cells, x, LENGTHS, 2, 2, state0)
    _assert_close(out, expected)
    _assert_close(state, state_ref)


@pytest.mark.parametrize("name", ["lstm_peephole", "lstm_layer_norm", "gru_reset_before", "gru_layer_norm"])
def test_variant_layer_gradcheck(name):
    layer, _ = _layer_and_cells(name, 2, 2)
    x = _data(T=3, B=3, I=2).requires_grad_()
    lengths = torch.tensor([2, 3, 1])
    params, call = _params_and_call(layer)
    assert torch.autograd.gradcheck(lambda x, *w: call(x, *w, lengths=lengths), (x, *params))


def test_python_engine_matches_fused_kernel_with_lengths():
    torch.manual_seed(0)
    fused = rnnkit.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2, dtype=D64)
    python = rnnkit.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2, engine="python", dtype=D64)
    python.load_state_dict(fused.state_dict())
    x = _data(8)
    out_f, state_f = fused(x, lengths=LENGTHS)
    out_p, state_p = python(x, lengths=LENGTHS)
    _assert_close(out_p, out_f, rtol=0, atol=1e-10)
    _assert_close(state_p, state_f, rtol=0, atol=1e-10)


# -- Recurrent's interface: layouts, packing, states -----------------------------------------


def test_batch_first_equals_time_major():
    layer = _mgu_layer(num_layers=2, bidirectional=True)
    layer_bf = _mgu_layer(num_layers=2, bidirectional=True, batch_first=True)
    layer_bf.load_state_dict(layer.state_dict())
    x = _data(9)
    out, h = layer(x, lengths=LENGTHS)
    out_bf, h_bf = layer_bf(x.transpose(0, 1).contiguous(), lengths=LENGTHS)
    assert out_bf.shape == (B, T, 2 * H) and h_bf.shape == (4, B, H)  # states stay (L*D, B, H)
    _assert_close(out_bf, out.transpose(0, 1))
    _assert_close(h_bf, h)


@pytest.mark.parametrize("batch_first", [False, True])
def test_packed_sequence_in_and_out(batch_first):
    layer = _mgu_layer(num_layers=2, bidirectional=True, batch_first=batch_first)
    x = _data(10)
    packed = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    out, h = layer(packed)
    assert isinstance(out, PackedSequence)
    assert torch.equal(out.batch_sizes, packed.batch_sizes)
    assert torch.equal(out.unsorted_indices, packed.unsorted_indices)
    padded, lens = pad_packed_sequence(out, batch_first=batch_first)
    assert torch.equal(lens, LENGTHS)
    out_ref, h_ref = _reference(layer.cells, x, LENGTHS, 2, 2)
    _assert_close(padded, out_ref.transpose(0, 1) if batch_first else out_ref)
    _assert_close(h, h_ref)


def test_sorted_packed_sequence_in_and_out():
    layer = _mgu_layer(num_layers=1, bidirectional=True)
    x = _data(11)
    lengths = torch.tensor([5, 4, 2, 1])
    packed = pack_padded_sequence(x, lengths)  # enforce_sorted: no index tensors
    out, h = layer(packed)
    assert isinstance(out, PackedSequence) and out.sorted_indices is None
    out_ref, h_ref = _reference(layer.cells, x, lengths, 1, 2)
    _assert_close(pad_packed_sequence(out)[0], out_ref)
    _assert_close(h, h_ref)


def test_given_initial_state_is_used():
    layer = _mgu_layer(num_layers=2, bidirectional=True)
    x = _data(12)
    h0 = torch.randn(4, B, H, generator=torch.Generator().manual_seed(1), dtype=D64)
    out, h = layer(x, h0, lengths=LENGTHS)
    out_ref, h_ref = _reference(layer.cells, x, LENGTHS, 2, 2, h0)
    _assert_close(out, out_ref)
    _assert_close(h, h_ref)
    assert not torch.allclose(out, layer(x, lengths=LENGTHS)[0])


@pytest.mark.parametrize("cell", ["mgu", "lstm_peephole"])
def test_state_carried_across_two_calls_equals_one_call(cell):
    torch.manual_seed(0)
    factory = (lambda n: MinimalGatedUnit(n, H)) if cell == "mgu" else (lambda n: LSTMCell(n, H, peephole=True))
    layer = _randomise_(rnnkit.Recurrent(factory, input_size=I, num_layers=2).double())
    x = _data(13, T=10)
    out_full, state_full = layer(x)
    out_a, state_a = layer(x[:5])
    out_b, state_b = layer(x[5:], state_a)
    _assert_close(torch.cat([out_a, out_b]), out_full)
    _assert_close(state_b, state_full)


def test_initial_state_shape_and_default():
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(lambda n: LSTMCell(n, H, proj_size=2), input_size=I, num_layers=3, bidirectional=True)
    h0, c0 = layer.initial_state(B)
    assert h0.shape == (6, B, 2) and c0.shape == (6, B, H)
    assert layer.output_size == 4
    x = torch.randn(T, B, I)
    out, state = layer(x)
    assert out.shape == (T, B, 4)
    _assert_close(state, layer(x, (h0, c0))[1])


def test_unbatched_input():
    layer = _mgu_layer(num_layers=2, bidirectional=True)
    x = _data(14)
    out, h = layer(x[:, 1])
    assert out.shape == (T, 2 * H) and h.shape == (4, H)
    out_b, h_b = layer(x[:, 1:2])
    _assert_close(out, out_b[:, 0])
    _assert_close(h, h_b[:, 0])


# -- lengths on the engine -------------------------------------------------------------------


def test_lengths_final_state_equals_sequence_run_alone():
    layer = _mgu_layer(num_layers=2, bidirectional=True)
    x = _data(15)
    out, h = layer(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS.tolist()):
        out_b, h_b = layer(x[:n, b : b + 1])  # this sequence alone, truncated, no lengths
        _assert_close(out[:n, b], out_b[:, 0])
        _assert_close(h[:, b], h_b[:, 0])
        assert torch.count_nonzero(out[n:, b]) == 0


def test_lengths_padding_content_is_ignored():
    layer = _mgu_layer(num_layers=2, bidirectional=True)
    x = _data(16)
    garbage = x.clone()
    for b, n in enumerate(LENGTHS.tolist()):
        garbage[n:, b] = 1e3 * torch.randn(T - n, I, dtype=D64)
    out, h = layer(x, lengths=LENGTHS)
    out_g, h_g = layer(garbage, lengths=LENGTHS)
    _assert_close(out_g, out)
    _assert_close(h_g, h)


def test_reverse_direction_starts_at_each_sequences_last_valid_step():
    layer = _mgu_layer(num_layers=1, bidirectional=True)
    x = _data(17)
    out, h = layer(x, lengths=LENGTHS)
    reverse = layer.cells[1]
    for b, n in enumerate(LENGTHS.tolist()):
        # the reverse direction's first step sees x[n - 1] from the zero state
        first, _ = reverse(x[n - 1, b : b + 1], reverse.initial_state(1, dtype=D64))
        _assert_close(out[n - 1, b, H:], first[0])
        # and its final state is its output at t = 0
        _assert_close(h[1, b], out[0, b, H:])
        # the forward direction's final state is its output at the last valid step
        _assert_close(h[0, b], out[n - 1, b, :H])


def test_lengths_any_order_and_as_list():
    layer = _mgu_layer(num_layers=2, bidirectional=True)
    x = _data(18)
    out, h = layer(x, lengths=LENGTHS)
    out_l, h_l = layer(x, lengths=LENGTHS.tolist())
    _assert_close(out_l, out)
    _assert_close(h_l, h)
    perm = torch.tensor([2, 0, 3, 1])
    out_p, h_p = layer(x[:, perm], lengths=LENGTHS[perm])
    _assert_close(out_p, out[:, perm])
    _assert_close(h_p, h[:, perm])


def test_lengths_all_full_equal_no_lengths():
    layer = _mgu_layer(num_layers=2, bidirectional=True)
    x = _data(19)
    out, h = layer(x)
    out_l, h_l = layer(x, lengths=torch.full((B,), T))
    _assert_close(out_l, out)
    _assert_close(h_l, h)


@pytest.mark.parametrize("lengths", [torch.tensor([0, 1, 2, 3]), torch.tensor([6, 1, 2, 3]), torch.tensor([1, 2])])
def test_bad_lengths_raise(lengths):
    layer = _mgu_layer(num_layers=1)
    with pytest.raises(ValueError, match="Recurrent: lengths"):
        layer(_data(), lengths=lengths)


def test_bad_state_shape_raises():
    layer = _mgu_layer(num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match="Recurrent: state"):
        layer(_data(), torch.zeros(2, B, H, dtype=D64))


def test_factory_must_return_a_cell():
    with pytest.raises(TypeError, match="Recurrent"):
        rnnkit.Recurrent(lambda n: nn.Linear(n, 3), input_size=I)


# -- dropout ---------------------------------------------------------------------------------


def test_dropout_eval_is_deterministic_and_equals_no_dropout():
    dropped = _mgu_layer(num_layers=2, bidirectional=True, dropout=0.5)
    plain = _mgu_layer(num_layers=2, bidirectional=True, dropout=0.0)
    plain.load_state_dict(dropped.state_dict())
    dropped.eval()
    x = _data(20)
    out_1, h_1 = dropped(x, lengths=LENGTHS)
    out_2, h_2 = dropped(x, lengths=LENGTHS)
    assert torch.equal(out_1, out_2) and torch.equal(h_1, h_2)
    out_p, h_p = plain.train()(x, lengths=LENGTHS)  # dropout 0 does nothing in training either
    assert torch.equal(out_1, out_p) and torch.equal(h_1, h_p)


def test_dropout_train_differs_between_calls_and_only_between_layers():
    dropped = _mgu_layer(num_layers=2, bidirectional=True, dropout=0.5).train()
    x = _data(21)
    torch.manual_seed(1)
    out_1, h_1 = dropped(x, lengths=LENGTHS)
    out_2, h_2 = dropped(x, lengths=LENGTHS)
    assert not torch.allclose(out_1, out_2)
    # layer 0's own states are untouched by dropout (it acts on its output, before layer 1)
    torch.testing.assert_close(h_1[:2], h_2[:2], **TOL)
    assert not torch.allclose(h_1[2:], h_2[2:])
    # one layer: nothing after the last layer is dropped
    single = _mgu_layer(num_layers=1, bidirectional=True, dropout=0.5).train()
    assert torch.equal(single(x)[0], single(x)[0])
