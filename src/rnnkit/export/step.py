"""A model's recurrent stack as one time step, the state in and out: ``rnnkit export --step``.

The robust form for streaming on an edge runtime: no loop over time in the file at all, just
each layer's reference step (``BoundCell.project_input`` then ``BoundCell.step``, the cells'
own ``lstm_step`` / ``gru_step`` / ``rnn_step``), which the runtime calls once per arriving
step, feeding the state it got back. It computes what ``rnnkit.Stream`` computes on the same
layers, step after step.

``StepGraph``: x_t (B, I), h (L, B, H_out) [, c, ...] -> y_t (B, H_out), h_n [, c_n, ...],
where the stack is the model itself (an rnnkit ``RNN`` / ``LSTM`` / ``GRU``) or its ``rnn``
attribute (every task model but seq2seq, whose ``DecoderStepGraph`` is already one step), and
x_t is what that stack reads (for a text model, the embedded token): the input layers
(embedding, frame stacking) and the head stay outside, as they do around a ``Stream``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import RECURRENT_LAYERS
from .convert import OnnxLayer
from .graphs import ExportGraph, state_names

__all__ = ["StepGraph", "recurrent_stack"]


def recurrent_stack(model: nn.Module) -> nn.Module:
    """The rnnkit ``RNN`` / ``LSTM`` / ``GRU`` that ``StepGraph`` steps: ``model`` itself or
    ``model.rnn``; ValueError when there is none, or when it is bidirectional."""
    layer = model if isinstance(model, RECURRENT_LAYERS + (OnnxLayer,)) else getattr(model, "rnn", None)
    layer = layer.layer if isinstance(layer, OnnxLayer) else layer  # (in the converted copy)
    if not isinstance(layer, RECURRENT_LAYERS):
        raise ValueError(f"export --step: {type(model).__name__} has no rnnkit RNN/LSTM/GRU stack as its `rnn` "
                         "(a seq2seq model's decoder graph is already one step)")
    if layer.bidirectional:
        raise ValueError(f"export --step: {type(model).__name__}'s recurrent layers are bidirectional, and a "
                         "backward direction needs the future steps; only a unidirectional stack has a step model")
    return layer


class StepGraph(ExportGraph):
    """One step of a model's recurrent stack: x_t (B, I), h (L, B, H_out) [, c (L, B, H)] ->
    y_t (B, H_out) the last layer's output, h_n [, c_n, ...] (L, B, ·) the state after the step.

    Every axis but the batch is fixed; ``lengths`` is ignored (one step has no padding).
    The exported function runs each layer's reference step on the converted copy's weights;
    ``reference`` runs the original stack on a sequence of one step.
    """

    kind = "step"

    def __init__(self, model: nn.Module, lengths: bool = False) -> None:
        recurrent_stack(model)  # refuse before copying
        super().__init__(model, False)
        self.names = state_names(recurrent_stack(model))
        self.paired = len(self.names) > 1  # a tuple state: (h, c), (h, C, n, m), ...

    def output_names(self):
        return ["y_t"] + [f"{n}_n" for n in self.names]

    def dynamic_axes(self, name):
        return {0: "batch"} if name in ("x_t", "y_t") else {1: "batch"}  # states (L, B, ·)

    def sample_inputs(self, batch, time, g):
        layer = recurrent_stack(self.original)
        inputs = {"x_t": torch.randn(batch, layer.input_size, generator=g)}
        state = layer.initial_state(batch)  # h, or (h, c): zeros (L, B, ·) of the state's shapes
        for name, part in zip(self.names, state if self.paired else (state,)):
            inputs[name] = 0.5 * torch.randn(part.shape, generator=g)
        return inputs

    def run(self, model, x_t, *state):
        """The stack's forward on a sequence of one step (the reference)."""
        layer = recurrent_stack(model)
        x = x_t.unsqueeze(1 if layer.batch_first else 0)  # (B, 1, I) or (1, B, I)
        y, state_n = layer(x, tuple(state) if self.paired else state[0])
        y_t = y.squeeze(1 if layer.batch_first else 0)  # (B, H_out)
        return (y_t, *state_n) if self.paired else (y_t, state_n)

    def forward(self, x_t: Tensor, *state: Tensor):
        """Each layer's reference step, one after the other (eval mode: no dropout between)."""
        layer = recurrent_stack(self.model)
        finals = []
        for k in range(layer.num_layers):
            cell = layer.cell(k)
            state_k = tuple(part[k] for part in state) if self.paired else state[0][k]  # each (B, ·)
            x_t, state_k = cell.step(cell.project_input(x_t), state_k)  # x_t: (B, H_out) for the next layer
            finals.append(state_k if self.paired else (state_k,))
        parts = tuple(torch.stack(part) for part in zip(*finals))  # each (L, B, ·)
        return (x_t, *parts)
