"""Tests for rnnkit.cells.mlstm: the stabilised step against the paper's equations (arXiv 2405.04517,
section 2.3 and appendix) transcribed here by hand, unstabilised and stabilised, gradients, the
engine with lengths, argument checks, the gates record, the initialisation and the docstring.
"""

import doctest
import math

import pytest
import torch

import rnnkit
import rnnkit.cells
from rnnkit.cells import mlstm as mlstm_module
from rnnkit.cells.mlstm import MLSTM_KIND, MLSTM_WEIGHTS, MLSTMCell, MLSTMConfig, MLSTMWeights, mlstm_step

B, I, H, T = 3, 4, 6, 5  # batch, input features, hidden units, steps
TOL = dict(rtol=1e-10, atol=1e-12)
D64 = torch.float64


@pytest.fixture
def engine_knows_mlstm(monkeypatch):
    """rnnkit.Recurrent finds a cell's kind in rnnkit.cells.KINDS (where the lead registers it)."""
    monkeypatch.setitem(rnnkit.cells.KINDS, "mlstm", MLSTM_KIND)


def _cell(num_heads, bias=True, seed=0, dtype=D64):
    torch.manual_seed(seed)
    cell = MLSTMCell(I, H, bias=bias, num_heads=num_heads).to(dtype)
    with torch.no_grad():  # away from the init: every weight ~ U(-0.8, 0.8)
        for p in cell.parameters():
            p.uniform_(-0.8, 0.8)
    return cell


def _state(num_heads, seed=1, dtype=D64):
    """A nonzero stabilised state (h, C, n, m)."""
    gen = torch.Generator().manual_seed(seed)
    d = H // num_heads
    shapes = ((B, H), (B, num_heads, d, d), (B, num_heads, d), (B, num_heads))
    return tuple(0.5 * torch.randn(s, generator=gen, dtype=dtype) for s in shapes)


def _gate_matrices(cell):
    """Each gate's own weights, sliced from the stacked projection: the paper's W_q ... b_o."""
    NH, d = cell.num_heads, H // cell.num_heads
    W, b = cell.weight_ih, cell.bias_ih
    if b is None:
        b = torch.zeros(W.shape[0], dtype=W.dtype)
    rows = {"q": (0, H), "k": (H, 2 * H), "v": (2 * H, 3 * H), "i": (3 * H, 3 * H + NH),
            "f": (3 * H + NH, 3 * H + 2 * NH), "o": (3 * H + 2 * NH, 4 * H + 2 * NH)}
    return {g: (W[a:z], b[a:z]) for g, (a, z) in rows.items()}, NH, d


def _sigmoid(z):
    return 1 / (1 + torch.exp(-z))


def _paper_unstabilised(cell, xs, state):
    """The paper's equations as written (exp input gate, no stabiliser), one head at a time.

    The stabilised state (h, C, n, m) maps to the paper's (C e^m, n e^m). Returns the outputs
    (T, B, H) and the final C, n in the paper's (unscaled) form.
    """
    g, NH, d = _gate_matrices(cell)
    _, C_st, n_st, m = state
    C = [C_st[:, j] * torch.exp(m[:, j])[:, None, None] for j in range(NH)]  # each (B, d, d)
    n = [n_st[:, j] * torch.exp(m[:, j])[:, None] for j in range(NH)]  # each (B, d)
    outs = []
    for x_t in xs:
        o_t = _sigmoid(x_t @ g["o"][0].T + g["o"][1])  # (B, H)
        h_t = []
        for j in range(NH):
            head = slice(j * d, (j + 1) * d)
            q_t = x_t @ g["q"][0][head].T + g["q"][1][head]  # (B, d)
            k_t = (x_t @ g["k"][0][head].T + g["k"][1][head]) / math.sqrt(d)
            v_t = x_t @ g["v"][0][head].T + g["v"][1][head]
            i_t = torch.exp(x_t @ g["i"][0][j] + g["i"][1][j])  # (B,)
            f_t = _sigmoid(x_t @ g["f"][0][j] + g["f"][1][j])
            C[j] = f_t[:, None, None] * C[j] + i_t[:, None, None] * torch.einsum("ba,bc->bac", v_t, k_t)
            n[j] = f_t[:, None] * n[j] + i_t[:, None] * k_t
            numer = torch.einsum("bac,bc->ba", C[j], q_t)  # C_t q_t
            denom = torch.clamp((n[j] * q_t).sum(-1).abs(), min=1.0)  # max(|n_t^T q_t|, 1)
            h_t.append(numer / denom[:, None])
        outs.append(o_t * torch.cat(h_t, -1))
    return torch.stack(outs), torch.stack(C, 1), torch.stack(n, 1)


