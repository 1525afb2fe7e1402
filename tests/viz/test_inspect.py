"""The gate recorder against the cells' equations written out by hand, recording off leaving the
model untouched, and the report (HTML, PNG, command) from a small charlm trained here."""
import json
import random
import re

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.cells import LSTMCell
from rnnkit.cli import main
from rnnkit.tasks.charlm import CharLMOptions
from rnnkit.runs import train
from rnnkit.training.trainer import TrainConfig
from rnnkit.viz.inspect import (FEATURES, GATES, inspect_text, record, text_features, unit_correlations, write_html,
                                write_pngs)

sig, tanh = torch.sigmoid, torch.tanh


def _w(layer, name, k=0, reverse=False):
    return getattr(layer, f"{name}_l{k}{'_reverse' * reverse}")


def manual_lstm(layer, x, h, c, steps, k=0, reverse=False):
    """The LSTM equations of the course notes, step by step, from torch.nn-named weights."""
    W_ih, W_hh = _w(layer, "weight_ih", k, reverse), _w(layer, "weight_hh", k, reverse)
    b = _w(layer, "bias_ih", k, reverse) + _w(layer, "bias_hh", k, reverse)
    peep = getattr(layer, f"weight_peephole_l{k}{'_reverse' * reverse}", None)
    rows = []
    for t in range(steps):
        zi, zf, zg, zo = (x[t] @ W_ih.T + h @ W_hh.T + b).chunk(4, -1)
        if peep is not None:
            p_i, p_f, p_o = peep.chunk(3)
            zi, zf = zi + p_i * c, zf + p_f * c
        i, f, g = sig(zi), sig(zf), tanh(zg)  # learn, forget, new memory
        c = f * c + i * g  # remember
        o = sig(zo + (p_o * c if peep is not None else 0))  # use
        h = o * tanh(c)
        rows.append({"input": i, "forget": f, "candidate": g, "output": o, "cell": c, "hidden": h})
    return rows


