"""SLSTMCell against the equations of Beck et al. 2024 (xLSTM, arXiv 2405.04517, section 2.2)
transcribed here by hand, stabilised and not: values and gradients over a sequence, gradcheck, the
engine with lengths, errors, gates, init.
"""

import doctest

import pytest
import torch
import torch.nn.functional as F

import rnnkit
from rnnkit.cells import KINDS
from rnnkit.cells import slstm as slstm_module
from rnnkit.cells.base import present_weights
from rnnkit.cells.slstm import SLSTM_KIND, SLSTM_WEIGHTS, SLSTMCell, SLSTMConfig, SLSTMWeights, slstm_step

B, I, H, T = 3, 4, 5, 6  # batch, input features, hidden units, steps
D64 = torch.float64
TOL = dict(rtol=0, atol=1e-12)


@pytest.fixture
def registered(monkeypatch):
    """The engine looks a cell's kind up in rnnkit.cells.KINDS (where the lead registers it)."""
    monkeypatch.setitem(KINDS, "slstm", SLSTM_KIND)


def _randomised(cell, seed=0):
    """The cell in float64 with every weight from U(-0.9, 0.9): moderate pre-activations."""
    gen = torch.Generator().manual_seed(seed)
    cell = cell.double()
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_((torch.rand(p.shape, generator=gen, dtype=D64) * 2 - 1) * 0.9)
    return cell


def _gate_weights(cell):
    """W_{i,f,z,o} (H, I), R_{i,f,z,o} (H, H), b_{i,f,z,o} (H,), sliced from the stacked weights."""
    W = dict(zip("ifzo", cell.weight_ih.chunk(4)))
    R = dict(zip("ifzo", cell.weight_hh.chunk(4)))
    zero = torch.zeros(4 * H, dtype=D64)
    b = dict(zip("ifzo", (cell.bias_ih if cell.bias_ih is not None else zero).chunk(4)))
    return W, R, b


def _random_state(seed=1):
    """A nonzero (h, c, n, m): n > 0, as every state after a first step has it."""
    gen = torch.Generator().manual_seed(seed)
    h, c, m = (torch.randn(B, H, generator=gen, dtype=D64) * 0.7 for _ in range(3))
    n = torch.rand(B, H, generator=gen, dtype=D64) + 0.5
    return h, c, n, m


def _paper_stabilised(cell, xs, state0):
    """The stabilised equations of section 2.2, one gate at a time."""
    W, R, b = _gate_weights(cell)
    h, c, n, m = state0
    hs = []
    for x in xs:
        pre = {g: x @ W[g].T + h @ R[g].T + b[g] for g in "ifzo"}
        z, o = torch.tanh(pre["z"]), torch.sigmoid(pre["o"])
        log_f = F.logsigmoid(pre["f"])
        m_new = torch.maximum(log_f + m, pre["i"])
        i_s = torch.exp(pre["i"] - m_new)
        f_s = torch.exp(log_f + m - m_new)
        c = f_s * c + i_s * z
        n = f_s * n + i_s
        m = m_new
        h = o * c / n
        hs.append(h)
    return torch.stack(hs), (h, c, n, m)


def _paper_plain(cell, xs, state0):
    """The unstabilised equations: i = exp(i~), f = sigmoid(f~); the states c, n are the
    stabilised ones times exp(m)."""
    W, R, b = _gate_weights(cell)
    h, c, n, m = state0
    c, n = c * torch.exp(m), n * torch.exp(m)
    hs = []
    for x in xs:
        pre = {g: x @ W[g].T + h @ R[g].T + b[g] for g in "ifzo"}
        z, i, f, o = torch.tanh(pre["z"]), torch.exp(pre["i"]), torch.sigmoid(pre["f"]), torch.sigmoid(pre["o"])
        c = f * c + i * z
        n = f * n + i
        h = o * (c / n)
        hs.append(h)
    return torch.stack(hs), (h, c, n)


def _stepped(cell, xs, state0):
    xp = cell.project_input(xs)  # (T, B, 4H)
    state, hs = state0, []
    for t in range(xs.shape[0]):
        h, state = cell.step(xp[t], state)
        hs.append(h)
    return torch.stack(hs), state


@pytest.mark.parametrize("bias", [True, False])
def test_step_equals_the_paper_values_and_gradients(bias):
    cell = _randomised(SLSTMCell(I, H, bias=bias))
    gen = torch.Generator().manual_seed(3)
    xs = torch.randn(T, B, I, generator=gen, dtype=D64, requires_grad=True)
    state0 = tuple(s.requires_grad_() for s in _random_state())
    projections = [torch.randn(T, B, H, generator=gen, dtype=D64)] + [torch.randn(B, H, generator=gen, dtype=D64)
                                                                       for _ in range(4)]
    wrt = [xs, *state0, *cell.parameters()]
    results = []
    for run in (_paper_stabilised, _stepped):
        out, state = run(cell, xs, state0)
        loss = sum((a * p).sum() for a, p in zip((out, *state), projections))
        results.append((out, *state, *torch.autograd.grad(loss, wrt)))
    for a, e in zip(results[1], results[0]):
        torch.testing.assert_close(a, e, **TOL)


