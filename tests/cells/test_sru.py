"""SRUCell against the equations of Lei et al. 2018 (arXiv 1709.02755) transcribed here by hand:
values and gradients over a sequence, the scan split (coefficients, recurrence, output), gradcheck,
the engine with lengths, errors, gates, init.
"""

import doctest

import pytest
import torch

import rnnkit
from rnnkit.cells import KINDS
from rnnkit.cells import sru as sru_module
from rnnkit.cells.base import present_weights
from rnnkit.cells.sru import (SRU_KIND, SRU_WEIGHTS, SRUCell, SRUConfig, SRUWeights, sru_coefficients, sru_output,
                              sru_step)

B, H, T = 3, 5, 6  # batch, hidden units, steps
D64 = torch.float64
TOL = dict(rtol=0, atol=1e-12)
# (input_size, bias, peephole): x' = x (I == H) or W_s x (I != H), each with and without v_f, v_r
VARIANTS = [(H, True, False), (H, True, True), (4, True, False), (4, True, True), (4, False, True), (H, False, False)]


@pytest.fixture
def registered(monkeypatch):
    """The engine looks a cell's kind up in rnnkit.cells.KINDS (where the lead registers it)."""
    monkeypatch.setitem(KINDS, "sru", SRU_KIND)


def _randomised(cell, seed=0):
    """The cell in float64 with every weight from U(-0.9, 0.9)."""
    gen = torch.Generator().manual_seed(seed)
    cell = cell.double()
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_((torch.rand(p.shape, generator=gen, dtype=D64) * 2 - 1) * 0.9)
    return cell


def _paper(cell, xs, state0):
    """The paper's equations with one matrix per gate, sliced from the cell's weights."""
    Hc, Ic = cell.hidden_size, cell.input_size
    W, W_f, W_r = (cell.weight_ih[k * Hc : (k + 1) * Hc] for k in range(3))
    W_s = cell.weight_ih[3 * Hc :] if Ic != Hc else None
    zero = torch.zeros(Hc, dtype=D64)
    b_f, b_r = (cell.bias_ih[:Hc], cell.bias_ih[Hc:]) if cell.bias_ih is not None else (zero, zero)
    v_f, v_r = (cell.weight_c[:Hc], cell.weight_c[Hc:]) if cell.weight_c is not None else (zero, zero)
    h, c = state0
    hs = []
    for x in xs:
        x_tilde = x @ W.T
        f = torch.sigmoid(x @ W_f.T + v_f * c + b_f)
        r = torch.sigmoid(x @ W_r.T + v_r * c + b_r)
        c = f * c + (1 - f) * x_tilde
        x_skip = x if W_s is None else x @ W_s.T
        h = r * c + (1 - r) * x_skip
        hs.append(h)
    return torch.stack(hs), (h, c)


def _stepped(cell, xs, state0):
    xp = cell.project_input(xs)  # (T, B, 4H)
    state, hs = state0, []
    for t in range(xs.shape[0]):
        h, state = cell.step(xp[t], state)
        hs.append(h)
    return torch.stack(hs), state


def _inputs(input_size, seed=1):
    gen = torch.Generator().manual_seed(seed)
    xs = torch.randn(T, B, input_size, generator=gen, dtype=D64, requires_grad=True)
    state0 = (torch.randn(B, H, generator=gen, dtype=D64), torch.randn(B, H, generator=gen, dtype=D64))
    return xs, state0


@pytest.mark.parametrize("input_size,bias,peephole", VARIANTS)
def test_step_equals_the_paper_values_and_gradients(input_size, bias, peephole):
    cell = _randomised(SRUCell(input_size, H, bias=bias, peephole=peephole))
    xs, state0 = _inputs(input_size)
    gen = torch.Generator().manual_seed(3)
    p_out, p_h, p_c = (torch.randn(shape, generator=gen, dtype=D64) for shape in [(T, B, H), (B, H), (B, H)])
    wrt = [xs, *cell.parameters()]
    results = []
    for run in (_paper, _stepped):
        out, (h, c) = run(cell, xs, state0)
        grads = torch.autograd.grad((out * p_out).sum() + (h * p_h).sum() + (c * p_c).sum(), wrt)
        results.append((out, h, c, grads))
    for a, e in zip(results[1][:3] + results[1][3], results[0][:3] + results[0][3]):
        torch.testing.assert_close(a, e, **TOL)


def test_the_input_layout_is_told_apart_by_hidden_size():
    # 4H == 3I: a skip projection whose weight_ih has as many rows as an I == H cell's would
    cell = _randomised(SRUCell(4, 3))
    assert cell.weight_ih.shape == (12, 4) and SRUCell(3, 3).weight_ih.shape == (9, 3)
    x = torch.randn(B, 4, dtype=D64)
    torch.testing.assert_close(cell.project_input(x)[:, 9:], x @ cell.weight_ih[9:].T, **TOL)
    same = _randomised(SRUCell(H, H))
    x = torch.randn(B, H, dtype=D64)
    assert torch.equal(same.project_input(x)[:, 3 * H :], x)  # x' = x itself


@pytest.mark.parametrize("input_size", [H, 4])
def test_coefficients_recurrence_output_equal_stepping(input_size):
    cell = _randomised(SRUCell(input_size, H))
    xs, (h0, c0) = _inputs(input_size)
    out_ref, (h_ref, c_ref) = _stepped(cell, xs, (h0, c0))
    xp = cell.project_input(xs)
    a, b = sru_coefficients(cell.weights(), xp)
    assert a.shape == b.shape == (T, B, H)
    c, cs = c0, []
    for t in range(T):  # c_t = a_t * c_{t-1} + b_t, the recurrence a scan solves
        c = a[t] * c + b[t]
        cs.append(c)
    cs = torch.stack(cs)
    out = sru_output(cell.weights(), xp, cs)
    torch.testing.assert_close(out, out_ref, **TOL)
    torch.testing.assert_close(cs[-1], c_ref, **TOL)


