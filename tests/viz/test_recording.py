"""The recorder keeps exactly what the cells' reference steps write into ``gates=``, for the
variants too (layer norm, peepholes, Cho et al.'s GRU): it has no equations of its own."""
import pytest
import torch

import rnnkit
from rnnkit.cells.gru import gru_project, gru_step
from rnnkit.cells.lstm import lstm_project, lstm_step
from rnnkit.viz.recording import GATES, record

D64 = torch.float64


def _randomise_extras(layer):
    """Layer-norm gains start at 1 and shifts at 0: move them so a wrong use would show."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("layer_norm"):
                p.add_(0.3 * torch.randn_like(p))


def _reference_gates(kind, w, x, state, reset_after=True):
    """Every step's ``gates`` dict from the reference step itself: x (T, B, I) -> name -> (T, B, H)."""
    rows = []
    if kind == "lstm":
        gx = lstm_project(w, x)  # (T, B, 4H)
        for t in range(x.shape[0]):
            gates = {}
            _, state = lstm_step(w, gx[t], state, gates)
            rows.append(gates)
    else:
        gx = gru_project(w, x, reset_after)  # (T, B, 3H)
        for t in range(x.shape[0]):
            gates = {}
            _, state = gru_step(w, gx[t], state, reset_after, gates)
            rows.append(gates)
    return {name: torch.stack([row[name] for row in rows]) for name in GATES[kind]}


@pytest.mark.parametrize("cls, variant", [
    (rnnkit.LSTM, {"layer_norm": True}),
    (rnnkit.LSTM, {"peephole": True}),
    (rnnkit.LSTM, {"peephole": True, "layer_norm": True, "proj_size": 2}),
    (rnnkit.GRU, {"layer_norm": True}),
    (rnnkit.GRU, {"layer_norm": True, "reset_after": False}),
], ids=["lstm-ln", "lstm-peephole", "lstm-ln-peephole-proj", "gru-ln", "gru-ln-reset-before"])
def test_recorded_gates_are_the_reference_steps_gates(cls, variant):
    torch.manual_seed(0)
    layer = cls(3, 4, num_layers=2, dtype=D64, **variant).eval()
    _randomise_extras(layer)
    kind = layer.kind.name
    x = torch.randn(5, 2, 3, dtype=D64)  # (T, B, I)
    state0 = layer.initial_state(2, dtype=D64)
    state0 = tuple(torch.randn_like(s) for s in state0) if isinstance(state0, tuple) else torch.randn_like(state0)
    with record(layer) as rec:
        y, _ = layer(x, state0)
    assert [(r.kind, r.layer) for r in rec.layers] == [(kind, 0), (kind, 1)]
    inputs = x
    for k, r in enumerate(rec.layers):
        w = layer.cell(k).weights()
        state = tuple(s[k] for s in state0) if isinstance(state0, tuple) else state0[k]
        with torch.no_grad():
            expected = _reference_gates(kind, w, inputs, state, getattr(layer, "reset_after", True))
        assert tuple(r.keys()) == GATES[kind]
        for name in GATES[kind]:
            torch.testing.assert_close(r[name], expected[name], rtol=0, atol=1e-12, msg=f"layer {k} {name}")
        inputs = r["hidden"]  # the next layer reads this layer's output
    torch.testing.assert_close(rec.layers[-1]["hidden"], y, rtol=0, atol=1e-10)