def test_stabilised_equals_the_plain_equations():
    cell = _randomised(SLSTMCell(I, H))
    xs = torch.randn(T, B, I, dtype=D64)
    for state0 in (_random_state(), cell.initial_state(B)):
        out_plain, (h_plain, c_plain, n_plain) = _paper_plain(cell, xs, state0)
        out, (h, c, n, m) = _stepped(cell, xs, state0)
        torch.testing.assert_close(out, out_plain, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(c * torch.exp(m), c_plain, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(n * torch.exp(m), n_plain, rtol=1e-10, atol=1e-12)
    assert (m > 0).any()  # the stabiliser did rescale the states


def test_large_input_gate_stays_finite():
    cell = _randomised(SLSTMCell(I, H))
    with torch.no_grad():
        cell.bias_ih[:H] = 800.0  # exp(800) overflows float64: only the stabilised form survives
    out, (h, c, n, m) = _stepped(cell, torch.randn(T, B, I, dtype=D64), cell.initial_state(B))
    assert torch.isfinite(out).all() and torch.isfinite(torch.stack([c, n, m])).all()


def test_gradcheck_of_the_step():
    gen = torch.Generator().manual_seed(2)
    B_, H_ = 2, 3
    xp = torch.randn(B_, 4 * H_, generator=gen, dtype=D64, requires_grad=True)
    h0, c0, m0 = (torch.randn(B_, H_, generator=gen, dtype=D64, requires_grad=True) for _ in range(3))
    n0 = (torch.rand(B_, H_, generator=gen, dtype=D64) + 0.5).requires_grad_()
    R = (torch.randn(4 * H_, H_, generator=gen, dtype=D64) * 0.5).requires_grad_()

    def step(xp, h0, c0, n0, m0, R):
        w = SLSTMWeights(weight_ih=None, weight_hh=R, bias_ih=None)
        return slstm_step(w, xp, (h0, c0, n0, m0))[1]

    assert torch.autograd.gradcheck(step, (xp, h0, c0, n0, m0, R))


def test_recurrent_with_lengths_two_layers_bidirectional(registered):
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(lambda n: _randomised(SLSTMCell(n, H)), input_size=I, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=D64)
    lengths = torch.tensor([T, 2, 4])
    out, state = layer(x, lengths=lengths)
    assert out.shape == (T, B, 2 * H) and len(state) == 4 and all(s.shape == (4, B, H) for s in state)
    for b, n in enumerate(lengths.tolist()):
        assert (out[n:, b] == 0).all()
        out_b, state_b = layer(x[:n, b : b + 1])  # the sequence alone, unpadded
        torch.testing.assert_close(out[:n, b : b + 1], out_b, **TOL)
        for part, part_b in zip(state, state_b):
            torch.testing.assert_close(part[:, b : b + 1], part_b, **TOL)


@pytest.mark.parametrize(
    "args,kwargs,error,words",
    [
        ((0, H), {}, ValueError, "input_size"),
        ((I, 0), {}, ValueError, "hidden_size"),
        ((I, "5"), {}, TypeError, "hidden_size"),
        ((I, H), {"bias": "no"}, TypeError, "bias"),
    ],
)
def test_bad_arguments(args, kwargs, error, words):
    with pytest.raises(error, match=f"SLSTMCell: {words}"):
        SLSTMCell(*args, **kwargs)


def test_gates_dict():
    cell = _randomised(SLSTMCell(I, H))
    state0 = _random_state()
    gates = {}
    h, (h_, c, n, m) = cell.step(cell.project_input(torch.randn(B, I, dtype=D64)), state0, gates)
    assert list(gates) == list(SLSTM_KIND.gates) and SLSTM_KIND.gates[-1] == "hidden"
    assert all(g.shape == (B, H) for g in gates.values())
    assert torch.equal(gates["hidden"], h) and torch.equal(h_, h) and torch.equal(gates["cell"], c)
    for name in ("input", "forget", "output"):  # stabilised gates lie in [0, 1]
        assert ((gates[name] >= 0) & (gates[name] <= 1)).all()
    assert (gates["input"] == 1).any() or (gates["forget"] == 1).any()  # the max is one of them
    torch.testing.assert_close(n, gates["forget"] * state0[2] + gates["input"], **TOL)


def test_init_and_kind():
    torch.manual_seed(0)
    cell = SLSTMCell(I, H)
    b_i, b_f, b_z, b_o = cell.bias_ih.detach().chunk(4)
    torch.testing.assert_close(b_f, torch.linspace(3, 6, H))
    assert (b_i == 0).all() and (b_z == 0).all() and (b_o == 0).all()
    assert cell.weight_hh.abs().max() <= H**-0.5 and cell.weight_hh.std() > 0
    config = SLSTMConfig(I, H)
    assert config.cell == "slstm" and cell.backend_config() == config
    w = SLSTMWeights(*(torch.full(shape, 7.0) for _, shape in present_weights(SLSTM_WEIGHTS, config)))
    SLSTM_KIND.init(config, w)
    torch.testing.assert_close(w.bias_ih[H : 2 * H], torch.linspace(3, 6, H))
    assert SLSTMCell(I, H, bias=False).bias_ih is None
    assert SLSTM_KIND.state_shapes(config) == ((H,),) * 4
    assert all(s.shape == (B, H) and (s == 0).all() for s in cell.initial_state(B))
    cell = _randomised(cell)
    x, state0 = torch.randn(B, I, dtype=D64), _random_state()
    xp = SLSTM_KIND.project(config, cell.weights(), x)
    torch.testing.assert_close(SLSTM_KIND.step(config, cell.weights(), xp, state0)[0], cell(x, state0)[0], **TOL)


def test_docstring_examples_run():
    result = doctest.testmod(slstm_module, report=False)
    assert result.attempted > 0 and result.failed == 0
