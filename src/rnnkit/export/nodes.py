"""The "onnx" backends: one layer of an rnnkit RNN, LSTM or GRU as one ONNX recurrent node.

ONNX's ``RNN``, ``LSTM`` and ``GRU`` nodes compute some of rnnkit's configurations exactly. Each
is registered in ``rnnkit.layers.backends`` with the configurations it covers, and the export
runs every configuration no backend declares through the reference loop (``export.loop``):

====  ===========  ==========================================================================
cell  node         declares
====  ===========  ==========================================================================
lstm  ``LSTM``     bias any; proj_size 0 (the node has no projection); peephole any (input
                   ``P``); layer_norm False
gru   ``GRU``      bias any; reset_after any (``linear_before_reset`` 1: torch's GRU, 0: Cho
                   et al.'s); layer_norm False
rnn   ``RNN``      bias any; nonlinearity tanh, relu (``activations`` Tanh, Relu)
====  ===========  ==========================================================================

A node is written with ``torch.onnx.ops.symbolic_multi_out``, which ``torch.onnx.export(
dynamo=True)`` turns into the node itself; these cover the variants too (peepholes, Cho's GRU,
relu), and every configuration declared here is exported and compared with rnnkit by
``tests/export``.

A backend's ``run(cells, x, lengths, state0) -> (y, state)`` takes one layer: ``cells`` its
``BoundCell`` per direction (``layer.cell(k, d)``), ``x`` (T, B, I) time-major, ``lengths``
(B,) int64 or None, ``state0`` h (D, B, H) or (h, c); it returns y (T, B, D*H) and the final
state in the same form. The node is only exported: outside ``torch.onnx.export`` the converted
layer runs the reference loop, so a backend's eager outputs are zeros of the right shapes.

ONNX's layouts: gates i, o, f, c for LSTM (rnnkit's and torch's i, f, g, o) and z, r, h for
GRU (r, z, n); peepholes i, o, f (rnnkit's i, f, o); both biases in one input (W_b then R_b);
directions on a leading axis; ``sequence_lens`` int32, with which ONNX, like rnnkit, zeroes
the outputs past each length, keeps each state at its last valid step and starts the
reverse direction at each sequence's own last step.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..cells import BoundCell
from ..layers.backends import ANY, Backend, register

__all__ = ["LSTM_NODE_FLAGS", "GRU_NODE_FLAGS", "RNN_NODE_FLAGS"]

LSTM_NODE_FLAGS = {"bias": ANY, "proj_size": (0,), "peephole": (False, True), "layer_norm": (False,)}
GRU_NODE_FLAGS = {"bias": ANY, "reset_after": (False, True), "layer_norm": (False,)}
RNN_NODE_FLAGS = {"bias": ANY, "nonlinearity": ("tanh", "relu")}

# ONNX's gate order as indices into rnnkit's stacked gate blocks
_LSTM_GATES = (0, 3, 1, 2)  # i, f, g, o -> i, o, f, c
_GRU_GATES = (1, 0, 2)  # r, z, n -> z, r, h
_RNN_GATES = (0,)
_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu"}


def _node(op: str, x: Tensor, inputs: tuple, attributes: dict) -> list[Tensor]:
    """One ONNX recurrent node (``op``: "RNN", "LSTM" or "GRU") in the exported graph.

    ``inputs`` are the node's after X, in its order (W, R, B, sequence_lens, initial_h
    [, initial_c, P]; None for an input left out). ``torch.onnx.ops.symbolic_multi_out``
    records the node for ``torch.onnx.export(dynamo=True)``; in eager mode it gives zeros of
    the outputs' shapes: Y (T, D, B, H), Y_h (D, B, H) [, Y_c (D, B, H)].
    """
    T, B, D, H = x.shape[0], x.shape[1], inputs[1].shape[0], attributes["hidden_size"]  # R: (D, G*H, H)
    shapes = [[T, D, B, H]] + [[D, B, H]] * (2 if op == "LSTM" else 1)
    return torch.onnx.ops.symbolic_multi_out(op, [x, *inputs], attributes, dtypes=[x.dtype] * len(shapes),
                                             shapes=shapes)


def _reorder(w: Tensor, gates: Sequence[int]) -> Tensor:
    """Gate blocks of w (G*H, ...) or (G*H,) in ONNX's order."""
    blocks = w.chunk(len(gates), 0)
    return torch.cat([blocks[k] for k in gates], 0)