def _paper_stabilised(cell, xs, state):
    """The appendix's stabilised equations, one head at a time: the final (h, C, n, m)."""
    g, NH, d = _gate_matrices(cell)
    h, C_all, n_all, m_all = state
    C = [C_all[:, j] for j in range(NH)]
    n = [n_all[:, j] for j in range(NH)]
    m = [m_all[:, j] for j in range(NH)]
    for x_t in xs:
        o_t = _sigmoid(x_t @ g["o"][0].T + g["o"][1])
        h_t = []
        for j in range(NH):
            head = slice(j * d, (j + 1) * d)
            q_t = x_t @ g["q"][0][head].T + g["q"][1][head]
            k_t = (x_t @ g["k"][0][head].T + g["k"][1][head]) / math.sqrt(d)
            v_t = x_t @ g["v"][0][head].T + g["v"][1][head]
            i_tilde = x_t @ g["i"][0][j] + g["i"][1][j]
            log_f = -torch.log1p(torch.exp(-(x_t @ g["f"][0][j] + g["f"][1][j])))  # log sigmoid
            m_t = torch.max(log_f + m[j], i_tilde)
            i_p = torch.exp(i_tilde - m_t)
            f_p = torch.exp(log_f + m[j] - m_t)
            C[j] = f_p[:, None, None] * C[j] + i_p[:, None, None] * v_t[:, :, None] * k_t[:, None, :]
            n[j] = f_p[:, None] * n[j] + i_p[:, None] * k_t
            m[j] = m_t
            denom = torch.max((n[j] * q_t).sum(-1).abs(), torch.exp(-m_t))
            h_t.append((C[j] @ q_t[:, :, None])[:, :, 0] / denom[:, None])
        h = o_t * torch.cat(h_t, -1)
    return h, torch.stack(C, 1), torch.stack(n, 1), torch.stack(m, 1)


def _run_steps(cell, xs, state):
    outs = []
    for x_t in xs:
        h, state = cell(x_t, state)
        outs.append(h)
    return torch.stack(outs), state


# -- the equations ----------------------------------------------------------------------------

@pytest.mark.parametrize("num_heads,bias", [(1, True), (2, True), (3, False)])
def test_step_equals_the_papers_equations(num_heads, bias):
    cell = _cell(num_heads, bias)
    xs = torch.randn(T, B, I, dtype=D64, generator=torch.Generator().manual_seed(2))
    state = _state(num_heads)
    out, (h, C, n, m) = _run_steps(cell, xs, state)
    out_paper, C_paper, n_paper = _paper_unstabilised(cell, xs, state)
    torch.testing.assert_close(out, out_paper, **TOL)  # the stabiliser changes nothing in h
    torch.testing.assert_close(C * torch.exp(m)[..., None, None], C_paper, **TOL)
    torch.testing.assert_close(n * torch.exp(m)[..., None], n_paper, **TOL)
    for ours, theirs in zip((h, C, n, m), _paper_stabilised(cell, xs, state)):
        torch.testing.assert_close(ours, theirs, **TOL)
    assert torch.equal(h, out[-1])


