"""The "stream" backends against their declarations: every configuration a backend declares
streams to the reference result (the layer over the whole sequence on the reference loop), and
a config flag no backend declared is declined by all of them (then the cell's own step runs)."""
import itertools
from dataclasses import dataclass

import pytest
import torch

import rnnkit
import rnnkit.streaming  # noqa: F401  (registers the stream backends)
from rnnkit.cells import GRUConfig, LSTMCell, LSTMConfig, RNNConfig
from rnnkit.layers.backends import ANY, only, registered, select
from rnnkit.streaming import Stream

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

LAYERS = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}
ANY_VALUES = {"bias": (False, True), "proj_size": (0, 3)}  # what to try for a flag declared ANY
BACKENDS = registered("stream")


def _grid(backend) -> list[dict]:
    """Every combination of the values the backend declares (ANY: the values of ANY_VALUES)."""
    names, choices = [], []
    for name, allowed in backend.flags.items():
        if allowed is ANY:
            assert name in ANY_VALUES, f"add the values to try for flag {name!r} (declared ANY) to ANY_VALUES"
            allowed = ANY_VALUES[name]
        names.append(name)
        choices.append(tuple(allowed))
    return [dict(zip(names, values)) for values in itertools.product(*choices)]


def _parts(state):
    return state if isinstance(state, tuple) else (state,)


def test_every_cell_type_has_a_stream_backend():
    assert {b.cell for b in BACKENDS} == set(LAYERS)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: f"{b.cell}-{b.name}")
def test_declared_configurations_equal_the_reference(backend):
    like = torch.zeros(1, dtype=torch.float64)
    for k, flags in enumerate(_grid(backend)):
        torch.manual_seed(k)
        layer = LAYERS[backend.cell](4, 6, num_layers=2, dtype=torch.float64, **flags)
        for layer_index in range(2):
            config = layer.cell_config(layer_index)
            assert backend.supports(config), (flags, config)
            with only(backend.name):
                assert select("stream", config, like) is backend, flags
        xs = torch.randn(7, 3, 4, dtype=torch.float64)  # (T, B, I)
        state0 = tuple(0.5 * torch.randn_like(s) for s in _parts(layer.initial_state(3, dtype=torch.float64)))
        state0 = state0 if len(state0) > 1 else state0[0]
        with only(backend.name):
            stream = Stream(layer, batch_size=3, state=state0)
        assert "ReferenceStep" not in repr(stream), flags
        ys = torch.stack([stream.step(x_t) for x_t in xs])  # (T, B, H_out)
        with only():  # the layer on the reference loop over the cells' steps
            ref, ref_state = layer(xs, state0)
        torch.testing.assert_close(ys, ref, rtol=1e-10, atol=1e-10, msg=f"{backend.cell} {flags}")
        for s, r in zip(_parts(stream.state), _parts(ref_state), strict=True):
            torch.testing.assert_close(s, r, rtol=1e-10, atol=1e-10, msg=f"{backend.cell} {flags}")


@dataclass(frozen=True)
class MadeUpLSTM(LSTMConfig):
    made_up: bool = True  # a flag added after every backend was written


@dataclass(frozen=True)
class MadeUpGRU(GRUConfig):
    made_up: bool = True


@dataclass(frozen=True)
class MadeUpRNN(RNNConfig):
    made_up: bool = True


@pytest.mark.parametrize("config", [MadeUpLSTM(4, 6), MadeUpGRU(4, 6), MadeUpRNN(4, 6)], ids=lambda c: c.cell)
def test_an_undeclared_flag_is_declined_by_every_stream_backend(config):
    assert all(not backend.supports(config) for backend in BACKENDS)
    assert select("stream", config, torch.zeros(1)) is None
    plain = config.__class__.__mro__[1](4, 6)  # the same config without the flag is supported
    assert any(backend.supports(plain) for backend in BACKENDS)


def test_a_cell_with_an_undeclared_flag_streams_through_its_own_step():
    class MadeUpCell(LSTMCell):
        def backend_config(self):
            return MadeUpLSTM(self.input_size, self.hidden_size)

    torch.manual_seed(0)
    rec = rnnkit.Recurrent(lambda n: MadeUpCell(n, 5), input_size=4, num_layers=2).double()
    stream = Stream(rec, batch_size=2)
    assert repr(stream).endswith("layers=[ReferenceStep, ReferenceStep])")
    xs = torch.randn(6, 2, 4, dtype=torch.float64)
    ys = torch.stack([stream.step(x_t) for x_t in xs])
    torch.testing.assert_close(ys, rec(xs)[0], rtol=1e-10, atol=1e-10)
