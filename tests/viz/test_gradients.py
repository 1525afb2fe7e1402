"""Gradient flow: equal to autograd on a hand-written unrolled model and to finite differences;
the vanishing gradient of a small-weight RNN as a bound; no side effects on the model."""
import math

import pytest
import torch

from rnnkit.data.datasets.memory import adding_problem, copy_task
from rnnkit.models import SequenceClassifier, ClassifierConfig
from rnnkit.tasks.adding import AddingOptions, AddingTask
from rnnkit.tasks.copying import CopyOptions, CopyTask
from rnnkit.experiments.gradient_flow import compare_cells
from rnnkit.viz.gradients import gradient_flow, plot_gradient_flow


def _adding(cell: str, T: int = 6, H: int = 3, B: int = 4, num_layers: int = 1, seed: int = 0):
    task = AddingTask(AddingOptions(seq_len=T, cell=cell, hidden_size=H, num_layers=num_layers))
    torch.manual_seed(seed)
    model = task.build_model().double()
    data = adding_problem(B, T, torch.Generator().manual_seed(seed))
    return task, model, {"x": data.x.double(), "y": data.y.double()}


def _cell_step(cell: str, layer, k: int, x_t, state):
    """The cell equations, by hand, with torch.nn's weight layout (gate order i f g o; r z n)."""
    w_ih, w_hh = getattr(layer, f"weight_ih_l{k}"), getattr(layer, f"weight_hh_l{k}")
    b_ih, b_hh = getattr(layer, f"bias_ih_l{k}"), getattr(layer, f"bias_hh_l{k}")
    if cell == "rnn":
        h = torch.tanh(x_t @ w_ih.T + b_ih + state @ w_hh.T + b_hh)
        return h, h
    if cell == "lstm":
        h_tm1, c_tm1 = state
        i, f, g, o = (x_t @ w_ih.T + b_ih + h_tm1 @ w_hh.T + b_hh).chunk(4, -1)
        c = torch.sigmoid(f) * c_tm1 + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)
    r_x, z_x, n_x = (x_t @ w_ih.T + b_ih).chunk(3, -1)
    r_h, z_h, n_h = (state @ w_hh.T + b_hh).chunk(3, -1)
    r, z = torch.sigmoid(r_x + r_h), torch.sigmoid(z_x + z_h)
    n = torch.tanh(n_x + r * n_h)
    h = (1 - z) * n + z * state
    return h, h


def _reference_loss(cell: str, model, batch, probes):
    """The adding model unrolled by hand; probes[t] (B, H) is added to the last layer's h_t
    before anything reads it, so d loss / d probes[t] = d loss / d h_t."""
    layer = model.rnn
    x = batch["x"].transpose(0, 1)  # (T, B, 2)
    T, B = x.shape[:2]
    H = layer.hidden_size
    for k in range(layer.num_layers):
        zeros = x.new_zeros(B, H)
        state = (zeros, zeros) if cell == "lstm" else zeros
        outs = []
        for t in range(T):
            h, state = _cell_step(cell, layer, k, x[t], state)
            if k == layer.num_layers - 1:
                h = h + probes[t]
                state = (h, state[1]) if cell == "lstm" else h
            outs.append(h)
        x = torch.stack(outs)  # (T, B, H)
    y_hat = model.head(x[-1])[:, 0]  # (B,)
    return ((y_hat - batch["y"]) ** 2).sum()


@pytest.mark.parametrize("cell, num_layers", [("rnn", 1), ("lstm", 1), ("gru", 1), ("lstm", 2), ("gru", 2)])
def test_equals_autograd_of_a_hand_unrolled_model(cell, num_layers):
    task, model, batch = _adding(cell, num_layers=num_layers)
    T, B, H = 6, 4, 3
    probes = [torch.zeros(B, H, dtype=torch.float64, requires_grad=True) for _ in range(T)]
    loss = _reference_loss(cell, model, batch, probes)
    assert loss.item() == pytest.approx(task.step(model, batch).loss_sum.item(), rel=1e-10)  # same model
    grads = torch.autograd.grad(loss, probes)  # each (B, H)
    expected = torch.stack([g.norm(dim=1).mean() for g in grads])  # batch mean of per-sequence norms
    got = gradient_flow(model, task, batch)
    assert got.shape == (T,) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_one_entry_equals_finite_differences(cell):
    """With B = 1 and H = 1 each curve entry is |d loss / d h_t|: perturb h_t by +-eps."""
    task, model, batch = _adding(cell, T=5, H=1, B=1, seed=3)
    got = gradient_flow(model, task, batch)
    eps = 1e-6
    for t in (0, 2, 4):
        probes = [torch.zeros(1, 1, dtype=torch.float64) for _ in range(5)]
        probes[t] = probes[t] + eps
        up = _reference_loss(cell, model, batch, probes).item()
        probes[t] = probes[t] - 2 * eps
        down = _reference_loss(cell, model, batch, probes).item()
        assert got[t].item() == pytest.approx(abs(up - down) / (2 * eps), rel=1e-4, abs=1e-12)


