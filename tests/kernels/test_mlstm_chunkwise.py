"""Tests for rnnkit.kernels.mlstm_chunkwise: the chunkwise parallel mLSTM equals a loop of the
reference step ``mlstm_step`` with the engine's masking rule (past a sequence's length the whole
state is kept and the output is 0): outputs, final state and gradients, float64.
"""

import pytest
import torch

from rnnkit.cells.mlstm import MLSTMCell, mlstm_project, mlstm_step
from rnnkit.kernels.mlstm_chunkwise import mlstm_sequence

B, I, H, T = 3, 4, 6, 7  # batch, input features, hidden units, steps (not a multiple of 3)
TOL = dict(rtol=1e-9, atol=1e-11)
D64 = torch.float64


def _step_loop(config, w, x, state0, mask):
    """The reference: mlstm_step at every step; where mask is False the state is kept, output 0."""
    xp = mlstm_project(w, x)  # (T, B, G)
    state, outs = tuple(state0), []
    for t in range(x.shape[0]):
        h, new = mlstm_step(w, xp[t], state, config.num_heads)
        if mask is not None:
            keep = mask[t]
            state = tuple(torch.where(keep.view(-1, *[1] * (n.dim() - 1)), n, o) for n, o in zip(new, state))
            h = torch.where(keep[:, None], h, 0.0)
        else:
            state = new
        outs.append(h)
    return torch.stack(outs), state


def _setup(num_heads, seed=0, dtype=D64, steps=T, batch=B):
    """A cell with every weight away from its init, an input, and a nonzero state (h, C, n, m)."""
    gen = torch.Generator().manual_seed(seed)
    cell = MLSTMCell(I, H, num_heads=num_heads).to(dtype)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=dtype) * 1.6 - 0.8)
    x = torch.randn(steps, batch, I, generator=gen, dtype=dtype)
    state0 = tuple(0.5 * torch.randn(s.shape, generator=gen, dtype=dtype) for s in cell.initial_state(batch))
    return cell, x, state0


def _mask(lengths, steps=T):
    return None if lengths is None else torch.arange(steps).unsqueeze(1) < torch.tensor(lengths)


def _loss_and_grads(fn, cell, x, state0, mask, seed=9):
    """A random projection of the outputs and of every part of the final state, and its
    gradients w.r.t. x, every weight and every part of state0."""
    x = x.detach().requires_grad_()
    state0 = tuple(s.detach().requires_grad_() for s in state0)
    out, final = fn(cell.config, cell.weights(), x, state0, mask)
    gen = torch.Generator().manual_seed(seed)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    for part in final:
        loss = loss + (part * torch.randn(part.shape, generator=gen, dtype=part.dtype)).sum()
    inputs = [x, cell.weight_ih, cell.bias_ih, *state0]
    return out, final, torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True)


@pytest.mark.parametrize("num_heads", [1, 2])
@pytest.mark.parametrize("chunk_size", [1, 3, 64])
@pytest.mark.parametrize("lengths", [None, [T, 2, 5]])
def test_chunkwise_equals_the_step_loop(num_heads, chunk_size, lengths):
    cell, x, state0 = _setup(num_heads)
    mask = _mask(lengths)

    def chunkwise(config, w, x, state0, mask):
        return mlstm_sequence(config, w, x, state0, mask, chunk_size)

    out, final, grads = _loss_and_grads(chunkwise, cell, x, state0, mask)
    out_ref, final_ref, grads_ref = _loss_and_grads(_step_loop, cell, x, state0, mask)
    torch.testing.assert_close(out, out_ref, **TOL)
    for name, part, part_ref in zip("hCnm", final, final_ref):
        torch.testing.assert_close(part, part_ref, **TOL, msg=lambda m: f"final {name}: {m}")
    names = ["x", "weight_ih", "bias_ih", "h0", "C0", "n0", "m0"]
    for name, g, g_ref in zip(names, grads, grads_ref):
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g, g_ref, **TOL, msg=lambda m: f"grad {name}: {m}")
    if lengths is not None:
        for b, length in enumerate(lengths):
            assert torch.all(out[length:, b] == 0)


