"""rnnkit.RNN / LSTM / GRU against torch.nn fed the same weights.

Every standard configuration must give torch.nn's outputs, final states and gradients (of the
input, the initial state and every weight), on both engines: "auto" (torch's fused kernels)
and "python" (rnnkit's generic engine). With ``lengths``, torch.nn is fed the same data
through ``pack_padded_sequence(..., enforce_sorted=False)``.
"""
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import rnnkit

T, B, I, H = 7, 4, 5, 6  # time steps, batch, input features, hidden units
P = 3  # proj_size of the projected LSTM
LENGTHS = [3, 7, 1, 5]  # unsorted; one of length 1, one of full length T

# name -> (torch.nn class, rnnkit class, constructor arguments)
CONFIGS = {
    "rnn_tanh": (nn.RNN, rnnkit.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, rnnkit.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, rnnkit.LSTM, {}),
    "lstm_proj": (nn.LSTM, rnnkit.LSTM, {"proj_size": P}),
    "gru": (nn.GRU, rnnkit.GRU, {}),
}
ENGINES = ["auto", "python"]
TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}

# torch's own notice that oneDNN has no projected LSTM; it is not about rnnkit.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")


# -- helpers ------------------------------------------------------------------------------


def make_pair(config, num_layers=1, bidirectional=False, batch_first=False, engine="auto",
              dtype=torch.float32, dropout=0.0, seed=0):
    """A torch.nn layer and the rnnkit layer built from it with ``from_torch``."""
    torch_cls, _, kwargs = CONFIGS[config]
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about dropout with num_layers=1
        reference = torch_cls(I, H, num_layers=num_layers, bidirectional=bidirectional,
                              batch_first=batch_first, dropout=dropout, dtype=dtype, **kwargs)
        layer = CONFIGS[config][1].from_torch(reference, engine=engine)
    return reference, layer


def is_lstm(layer) -> bool:
    return isinstance(layer, nn.LSTM)