def test_a_model_that_reads_every_step_gets_direct_and_recurrent_paths():
    """The copy model's loss reads h_t at every step: still equal to autograd, via probes on the
    embedding-fed layer (torch.nn.LSTM reference with the same weights, run step by step)."""
    task = CopyTask(CopyOptions(seq_len=3, copy_len=2, num_symbols=3, hidden_size=4, embedding_dim=3))
    torch.manual_seed(0)
    model = task.build_model().double()
    data = copy_task(5, 3, torch.Generator().manual_seed(0), num_symbols=3, copy_len=2)
    batch = {"x": data.x, "y": data.y}
    S = data.x.shape[1]
    cell = torch.nn.LSTMCell(3, 4).double()
    cell.load_state_dict({k[:-3]: v for k, v in model.rnn.state_dict().items()})  # weight_ih_l0 -> weight_ih
    probes = [torch.zeros(5, 4, dtype=torch.float64, requires_grad=True) for _ in range(S)]
    emb = model.embedding(data.x)  # (B, S, E)
    h = c = torch.zeros(5, 4, dtype=torch.float64)
    logits = []
    for t in range(S):
        h, c = cell(emb[:, t], (h, c))
        h = h + probes[t]
        logits.append(model.head(h))
    loss = torch.nn.functional.cross_entropy(torch.stack(logits, 1).reshape(5 * S, -1), data.y.reshape(-1),
                                             reduction="sum")
    assert loss.item() == pytest.approx(task.step(model, batch).loss_sum.item(), rel=1e-10)
    expected = torch.stack([g.norm(dim=1).mean() for g in torch.autograd.grad(loss, probes)])
    torch.testing.assert_close(gradient_flow(model, task, batch), expected.float(), rtol=1e-5, atol=1e-9)


def test_small_weight_rnn_decays_with_distance_from_the_loss():
    """d L/d h_t = W^T diag(1 - h_{t+1}^2) d L/d h_{t+1} for t < T-1, so with ||W||_2 = 0.3 every
    step back multiplies the norm by at most 0.3: after 19 steps at most 0.3^19 ~ 1e-10."""
    T = 20
    task, model, batch = _adding("rnn", T=T, H=8, B=16, seed=1)
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
        model.rnn.weight_hh_l0.copy_(0.3 * q)  # orthogonal times 0.3: spectral norm 0.3
    g = gradient_flow(model, task, batch).double()
    assert (g > 0).all()
    assert (g[:-1] <= 0.3 * g[1:] * (1 + 1e-5)).all()  # the bound, step by step
    assert (g[:-1] < g[1:]).all() and g[0] <= 0.3 ** (T - 1) * g[-1] * (1 + 1e-4)


def test_identity_relu_rnn_in_its_linear_region_keeps_the_gradient():
    """The other side of the bound: W = I with relu on positive states is an exact copy, so
    d L / d h_t is the same at every step (the curve is flat, nothing vanishes)."""
    task = AddingTask(AddingOptions(seq_len=15, cell="rnn_relu", hidden_size=4))
    model = task.build_model().double()
    with torch.no_grad():
        model.rnn.weight_hh_l0.copy_(torch.eye(4))
        model.rnn.weight_ih_l0.fill_(0.1)  # inputs >= 0: the state stays positive
        model.rnn.bias_ih_l0.fill_(0.5)
        model.rnn.bias_hh_l0.zero_()
    data = adding_problem(8, 15, torch.Generator().manual_seed(0))
    g = gradient_flow(model, task, {"x": data.x.double(), "y": data.y.double()})
    torch.testing.assert_close(g, g[-1].expand(15), rtol=1e-6, atol=0.0)


def test_no_side_effects_on_the_model():
    task, model, batch = _adding("lstm", T=6)
    model.train()
    before = task.step(model, batch).loss_sum.item()
    gradient_flow(model, task, batch)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert not model.rnn._forward_hooks
    assert task.step(model, batch).loss_sum.item() == before


