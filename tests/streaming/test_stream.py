"""Streaming: every layer variant stepped one step at a time equals the layer on the whole
sequence; the language model's and the forecaster's streams and the sampler; memory."""
import gc

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.cells import GRUCell, LSTMCell
from rnnkit.models import Forecaster, ForecasterConfig, LanguageModel, LanguageModelConfig, sample
from rnnkit.streaming import Stream
from rnnkit.tasks.forecast import ForecastOptions, ForecastTask

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

VARIANTS = {
    "rnn_tanh": (rnnkit.RNN, {}),
    "rnn_relu": (rnnkit.RNN, {"nonlinearity": "relu"}),
    "lstm": (rnnkit.LSTM, {}),
    "lstm_nobias": (rnnkit.LSTM, {"bias": False}),
    "lstm_proj": (rnnkit.LSTM, {"proj_size": 3}),
    "lstm_peephole": (rnnkit.LSTM, {"peephole": True}),
    "lstm_peephole_proj": (rnnkit.LSTM, {"peephole": True, "proj_size": 2}),
    "lstm_layer_norm": (rnnkit.LSTM, {"layer_norm": True}),
    "lstm_ln_peephole_proj": (rnnkit.LSTM, {"layer_norm": True, "peephole": True, "proj_size": 4}),
    "gru": (rnnkit.GRU, {}),
    "gru_nobias": (rnnkit.GRU, {"bias": False}),
    "gru_reset_before": (rnnkit.GRU, {"reset_after": False}),
    "gru_layer_norm": (rnnkit.GRU, {"layer_norm": True}),
    "gru_ln_reset_before": (rnnkit.GRU, {"layer_norm": True, "reset_after": False}),
}
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def _parts(state):
    return state if isinstance(state, tuple) else (state,)


def _randomise_extras(layer):
    """Layer-norm gains start at 1 and shifts at 0: move them so a wrong use would show."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("layer_norm"):
                p.add_(0.3 * torch.randn_like(p))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_stream_equals_the_layer_step_by_step(variant, num_layers, dtype):
    torch.manual_seed(num_layers)
    cls, kwargs = VARIANTS[variant]
    layer = cls(4, 6, num_layers=num_layers, dtype=dtype, **kwargs)
    _randomise_extras(layer)
    xs = torch.randn(9, 3, 4, dtype=dtype)  # (T, B, I)
    stream = Stream(layer, batch_size=3)
    for t in range(xs.shape[0]):
        out, state = layer(xs[: t + 1])  # the whole prefix, on the layer's own path
        y_t = stream.step(xs[t])
        torch.testing.assert_close(y_t, out[-1], atol=TOL[dtype], rtol=TOL[dtype])
        for s, ref in zip(_parts(stream.state), _parts(state)):
            torch.testing.assert_close(s, ref, atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("variant", ["lstm", "lstm_proj", "gru_reset_before", "lstm_layer_norm", "rnn_relu"])
def test_stream_from_a_given_state_and_reset(variant):
    torch.manual_seed(1)
    cls, kwargs = VARIANTS[variant]
    layer = cls(3, 5, num_layers=2, batch_first=True, dtype=torch.float64, **kwargs)
    x = torch.randn(2, 6, 3, dtype=torch.float64)  # (B, T, I): batch_first does not matter to steps
    _, state0 = layer(torch.randn(2, 4, 3, dtype=torch.float64))  # some non-zero state
    ref, ref_state = layer(x, state0)
    stream = Stream(layer, batch_size=2, state=state0)
    ys = torch.stack([stream.step(x[:, t]) for t in range(6)], 1)
    torch.testing.assert_close(ys, ref)
    for s, r in zip(_parts(stream.state), _parts(ref_state)):
        torch.testing.assert_close(s, r)
    stream.reset()  # zeros again: the same as the layer without a state
    ys = torch.stack([stream.step(x[:, t]) for t in range(6)], 1)
    torch.testing.assert_close(ys, layer(x)[0])


def test_torch_nn_layers_and_the_generic_engine_stream_too():
    torch.manual_seed(2)
    xs = torch.randn(7, 2, 4)
    for layer in (torch.nn.LSTM(4, 6, num_layers=2), torch.nn.GRU(4, 6), torch.nn.RNN(4, 6, nonlinearity="relu")):
        stream = Stream(layer, batch_size=2)
        ys = torch.stack([stream.step(x) for x in xs])
        torch.testing.assert_close(ys, layer(xs)[0], atol=2e-6, rtol=1e-5)
    factories = (lambda n: LSTMCell(n, 5, peephole=True, layer_norm=True), lambda n: GRUCell(n, 5, reset_after=False))
    for factory in factories:
        rec = rnnkit.Recurrent(factory, input_size=4, num_layers=2)
        stream = Stream(rec, batch_size=2)
        ys = torch.stack([stream.step(x) for x in xs])
        out, state = rec(xs)
        torch.testing.assert_close(ys, out, atol=2e-6, rtol=1e-5)
        for s, r in zip(_parts(stream.state), _parts(state)):
            torch.testing.assert_close(s, r, atol=2e-6, rtol=1e-5)


def test_the_weights_are_read_at_construction():
    torch.manual_seed(3)
    layer = rnnkit.LSTM(3, 4, layer_norm=False)
    x = torch.randn(2, 3)
    before = Stream(layer, batch_size=2).step(x)
    stream = Stream(layer, batch_size=2)
    with torch.no_grad():
        layer.weight_hh_l0.mul_(2.0)
        layer.bias_ih_l0.add_(1.0)
    torch.testing.assert_close(stream.step(x), before)  # the old weights
    rebuilt = Stream(layer, batch_size=2).step(x)
    torch.testing.assert_close(rebuilt, layer(x.unsqueeze(0))[0][0], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(rebuilt, before)


def test_outputs_and_states_are_ordinary_new_tensors():
    layer = rnnkit.GRU(3, 4)
    stream = Stream(layer)
    y1 = stream.step(torch.randn(1, 3))
    y1_copy = y1.clone()
    stream.step(torch.randn(1, 3))
    torch.testing.assert_close(y1, y1_copy)  # not overwritten by the next step
    h = stream.state
    assert not y1.is_inference() and not h.is_inference() and not y1.requires_grad
    out, _ = layer(torch.randn(2, 1, 3), h)  # the state goes back into the layer, with autograd
    out.sum().backward()


def test_the_public_buffer_steps_like_step():
    """input / advance / output: what the models' streams use to step without copies."""
    torch.manual_seed(7)
    layer = rnnkit.LSTM(3, 5, num_layers=2, proj_size=2)
    by_step, by_buffer = Stream(layer, batch_size=2), Stream(layer, batch_size=2)
    assert by_buffer.input.shape == (2, 3) and by_buffer.output.shape == (2, 2)
    for x_t in torch.randn(4, 2, 3):
        y_t = by_step.step(x_t)
        with torch.inference_mode():
            by_buffer.input.copy_(x_t)
            by_buffer.advance()
            out = by_buffer.output.clone()
        torch.testing.assert_close(out, y_t, rtol=0, atol=0)