@pytest.mark.parametrize("num_heads", [1, 2])
def test_gradients_equal_the_papers_equations(num_heads):
    cell = _cell(num_heads)
    xs = torch.randn(T, B, I, dtype=D64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    state = _state(num_heads)
    proj = torch.randn(T, B, H, dtype=D64, generator=torch.Generator().manual_seed(4))
    inputs = [xs, cell.weight_ih, cell.bias_ih]
    ours = torch.autograd.grad((_run_steps(cell, xs, state)[0] * proj).sum(), inputs)
    theirs = torch.autograd.grad((_paper_unstabilised(cell, xs, state)[0] * proj).sum(), inputs)
    for a, b in zip(ours, theirs):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, **TOL)


def test_the_stabiliser_keeps_float32_finite_where_exp_overflows():
    cell64 = _cell(2)
    with torch.no_grad():  # input-gate pre-activations ~ 200: exp overflows float32 (max ~ e^88)
        cell64.bias_ih[3 * H : 3 * H + 2] = 200.0
    cell32 = MLSTMCell(I, H, num_heads=2)
    cell32.load_state_dict({k: v.float() for k, v in cell64.state_dict().items()})
    xs = torch.randn(T, B, I, dtype=D64, generator=torch.Generator().manual_seed(5))
    out32, _ = _run_steps(cell32, xs.float(), cell32.initial_state(B))
    out_paper, _, _ = _paper_unstabilised(cell64, xs, tuple(torch.zeros_like(s) for s in _state(2)))
    assert torch.isfinite(out32).all()
    torch.testing.assert_close(out32.double(), out_paper, rtol=1e-3, atol=1e-3)  # float32 of values ~ 200
    naive32, _, _ = _paper_unstabilised(cell32, xs.float(), cell32.initial_state(B))
    assert not torch.isfinite(naive32).all()  # what the stabiliser avoids


def test_gradcheck_of_the_step():
    cell = MLSTMCell(3, 4, num_heads=2).double()
    gen = torch.Generator().manual_seed(6)
    xp = torch.randn(2, 4 * 4 + 2 * 2, dtype=D64, generator=gen, requires_grad=True)
    state = tuple((0.5 * torch.randn(s.shape, dtype=D64, generator=gen)).requires_grad_()
                  for s in cell.initial_state(2))

    def step(xp_t, h, C, n, m):
        h_t, (_, C_t, n_t, m_t) = mlstm_step(cell.weights(), xp_t, (h, C, n, m), 2)
        return h_t, C_t, n_t, m_t

    assert torch.autograd.gradcheck(step, (xp,) + state)


# -- the engine -------------------------------------------------------------------------------

def test_recurrent_with_lengths_two_layers_bidirectional(engine_knows_mlstm):
    torch.manual_seed(7)
    layer = rnnkit.Recurrent(lambda n: MLSTMCell(n, H, num_heads=2), input_size=I, num_layers=2,
                             bidirectional=True).double()
    x = torch.randn(T, B, I, dtype=D64)
    state = tuple(0.3 * torch.randn_like(s) for s in layer.initial_state(B))
    lengths = torch.tensor([T, 2, 4])
    out, final = layer(x, state, lengths=lengths)
    assert out.shape == (T, B, 2 * H)
    assert [tuple(s.shape) for s in final] == [(4, B, H), (4, B, 2, 3, 3), (4, B, 2, 3), (4, B, 2)]
    for b, length in enumerate(lengths.tolist()):
        assert torch.all(out[length:, b] == 0)
        out_b, final_b = layer(x[:length, b : b + 1], tuple(s[:, b : b + 1] for s in state))
        torch.testing.assert_close(out[:length, b : b + 1], out_b, **TOL)
        for part, part_b in zip(final, final_b):
            torch.testing.assert_close(part[:, b : b + 1], part_b, **TOL)


