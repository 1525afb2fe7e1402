"""Bad input to rnnkit's layers: one clear, one-line error that names the class, the argument
and what was received. Shape and value problems raise ValueError, type and dtype problems
TypeError (see ``rnnkit/layers/boundary.py``).
"""
import re
from contextlib import contextmanager

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit

T, B, I, H = 7, 4, 5, 6  # time steps, batch, input features, hidden units

# name the errors start with -> a one-layer, one-direction layer of I inputs and H units
LAYERS = {
    "LSTM": lambda: rnnkit.LSTM(I, H),
    "GRU": lambda: rnnkit.GRU(I, H),
    "RNN": lambda: rnnkit.RNN(I, H),
    "Recurrent": lambda: rnnkit.Recurrent(lambda n: rnnkit.cells.GRUCell(n, H), input_size=I),
}
ALL = list(LAYERS)
CONSTRUCTORS = {"LSTM": rnnkit.LSTM, "GRU": rnnkit.GRU, "RNN": rnnkit.RNN}


# -- helpers ------------------------------------------------------------------------------


@contextmanager
def raises(exc_type, pattern):
    """pytest.raises with a regex on the message, which must also fit on one line."""
    with pytest.raises(exc_type, match=pattern) as info:
        yield info
    assert "\n" not in str(info.value)


def x_tbi(dtype=torch.float32):
    return torch.randn(T, B, I, dtype=dtype)


def state_like(name, shape=(1, B, H), dtype=torch.float32, device="cpu"):
    """A state whose first part (h) has the given shape/dtype/device; c (LSTM) is correct."""
    h = torch.zeros(shape, dtype=dtype, device=device)
    if name == "LSTM":
        return h, torch.zeros(1, B, H)
    return h


def state_name(name):
    """How the message names the first state part: 'state h' for LSTM, 'state' otherwise."""
    return "state h" if name == "LSTM" else "state"


def build(name, **kwargs):
    """Construct an rnnkit layer (or Recurrent) from I, H and the given arguments."""
    if name == "Recurrent":
        return rnnkit.Recurrent(lambda n: rnnkit.cells.GRUCell(n, H), **{"input_size": I, **kwargs})
    return CONSTRUCTORS[name](**{"input_size": I, "hidden_size": H, **kwargs})


# -- x ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_x_1d_is_a_value_error(name):
    with raises(ValueError, rf"^{name}: x must be 3-D \(T, B, I\) or 2-D \(T, I\), got 1-D with shape \(7,\)$"):
        LAYERS[name]()(torch.randn(T))


@pytest.mark.parametrize("name", ALL)
def test_x_4d_is_a_value_error(name):
    with raises(ValueError, rf"^{name}: x must be 3-D .*, got 4-D with shape \(7, 4, 5, 1\)$"):
        LAYERS[name]()(torch.randn(T, B, I, 1))


def test_x_wrong_rank_message_uses_the_batch_first_layout():
    with raises(ValueError, r"^LSTM: x must be 3-D \(B, T, I\) or 2-D \(T, I\), got 1-D"):
        rnnkit.LSTM(I, H, batch_first=True)(torch.randn(T))


@pytest.mark.parametrize("name", ALL)
def test_x_wrong_feature_size_is_a_value_error(name):
    with raises(ValueError, rf"^{name}: x must have input_size=5 features in its last dim, got 3$"):
        LAYERS[name]()(torch.randn(T, B, 3))


@pytest.mark.parametrize("name", ALL)
def test_x_wrong_feature_size_in_a_packed_sequence_is_a_value_error(name):
    packed = pack_padded_sequence(torch.randn(T, B, 3), torch.tensor([3, 7, 1, 5]), enforce_sorted=False)
    with raises(ValueError, rf"^{name}: x must have input_size=5 features .*, got 3$"):
        LAYERS[name]()(packed)


@pytest.mark.parametrize("name", ALL)
def test_x_integer_dtype_is_a_type_error(name):
    with raises(TypeError, rf"^{name}: x must be a floating-point tensor, got dtype torch\.int64$"):
        LAYERS[name]()(torch.zeros(T, B, I, dtype=torch.int64))


@pytest.mark.parametrize("name", ALL)
def test_x_not_a_tensor_is_a_type_error(name):
    with raises(TypeError, rf"^{name}: x must be a Tensor or PackedSequence, got list$"):
        LAYERS[name]()([[0.0] * I] * T)


# -- state --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_state_wrong_shape_is_a_value_error(name):
    bad = state_like(name, shape=(2, B, H))  # a second layer that does not exist
    with raises(ValueError, rf"^{name}: {state_name(name)} must have shape \(1, 4, 6\), got \(2, 4, 6\)$"):
        LAYERS[name]()(x_tbi(), bad)