def test_bidirectional_and_bad_input_are_refused():
    with pytest.raises(ValueError, match="Stream: layer must be unidirectional.*got bidirectional=True"):
        Stream(rnnkit.LSTM(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match="unidirectional"):
        Stream(rnnkit.Recurrent(lambda n: GRUCell(n, 4), input_size=3, bidirectional=True))
    with pytest.raises(TypeError, match="Stream: layer must be an rnnkit layer.*got Linear"):
        Stream(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        Stream(rnnkit.GRU(3, 4), batch_size=0)
    stream = Stream(rnnkit.LSTM(3, 4, num_layers=2), batch_size=2)
    with pytest.raises(ValueError, match=r"x_t must have shape \(2, 3\) \(batch_size, input_size\), got \(3,\)"):
        stream.step(torch.randn(3))
    with pytest.raises(TypeError, match="x_t must be a Tensor"):
        stream.step([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match=r"state h must have shape \(2, 2, 4\), got \(1, 2, 4\)"):
        stream.reset((torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)))
    with pytest.raises(TypeError, match=r"state must be \(h, c\)"):
        stream.reset(torch.zeros(2, 2, 4))


def _live_tensors() -> int:
    gc.collect()
    return sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())  # type(): no attribute lookups


@pytest.mark.parametrize("variant", ["lstm_peephole_proj", "gru", "lstm_layer_norm"])
def test_memory_does_not_grow_with_steps(variant):
    cls, kwargs = VARIANTS[variant]
    stream = Stream(cls(3, 8, num_layers=2, **kwargs))
    x = torch.randn(1, 3)
    for _ in range(10):
        stream.step(x)
    before = _live_tensors()
    for _ in range(2000):
        y = stream.step(x)
    del y
    assert _live_tensors() <= before
    assert torch.isfinite(stream.state[0]).all()


# -- the language model ----------------------------------------------------------------------

def _lm(cell="lstm", dtype=torch.float32, num_layers=2):
    torch.manual_seed(4)
    model = LanguageModel(LanguageModelConfig(vocab_size=13, embedding_dim=5, hidden_size=16,
                                              num_layers=num_layers, cell=cell))
    return model.to(dtype).eval()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "ln_gru", "peephole_lstm"])
def test_language_model_stream_equals_the_model(cell):
    model = _lm(cell, torch.float64)
    ids = torch.randint(0, 13, (3, 10))
    ref, _ = model(ids)  # (B, T, V)
    stream = model.stream(batch_size=3)
    logits = [stream.read(ids[:, :4])] + [stream.step(ids[:, t]) for t in range(4, 10)]
    torch.testing.assert_close(torch.stack(logits, 1), ref[:, 3:])
    with pytest.raises(ValueError, match=r"ids must be a \(3,\) tensor of ids, got .* shape \(3, 1\)"):
        stream.step(ids[:, :1])
    with pytest.raises(ValueError, match=r"ids must be a \(batch_size=3, T >= 1\) tensor"):
        stream.read(ids[:2])


