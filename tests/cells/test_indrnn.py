"""IndRNNCell against the equations of Li et al. 2018 (arXiv 1803.04831) transcribed here by hand:
values and gradients over a sequence, gradcheck, the engine with lengths, errors, gates, init.
"""

import doctest

import pytest
import torch

import rnnkit
from rnnkit.cells import KINDS
from rnnkit.cells import indrnn as indrnn_module
from rnnkit.cells.base import present_weights
from rnnkit.cells.indrnn import INDRNN_KIND, INDRNN_WEIGHTS, IndRNNCell, IndRNNConfig, IndRNNWeights, indrnn_step

B, I, H, T = 3, 4, 5, 6  # batch, input features, hidden units, steps
D64 = torch.float64
TOL = dict(rtol=0, atol=1e-12)


@pytest.fixture
def registered(monkeypatch):
    """The engine looks a cell's kind up in rnnkit.cells.KINDS (where the lead registers it)."""
    monkeypatch.setitem(KINDS, "indrnn", INDRNN_KIND)


def _randomised(cell, seed=0):
    """The cell in float64 with every weight from U(-0.9, 0.9): u of both signs, b nonzero."""
    gen = torch.Generator().manual_seed(seed)
    cell = cell.double()
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_((torch.rand(p.shape, generator=gen, dtype=D64) * 2 - 1) * 0.9)
    return cell


def _paper(cell, xs, h0):
    """h_t = sigma(W x_t + u * h_{t-1} + b), one unit at a time through u, over xs (T, B, I)."""
    W, u = cell.weight_ih, cell.weight_hh  # (H, I), (H,)
    b = cell.bias_ih if cell.bias_ih is not None else torch.zeros(H, dtype=D64)
    sigma = torch.relu if cell.nonlinearity == "relu" else torch.tanh
    h, hs = h0, []
    for x_t in xs:
        h = sigma(torch.einsum("hi,bi->bh", W, x_t) + u * h + b)
        hs.append(h)
    return torch.stack(hs), h


def _stepped(cell, xs, h0):
    """The cell's own project-once-then-step path."""
    xp = cell.project_input(xs)  # (T, B, H)
    h, hs = h0, []
    for t in range(xs.shape[0]):
        out, h = cell.step(xp[t], h)
        hs.append(out)
    return torch.stack(hs), h


@pytest.mark.parametrize("nonlinearity,bias", [("relu", True), ("tanh", True), ("relu", False)])
def test_step_equals_the_paper_values_and_gradients(nonlinearity, bias):
    cell = _randomised(IndRNNCell(I, H, bias=bias, nonlinearity=nonlinearity))
    gen = torch.Generator().manual_seed(1)
    xs = torch.randn(T, B, I, generator=gen, dtype=D64, requires_grad=True)
    h0 = torch.randn(B, H, generator=gen, dtype=D64)
    p_out, p_h = torch.randn(T, B, H, generator=gen, dtype=D64), torch.randn(B, H, generator=gen, dtype=D64)
    wrt = [xs, *cell.parameters()]
    results = []
    for run in (_paper, _stepped):
        out, h = run(cell, xs, h0)
        grads = torch.autograd.grad((out * p_out).sum() + (h * p_h).sum(), wrt)
        results.append((out, h, grads))
    (out_p, h_p, g_p), (out_c, h_c, g_c) = results
    if nonlinearity == "relu":  # the comparison covers clipped and live units
        assert (out_p == 0).any() and (out_p != 0).any()
    torch.testing.assert_close(out_c, out_p, **TOL)
    torch.testing.assert_close(h_c, h_p, **TOL)
    for a, e in zip(g_c, g_p):
        torch.testing.assert_close(a, e, **TOL)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