def _node_weights(cells: Sequence[BoundCell], gates: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
    """W (D, G*H, I), R (D, G*H, H), B (D, 2*G*H) from every direction's weights."""
    W, R, B = [], [], []
    for cell in cells:
        w = cell.weights()
        W.append(_reorder(w.weight_ih, gates))  # (G*H, I)
        R.append(_reorder(w.weight_hh, gates))  # (G*H, H)
        if w.bias_ih is None:
            B.append(w.weight_ih.new_zeros(2 * W[-1].shape[0]))  # no bias: zeros compute the same
        else:
            B.append(torch.cat([_reorder(w.bias_ih, gates), _reorder(w.bias_hh, gates)]))  # (2*G*H,)
    return torch.stack(W), torch.stack(R), torch.stack(B)


def _common(cells: Sequence[BoundCell], lengths: Tensor | None, gates: Sequence[int]):
    """The node's inputs W, R, B, sequence_lens and its attributes hidden_size, direction."""
    W, R, B = _node_weights(cells, gates)
    sequence_lens = None if lengths is None else lengths.to(torch.int32)  # left out: every sequence at full length
    attributes = {"hidden_size": cells[0].config.hidden_size,
                  "direction": "bidirectional" if len(cells) == 2 else "forward"}
    return (W, R, B, sequence_lens), attributes


def _layer_output(y: Tensor) -> Tensor:
    """ONNX's Y (T, D, B, H) as rnnkit's output (T, B, D*H)."""
    y = y.permute(0, 2, 1, 3)  # (T, B, D, H)
    return y.reshape(y.shape[0], y.shape[1], y.shape[2] * y.shape[3])


def _run_lstm(cells: Sequence[BoundCell], x: Tensor, lengths: Tensor | None, state0):
    inputs, attributes = _common(cells, lengths, _LSTM_GATES)
    h0, c0 = state0  # each (D, B, H)
    inputs += (h0.contiguous(), c0.contiguous())
    peepholes = [cell.weights().weight_peephole for cell in cells]
    if peepholes[0] is not None:
        P = []
        for p in peepholes:
            p_i, p_f, p_o = p.chunk(3)  # rnnkit's i, f, o
            P.append(torch.cat([p_i, p_o, p_f]))  # (3H,) ONNX's i, o, f
        inputs += (torch.stack(P),)  # (D, 3H)
    y, h, c = _node("LSTM", x, inputs, attributes)
    return _layer_output(y), (h, c)


def _run_gru(cells: Sequence[BoundCell], x: Tensor, lengths: Tensor | None, h0: Tensor):
    inputs, attributes = _common(cells, lengths, _GRU_GATES)
    attributes["linear_before_reset"] = int(cells[0].config.reset_after)
    y, h = _node("GRU", x, inputs + (h0.contiguous(),), attributes)
    return _layer_output(y), h


def _run_rnn(cells: Sequence[BoundCell], x: Tensor, lengths: Tensor | None, h0: Tensor):
    inputs, attributes = _common(cells, lengths, _RNN_GATES)
    attributes["activations"] = [_ACTIVATIONS[cells[0].config.nonlinearity]] * len(cells)
    y, h = _node("RNN", x, inputs + (h0.contiguous(),), attributes)
    return _layer_output(y), h


register(Backend("onnx-node", "onnx", "lstm", LSTM_NODE_FLAGS, _run_lstm,
                 doc="an ONNX LSTM node per layer (peepholes as its input P)"))
register(Backend("onnx-node", "onnx", "gru", GRU_NODE_FLAGS, _run_gru,
                 doc="an ONNX GRU node per layer (linear_before_reset = reset_after)"))
register(Backend("onnx-node", "onnx", "rnn", RNN_NODE_FLAGS, _run_rnn,
                 doc="an ONNX RNN node per layer (activations Tanh or Relu)"))