def _old_sample(model, prime, length, temperature=1.0, top_k=0, generator=None):
    """The per-step path ``sample`` had before streaming: the whole model called once per id."""
    with torch.no_grad():
        logits, state = model(torch.tensor([prime]))
        last = logits[0, -1]
        for _ in range(length):
            scores = last / temperature
            if top_k:
                kth = torch.topk(scores, min(top_k, scores.numel())).values[-1]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            nxt = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=generator))
            yield nxt
            logits, state = model(torch.tensor([[nxt]]), state)
            last = logits[0, -1]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("top_k", [0, 3])
def test_sampling_gives_the_old_per_step_paths_text(dtype, top_k):
    model = _lm("lstm", dtype)
    with torch.no_grad():  # sharper distributions than at init, so the text is not just noise
        model.head.weight.mul_(8.0)
    prime = [1, 2, 3, 4]
    new = list(sample(model, prime, 300, 0.9, top_k, torch.Generator().manual_seed(5)))
    old = list(_old_sample(model, prime, 300, 0.9, top_k, torch.Generator().manual_seed(5)))
    assert new == old
    assert len(set(new)) > 3


def test_language_model_stream_memory_is_flat():
    stream = _lm("lstm").stream()
    ids = torch.tensor([3])
    stream.step(ids)
    before = _live_tensors()
    for _ in range(2000):
        logits = stream.step(ids)
    del logits
    assert _live_tensors() <= before


# -- live forecasting ------------------------------------------------------------------------

@pytest.mark.parametrize("cell, highway", [("lstm", 0), ("cho_gru", 3), ("ln_lstm", 2)])
def test_forecaster_stream_equals_the_model_on_every_prefix(cell, highway):
    torch.manual_seed(8)
    model = Forecaster(ForecasterConfig(horizon=3, input_size=2, cell=cell, hidden_size=6, num_layers=2,
                                        highway=highway)).double()
    with torch.no_grad():
        if model.highway is not None:
            model.highway.weight.normal_()  # starts at zero: make it count
    x = torch.randn(2, 8, 2, dtype=torch.float64)  # (B, T, I)
    stream = model.stream(batch_size=2)
    for t in range(8):
        y_t = stream.step(x[:, t])
        if t + 1 >= highway:
            torch.testing.assert_close(y_t, model(x[:, : t + 1]))
    stream.reset()
    torch.testing.assert_close([stream.step(x[:, t]) for t in range(8)][-1], model(x))
    with pytest.raises(ValueError, match=r"x_t must be a tensor of shape \(2, 2\) \(batch_size, input_size\)"):
        stream.step(x[0, 0])


def _forecast_task(tmp_path, **options):
    t = np.arange(150)
    values = 50 + 0.1 * t + 5 * np.sin(2 * np.pi * t / 6) + np.random.default_rng(0).normal(0, 0.5, 150)
    path = tmp_path / "series.csv"
    path.write_text("value\n" + "\n".join(repr(float(v)) for v in values) + "\n")
    # live forecasting needs normalize="global" (the default "auto" may choose "window")
    defaults = dict(data=str(path), column="value", season=6, window=10, horizon=4, arima="off", hidden_size=8,
                    normalize="global")
    task = ForecastTask(ForecastOptions(**{**defaults, **options}))
    task.prepare(seed=0)
    torch.manual_seed(9)
    return task, task.build_model(), values


@pytest.mark.parametrize("options", [
    {"difference": "none"}, {"difference": "first", "highway": 3}, {"difference": "seasonal", "log": True},
])
def test_live_forecast_equals_predict_once_a_window_is_in(tmp_path, options):
    task, model, values = _forecast_task(tmp_path, **options)
    lag = task.meta["lag"]
    live = task.stream(model)
    start = 37  # anywhere in the series
    need = task.options.window + lag
    outputs = [live.update(v) for v in values[start : start + need]]
    assert outputs[:lag] == [None] * lag and all(o is not None for o in outputs[lag:])
    with torch.no_grad():
        expected = task._forecast(model, values[start : start + need], task.options.horizon)  # the windowed path
    np.testing.assert_allclose(outputs[-1], expected, rtol=1e-5)
    later = live.update(values[start + need])  # one more: still a forecast, from the longer history
    assert later.shape == (4,) and np.isfinite(later).all()
    live.reset()
    again = [live.update(v) for v in values[start : start + need]][-1]
    np.testing.assert_allclose(again, outputs[-1], rtol=1e-6)


def test_live_forecast_refuses_window_normalisation_and_bad_values(tmp_path):
    task, model, _ = _forecast_task(tmp_path, normalize="window")
    with pytest.raises(ValueError, match="live forecasting needs normalize='global'.*got normalize='window'"):
        task.stream(model)
    task, model, _ = _forecast_task(tmp_path, log=True)
    live = task.stream(model)
    with pytest.raises(ValueError, match="update takes one finite number.*got nan"):
        live.update(float("nan"))
    with pytest.raises(ValueError, match="--log needs positive values, got -1.0"):
        live.update(-1.0)