# -- arguments, gates, init -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,words", [
    (dict(input_size=0, hidden_size=4), ValueError, "input_size"),
    (dict(input_size=3, hidden_size=2.0), TypeError, "hidden_size"),
    (dict(input_size=3, hidden_size=6, num_heads=4), ValueError, "divisible by num_heads=4, got 6"),
    (dict(input_size=3, hidden_size=6, num_heads=0), ValueError, "num_heads"),
    (dict(input_size=3, hidden_size=6, num_heads=True), TypeError, "num_heads"),
    (dict(input_size=3, hidden_size=6, bias=1), TypeError, "bias"),
])
def test_bad_arguments_are_one_clear_error(kwargs, error, words):
    with pytest.raises(error, match="MLSTMCell: .*" + words):
        MLSTMCell(**kwargs)


def test_gates_record_every_name_per_unit():
    cell = _cell(2)
    xp = cell.project_input(torch.randn(B, I, dtype=D64))
    gates = {}
    h, (h_state, *_rest) = cell.step(xp, _state(2), gates)
    assert tuple(gates) == MLSTM_KIND.gates == ("input", "forget", "output", "hidden")
    assert all(g.shape == (B, H) for g in gates.values())
    assert torch.equal(gates["hidden"], h) and torch.equal(h_state, h)
    for name in ("input", "forget"):  # one scalar per head, repeated over its d = 3 units
        per_head = gates[name].view(B, 2, 3)
        assert torch.equal(per_head, per_head[..., :1].expand(B, 2, 3))
        assert torch.all((per_head >= 0) & (per_head <= 1))  # i' and f' are at most 1 after stabilising


@pytest.mark.parametrize("num_heads", [1, 3])
def test_init_forget_bias_spread_over_heads_input_bias_zero(num_heads):
    cell = MLSTMCell(I, H, num_heads=num_heads)
    NH = num_heads
    bias = cell.bias_ih.detach()
    assert torch.equal(bias[3 * H : 3 * H + NH], torch.zeros(NH))
    assert torch.allclose(bias[3 * H + NH : 3 * H + 2 * NH], torch.linspace(3.0, 6.0, NH))
    bound = 1 / math.sqrt(H)
    others = torch.cat([bias[: 3 * H], bias[3 * H + 2 * NH :], cell.weight_ih.detach().flatten()])
    assert others.abs().max() <= bound and others.abs().max() > 0.5 * bound
    assert MLSTMCell(I, H, bias=False, num_heads=num_heads).bias_ih is None


def test_kind_describes_the_cell():
    config = MLSTMConfig(I, H, True, 2)
    cell = MLSTMCell(I, H, num_heads=2)
    assert cell.config == config and config.cell == MLSTM_KIND.name == "mlstm"
    assert MLSTM_KIND.state_names == ("h", "C", "n", "m")
    assert MLSTM_KIND.state_shapes(config) == tuple(tuple(s.shape[1:]) for s in cell.initial_state(B))
    assert [row.name for row in MLSTM_WEIGHTS] == list(MLSTMWeights._fields) == ["weight_ih", "bias_ih"]
    assert cell.weight_ih.shape == (4 * H + 2 * 2, I)
    w = MLSTMWeights(torch.zeros(4 * H + 4, I), torch.zeros(4 * H + 4))
    MLSTM_KIND.init(config, w)
    assert torch.allclose(w.bias_ih[3 * H + 2 :][:2], torch.tensor([3.0, 6.0])) and w.weight_ih.abs().sum() > 0
    x = torch.randn(B, I)
    state = cell.initial_state(B)
    h_kind, _ = MLSTM_KIND.step(config, cell.weights(), MLSTM_KIND.project(config, cell.weights(), x), state)
    torch.testing.assert_close(h_kind, cell(x, state)[0], rtol=0, atol=0)
    assert cell.backend_config() == config
    assert "num_heads=2" in repr(cell)


def test_docstring_examples_run():
    result = doctest.testmod(mlstm_module, report=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