def test_a_sequence_without_steps_keeps_its_whole_state_h_included():
    cell, x, state0 = _setup(2, seed=1)
    mask = _mask([T, 0, 3])  # the engine never sends a length 0, but the rule still holds
    out, final, grads = _loss_and_grads(lambda *a: mlstm_sequence(*a, chunk_size=3), cell, x, state0, mask)
    out_ref, final_ref, grads_ref = _loss_and_grads(_step_loop, cell, x, state0, mask)
    torch.testing.assert_close(out, out_ref, **TOL)
    for part, part0, part_ref in zip(final, state0, final_ref):
        torch.testing.assert_close(part, part_ref, **TOL)
        torch.testing.assert_close(part[1], part0[1], rtol=0, atol=0)
    assert grads_ref[3][1].abs().sum() > 0  # h0 reaches the final h only through that sequence
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, **TOL)


def test_long_sequence_with_large_gate_values_stays_exact():
    """Input-gate pre-activations ~ 50 and forget gates near 0 and 1: the stabiliser at work
    across many chunks (float64, so the step loop is an exact reference)."""
    cell, x, state0 = _setup(2, seed=2, steps=150, batch=2)
    with torch.no_grad():
        cell.bias_ih[3 * H : 3 * H + 2] = torch.tensor([50.0, -20.0])  # input gate
        cell.bias_ih[3 * H + 2 : 3 * H + 4] = torch.tensor([8.0, -8.0])  # forget gate
    mask = _mask([150, 77], steps=150)
    out, final = mlstm_sequence(cell.config, cell.weights(), x, state0, mask, chunk_size=16)
    out_ref, final_ref = _step_loop(cell.config, cell.weights(), x, state0, mask)
    torch.testing.assert_close(out, out_ref, rtol=1e-8, atol=1e-10)
    for part, part_ref in zip(final, final_ref):
        torch.testing.assert_close(part, part_ref, rtol=1e-8, atol=1e-10)


def test_float32_matches_the_float32_step_loop():
    cell, x, state0 = _setup(2, seed=3, dtype=torch.float32, steps=40)
    mask = _mask([40, 13, 31], steps=40)
    out, final = mlstm_sequence(cell.config, cell.weights(), x, state0, mask, chunk_size=16)
    out_ref, final_ref = _step_loop(cell.config, cell.weights(), x, state0, mask)
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-5)
    for part, part_ref in zip(final, final_ref):
        torch.testing.assert_close(part, part_ref, rtol=1e-4, atol=1e-5)


def test_gradcheck_tiny():
    gen = torch.Generator().manual_seed(4)
    cell = MLSTMCell(2, 4, num_heads=2).double()
    x = torch.randn(5, 2, 2, generator=gen, dtype=D64, requires_grad=True)
    state0 = tuple((0.5 * torch.randn(s.shape, generator=gen, dtype=D64)).requires_grad_()
                   for s in cell.initial_state(2))
    weight, bias = cell.weight_ih.detach().requires_grad_(), cell.bias_ih.detach().requires_grad_()
    mask = _mask([5, 3], steps=5)

    def run(x, weight, bias, h0, C0, n0, m0):
        w = cell.weights()._replace(weight_ih=weight, bias_ih=bias)
        out, final = mlstm_sequence(cell.config, w, x, (h0, C0, n0, m0), mask, chunk_size=2)
        return (out,) + tuple(final)

    assert torch.autograd.gradcheck(run, (x, weight, bias) + state0)


def test_no_steps_returns_the_state():
    cell, x, state0 = _setup(1)
    out, final = mlstm_sequence(cell.config, cell.weights(), x[:0], state0)
    assert out.shape == (0, B, H)
    assert all(a is b for a, b in zip(final, state0))


@pytest.mark.parametrize("change,error,words", [
    (dict(chunk_size=0), ValueError, "chunk_size must be a positive int, got 0"),
    (dict(x=torch.zeros(T, B, I + 1, dtype=D64)), ValueError, r"x must be \(T, B, 4\)"),
    (dict(mask=torch.ones(T, B)), ValueError, "mask must be a bool tensor"),
    (dict(state0=(torch.zeros(B, H, dtype=D64),)), TypeError, r"state0 must be a tuple \(h, C, n, m\)"),
])
def test_bad_arguments_are_one_clear_error(change, error, words):
    cell, x, state0 = _setup(2)
    args = dict(x=x, state0=state0, mask=None, chunk_size=3) | change
    with pytest.raises(error, match="mlstm_sequence: " + words):
        mlstm_sequence(cell.config, cell.weights(), args["x"], args["state0"], args["mask"], args["chunk_size"])