@pytest.mark.parametrize("name", ALL)
def test_state_wrong_batch_size_is_a_value_error(name):
    bad = state_like(name, shape=(1, B - 1, H))
    with raises(ValueError, rf"^{name}: {state_name(name)} must have shape \(1, 4, 6\), got \(1, 3, 6\)$"):
        LAYERS[name]()(x_tbi(), bad)


def test_lstm_cell_state_wrong_shape_is_a_value_error_naming_c():
    # With a projection h is (L*D, B, P) but c stays (L*D, B, H): giving c h's shape is wrong.
    layer = rnnkit.LSTM(I, H, proj_size=3)
    with raises(ValueError, r"^LSTM: state c must have shape \(1, 4, 6\), got \(1, 4, 3\)$"):
        layer(x_tbi(), (torch.zeros(1, B, 3), torch.zeros(1, B, 3)))


@pytest.mark.parametrize("name", ALL)
def test_state_wrong_dtype_is_a_type_error(name):
    bad = state_like(name, dtype=torch.float64)
    pattern = rf"^{name}: {state_name(name)} must have dtype torch\.float32 \(the input's\), got torch\.float64$"
    with raises(TypeError, pattern):
        LAYERS[name]()(x_tbi(), bad)


def test_lstm_single_tensor_state_is_a_type_error():
    with raises(TypeError, r"^LSTM: state must be \(h, c\), got a Tensor of shape \(1, 4, 6\)$"):
        rnnkit.LSTM(I, H)(x_tbi(), torch.zeros(1, B, H))


def test_lstm_state_of_three_tensors_is_a_type_error():
    with raises(TypeError, r"^LSTM: state must be \(h, c\), got a tuple of 3$"):
        rnnkit.LSTM(I, H)(x_tbi(), (torch.zeros(1, B, H),) * 3)


def test_lstm_state_with_a_non_tensor_part_is_a_type_error():
    with raises(TypeError, r"^LSTM: state c must be a Tensor, got NoneType$"):
        rnnkit.LSTM(I, H)(x_tbi(), (torch.zeros(1, B, H), None))


@pytest.mark.parametrize("name", ["GRU", "RNN", "Recurrent"])
def test_tuple_state_for_a_single_tensor_state_is_a_type_error(name):
    with raises(TypeError, rf"^{name}: state must be a Tensor, got a tuple of 1$"):
        LAYERS[name]()(x_tbi(), (torch.zeros(1, B, H),))


@pytest.mark.parametrize("name", ALL)
def test_state_on_another_device_is_a_value_error(name):
    bad = state_like(name, device="meta")  # stands in for a GPU tensor with CPU input
    with raises(ValueError, rf"^{name}: {state_name(name)} must be on cpu \(the input's device\), got meta$"):
        LAYERS[name]()(x_tbi(), bad)


@pytest.mark.parametrize("name", ALL)
def test_unbatched_x_with_wrong_state_shape_is_a_value_error(name):
    bad = state_like(name, shape=(2, H))
    if name == "LSTM":
        bad = (bad[0], torch.zeros(1, H))
    with raises(ValueError, rf"^{name}: {state_name(name)} must have shape \(1, 1, 6\), got \(2, 1, 6\)$"):
        LAYERS[name]()(torch.randn(T, I), bad)


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_unbatched_x_with_a_3d_state_is_a_value_error(name):
    state = (torch.zeros(1, 1, H), torch.zeros(1, 1, H)) if name == "LSTM" else torch.zeros(1, 1, H)
    with raises(ValueError, rf"^{name}: state must be 2-D \(num_layers \* num_directions, H\) for unbatched 2-D x, got shape \(1, 1, 6\)$"):
        LAYERS[name]()(torch.randn(T, I), state)


# -- lengths ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_lengths_2d_is_a_value_error(name):
    with raises(ValueError, rf"^{name}: lengths must be 1-D \(B,\), got shape \(4, 1\)$"):
        LAYERS[name]()(x_tbi(), lengths=torch.full((B, 1), 3))


@pytest.mark.parametrize("name", ALL)
def test_lengths_float_dtype_is_a_type_error(name):
    with raises(TypeError, rf"^{name}: lengths must have an integer dtype, got torch\.float32$"):
        LAYERS[name]()(x_tbi(), lengths=torch.tensor([3.0, 7.0, 1.0, 5.0]))


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_lengths_bool_dtype_is_a_type_error(name):
    with raises(TypeError, rf"^{name}: lengths must have an integer dtype, got torch\.bool$"):
        LAYERS[name]()(x_tbi(), lengths=torch.ones(B, dtype=torch.bool))


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_lengths_list_of_floats_is_a_type_error(name):
    with raises(TypeError, rf"^{name}: lengths must be integers, got \[3\.0, 7, 1, 5\]$"):
        LAYERS[name]()(x_tbi(), lengths=[3.0, 7, 1, 5])