def test_gradcheck_of_the_step(nonlinearity):
    gen = torch.Generator().manual_seed(2)
    B_, H_ = 2, 3
    xp = torch.randn(B_, H_, generator=gen, dtype=D64, requires_grad=True)
    h0 = torch.randn(B_, H_, generator=gen, dtype=D64, requires_grad=True)
    u = torch.rand(H_, generator=gen, dtype=D64, requires_grad=True)

    def step(xp, h0, u):
        w = IndRNNWeights(weight_ih=None, weight_hh=u, bias_ih=None)
        return indrnn_step(w, xp, h0, nonlinearity)[0]

    assert torch.autograd.gradcheck(step, (xp, h0, u))


def test_recurrent_with_lengths_two_layers_bidirectional(registered):
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(lambda n: _randomised(IndRNNCell(n, H, nonlinearity="tanh")), input_size=I,
                             num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=D64)
    lengths = torch.tensor([T, 2, 4])
    out, h = layer(x, lengths=lengths)
    assert out.shape == (T, B, 2 * H) and h.shape == (4, B, H)
    for b, n in enumerate(lengths.tolist()):
        assert (out[n:, b] == 0).all()
        out_b, h_b = layer(x[:n, b : b + 1])  # the sequence alone, unpadded
        torch.testing.assert_close(out[:n, b : b + 1], out_b, **TOL)
        torch.testing.assert_close(h[:, b : b + 1], h_b, **TOL)


@pytest.mark.parametrize(
    "args,kwargs,error,words",
    [
        ((0, H), {}, ValueError, "input_size"),
        ((I, 2.5), {}, TypeError, "hidden_size"),
        ((I, H), {"bias": 1}, TypeError, "bias"),
        ((I, H), {"nonlinearity": "sigmoid"}, ValueError, "nonlinearity"),
    ],
)
def test_bad_arguments(args, kwargs, error, words):
    with pytest.raises(error, match=f"IndRNNCell: {words}"):
        IndRNNCell(*args, **kwargs)


def test_gates_dict():
    cell = _randomised(IndRNNCell(I, H))
    x, h0 = torch.randn(B, I, dtype=D64), torch.randn(B, H, dtype=D64)
    gates = {}
    h, state = cell.step(cell.project_input(x), h0, gates)
    assert list(gates) == list(INDRNN_KIND.gates) and INDRNN_KIND.gates[-1] == "hidden"
    assert all(g.shape == (B, H) for g in gates.values())
    assert torch.equal(gates["hidden"], h) and torch.equal(state, h)
    torch.testing.assert_close(gates["preactivation"], x @ cell.weight_ih.T + cell.bias_ih + cell.weight_hh * h0, **TOL)


def test_init_and_kind():
    torch.manual_seed(0)
    cell = IndRNNCell(I, 64)
    assert (cell.weight_hh >= 0).all() and (cell.weight_hh <= 1).all() and cell.weight_hh.std() > 0.2  # U(0, 1)
    assert (cell.bias_ih == 0).all() and cell.weight_ih.abs().max() <= 64**-0.5
    config = IndRNNConfig(I, H, bias=False)
    assert config.cell == "indrnn" and cell.backend_config() == IndRNNConfig(I, 64)
    # what a layer does: tensors from the table, initialised by the kind
    w = IndRNNWeights(*(torch.empty(shape) for _, shape in present_weights(INDRNN_WEIGHTS, config)), None)
    INDRNN_KIND.init(config, w)
    assert w.bias_ih is None and (w.weight_hh >= 0).all() and w.weight_hh.shape == (H,)
    shapes = INDRNN_KIND.state_shapes(config)
    assert shapes == ((H,),) and IndRNNCell(I, H).initial_state(B).shape == (B, *shapes[0])
    # the kind's project and step are the cell's
    cell = _randomised(IndRNNCell(I, H, nonlinearity="tanh"))
    x, h0 = torch.randn(B, I, dtype=D64), torch.randn(B, H, dtype=D64)
    xp = INDRNN_KIND.project(cell.config, cell.weights(), x)
    torch.testing.assert_close(INDRNN_KIND.step(cell.config, cell.weights(), xp, h0)[0], cell(x, h0)[0], **TOL)


def test_docstring_examples_run():
    result = doctest.testmod(indrnn_module, report=False)
    assert result.attempted > 0 and result.failed == 0