def manual_gru(layer, x, h, steps, reset_after):
    W_ih, W_hh, b_ih, b_hh = (_w(layer, n) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    W_hr, W_hz, W_hn = W_hh.chunk(3)
    b_hr, b_hz, b_hn = b_hh.chunk(3)
    rows = []
    for t in range(steps):
        x_r, x_z, x_n = (x[t] @ W_ih.T + b_ih).chunk(3, -1)
        r = sig(x_r + h @ W_hr.T + b_hr)
        z = sig(x_z + h @ W_hz.T + b_hz)
        if reset_after:
            n = tanh(x_n + r * (h @ W_hn.T + b_hn))
        else:
            n = tanh(x_n + (r * h) @ W_hn.T + b_hn)
        h = (1 - z) * n + z * h
        rows.append({"reset": r, "update": z, "candidate": n, "hidden": h})
    return rows


def _assert_rows(rec, rows, b=slice(None)):
    for t, row in enumerate(rows):
        for name, v in row.items():
            torch.testing.assert_close(rec[name][t, b], v, rtol=0, atol=1e-10, msg=f"{name} at t={t}")


@pytest.mark.parametrize("variant", [{}, {"peephole": True}])
def test_lstm_gates_equal_the_equations_step_by_step(variant):
    torch.manual_seed(0)
    lstm = rnnkit.LSTM(3, 5, batch_first=True, dtype=torch.float64, **variant).eval()
    x = torch.randn(2, 6, 3, dtype=torch.float64)  # (B, T, I)
    h0, c0 = torch.randn(1, 2, 5, dtype=torch.float64), torch.randn(1, 2, 5, dtype=torch.float64)
    with record(lstm) as rec:
        y, _ = lstm(x, (h0, c0))
    (r,) = rec.layers
    assert (r.kind, r.layer, r.direction) == ("lstm", 0, 0) and tuple(r.keys()) == GATES["lstm"]
    _assert_rows(r, manual_lstm(lstm, x.transpose(0, 1), h0[0], c0[0], steps=4))
    torch.testing.assert_close(r["hidden"].transpose(0, 1), y, rtol=0, atol=1e-10)


def test_layer_norm_lstm_record_follows_the_cell():
    """No hand-written layer norm here: a stack of LSTMCell steps with the same weights is the oracle."""
    torch.manual_seed(1)
    lstm = rnnkit.LSTM(3, 4, layer_norm=True, dtype=torch.float64).eval()
    cell = LSTMCell(3, 4, layer_norm=True).double()
    cell.load_state_dict({k[: -len("_l0")]: v for k, v in lstm.state_dict().items()})
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with record(lstm) as rec:
        lstm(x)
    state = cell.initial_state(2)
    for t in range(5):
        h, state = cell(x[t], state)
        torch.testing.assert_close(rec.layers[0]["hidden"][t], h, rtol=0, atol=1e-10)
        torch.testing.assert_close(rec.layers[0]["cell"][t], state[1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_gates_equal_the_equations(reset_after):
    torch.manual_seed(2)
    gru = rnnkit.GRU(3, 4, reset_after=reset_after, dtype=torch.float64).eval()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    h0 = torch.randn(1, 2, 4, dtype=torch.float64)
    with record(gru) as rec:
        gru(x, h0)
    assert tuple(rec.layers[0].keys()) == GATES["gru"]
    _assert_rows(rec.layers[0], manual_gru(gru, x, h0[0], steps=3, reset_after=reset_after))


def test_rnn_state_equals_the_equation():
    torch.manual_seed(3)
    rnn = rnnkit.RNN(3, 4, nonlinearity="relu", dtype=torch.float64).eval()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    with record(rnn) as rec:
        rnn(x)
    s = torch.zeros(2, 4, dtype=torch.float64)
    for t in range(4):
        s = torch.relu(x[t] @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + s @ rnn.weight_hh_l0.T + rnn.bias_hh_l0)
        torch.testing.assert_close(rec.layers[0]["hidden"][t], s, rtol=0, atol=1e-12)


def test_deep_bidirectional_with_lengths_in_a_model():
    """Two layers, both directions, lengths: the reverse direction starts at each sequence's own end."""
    torch.manual_seed(4)
    model = torch.nn.Sequential()
    model.lstm = rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    model.eval()
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    with record(model) as rec:
        y, _ = model.lstm(x, lengths=lengths)
    assert [(r.module, r.layer, r.direction) for r in rec.layers] == [("lstm", 0, 0), ("lstm", 0, 1), ("lstm", 1, 0), ("lstm", 1, 1)]
    top = torch.cat([rec.layers[2]["hidden"], rec.layers[3]["hidden"]], -1)  # (T, B, 2H)
    torch.testing.assert_close(top, y, rtol=0, atol=1e-10)
    # reverse direction of layer 0, sequence 1 (length 2): its first step reads x[1]
    rev = rec.layers[1]
    zero = torch.zeros(1, 4, dtype=torch.float64)
    (row,) = manual_lstm(model.lstm, x[1:2, 1:2], zero, zero, steps=1, reverse=True)
    for name, v in row.items():
        torch.testing.assert_close(rev[name][1, 1:2], v, rtol=0, atol=1e-10)
    assert rev["forget"][2:, 1].abs().max() == 0 and rec.layers[0]["cell"][4:, 2].abs().max() == 0  # past the end


def test_recording_is_off_outside_with_and_changes_no_output():
    torch.manual_seed(5)
    model = rnnkit.GRU(3, 8, num_layers=2).eval()
    x = torch.randn(7, 2, 3)
    before, _ = model(x)
    with record(model) as rec:
        inside, _ = model(x)
        assert len(model._forward_hooks) == 1
    after, _ = model(x)
    assert torch.equal(before, inside) and torch.equal(before, after)
    assert len(model._forward_hooks) == 0 and len(rec.layers) == 2
    with pytest.raises(RuntimeError, match="boom"):
        with record(model):
            raise RuntimeError("boom")
    assert len(model._forward_hooks) == 0  # removed after an error too
    model(x)
    assert len(rec.layers) == 2  # nothing recorded after the with


def test_calls_are_counted_and_bad_arguments_are_clear_errors():
    lstm = rnnkit.LSTM(2, 3, num_layers=2, dropout=0.5)
    with pytest.raises(ValueError, match="call model.eval"):
        with record(lstm):
            lstm(torch.randn(4, 1, 2))
    lstm.eval()
    with record(lstm) as rec:
        lstm(torch.randn(4, 1, 2))
        lstm(torch.randn(3, 1, 2))
    assert [r.call for r in rec.layers] == [0, 0, 1, 1]
    assert rec.last_call()[0]["hidden"].shape == (3, 1, 3)
    with pytest.raises(KeyError, match="not 'reset'"):
        rec.layers[0]["reset"]
    with pytest.raises(ValueError, match="must contain an rnnkit.LSTM, GRU or RNN layer"):
        with record(torch.nn.LSTM(2, 3)):
            pass
    with pytest.raises(TypeError, match="must be a torch.nn.Module, got str"):
        with record("model"):
            pass


def test_features_and_correlations():
    feats = text_features('ab\n"c(d)"e')
    assert feats["position in line"].tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5, 6]
    assert feats["inside quotes"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 0]
    assert feats["inside brackets"].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    assert feats["inside a word"].tolist() == [1, 1, 0, 0, 1, 0, 1, 0, 0, 1]
    feats = text_features("KING LEAR:\nI'll go\n")
    assert feats["speaker's name"].tolist() == [1] * 10 + [0] * 9
    assert feats["inside a word"].tolist() == [1] * 4 + [0] + [1] * 4 + [0, 0] + [1, 1, 1, 1, 0, 1, 1, 0]
    torch.manual_seed(6)
    values, feature = torch.randn(50, 4), torch.randn(50)
    values[:, 3] = 1.0  # constant: no correlation
    expected = [np.corrcoef(values[:, u].numpy(), feature.numpy())[0, 1] for u in range(3)]
    r = unit_correlations(values, feature)
    np.testing.assert_allclose(r[:3].numpy(), expected, atol=1e-6)
    assert r[3] == 0


# -- the report, from a small charlm trained here ------------------------------------------------

TEXT = 'my lord (the king)\n"sweet night" my queen\nlove the king'


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inspect")
    rng = random.Random(0)
    words = ["the", "king", "queen", "love", "my", "lord", "sweet", "night"]
    lines = []
    for _ in range(300):
        line = " ".join(rng.choice(words) for _ in range(rng.randint(2, 8)))
        lines.append(rng.choice([line, f'"{line}"', f"({line})"]))
    (tmp / "tiny.txt").write_text("\n".join(lines))
    options = CharLMOptions(data=str(tmp / "tiny.txt"), hidden_size=24, embedding_dim=8, seq_len=20, num_layers=2)
    config = TrainConfig(epochs=2, batch_size=16, lr=1e-2, eval_every=1000, schedule="constant", log_every=10)
    train("charlm", options, config, tmp / "run", progress=False)
    return tmp / "run"


def test_inspect_text_records_every_layer_of_the_run(tiny_run):
    run = rnnkit.load(tiny_run)
    ins = inspect_text(run.model, run.task.vocab, TEXT)
    assert [(r.layer, r.kind) for r in ins.layers] == [(0, "lstm"), (1, "lstm")]
    assert all(r[k].shape == (len(TEXT), 1, 24) for r in ins.layers for k in GATES["lstm"])
    logits, _ = run.model(torch.tensor([run.task.vocab.encode(list(TEXT))]))
    p = torch.softmax(logits[0], -1)
    ids = run.task.vocab.encode(list(TEXT))
    assert ins.probability[5].item() == pytest.approx(p[4, ids[5]].item(), abs=1e-6)
    assert 0 < ins.probability.min() and ins.probability.max() <= 1
    with pytest.raises(ValueError, match="at most max_chars=20 characters, got 55"):
        inspect_text(run.model, run.task.vocab, TEXT, max_chars=20)


def test_html_is_one_self_contained_file_with_the_data(tiny_run, tmp_path):
    run = rnnkit.load(tiny_run)
    ins = inspect_text(run.model, run.task.vocab, TEXT, title="tiny <run>")
    path = write_html(ins, tmp_path / "r.html", unit=3, layer=0)
    page = path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page, re.I)
    assert "<link" not in page and "http" not in page.lower() and "<script src" not in page
    assert "<title>tiny &lt;run&gt;</title>" in page
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1))
    assert data["text"] == TEXT and data["start"] == {"layer": 0, "unit": 3}
    layer0 = data["layers"][0]
    assert layer0["units"] == list(range(24)) and layer0["keys"] == list(GATES["lstm"])
    # the cell state of unit 3 at step 7, as quantised into the page: tanh(c) to 1/63 of [-1, 1]
    c = torch.tanh(ins.layers[0]["cell"][7, 0, 3]).item()
    level = data["alphabet"].index(layer0["values"]["cell"][3][7])
    assert abs(-1 + 2 * level / 63 - c) <= 1 / 63 + 1e-6
    assert [row["feature"] for row in data["top"]] == list(FEATURES)
    # with fewer units allowed, the page keeps the chosen unit and the best for each feature
    small = json.loads(re.search(r'application/json">(.*?)</script>',
                                 write_html(ins, tmp_path / "s.html", unit=5, layer=1, max_units=10).read_text(),
                                 re.S).group(1))
    assert sum(len(L["units"]) for L in small["layers"]) == 10 and 5 in small["layers"][1]["units"]
    best = small["top"][0]["units"][0]
    assert best["unit"] in small["layers"][best["record"]]["units"]
    with pytest.raises(ValueError, match=r"unit must be in \[0, 24\) for layer 1, got 24"):
        write_html(ins, tmp_path / "x.html", unit=24)


