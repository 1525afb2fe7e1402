"""Gradient flow: how strongly the loss reaches back to the hidden state at every step.

For a model whose loss is computed after reading a sequence, ``gradient_flow`` measures
``|| d loss / d h_t ||`` for every step ``t`` of the last recurrent layer's output ``h_t``.
This is the *total* derivative that backpropagation through time carries back, the sum of
the path through the output at ``t`` (if the loss reads it) and the path through
``h_{t+1}``: in the notes' terms (seed 002), for the Elman RNN
``d L / d h_t = W^T diag(f'(a_{t+1})) d L / d h_{t+1} + (direct term)``, a product of Jacobians
that shrinks geometrically when ``||W|| max|f'| < 1``: the vanishing gradient.

How it is measured. A fused kernel runs the whole sequence in one call, so its output tensor
``out`` (B, T, H) is not what the recurrence passes on: ``out.grad`` holds only the direct term
(zero before the last step of a many-to-one model). So a forward hook on the model's last
recurrent layer recomputes that layer step by step with the layer's own weights (its cells
of the reference equations, ``layer.bound_cells()``, or the cells of an ``rnnkit.Recurrent``;
the layers below run as usual, through ``rnnkit.layers.run_layers``), keeps every ``h_t`` (the
same tensor the next step reads), and hands the recomputed output and state on in place of the
layer's (the two agree to float rounding; a disagreement is logged). One backward pass,
``torch.autograd.grad(loss, [h_1 .. h_T])``, gives every ``d loss / d h_t``; the parameters'
``.grad`` are left untouched.

The loss is the task's ``step(model, batch).loss_sum``, the loss *summed* over the batch, so
the gradient on sequence ``b``'s ``h_t`` is that of sequence ``b``'s own loss. The curve is the
**batch mean of the per-sequence norms**, ``mean_b || d L_b / d h_t^(b) ||_2``: it does not depend
on the batch size. The model runs in eval mode (no dropout) while it is measured.

Example (a trained run)::

    run = rnnkit.load("runs/adding")
    batch = ...  # one batch of the task's data, every sequence T steps long
    curve = gradient_flow(run.model, run.task, batch)
    plot_gradient_flow({"lstm": curve}, "gradient-flow.png")

``rnnkit.experiments.gradient_flow.compare_cells`` draws the curves of fresh models of several
cells on the adding problem; ``gradients_png`` the curve of a character LM over a text, for the
inspect report.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..layers import RECURRENT_LAYERS, Recurrent, run_layers
from ..layers.boundary import split_states, stack_states, unpack_input
from .plots import save_figure

__all__ = ["gradient_flow", "plot_gradient_flow", "gradients_png", "last_recurrent_layer"]

log = logging.getLogger(__name__)

_LAYERS = RECURRENT_LAYERS + (Recurrent,)


def last_recurrent_layer(model: nn.Module) -> nn.Module:
    """The last rnnkit recurrent layer (RNN, LSTM, GRU or Recurrent) among ``model.modules()``."""
    layers = [m for m in model.modules() if isinstance(m, _LAYERS)]
    if not layers:
        raise TypeError(f"gradient_flow: model must hold an rnnkit recurrent layer (RNN, LSTM, GRU or Recurrent), "
                        f"got a {type(model).__name__} with none")
    return layers[-1]


def gradient_flow(model: nn.Module, task, batch) -> Tensor:
    """(T,) norms of ``d loss / d h_t`` of the last recurrent layer's output at each step t.

    The batch mean of the per-sequence norms (see the module docstring), from one backward
    pass through a step-by-step recomputation of the last layer.

    Args:
        model: a model holding rnnkit recurrent layers, unidirectional, that calls its last
            recurrent layer once per ``task.step`` (as every rnnkit model does).
        task: anything with ``step(model, batch) -> StepOutput`` (an rnnkit task).
        batch: one batch in the task's format; its sequences must all have T steps.

    Returns:
        A float32 CPU tensor (T,), entry t for ``h_t`` (t = 0 is the first step).
    """
    layer = last_recurrent_layer(model)
    if layer.bidirectional:
        raise ValueError("gradient_flow: the last recurrent layer must be unidirectional (one h_t per step), "
                         "got a bidirectional layer")
    captured: list[list[Tensor]] = []

    def hook(module, args, kwargs, output):
        (out, state), hs = _unrolled(module, args, kwargs)
        original = output[0]
        if original.shape != out.shape or not torch.allclose(out, original, rtol=1e-3, atol=1e-4):
            log.warning("gradient_flow: the step-by-step pass differs from the layer's output by up to %.3g",
                        float((out - original).abs().max()) if original.shape == out.shape else float("nan"))
        captured.append(hs)
        return out, state

    was_training = model.training
    model.eval()
    handle = layer.register_forward_hook(hook, with_kwargs=True)
    try:
        with torch.enable_grad():
            loss = task.step(model, batch).loss_sum
    finally:
        handle.remove()
        model.train(was_training)
    if len(captured) != 1:
        raise ValueError(f"gradient_flow: the model must call its last recurrent layer once per step, "
                         f"it did {len(captured)} times")
    hs = captured[0]
    grads = torch.autograd.grad(loss, hs, allow_unused=True)  # one backward pass
    grads = [torch.zeros_like(h) if g is None else g for h, g in zip(hs, grads)]
    norms = torch.stack(grads).detach().flatten(2).norm(dim=2)  # (T, B, H) -> (T, B)
    return norms.mean(1).float().cpu()  # (T,)


def _unrolled(layer: nn.Module, args: tuple, kwargs: dict):
    """Rerun ``layer(*args, **kwargs)`` with its last layer step by step.

    Returns ((output, state) as the layer returns them, [h_0 .. h_{T-1}]), each h_t (B, H_out)
    the very tensor the next step reads.
    """
    names = ("x", "state", "lengths")
    call = {**dict(zip(names, args)), **kwargs}
    x, state, lengths = call.get("x"), call.get("state"), call.get("lengths")
    if isinstance(x, PackedSequence):
        raise ValueError("gradient_flow: packed input has sequences of different lengths; "
                         "give the model a batch whose sequences all have T steps")
    batch = unpack_input("gradient_flow", x, lengths, layer.batch_first, layer.input_size)
    x_tbi = batch.x  # (T, B, I)
    T, B = x_tbi.shape[:2]
    if batch.lengths is not None and bool((batch.lengths != T).any()):
        raise ValueError(f"gradient_flow: every sequence of the batch must have T={T} steps, "
                         f"got lengths from {int(batch.lengths.min())} to {int(batch.lengths.max())}")
    # rnnkit.RNN / LSTM / GRU: each layer's parameters as a cell of the reference equations
    cells = list(layer.cells) if isinstance(layer, Recurrent) else layer.bound_cells()
    template = layer.initial_state(B, device=x_tbi.device, dtype=x_tbi.dtype)
    states0 = split_states(template if state is None else batch.state_in("gradient_flow", state), len(cells))
    below, finals = x_tbi, []
    if len(cells) > 1:  # the layers below the last run as usual (eval mode: no dropout)
        below, finals = run_layers(x_tbi, None, cells[:-1], states0[:-1], 1, 0.0, False)  # (T, B, H_in)
    cell, carry = cells[-1], states0[-1]
    if hasattr(cell, "project_input") and hasattr(cell, "step"):
        xs, step = cell.project_input(below), cell.step  # (T, B, G)
    else:
        xs, step = below, cell
    hs = []
    for t in range(T):
        h, carry = step(xs[t], carry)
        passed_on = carry if isinstance(carry, Tensor) else carry[0]
        if passed_on is not h:
            raise ValueError(f"gradient_flow: the cell {type(cell).__name__} must pass its output h_t on as (the first "
                             "part of) its state, as rnnkit's cells do")
        hs.append(h)
    out = torch.stack(hs)  # (T, B, H_out)
    out = out.squeeze(1) if batch.unbatched else (out.transpose(0, 1) if layer.batch_first else out)
    return (out, batch.state_out(stack_states(finals + [carry]))), hs


def plot_gradient_flow(curves: dict[str, Tensor], path: str | os.PathLike, title: str = "") -> None:
    """One figure, log-scale y, one line per label (e.g. cell type): ``|| d loss / d h_t ||`` against t.

    Args:
        curves: label -> (T,) tensor from :func:`gradient_flow` (the T may differ).
        path: the PNG to write (its folder is created).
        title: a title; default "gradient flow".
    """
    if not isinstance(curves, dict) or not curves:
        raise ValueError(f"plot_gradient_flow: curves must be a non-empty dict label -> (T,) tensor, got {curves!r}")
    for label, curve in curves.items():
        if not isinstance(curve, Tensor) or curve.dim() != 1 or curve.numel() == 0:
            raise ValueError(f"plot_gradient_flow: curve {label!r} must be a non-empty 1-D tensor, got "
                             f"{tuple(curve.shape) if isinstance(curve, Tensor) else type(curve).__name__}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, curve in curves.items():
        ax.plot(range(1, curve.numel() + 1), curve.detach().cpu().double().numpy(), label=str(label))
    ax.set_yscale("log")
    ax.set_xlabel("time step t (the loss is read after the last)")
    ax.set_ylabel("mean over sequences of ||d loss / d h_t||")
    ax.set_title(title or "gradient flow")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    save_figure(fig, path)


def gradients_png(model: nn.Module, task, text: str, vocab) -> bytes:
    """The gradient-flow plot of a character language model over ``text``, as PNG bytes.

    Args:
        model: the model (``forward(ids (B, T))``), e.g. ``rnnkit.load(run_dir).model``.
        task: anything with ``step(model, batch) -> StepOutput`` for batches ``{"x", "y"}`` of
            ids (1, T - 1): the run's task.
        text: at least 2 characters; x is text[:-1], y text[1:].
        vocab: characters -> ids (``encode``).
    """
    ids = torch.tensor([vocab.encode(list(text))])  # (1, T)
    batch = {"x": ids[:, :-1], "y": ids[:, 1:]}
    curve = gradient_flow(model, task, batch)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gradients.png"
        plot_gradient_flow({_describe(model): curve}, path, title="|| d loss / d h_t || of the last layer, over the text")
        return path.read_bytes()


def _describe(model: nn.Module) -> str:
    for m in model.modules():
        if isinstance(m, RECURRENT_LAYERS):
            return f"{m.kind.name.upper()} {m.num_layers}x{m.hidden_size}"
    return type(model).__name__