def random_input(batch_first=False, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (B, T, I) if batch_first else (T, B, I)
    return torch.randn(shape, generator=g, dtype=dtype)


def random_state(layer, batch_size=B, dtype=torch.float32, seed=2):
    """A random initial state shaped as torch.nn wants it: h, or (h, c) for an LSTM."""
    g = torch.Generator().manual_seed(seed)
    LD = layer.num_layers * (2 if layer.bidirectional else 1)
    h = torch.randn(LD, batch_size, layer.proj_size or layer.hidden_size, generator=g, dtype=dtype)
    if not is_lstm(layer):
        return h
    return h, torch.randn(LD, batch_size, layer.hidden_size, generator=g, dtype=dtype)


def parts(state) -> list:
    """A state as a list of tensors (h for RNN/GRU, h and c for LSTM)."""
    return list(state) if isinstance(state, (tuple, list)) else [state]


def leaf_copy(state):
    """A fresh leaf copy of a state that requires grad (each model gets its own)."""
    copies = [s.detach().clone().requires_grad_(True) for s in parts(state)]
    return tuple(copies) if len(copies) > 1 else copies[0]


def run_torch(layer, x, state, lengths):
    """torch.nn's output, padded back to T steps when lengths are given."""
    if lengths is None:
        return layer(x, state)
    packed = pack_padded_sequence(x, lengths, batch_first=layer.batch_first, enforce_sorted=False)
    out, final = layer(packed, state)
    steps = x.shape[1] if layer.batch_first else x.shape[0]  # T
    out, _ = pad_packed_sequence(out, batch_first=layer.batch_first, total_length=steps)
    return out, final


def run_rnnkit(layer, x, state, lengths):
    return layer(x, state, lengths=None if lengths is None else torch.tensor(lengths))


def weighted_sum(y, final, seed=3):
    """The same random weighting of output and final states for both models."""
    g = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum()
    for s in parts(final):
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    return loss


def forward_and_grads(layer, run, x, state, lengths):
    """Output, final state, and d(weighted_sum)/d(x, state parts, named weights)."""
    x = x.detach().clone().requires_grad_(True)
    state = None if state is None else leaf_copy(state)
    y, final = run(layer, x, state, lengths)
    names, weights = zip(*layer.named_parameters())
    inputs = [x] + ([] if state is None else parts(state)) + list(weights)
    grads = torch.autograd.grad(weighted_sum(y, final), inputs)
    n_state = len(inputs) - 1 - len(weights)
    return y, final, grads[0], grads[1 : 1 + n_state], dict(zip(names, grads[1 + n_state :]))


def padding_mask(batch_first, lengths):
    """True at output positions past each sequence's length, in the output's layout."""
    past = torch.arange(T).unsqueeze(1) >= torch.tensor(lengths)  # (T, B)
    return past.t() if batch_first else past


def assert_close(actual, expected, dtype, what):
    torch.testing.assert_close(actual, expected, **TOLERANCE[dtype], msg=lambda m: f"{what}: {m}")


# -- the full matrix ----------------------------------------------------------------------


def assert_parity(reference, layer, x, state, lengths, dtype=torch.float32):
    """rnnkit's output, final state and every gradient equal torch.nn's; padding is exactly 0."""
    y, final, gx, gstate, gweights = forward_and_grads(layer, run_rnnkit, x, state, lengths)
    y_ref, final_ref, gx_ref, gstate_ref, gweights_ref = forward_and_grads(reference, run_torch, x, state, lengths)

    assert isinstance(final, tuple) == is_lstm(reference)
    assert_close(y, y_ref, dtype, "output")
    for k, (s, s_ref) in enumerate(zip(parts(final), parts(final_ref), strict=True)):
        assert_close(s, s_ref, dtype, f"final state part {k}")
    assert_close(gx, gx_ref, dtype, "grad of x")
    for k, (g, g_ref) in enumerate(zip(gstate, gstate_ref, strict=True)):
        assert_close(g, g_ref, dtype, f"grad of initial state part {k}")
    assert gweights.keys() == gweights_ref.keys()
    for name in gweights_ref:
        assert_close(gweights[name], gweights_ref[name], dtype, f"grad of {name}")
    if lengths is not None:
        past = padding_mask(reference.batch_first, lengths)
        assert torch.all(y[past] == 0), "outputs past each length must be exactly zero"
        assert torch.all(y_ref[past] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("with_state", [False, True], ids=["no_state", "state"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tbi", "bti"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_matches_torch_outputs_states_and_gradients(
    config, num_layers, bidirectional, batch_first, lengths, with_state, engine, dtype
):
    reference, layer = make_pair(config, num_layers, bidirectional, batch_first, engine, dtype)
    assert layer.engine == engine and layer.is_standard
    x = random_input(batch_first, dtype)
    state = random_state(reference, dtype=dtype) if with_state else None
    assert_parity(reference, layer, x, state, lengths, dtype)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_matches_torch_when_every_length_is_shorter_than_T(config, bidirectional, engine):
    # The python engine stops at max(lengths) and pads the rest; torch's pad_packed does too.
    reference, layer = make_pair(config, num_layers=2, bidirectional=bidirectional, engine=engine)
    lengths = [3, 5, 1, 5]
    assert_parity(reference, layer, random_input(), random_state(reference), lengths)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_matches_torch_without_bias(config, engine):
    torch_cls, rnnkit_cls, kwargs = CONFIGS[config]
    torch.manual_seed(0)
    reference = torch_cls(I, H, num_layers=2, bidirectional=True, bias=False, **kwargs)
    layer = rnnkit_cls.from_torch(reference, engine=engine)
    assert not any("bias" in name for name in layer.state_dict())
    assert_parity(reference, layer, random_input(), random_state(reference), LENGTHS)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("config", ["lstm_proj", "gru"])
def test_matches_torch_after_converting_both_to_float64(config, engine):
    reference, layer = make_pair(config, num_layers=2, bidirectional=True, engine=engine)
    reference.double()
    layer.double()
    x, state = random_input(dtype=torch.float64), random_state(reference, dtype=torch.float64)
    assert_parity(reference, layer, x, state, LENGTHS, torch.float64)


# -- PackedSequence in, PackedSequence out --------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("batch_first", [False, True], ids=["tbi", "bti"])  # packed data ignores it
@pytest.mark.parametrize("enforce_sorted", [False, True], ids=["unsorted", "sorted"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("config", ["lstm", "lstm_proj", "gru"])
def test_packed_sequence_in_gives_torchs_packed_sequence_out(config, bidirectional, enforce_sorted, batch_first, engine):
    reference, layer = make_pair(config, num_layers=2, bidirectional=bidirectional, batch_first=batch_first, engine=engine)
    lengths = sorted(LENGTHS, reverse=True) if enforce_sorted else LENGTHS
    packed = pack_padded_sequence(random_input(), torch.tensor(lengths), enforce_sorted=enforce_sorted)
    state = random_state(reference)

    out, final = layer(packed, state)
    out_ref, final_ref = reference(packed, state)

    assert isinstance(out, PackedSequence)
    torch.testing.assert_close(out.data, out_ref.data, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.batch_sizes, out_ref.batch_sizes)
    for index, index_ref in ((out.sorted_indices, out_ref.sorted_indices), (out.unsorted_indices, out_ref.unsorted_indices)):
        assert (index is None) == (index_ref is None)
        if index_ref is not None:
            assert torch.equal(index, index_ref)
    for s, s_ref in zip(parts(final), parts(final_ref), strict=True):
        torch.testing.assert_close(s, s_ref, atol=1e-5, rtol=1e-5)


# -- unbatched (T, I) input ---------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("batch_first", [False, True], ids=["tbi", "bti"])  # (T, I) either way
@pytest.mark.parametrize("with_state", [False, True], ids=["no_state", "state"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_unbatched_input_matches_torch(config, with_state, batch_first, engine):
    reference, layer = make_pair(config, num_layers=2, bidirectional=True, batch_first=batch_first, engine=engine)
    x = random_input()[:, 0]  # (T, I)
    state = None
    if with_state:
        state = random_state(reference, batch_size=1)
        state = tuple(s[:, 0] for s in state) if is_lstm(reference) else state[:, 0]  # (L*D, H) parts

    y, final = layer(x, state)
    y_ref, final_ref = reference(x, state)

    assert y.shape == y_ref.shape == (T, 2 * (reference.proj_size or H))
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    for s, s_ref in zip(parts(final), parts(final_ref), strict=True):
        assert s.dim() == 2
        torch.testing.assert_close(s, s_ref, atol=1e-5, rtol=1e-5)


# -- conversions and state dicts ----------------------------------------------------------------


@pytest.mark.parametrize("config", list(CONFIGS))
def test_to_torch_round_trip_gives_identical_outputs(config):
    _, rnnkit_cls, kwargs = CONFIGS[config]
    torch.manual_seed(0)
    layer = rnnkit_cls(I, H, num_layers=2, bidirectional=True, **kwargs)
    converted = layer.to_torch()
    assert type(converted) is CONFIGS[config][0]
    x, state = random_input(), random_state(layer)

    y, final = layer(x, state)
    y_ref, final_ref = converted(x, state)

    assert torch.equal(y, y_ref)  # same weights, same fused kernel
    for s, s_ref in zip(parts(final), parts(final_ref), strict=True):
        assert torch.equal(s, s_ref)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_load_state_dict_takes_a_torch_state_dict(config, engine):
    torch_cls, rnnkit_cls, kwargs = CONFIGS[config]
    torch.manual_seed(0)
    reference = torch_cls(I, H, num_layers=2, bidirectional=True, **kwargs)
    layer = rnnkit_cls(I, H, num_layers=2, bidirectional=True, engine=engine, **kwargs)

    layer.load_state_dict(reference.state_dict())

    x, state = random_input(), random_state(reference)
    y, final = layer(x, state)
    y_ref, final_ref = reference(x, state)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    for s, s_ref in zip(parts(final), parts(final_ref), strict=True):
        torch.testing.assert_close(s, s_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_from_torch_then_to_torch_gives_equal_state_dicts(config):
    reference, layer = make_pair(config, num_layers=2, bidirectional=True)
    back = layer.to_torch()
    expected, actual = reference.state_dict(), back.state_dict()
    assert list(actual) == list(expected)
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name
        assert torch.equal(layer.state_dict()[name], expected[name]), name


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_state_dict_keys_are_exactly_torchs(config, bidirectional):
    torch_cls, rnnkit_cls, kwargs = CONFIGS[config]
    layer = rnnkit_cls(I, H, num_layers=2, bidirectional=bidirectional, **kwargs)
    reference = torch_cls(I, H, num_layers=2, bidirectional=bidirectional, **kwargs)
    assert list(layer.state_dict()) == list(reference.state_dict())
    for name, value in reference.state_dict().items():
        assert layer.state_dict()[name].shape == value.shape, name


@pytest.mark.parametrize(
    "make_variant",
    [
        lambda: rnnkit.LSTM(I, H, peephole=True),
        lambda: rnnkit.LSTM(I, H, layer_norm=True),
        lambda: rnnkit.GRU(I, H, reset_after=False),
        lambda: rnnkit.GRU(I, H, layer_norm=True),
    ],
    ids=["lstm_peephole", "lstm_layer_norm", "gru_reset_before", "gru_layer_norm"],
)
def test_to_torch_of_a_variant_raises(make_variant):
    layer = make_variant()
    with pytest.raises(ValueError, match=rf"^{type(layer).__name__}\.to_torch: torch\.nn has no .*"):
        layer.to_torch()


@pytest.mark.parametrize(
    "torch_cls, rnnkit_cls, variant, extra_key",
    [
        (nn.LSTM, rnnkit.LSTM, {"peephole": True}, "weight_peephole_l1_reverse"),
        (nn.LSTM, rnnkit.LSTM, {"layer_norm": True}, "layer_norm_c_weight_l1"),
        (nn.GRU, rnnkit.GRU, {"reset_after": False}, None),
        (nn.GRU, rnnkit.GRU, {"layer_norm": True}, "layer_norm_hh_l0_reverse"),
    ],
    ids=["lstm_peephole", "lstm_layer_norm", "gru_reset_before", "gru_layer_norm"],
)
def test_from_torch_with_a_variant_copies_the_shared_weights(torch_cls, rnnkit_cls, variant, extra_key):
    torch.manual_seed(0)
    reference = torch_cls(I, H, num_layers=2, bidirectional=True)
    layer = rnnkit_cls.from_torch(reference, **variant)
    assert not layer.is_standard
    state = layer.state_dict()
    for name, value in reference.state_dict().items():
        assert torch.equal(state[name], value), name
    if extra_key is not None:
        assert extra_key in state


# -- initialisation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_rnnkit, make_torch",
    [
        (lambda: rnnkit.LSTM(I, H, forget_bias=None), lambda: nn.LSTM(I, H)),
        (lambda: rnnkit.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P, forget_bias=None),
         lambda: nn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P)),
        (lambda: rnnkit.GRU(I, H), lambda: nn.GRU(I, H)),
        (lambda: rnnkit.GRU(I, H, num_layers=2, bidirectional=True), lambda: nn.GRU(I, H, num_layers=2, bidirectional=True)),
        (lambda: rnnkit.RNN(I, H), lambda: nn.RNN(I, H)),
        (lambda: rnnkit.RNN(I, H, nonlinearity="relu"), lambda: nn.RNN(I, H, nonlinearity="relu")),
    ],
    ids=["lstm", "lstm_deep_bi_proj", "gru", "gru_deep_bi", "rnn", "rnn_relu"],
)
def test_same_seed_gives_torchs_weights(make_rnnkit, make_torch):
    torch.manual_seed(0)
    layer = make_rnnkit()
    after_rnnkit = torch.rand(1)  # the RNG must be left where torch.nn leaves it
    torch.manual_seed(0)
    reference = make_torch()
    after_torch = torch.rand(1)
    assert list(layer.state_dict()) == list(reference.state_dict())
    for name, value in reference.state_dict().items():
        assert torch.equal(layer.state_dict()[name], value), name
    assert torch.equal(after_rnnkit, after_torch)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_default_forget_bias_is_one_in_bias_ih_and_zero_in_bias_hh(bidirectional):
    torch.manual_seed(0)
    layer = rnnkit.LSTM(I, H, num_layers=2, bidirectional=bidirectional)
    torch.manual_seed(0)
    reference = nn.LSTM(I, H, num_layers=2, bidirectional=bidirectional)
    forget = slice(H, 2 * H)  # gates stacked i, f, g, o
    suffixes = [f"_l{k}{d}" for k in range(2) for d in ([""] + ["_reverse"] * bidirectional)]
    for suffix in suffixes:
        bias_ih, bias_hh = getattr(layer, f"bias_ih{suffix}"), getattr(layer, f"bias_hh{suffix}")
        assert torch.all(bias_ih[forget] == 1.0)
        assert torch.all(bias_hh[forget] == 0.0)
        # everything else is torch.nn's init, untouched
        for name in ("bias_ih", "bias_hh"):
            ours, theirs = getattr(layer, name + suffix), getattr(reference, name + suffix)
            assert torch.equal(ours[:H], theirs[:H]) and torch.equal(ours[2 * H :], theirs[2 * H :])
        for name in ("weight_ih", "weight_hh"):
            assert torch.equal(getattr(layer, name + suffix), getattr(reference, name + suffix))


@pytest.mark.parametrize(
    "make_layer, num_gates",
    [
        (lambda: rnnkit.LSTM(I, H, num_layers=2, bidirectional=True, recurrent_init="orthogonal"), 4),
        (lambda: rnnkit.GRU(I, H, num_layers=2, bidirectional=True, recurrent_init="orthogonal"), 3),
        (lambda: rnnkit.RNN(I, H, num_layers=2, bidirectional=True, recurrent_init="orthogonal"), 1),
        (lambda: rnnkit.RNN(I, H, nonlinearity="relu", recurrent_init="orthogonal"), 1),
    ],
    ids=["lstm", "gru", "rnn", "rnn_relu"],
)
def test_orthogonal_recurrent_init_makes_each_gate_block_orthogonal(make_layer, num_gates):
    torch.manual_seed(0)
    layer = make_layer()
    names = [name for name, _ in layer.named_parameters() if name.startswith("weight_hh_l")]
    assert len(names) == layer.num_layers * (2 if layer.bidirectional else 1)
    for name in names:
        blocks = getattr(layer, name).detach().chunk(num_gates, 0)
        assert len(blocks) == num_gates
        for block in blocks:  # (H, H)
            torch.testing.assert_close(block @ block.t(), torch.eye(H), atol=1e-5, rtol=0)


def test_orthogonal_recurrent_init_with_projection_gives_orthonormal_columns():
    torch.manual_seed(0)
    layer = rnnkit.LSTM(I, H, proj_size=P, recurrent_init="orthogonal")
    for block in layer.weight_hh_l0.detach().chunk(4, 0):  # (H, P), H > P
        torch.testing.assert_close(block.t() @ block, torch.eye(P), atol=1e-5, rtol=0)


# -- inter-layer dropout ------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("config", ["lstm", "gru", "rnn_tanh"])
def test_dropout_has_no_effect_in_eval_mode(config, engine):
    reference, layer = make_pair(config, num_layers=2, bidirectional=True, engine=engine, dropout=0.5)
    reference.eval()
    layer.eval()
    x, state = random_input(), random_state(reference)
    y, final = run_rnnkit(layer, x, state, LENGTHS)
    y_ref, final_ref = run_torch(reference, x, state, LENGTHS)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    for s, s_ref in zip(parts(final), parts(final_ref), strict=True):
        torch.testing.assert_close(s, s_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", ["lstm", "gru", "rnn_tanh"])
def test_python_engine_dropout_changes_the_output_but_not_layer_0(config):
    _, layer = make_pair(config, num_layers=2, bidirectional=True, engine="python", dropout=0.5)
    x, state = random_input(), random_state(layer)
    layer.eval()
    _, final_eval = layer(x, state, lengths=torch.tensor(LENGTHS))
    layer.train()
    torch.manual_seed(10)
    y1, final1 = layer(x, state, lengths=torch.tensor(LENGTHS))
    torch.manual_seed(11)
    y2, final2 = layer(x, state, lengths=torch.tensor(LENGTHS))

    assert not torch.allclose(y1, y2)
    # Dropout sits between layers: layer 0's final states (the first D rows) never see it.
    for s1, s2, s_eval in zip(parts(final1), parts(final2), parts(final_eval), strict=True):
        torch.testing.assert_close(s1[:2], s_eval[:2], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(s2[:2], s_eval[:2], atol=1e-6, rtol=1e-6)
        assert not torch.allclose(s1[2:], s2[2:])
    past = padding_mask(False, LENGTHS)
    assert torch.all(y1[past] == 0) and torch.all(y2[past] == 0)


@pytest.mark.parametrize("config", ["lstm", "gru", "rnn_tanh"])
def test_auto_engine_dropout_in_training_draws_like_torch(config):
    reference, layer = make_pair(config, num_layers=2, bidirectional=True, engine="auto", dropout=0.5)
    x = random_input()
    torch.manual_seed(10)
    y, _ = layer(x)
    torch.manual_seed(10)
    y_ref, _ = reference(x)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rnnkit_cls", [rnnkit.RNN, rnnkit.LSTM, rnnkit.GRU])
def test_dropout_with_one_layer_warns_like_torch(rnnkit_cls):
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        rnnkit_cls(I, H, num_layers=1, dropout=0.5)