def test_output_with_peepholes_needs_c0_and_equals_stepping():
    cell = _randomised(SRUCell(4, H, peephole=True))
    xs, (h0, c0) = _inputs(4)
    xp = cell.project_input(xs)
    state, hs, cs = (h0, c0), [], []
    for t in range(T):
        h, state = sru_step(cell.weights(), xp[t], state)
        hs.append(h)
        cs.append(state[1])
    torch.testing.assert_close(sru_output(cell.weights(), xp, torch.stack(cs), c0), torch.stack(hs), **TOL)
    with pytest.raises(ValueError, match="sru_output: c0 must be"):
        sru_output(cell.weights(), xp, torch.stack(cs))
    with pytest.raises(ValueError, match="sru_coefficients: peephole must be False"):
        sru_coefficients(SRUCell(4, H).weights(), xp, peephole=True)
    with pytest.raises(ValueError, match="sru_coefficients: w.weight_c must be None"):
        sru_coefficients(cell.weights(), xp)


def test_gradcheck_of_the_step():
    gen = torch.Generator().manual_seed(2)
    B_, H_ = 2, 3
    xp = torch.randn(B_, 4 * H_, generator=gen, dtype=D64, requires_grad=True)
    h0, c0 = (torch.randn(B_, H_, generator=gen, dtype=D64, requires_grad=True) for _ in range(2))
    v = torch.randn(2 * H_, generator=gen, dtype=D64, requires_grad=True)

    def step(xp, h0, c0, v):
        w = SRUWeights(weight_ih=None, bias_ih=None, weight_c=v)
        h, (_, c) = sru_step(w, xp, (h0, c0))
        return h, c

    assert torch.autograd.gradcheck(step, (xp, h0, c0, v))


@pytest.mark.parametrize("peephole", [False, True])
def test_recurrent_with_lengths_two_layers_bidirectional(registered, peephole):
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(lambda n: _randomised(SRUCell(n, H, peephole=peephole)), input_size=4,
                             num_layers=2, bidirectional=True)
    x = torch.randn(T, B, 4, dtype=D64)
    lengths = torch.tensor([T, 2, 4])
    out, (h, c) = layer(x, lengths=lengths)
    assert out.shape == (T, B, 2 * H) and h.shape == c.shape == (4, B, H)
    for b, n in enumerate(lengths.tolist()):
        assert (out[n:, b] == 0).all()
        out_b, (h_b, c_b) = layer(x[:n, b : b + 1])  # the sequence alone, unpadded
        torch.testing.assert_close(out[:n, b : b + 1], out_b, **TOL)
        torch.testing.assert_close(h[:, b : b + 1], h_b, **TOL)
        torch.testing.assert_close(c[:, b : b + 1], c_b, **TOL)


@pytest.mark.parametrize(
    "args,kwargs,error,words",
    [
        ((0, H), {}, ValueError, "input_size"),
        ((4, -1), {}, ValueError, "hidden_size"),
        ((4, H), {"bias": None}, TypeError, "bias"),
        ((4, H), {"peephole": "yes"}, TypeError, "peephole"),
    ],
)
def test_bad_arguments(args, kwargs, error, words):
    with pytest.raises(error, match=f"SRUCell: {words}"):
        SRUCell(*args, **kwargs)


def test_gates_dict():
    cell = _randomised(SRUCell(4, H, peephole=True))
    xs, state0 = _inputs(4)
    gates = {}
    h, (h_, c) = cell.step(cell.project_input(xs[0]), state0, gates)
    assert list(gates) == list(SRU_KIND.gates) and SRU_KIND.gates[-1] == "hidden"
    assert all(g.shape == (B, H) for g in gates.values())
    assert torch.equal(gates["hidden"], h) and torch.equal(h_, h) and torch.equal(gates["cell"], c)
    assert ((gates["forget"] > 0) & (gates["forget"] < 1)).all()


def test_init_and_kind():
    torch.manual_seed(0)
    cell = SRUCell(4, H, peephole=True)
    assert (cell.bias_ih == 0).all() and cell.bias_ih.shape == (2 * H,) and cell.weight_c.shape == (2 * H,)
    assert cell.weight_ih.abs().max() <= H**-0.5 and cell.weight_c.abs().max() <= H**-0.5
    config = SRUConfig(4, H)
    assert config.cell == "sru" and cell.backend_config() == SRUConfig(4, H, peephole=True)
    w = SRUWeights(*(torch.full(shape, 7.0) for _, shape in present_weights(SRU_WEIGHTS, config)), None)
    SRU_KIND.init(config, w)
    assert (w.bias_ih == 0).all() and w.weight_ih.abs().max() <= H**-0.5
    assert SRU_KIND.state_shapes(config) == ((H,), (H,))
    assert tuple(s.shape for s in SRUCell(4, H).initial_state(B)) == ((B, H), (B, H))
    cell = _randomised(SRUCell(H, H))
    x, state0 = torch.randn(B, H, dtype=D64), (torch.randn(B, H, dtype=D64), torch.randn(B, H, dtype=D64))
    xp = SRU_KIND.project(cell.config, cell.weights(), x)
    torch.testing.assert_close(SRU_KIND.step(cell.config, cell.weights(), xp, state0)[0], cell(x, state0)[0], **TOL)


def test_docstring_examples_run():
    result = doctest.testmod(sru_module, report=False)
    assert result.attempted > 0 and result.failed == 0