@pytest.mark.parametrize("name", ALL)
def test_lengths_with_a_zero_is_a_value_error(name):
    with raises(ValueError, rf"^{name}: lengths must lie in \[1, T=7\], got values from 0 to 7$"):
        LAYERS[name]()(x_tbi(), lengths=torch.tensor([3, 7, 0, 5]))


@pytest.mark.parametrize("name", ALL)
def test_lengths_longer_than_t_is_a_value_error(name):
    with raises(ValueError, rf"^{name}: lengths must lie in \[1, T=7\], got values from 1 to 9$"):
        LAYERS[name]()(x_tbi(), lengths=torch.tensor([3, 9, 1, 5]))


def test_lengths_are_checked_against_t_in_the_batch_first_layout():
    x = torch.randn(B, T, I)  # (B, T, I): T=7, not B=4
    with raises(ValueError, r"^LSTM: lengths must lie in \[1, T=7\], got values from 1 to 8$"):
        rnnkit.LSTM(I, H, batch_first=True)(x, lengths=torch.tensor([3, 8, 1, 5]))


@pytest.mark.parametrize("name", ALL)
def test_lengths_of_wrong_batch_size_is_a_value_error(name):
    with raises(ValueError, rf"^{name}: lengths must have one entry per sequence \(B=4\), got 3$"):
        LAYERS[name]()(x_tbi(), lengths=torch.tensor([3, 7, 1]))


@pytest.mark.parametrize("name", ALL)
def test_lengths_with_a_packed_sequence_is_a_value_error(name):
    lengths = torch.tensor([3, 7, 1, 5])
    packed = pack_padded_sequence(x_tbi(), lengths, enforce_sorted=False)
    with raises(ValueError, rf"^{name}: lengths must be None when x is a PackedSequence .*, got a tensor$"):
        LAYERS[name]()(packed, lengths=lengths)


@pytest.mark.parametrize("name", ALL)
def test_lengths_with_unbatched_x_is_a_value_error(name):
    with raises(ValueError, rf"^{name}: lengths needs batched 3-D x, got 2-D x of shape \(7, 5\)$"):
        LAYERS[name]()(torch.randn(T, I), lengths=torch.tensor([3]))


# -- construction -------------------------------------------------------------------------


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5])
@pytest.mark.parametrize("name", ALL)
def test_dropout_outside_0_1_is_a_value_error(name, dropout):
    with raises(ValueError, rf"^{name}: dropout must be a number in \[0, 1\), got {re.escape(repr(dropout))}$"):
        build(name, num_layers=2, dropout=dropout)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_hidden_size_0_is_a_value_error(name):
    with raises(ValueError, rf"^{name}: hidden_size must be a positive int, got 0$"):
        build(name, hidden_size=0)


@pytest.mark.parametrize("name", ALL)
def test_input_size_0_is_a_value_error(name):
    with raises(ValueError, rf"^{name}: input_size must be a positive int.*, got 0$"):
        build(name, input_size=0)


@pytest.mark.parametrize("name", ALL)
def test_num_layers_0_is_a_value_error(name):
    with raises(ValueError, rf"^{name}: num_layers must be a positive int, got 0$"):
        build(name, num_layers=0)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_float_hidden_size_is_a_type_error(name):
    with raises(TypeError, rf"^{name}: hidden_size must be an int, got float 6\.0$"):
        build(name, hidden_size=6.0)


@pytest.mark.parametrize("proj_size", [H, H + 1])
def test_lstm_proj_size_not_below_hidden_size_is_a_value_error(proj_size):
    with raises(ValueError, rf"^LSTM: proj_size must be an int in \[0, hidden_size=6\), got {proj_size}$"):
        rnnkit.LSTM(I, H, proj_size=proj_size)


def test_rnn_nonlinearity_sigmoid_is_a_value_error():
    with raises(ValueError, r"^RNN: nonlinearity must be 'tanh' or 'relu', got 'sigmoid'$"):
        rnnkit.RNN(I, H, nonlinearity="sigmoid")


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_engine_cuda_is_a_value_error(name):
    with raises(ValueError, rf"^{name}: engine must be 'auto' or 'python', got 'cuda'$"):
        build(name, engine="cuda")


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_recurrent_init_xavier_is_a_value_error(name):
    with raises(ValueError, rf"^{name}: recurrent_init must be 'uniform' or 'orthogonal', got 'xavier'$"):
        build(name, recurrent_init="xavier")