def test_pngs_are_written(tiny_run, tmp_path):
    import matplotlib.image as mpimg

    run = rnnkit.load(tiny_run)
    ins = inspect_text(run.model, run.task.vocab, TEXT)
    paths = write_pngs(ins, tmp_path / "png", unit=2, layer=1)
    assert [p.name for p in paths] == ["gates_l0.png", "gates_l1.png", "text_l1_unit2.png"]
    img = mpimg.imread(paths[0])  # (height, width, RGBA)
    assert img.shape[0] > 300 and img[..., :3].std() > 0.1


def test_inspect_command(tiny_run, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["inspect", str(tiny_run), "--text", TEXT, "--out", str(out), "--png", str(tmp_path / "png"),
                 "--unit", "4"]) == 0
    assert out.exists() and (tmp_path / "png" / "text_l1_unit4.png").exists()
    assert "inspect: wrote" in capsys.readouterr().out
    assert main(["inspect", str(tiny_run), "--start", "10", "--length", "50", "--out", str(tmp_path / "val.html")]) == 0
    page = (tmp_path / "val.html").read_text()  # 50 characters of the run's validation text
    text = json.loads(re.search(r'application/json">(.*?)</script>', page, re.S).group(1))["text"]
    val = (tiny_run.parent / "tiny.txt").read_text()[-int(len((tiny_run.parent / "tiny.txt").read_text()) * 0.05):]
    assert text == val[10:60]
    assert main(["inspect", str(tiny_run), "--text", TEXT, "--unit", "99", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rnnkit: error: inspect: unit must be in [0, 24) for layer 1, got 99"]


def test_inspect_command_with_gradients(tiny_run, tmp_path):
    pytest.importorskip("rnnkit.viz.gradients", reason="rnnkit.viz.gradients is not in this tree yet")
    out = tmp_path / "report.html"
    assert main(["inspect", str(tiny_run), "--text", TEXT, "--out", str(out), "--png", str(tmp_path / "png"),
                 "--gradients"]) == 0
    assert 'id="gradients"' in out.read_text() and (tmp_path / "png" / "gradient_flow.png").stat().st_size > 1000


def test_record_time_check_catches_a_layer_whose_output_is_not_its_equations():
    class Shifted(rnnkit.LSTM):  # not what its weights compute: the recording would be wrong
        def forward(self, x, state=None, lengths=None):
            y, state = super().forward(x, state, lengths)
            return y + 1e-2, state

    layer = Shifted(2, 3).eval()
    with pytest.raises(RuntimeError, match="differ from its output by 0.01"):
        with record(layer):
            layer(torch.randn(4, 1, 2))
    with record(layer, check=False) as rec:
        layer(torch.randn(4, 1, 2))
    assert len(rec.layers) == 1
