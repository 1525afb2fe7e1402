"""The backend registry: positive declarations, dispatch, and every backend pinned to the reference.

- Every "sequence" and "layer" backend is run over EVERY configuration it declares (the grid of
  all flag values below, filtered by ``supports``) against the reference loop over the cells'
  own step (``backends.only()``): outputs, final states and gradients, in float64.
- A made-up flag (a config field no backend declares, defined only here) is declined by every
  registered backend of every kind, and the engine then runs the reference step, which reads
  the flag: the results follow the flag rather than silently ignoring it.
"""
import dataclasses
import itertools

import pytest
import torch

import rnnkit
import rnnkit.export  # noqa: F401  (registers the "onnx" backends)
import rnnkit.streaming  # noqa: F401  (registers the "stream" backends)
from rnnkit.cells import (KINDS, BoundCell, GRUConfig, IndRNNConfig, LSTMConfig, MinGRUConfig, MinLSTMConfig,
                          MLSTMConfig, RNNConfig, SLSTMConfig, SRUConfig)
from rnnkit.cells.lstm import LSTM_KIND, lstm_step
from rnnkit.layers import backends, run_direction
from rnnkit.layers.boundary import where_state

D64 = torch.float64
T, B, I, H = 5, 3, 4, 6
# The grids run on the CPU, and on CUDA where there is a GPU (tests/test_cuda.py has more there).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
LENGTHS = torch.tensor([5, 2, 4])

# Every value each config field is tested at. A new config field must be added here, or the
# grid test below fails: its backends would otherwise go untested at the new flag's values.
FLAG_VALUES = {
    "bias": (True, False),
    "proj_size": (0, 2),
    "peephole": (False, True),
    "layer_norm": (False, True),
    "reset_after": (True, False),
    "nonlinearity": ("tanh", "relu"),
    "num_heads": (1, 2),
}
CONFIGS = {"lstm": LSTMConfig, "gru": GRUConfig, "rnn": RNNConfig, "mingru": MinGRUConfig,
           "minlstm": MinLSTMConfig, "mlstm": MLSTMConfig, "indrnn": IndRNNConfig, "sru": SRUConfig,
           "slstm": SLSTMConfig}
LAYERS = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN, "mingru": rnnkit.MinGRU,
          "minlstm": rnnkit.MinLSTM, "mlstm": rnnkit.MLSTM, "indrnn": rnnkit.IndRNN, "sru": rnnkit.SRU,
          "slstm": rnnkit.SLSTM}


def _grid(cell: str, input_size=I):
    """Every configuration of the cell type over FLAG_VALUES."""
    config_cls = CONFIGS[cell]
    names = [f.name for f in dataclasses.fields(config_cls) if f.name not in ("input_size", "hidden_size")]
    for values in itertools.product(*(FLAG_VALUES[n] for n in names)):
        yield config_cls(input_size, H, **dict(zip(names, values)))


def _claimed(kind: str):
    """(backend name, config) for every registered backend of ``kind`` and config it supports."""
    for backend in backends.registered(kind):
        for config in _grid(backend.cell):
            if backend.supports(config):
                yield pytest.param(backend.name, config, id=f"{backend.name}-{config}")


def _randomise_(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) * 1.6 - 0.8)
    return module


def _layer_for(config, **kwargs):
    flags = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("input_size", "hidden_size")}
    torch.manual_seed(0)
    layer = LAYERS[config.cell](config.input_size, config.hidden_size, dtype=D64, **flags, **kwargs)
    return _randomise_(layer)


def _results_and_grads(fn, leaves):
    out, state = fn()
    parts = [out] + (list(state) if isinstance(state, tuple) else [state])
    gen = torch.Generator().manual_seed(2)
    loss = sum((p * torch.randn(p.shape, generator=gen, dtype=D64)).sum() for p in parts)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [p.detach() for p in parts] + [g for g in grads]


def _assert_close(got, expected):
    assert len(got) == len(expected)
    for a, e in zip(got, expected):
        assert (a is None) == (e is None)
        if a is not None:
            torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