def test_recurrent_cell_factory_not_callable_is_a_type_error():
    with raises(TypeError, r"^Recurrent: cell_factory must be callable, got str$"):
        rnnkit.Recurrent("gru", input_size=I)


def test_recurrent_cell_factory_returning_a_non_cell_is_a_type_error():
    with raises(TypeError, r"^Recurrent: cell_factory must return an nn\.Module with initial_state\(\), got Linear$"):
        rnnkit.Recurrent(lambda n: nn.Linear(n, H), input_size=I)


@pytest.mark.parametrize("rnnkit_cls, module", [(rnnkit.LSTM, nn.GRU(I, H)), (rnnkit.GRU, nn.LSTM(I, H)), (rnnkit.RNN, nn.GRU(I, H))])
def test_from_torch_of_the_wrong_class_is_a_type_error(rnnkit_cls, module):
    name = rnnkit_cls.__name__
    with raises(TypeError, rf"^{name}\.from_torch: module must be a torch\.nn\.{name}, got {type(module).__name__}$"):
        rnnkit_cls.from_torch(module)


# -- dtype, device, empty input, bool flags (issue 13) --------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_x_of_another_dtype_names_both_dtypes(name):
    with raises(TypeError, rf"^{name}: x must have dtype torch.float32 \(the layer's weights'\), got torch.float64"):
        LAYERS[name]()(x_tbi(torch.float64))


@pytest.mark.parametrize("name", ALL)
def test_x_on_another_device_names_both_devices(name):
    with raises(ValueError, rf"^{name}: x must be on cpu \(the layer's weights' device\), got meta"):
        LAYERS[name]()(torch.randn(T, B, I, device="meta"))


@pytest.mark.parametrize("name", ALL)
def test_autocast_input_of_a_lower_precision_is_accepted(name):
    layer = LAYERS[name]()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(x_tbi(torch.bfloat16))
    assert out.shape == (T, B, H)


@pytest.mark.parametrize("name", ALL)
def test_no_time_steps_is_one_clear_error(name):
    with raises(ValueError, rf"^{name}: x must have at least one time step, got T=0"):
        LAYERS[name]()(torch.randn(0, B, I))


@pytest.mark.parametrize("name", ALL)
def test_an_empty_batch_with_lengths_gives_an_empty_output(name):
    out, _ = LAYERS[name]()(torch.randn(T, 0, I), lengths=torch.zeros(0, dtype=torch.long))
    assert out.shape == (T, 0, H)


@pytest.mark.parametrize("flag", ["bias", "batch_first", "bidirectional"])
@pytest.mark.parametrize("name", list(CONSTRUCTORS))
def test_bool_arguments_must_be_bools(name, flag):
    with raises(TypeError, rf"^{name}: {flag} must be a bool, got str 'no'"):
        CONSTRUCTORS[name](I, H, **{flag: "no"})


@pytest.mark.parametrize("cls, flag", [(rnnkit.LSTM, "peephole"), (rnnkit.LSTM, "layer_norm"), (rnnkit.GRU, "reset_after"),
                                       (rnnkit.cells.LSTMCell, "peephole"), (rnnkit.cells.GRUCell, "layer_norm"),
                                       (rnnkit.cells.RNNCell, "bias")])
def test_variant_flags_must_be_bools(cls, flag):
    with raises(TypeError, rf"^{cls.__name__}: {flag} must be a bool, got int 1"):
        cls(I, H, **{flag: 1})


def test_recurrent_bool_arguments_must_be_bools():
    with raises(TypeError, r"^Recurrent: bidirectional must be a bool, got int 1"):
        rnnkit.Recurrent(lambda n: rnnkit.cells.GRUCell(n, H), input_size=I, bidirectional=1)


def test_stream_step_refuses_another_dtype():
    stream = rnnkit.Stream(rnnkit.LSTM(I, H))
    with raises(TypeError, r"^Stream.step: x_t must have dtype torch.float32 \(the layer's weights'\), got torch.int64"):
        stream.step(torch.ones(1, I, dtype=torch.long))


@pytest.mark.parametrize("name", ALL)
def test_a_state_returned_under_autocast_is_taken_back_under_autocast(name):
    """Stateful training under bf16 autocast feeds each call the state of the previous one."""
    layer = LAYERS[name]()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, state = layer(x_tbi())
        out, state = layer(x_tbi(), state)
    assert out.shape == (T, B, H)