def test_bad_models_are_one_clear_error():
    task = AddingTask(AddingOptions(seq_len=4))
    bi = SequenceClassifier(ClassifierConfig(input_size=2, bidirectional=True, hidden_size=3))
    data = adding_problem(2, 4)
    batch = {"x": data.x, "y": data.y}
    with pytest.raises(ValueError, match="gradient_flow: the last recurrent layer must be unidirectional"):
        gradient_flow(bi, task, batch)
    with pytest.raises(TypeError, match="gradient_flow: model must hold an rnnkit recurrent layer.*Linear"):
        gradient_flow(torch.nn.Linear(2, 1), task, batch)


def test_compare_cells_fresh_models_and_plot(tmp_path):
    state = torch.get_rng_state()
    curves = compare_cells(("rnn", "lstm"), seq_len=30, hidden_size=8, batch_size=8)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is untouched
    assert set(curves) == {"rnn", "lstm"} and all(c.shape == (30,) for c in curves.values())
    assert all(bool(torch.isfinite(c).all() and (c > 0).all()) for c in curves.values())
    again = compare_cells(("rnn",), seq_len=30, hidden_size=8, batch_size=8)
    assert torch.equal(again["rnn"], curves["rnn"])  # seeded
    # a fresh tanh RNN (torch.nn's init) loses orders of magnitude over 30 steps
    assert math.log10(curves["rnn"][-1] / curves["rnn"][0]) > 3
    path = tmp_path / "sub" / "flow.png"
    plot_gradient_flow(curves, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="plot_gradient_flow: curves must be a non-empty dict"):
        plot_gradient_flow({}, path)
    with pytest.raises(ValueError, match="plot_gradient_flow: curve 'x' must be a non-empty 1-D tensor"):
        plot_gradient_flow({"x": torch.zeros(2, 2)}, path)


def _probed_loss(step_fn, xs, state, probes, readout):
    """Loop ``step_fn`` over xs (T, B, G) adding probes[t] to h_t (and to the state's h part)."""
    for t in range(xs.shape[0]):
        h, state = step_fn(xs[t], state)
        h = h + probes[t]
        state = h if isinstance(state, torch.Tensor) else (h, *state[1:])
    return readout(h)


@pytest.mark.parametrize("cell", ["peephole_lstm", "ln_lstm", "cho_gru", "ln_gru"])
def test_variants_on_rnnkit_engine_equal_autograd(cell):
    task, model, batch = _adding(cell, T=5, H=3, B=4, seed=2)
    cell_0 = model.rnn.cell(0)  # the layer's weights as a cell: project_input / step
    xs = cell_0.project_input(batch["x"].transpose(0, 1))  # (T, B, G)
    zeros = torch.zeros(4, 3, dtype=torch.float64)
    state = (zeros, zeros) if "lstm" in cell else zeros
    probes = [torch.zeros(4, 3, dtype=torch.float64, requires_grad=True) for _ in range(5)]
    loss = _probed_loss(cell_0.step, xs, state, probes, lambda h: ((model.head(h)[:, 0] - batch["y"]) ** 2).sum())
    assert loss.item() == pytest.approx(task.step(model, batch).loss_sum.item(), rel=1e-10)
    expected = torch.stack([g.norm(dim=1).mean() for g in torch.autograd.grad(loss, probes)])
    torch.testing.assert_close(gradient_flow(model, task, batch), expected.float(), rtol=1e-5, atol=1e-9)


def test_generic_engine_with_a_cell_equals_autograd():
    from rnnkit.cells import GRUCell
    from rnnkit.layers import Recurrent

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = Recurrent(lambda n: GRUCell(n, 3, reset_after=False), input_size=2, batch_first=True)
            self.head = torch.nn.Linear(3, 1)

        def forward(self, x):
            out, _ = self.rnn(x)  # (B, T, 3)
            return self.head(out[:, -1])  # (B, 1)

    torch.manual_seed(0)
    model = Model().double()
    task = AddingTask(AddingOptions(seq_len=6))
    data = adding_problem(4, 6, torch.Generator().manual_seed(0))
    batch = {"x": data.x.double(), "y": data.y.double()}
    cell = model.rnn.cells[0]
    probes = [torch.zeros(4, 3, dtype=torch.float64, requires_grad=True) for _ in range(6)]
    loss = _probed_loss(cell, batch["x"].transpose(0, 1), cell.initial_state(4, dtype=torch.float64), probes,
                        lambda h: ((model.head(h)[:, 0] - batch["y"]) ** 2).sum())
    expected = torch.stack([g.norm(dim=1).mean() for g in torch.autograd.grad(loss, probes)])
    torch.testing.assert_close(gradient_flow(model, task, batch), expected.float(), rtol=1e-5, atol=1e-9)