def test_the_grid_covers_every_config_field():
    for cell, config_cls in CONFIGS.items():
        fields = {f.name for f in dataclasses.fields(config_cls)} - {"input_size", "hidden_size"}
        assert fields <= set(FLAG_VALUES), f"add the new {cell} flag(s) {fields - set(FLAG_VALUES)} to FLAG_VALUES"
    assert set(KINDS) == set(CONFIGS)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, config", list(_claimed("sequence")))
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_every_sequence_backend_equals_the_reference_on_every_claimed_config(name, config, lengths, device):
    layer = _layer_for(config, bidirectional=True, engine="python").to(device)
    x = torch.randn(T, B, I, dtype=D64, generator=torch.Generator().manual_seed(3)).to(device).requires_grad_()
    leaves = [x] + list(layer.parameters())
    cell = layer.cell(0)
    assert backends.select("sequence", cell.config, x) is not None  # some backend takes it
    lengths = None if lengths is None else lengths.to(device)

    def run():
        return layer(x, lengths=lengths)

    with backends.only(name):
        chosen = backends.select("sequence", cell.config, x)
        if chosen is None:
            pytest.skip(f"{name} is not available for {device} tensors here (e.g. no C++ compiler, no CUDA)")
        assert chosen.name == name
        got = _results_and_grads(run, leaves)
    with backends.only():
        expected = _results_and_grads(run, leaves)
    _assert_close(got, expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, config", list(_claimed("layer")))
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_every_layer_backend_equals_the_reference_on_every_claimed_config(name, config, lengths, device):
    layer = _layer_for(config, num_layers=2, bidirectional=True).to(device)
    x = torch.randn(T, B, I, dtype=D64, generator=torch.Generator().manual_seed(3)).to(device).requires_grad_()
    lengths = None if lengths is None else lengths.to(device)
    leaves = [x] + list(layer.parameters())
    with backends.only(name):
        assert backends.select("layer", config, x).name == name
        got = _results_and_grads(lambda: layer(x, lengths=lengths), leaves)
    with backends.only():
        expected = _results_and_grads(lambda: layer(x, lengths=lengths), leaves)
    _assert_close(got, expected)


def test_every_backend_declares_every_field_of_its_config():
    for backend in backends.registered():
        fields = {f.name for f in dataclasses.fields(CONFIGS[backend.cell])} - {"input_size", "hidden_size"}
        assert set(backend.flags) == fields, f"{backend}: declare exactly the config's fields"


# -- a made-up flag -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ForgetShiftConfig(LSTMConfig):
    """LSTMConfig with a flag that exists only in this test: shift the forget gate's pre-activation."""

    forget_shift: float = 0.0


def _forget_shift_step(config, w, gx_t, state_tm1, gates=None):
    """The reference step with the made-up flag: forget pre-activation + forget_shift."""
    H_ = state_tm1[1].shape[-1]
    shift = torch.zeros_like(gx_t)
    shift[:, H_ : 2 * H_] = config.forget_shift
    return lstm_step(w, gx_t + shift, state_tm1, gates)


FORGET_SHIFT_KIND = LSTM_KIND._replace(config=ForgetShiftConfig, step=_forget_shift_step)


@pytest.mark.parametrize("peephole", [False, True])
def test_every_backend_declines_a_made_up_flag_and_the_reference_runs_it(peephole):
    plain = LSTMConfig(I, H, peephole=peephole)
    made_up = ForgetShiftConfig(I, H, peephole=peephole, forget_shift=3.0)
    x = torch.randn(T, B, I, dtype=D64, generator=torch.Generator().manual_seed(3))
    # 1. Every backend of every kind that takes the plain config declines the made-up one.
    takers = [b for b in backends.registered() if b.supports(plain)]
    assert {b.kind for b in takers} >= {"sequence", "stream", "onnx"} | ({"layer"} if not peephole else set())
    for backend in backends.registered():
        assert not backend.supports(made_up), f"{backend.kind} backend {backend.name!r} accepts an undeclared flag"
        assert backends.select(backend.kind, made_up, x) is None
    # 2. The engine runs the cell through the reference step, which reads the flag.
    layer = _randomise_(rnnkit.LSTM(I, H, peephole=peephole, dtype=D64))
    weights = layer.cell(0).weights()
    cell = BoundCell(FORGET_SHIFT_KIND, made_up, weights)
    state0 = (torch.zeros(B, H, dtype=D64), torch.zeros(B, H, dtype=D64))
    mask = torch.arange(T).unsqueeze(1) < LENGTHS  # (T, B)
    out, (h, c) = run_direction(cell, x, state0, mask)
    # a hand-written loop with the shift, the oracle
    gx = cell.project_input(x)
    state, outs = state0, []
    for t in range(T):
        shifted = gx[t].clone()
        shifted[:, H : 2 * H] += 3.0
        h_t, new = lstm_step(weights, shifted, state)
        keep = mask[t].unsqueeze(1)
        state = tuple(torch.where(keep, n, o) for n, o in zip(new, state))
        outs.append(h_t * keep)
    torch.testing.assert_close(out, torch.stack(outs), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close((h, c), state, rtol=1e-12, atol=1e-12)
    # and the flag matters: without it (what a backend ignoring it would compute) the result differs
    plain_out, _ = run_direction(layer.cell(0), x, state0, mask)
    assert (plain_out - out).abs().max() > 1e-3


# -- the registry itself --------------------------------------------------------------------------

def test_register_refuses_a_duplicate_and_an_unknown_kind():
    existing = backends.registered("sequence", "lstm")[0]
    with pytest.raises(ValueError, match="registered already"):
        backends.register(existing)
    with pytest.raises(ValueError, match="kind must be one of"):
        backends.register(dataclasses.replace(existing, kind="gpu"))


def test_select_prefers_the_first_registered_and_only_restricts():
    config = LSTMConfig(I, H, layer_norm=True)
    x = torch.zeros(1, dtype=D64)
    first = backends.select("sequence", config, x)
    assert first is next(b for b in backends.registered("sequence", "lstm") if b.available(x))
    with backends.only("bptt"):
        assert backends.select("sequence", config, x).name == "bptt"
    with backends.only():
        assert backends.select("sequence", config, x) is None
    assert backends.select("sequence", config, x) is first


def test_a_projection_is_declared_by_no_sequence_backend():
    assert backends.select("sequence", LSTMConfig(I, H, proj_size=2), torch.zeros(1)) is None
    assert backends.select("layer", LSTMConfig(I, H, proj_size=2), torch.zeros(1)).name == "torch"


def test_describe_lists_every_backend():
    text = backends.describe()
    assert len(text.splitlines()) == len(backends.registered())
    assert "bptt" in text and "torch" in text


# -- a made-up flag on each cell kind without a torch.nn layer ---------------------------------------

NEW_KINDS = [name for name in KINDS if name not in ("rnn", "lstm", "gru")]


@pytest.mark.parametrize("name", NEW_KINDS)
def test_every_backend_declines_a_made_up_flag_of_a_new_cell_and_the_reference_runs_it(name):
    kind = KINDS[name]
    made_up_config = dataclasses.make_dataclass(f"MadeUp{kind.config.__name__}", [("input_shift", float, 0.0)],
                                                bases=(kind.config,), frozen=True)
    plain, made_up = kind.config(I, H), made_up_config(I, H, input_shift=0.5)
    x = torch.randn(T, B, I, dtype=D64, generator=torch.Generator().manual_seed(3))
    assert any(b.supports(plain) for b in backends.registered()) or name in ("indrnn", "slstm")
    for backend in backends.registered():
        assert not backend.supports(made_up), f"{backend.kind} backend {backend.name!r} accepts an undeclared flag"
        assert backends.select(backend.kind, made_up, x) is None

    def shifted_step(config, w, xp_t, state, gates=None):  # the made-up flag: shift every pre-activation
        return kind.step(config, w, xp_t + config.input_shift, state, gates)

    layer = _randomise_(LAYERS[name](I, H, dtype=D64))
    weights = layer.cell(0).weights()
    cell = BoundCell(kind._replace(config=made_up_config, step=shifted_step), made_up, weights)
    state0 = layer.cell(0).kind.state_shapes(plain)
    state0 = tuple(torch.zeros((B,) + tuple(s), dtype=D64) for s in state0)
    state0 = state0[0] if kind.state_names is None else state0
    mask = torch.arange(T).unsqueeze(1) < LENGTHS
    out, _ = run_direction(cell, x, state0, mask)
    xp = layer.cell(0).project_input(x)
    state, outs = state0, []
    for t in range(T):  # the oracle: the plain reference step on shifted pre-activations
        h_t, new = kind.step(plain, weights, xp[t] + 0.5, state)
        keep = mask[t].unsqueeze(1)
        state = where_state(keep, new, state)
        outs.append(h_t * keep)
    torch.testing.assert_close(out, torch.stack(outs), rtol=1e-12, atol=1e-12)
    plain_out, _ = run_direction(layer.cell(0), x, state0, mask)  # what ignoring the flag would give
    assert (plain_out - out).abs().max() > 1e-3
