"""minGRU and minLSTM against the paper's equations (Feng et al. 2024, arXiv 2410.01201,
appendix: the sequential mode), transcribed here with separate per-gate weights and a plain loop."""
import pytest
import torch

import rnnkit
from rnnkit.cells import KINDS, MinGRUCell, MinLSTMCell
from rnnkit.cells.minrnn import MINGRU_KIND, MINLSTM_KIND, positive

D64 = torch.float64
T, B, I, H = 6, 3, 4, 5


def g(x):  # the paper's g: x + 0.5 for x >= 0, sigmoid(x) below
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def paper_mingru(cell, xs, h):
    W_z, W_h = cell.weight_ih.chunk(2)
    b_z, b_h = cell.bias_ih.chunk(2) if cell.bias_ih is not None else (0.0, 0.0)
    out = []
    for x_t in xs:
        z_t = torch.sigmoid(x_t @ W_z.T + b_z)
        h_tilde = g(x_t @ W_h.T + b_h)
        h = (1 - z_t) * h + z_t * h_tilde
        out.append(h)
    return torch.stack(out)


def paper_minlstm(cell, xs, h):
    W_f, W_i, W_h = cell.weight_ih.chunk(3)
    b_f, b_i, b_h = cell.bias_ih.chunk(3) if cell.bias_ih is not None else (0.0, 0.0, 0.0)
    out = []
    for x_t in xs:
        f_t = torch.sigmoid(x_t @ W_f.T + b_f)
        i_t = torch.sigmoid(x_t @ W_i.T + b_i)
        h_tilde = g(x_t @ W_h.T + b_h)
        f_prime, i_prime = f_t / (f_t + i_t), i_t / (f_t + i_t)
        h = f_prime * h + i_prime * h_tilde
        out.append(h)
    return torch.stack(out)


CASES = [(MinGRUCell, paper_mingru), (MinLSTMCell, paper_minlstm)]


def _cell(cls, bias=True):
    torch.manual_seed(0)
    cell = cls(I, H, bias=bias).double()
    with torch.no_grad():  # wide enough that g's two branches and saturated gates both occur
        for p in cell.parameters():
            p.uniform_(-1.5, 1.5)
    return cell


@pytest.mark.parametrize("cls, paper", CASES, ids=["mingru", "minlstm"])
@pytest.mark.parametrize("bias", [True, False])
def test_the_step_is_the_papers_equations(cls, paper, bias):
    cell = _cell(cls, bias)
    xs = torch.randn(T, B, I, dtype=D64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=D64)
    h, outs = h0, []
    for x_t in xs:
        y, h = cell(x_t, h)
        outs.append(y)
    ours, theirs = torch.stack(outs), paper(cell, xs, h0)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    weights = torch.randn(ours.shape, dtype=D64)
    leaves = [xs] + list(cell.parameters())
    for a, b in zip(torch.autograd.grad((ours * weights).sum(), leaves),
                    torch.autograd.grad((theirs * weights).sum(), leaves)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [MinGRUCell, MinLSTMCell])
def test_gradcheck_of_the_step(cls):
    cell = _cell(cls)
    x = torch.randn(2, I, dtype=D64, requires_grad=True)
    h = torch.randn(2, H, dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h: cell(x, h)[0], (x, h))


def test_g_is_positive_and_continuous():
    x = torch.linspace(-30, 30, 601, dtype=D64)
    assert (positive(x) > 0).all()
    assert positive(torch.tensor(0.0)) == 0.5 == torch.sigmoid(torch.tensor(0.0))


@pytest.mark.parametrize("cls, kind", [(MinGRUCell, MINGRU_KIND), (MinLSTMCell, MINLSTM_KIND)])
def test_through_recurrent_with_lengths_each_sequence_as_if_alone(cls, kind, monkeypatch):
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(lambda n: cls(n, H), input_size=I, num_layers=2, bidirectional=True).double()
    x = torch.randn(T, B, I, dtype=D64)
    lengths = torch.tensor([6, 2, 4])
    y, h = layer(x, lengths=lengths)
    assert y.shape == (T, B, 2 * H) and h.shape == (4, B, H)
    assert y[2:, 1].abs().max() == 0
    for b, n in enumerate(lengths.tolist()):
        y_b, h_b = layer(x[:n, b : b + 1])
        torch.testing.assert_close(y_b[:, 0], y[:n, b])
        torch.testing.assert_close(h_b[:, 0], h[:, b])
    assert KINDS[kind.name] is kind


def test_gates_are_recorded_by_their_names():
    for cls, kind in [(MinGRUCell, MINGRU_KIND), (MinLSTMCell, MINLSTM_KIND)]:
        cell = _cell(cls)
        gates = {}
        h, _ = cell.step(cell.project_input(torch.randn(B, I, dtype=D64)), torch.zeros(B, H, dtype=D64), gates)
        assert tuple(gates) == kind.gates or set(gates) == set(kind.gates)
        assert all(v.shape == (B, H) for v in gates.values())
        torch.testing.assert_close(gates["hidden"], h)
    torch.testing.assert_close(gates["forget"] + gates["input"], torch.ones(B, H, dtype=D64))


@pytest.mark.parametrize("cls", [MinGRUCell, MinLSTMCell])
def test_bad_arguments_get_one_clear_error(cls):
    with pytest.raises(ValueError, match=f"{cls.__name__}: input_size"):
        cls(0, 3)
    with pytest.raises(TypeError, match=f"{cls.__name__}: bias"):
        cls(2, 3, bias="yes")
