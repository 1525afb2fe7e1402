"""The reference loop: any configuration of rnnkit's cells as ONNX ``Loop``s over their own step.

A configuration that no "onnx" backend declares (layer norm, a projection, a flag added to a
cell later) is exported as the cell's reference equations themselves: the input projection
of every step at once (``cell.project_input``, traced), then a ``torch.jit.script``ed loop over
time that calls the cell type's reference step (``lstm_step``, ``gru_step``, ``rnn_step`` from
``rnnkit.cells``), which the TorchScript exporter writes as an ONNX ``Loop`` whose trip count
is the input's length, so T stays dynamic. Nothing here restates an equation.

``reference_loop(cells, x, lengths, state0) -> (y, state)`` runs one layer, every direction,
with the contract of an "onnx" backend's ``run`` (``export.nodes``); outside an export the same
loops run as plain Python, so the converted model can be checked against rnnkit in eager mode.
Lengths are masks: the outputs at t >= length are zero, each state stops at its sequence's
last valid step, and the reverse direction reads each sequence reversed within its own length.

Two things make the cells' steps exportable as they are:

- the trace cannot hand a typed tuple of weights (``LSTMWeights``, some fields None) to a
  scripted function, so each loop takes the fields as keyword arguments (``**w._asdict()``)
  and builds the tuple again inside TorchScript;
- the steps' layer norms read H from their input's shape, which torch's ``aten::layer_norm``
  symbolic refuses (it wants a constant ``normalized_shape``); ``layer_norm_symbolic(opset)``
  replaces it, while exporting, by one that needs only the number of normalised axes.
"""
import contextlib
import functools
import warnings
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..cells import KINDS, BoundCell, GRUWeights, LSTMWeights, RNNWeights
from ..cells.base import flags_of
from ..cells.gru import gru_step
from ..cells.lstm import lstm_step
from ..cells.rnn import rnn_step

__all__ = ["reference_loop", "check_loop_supports", "layer_norm_symbolic"]

# The config fields each loop hands on to the cell's step: the LSTM's flags are all in its
# weights (a None weight_peephole is no peephole); the GRU's reset_after and the RNN's
# nonlinearity are passed as arguments. A field not listed (a flag added to a cell later) would
# be dropped on the way to the step, so the loop refuses it instead of exporting other equations.
LOOP_FLAGS = {
    "lstm": {"bias", "proj_size", "peephole", "layer_norm"},
    "gru": {"bias", "reset_after", "layer_norm"},
    "rnn": {"bias", "nonlinearity"},
}


def reference_loop(cells: Sequence[BoundCell], x: Tensor, lengths: Optional[Tensor], state0):
    """One layer over time, every direction, on the cells' reference steps.

    Args:
        cells: the layer's cell per direction (``layer.cell(k, d)``), 1 or 2.
        x: (T, B, I), time-major.
        lengths: (B,) int64 in [1, T], or None (all T).
        state0: h (D, B, H_out), or (h, c) for an LSTM.

    Returns:
        y (T, B, D * H_out) and the final state in the form of ``state0``.
    """
    if lengths is None:
        keep = torch.ones_like(x[:, :, :1], dtype=torch.bool)  # (T, B, 1)
        rev_index = None
    else:
        steps = torch.arange(x.shape[0], device=x.device).unsqueeze(1)  # (T, 1)
        mask = steps < lengths.unsqueeze(0)  # (T, B)
        keep = mask.unsqueeze(-1)  # (T, B, 1)
        # reverse each sequence within its own length; padding positions map to themselves
        rev_index = torch.where(mask, lengths.unsqueeze(0) - 1 - steps, steps)  # (T, B)
    for cell in cells:
        check_loop_supports(cell)
    paired = isinstance(state0, tuple)  # (h, c)
    outs, finals = [], []
    for d, cell in enumerate(cells):
        x_d = x if d == 0 else _reverse(x, rev_index)
        state_d = tuple(s[d] for s in state0) if paired else state0[d]  # each (B, ·)
        out, state = _DIRECTIONS[cell.config.cell](cell, cell.project_input(x_d), keep, state_d)
        outs.append(out if d == 0 else _reverse(out, rev_index))
        finals.append(state)
    y = outs[0] if len(outs) == 1 else torch.cat(outs, -1)  # (T, B, D*H_out)
    if paired:
        return y, tuple(torch.stack(part) for part in zip(*finals))  # each (D, B, ·)
    return y, torch.stack(finals)  # (D, B, H)


def check_loop_supports(cell: BoundCell) -> None:
    """Raise NotImplementedError unless the loop runs exactly this cell's reference step:
    a known cell type's own step, with every field of its config passed on (``LOOP_FLAGS``)."""
    config = cell.config
    name = getattr(config, "cell", None)
    unknown = sorted(set(flags_of(config)) - LOOP_FLAGS.get(name, set()))
    if name not in KINDS or cell.kind.step is not KINDS[name].step or unknown:
        why = f"config fields {unknown} it does not pass on" if unknown else "a step other than rnnkit's own"
        raise NotImplementedError(f"export: no ONNX form for {config}: the reference loop has {why}; "
                                  "add them to rnnkit/export/loop.py (and LOOP_FLAGS) or declare an onnx backend")


def _reverse(x: Tensor, rev_index: Optional[Tensor]) -> Tensor:
    """Reverse time within each sequence's length: (T, B, F) -> (T, B, F)."""
    if rev_index is None:
        return x.flip(0)
    return x.gather(0, rev_index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _steps(x: Tensor) -> Tensor:
    """x.shape[0] as a 0-d tensor that stays a graph value (the loops' trip count); a plain
    size would be fixed at the traced length inside the scripted loops."""
    return torch._shape_as_tensor(x)[0]


def _compiled(fn):
    """While exporting, ``fn`` scripted (how a Python loop over time becomes an ONNX Loop for the
    TorchScript exporter); in eager mode ``fn`` itself, the same loop in Python."""
    return _scripted(fn) if torch.onnx.is_in_onnx_export() else fn


@functools.lru_cache(maxsize=None)
def _scripted(fn):
    """torch.jit.script, once per loop and only when first needed (importing rnnkit.export stays
    cheap), without its deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(fn)


# -- the loops: time and masks only; each step is the cell's own ------------------------------

def _lstm_loop(steps: Tensor, gx: Tensor, keep: Tensor, h0: Tensor, c0: Tensor,
               weight_ih: Optional[Tensor], weight_hh: Optional[Tensor], bias_ih: Optional[Tensor],
               bias_hh: Optional[Tensor], weight_hr: Optional[Tensor], weight_peephole: Optional[Tensor],
               layer_norm_ih: Optional[Tensor], layer_norm_hh: Optional[Tensor],
               layer_norm_c_weight: Optional[Tensor],
               layer_norm_c_bias: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    """lstm_step over gx (T, B, 4H); keep (T, B, 1). Returns output (T, B, H_out), h, c."""
    w = LSTMWeights(weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh, weight_hr=weight_hr,
                    weight_peephole=weight_peephole, layer_norm_ih=layer_norm_ih, layer_norm_hh=layer_norm_hh,
                    layer_norm_c_weight=layer_norm_c_weight, layer_norm_c_bias=layer_norm_c_bias)
    h, c = h0, c0
    outs: List[Tensor] = []
    for t in range(int(steps)):
        out, (h_t, c_t) = lstm_step(w, gx[t], (h, c), None)
        k = keep[t]  # (B, 1): False past the sequence's length
        h, c = torch.where(k, h_t, h), torch.where(k, c_t, c)
        outs.append(torch.where(k, out, torch.zeros_like(out)))
    return torch.stack(outs), h, c


def _gru_loop(steps: Tensor, gx: Tensor, keep: Tensor, h0: Tensor, reset_after: bool,
              weight_ih: Optional[Tensor], weight_hh: Optional[Tensor], bias_ih: Optional[Tensor],
              bias_hh: Optional[Tensor], layer_norm_ih: Optional[Tensor],
              layer_norm_hh: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """gru_step over gx (T, B, 3H); keep (T, B, 1). Returns output (T, B, H), h."""
    w = GRUWeights(weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh,
                   layer_norm_ih=layer_norm_ih, layer_norm_hh=layer_norm_hh)
    h = h0
    outs: List[Tensor] = []
    for t in range(int(steps)):
        out, h_t = gru_step(w, gx[t], h, reset_after, None)
        k = keep[t]
        h = torch.where(k, h_t, h)
        outs.append(torch.where(k, out, torch.zeros_like(out)))
    return torch.stack(outs), h


def _rnn_loop(steps: Tensor, ux: Tensor, keep: Tensor, s0: Tensor, nonlinearity: str,
              weight_ih: Optional[Tensor], weight_hh: Optional[Tensor], bias_ih: Optional[Tensor],
              bias_hh: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """rnn_step over ux (T, B, H); keep (T, B, 1). Returns output (T, B, H), s."""
    w = RNNWeights(weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh)
    s = s0
    outs: List[Tensor] = []
    for t in range(int(steps)):
        out, s_t = rnn_step(w, ux[t], s, nonlinearity, None)
        k = keep[t]
        s = torch.where(k, s_t, s)
        outs.append(torch.where(k, out, torch.zeros_like(out)))
    return torch.stack(outs), s


def _lstm_direction(cell: BoundCell, gx: Tensor, keep: Tensor, state0):
    h0, c0 = state0
    out, h, c = _compiled(_lstm_loop)(_steps(gx), gx, keep, h0, c0, **cell.weights()._asdict())
    return out, (h, c)


def _gru_direction(cell: BoundCell, gx: Tensor, keep: Tensor, h0: Tensor):
    return _compiled(_gru_loop)(_steps(gx), gx, keep, h0, cell.config.reset_after, **cell.weights()._asdict())


def _rnn_direction(cell: BoundCell, ux: Tensor, keep: Tensor, s0: Tensor):
    return _compiled(_rnn_loop)(_steps(ux), ux, keep, s0, cell.config.nonlinearity, **cell.weights()._asdict())


_DIRECTIONS = {"lstm": _lstm_direction, "gru": _gru_direction, "rnn": _rnn_direction}  # config.cell -> loop


# -- aten::layer_norm with a normalized_shape computed in the graph ------------------------------

@contextlib.contextmanager
def layer_norm_symbolic(opset: int):
    """While exporting at ``opset``: ``aten::layer_norm`` becomes ONNX ``LayerNormalization``
    (opset >= 17; before, its mean / variance form) even when ``normalized_shape`` is computed
    from a shape, as in the cells' steps (``F.layer_norm(c, [H])`` with H = c.shape[-1])."""
    from torch.onnx import symbolic_helper

    symbolic = symbolic_helper.parse_args("v", "v", "v", "v", "f", "none")(_layer_norm)  # eps as a float
    torch.onnx.register_custom_op_symbolic("aten::layer_norm", symbolic, opset)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::layer_norm", opset)


def _layer_norm(g, x, normalized_shape, weight, bias, eps: float, cudnn_enable):
    node = normalized_shape.node()
    if node.kind() == "prim::ListConstruct":  # [H]: its values may be graph values, its length is known
        n = len(list(node.inputs()))
    else:  # a constant list
        n = node.t("value").numel()
    has_weight, has_bias = not weight.node().mustBeNone(), not bias.node().mustBeNone()
    if g.opset >= 17:
        if not has_weight:  # the node needs a scale: ones over the normalised axes
            weight = g.op("ConstantOfShape", g.op("Shape", x, start_i=-n), value_t=torch.tensor([1.0]))
        args = (x, weight, bias) if has_bias else (x, weight)
        return g.op("LayerNormalization", *args, axis_i=-n, epsilon_f=eps)
    axes = list(range(-n, 0))
    centred = g.op("Sub", x, g.op("ReduceMean", x, axes_i=axes))
    var = g.op("ReduceMean", g.op("Mul", centred, centred), axes_i=axes)
    y = g.op("Div", centred, g.op("Sqrt", g.op("Add", var, g.op("Constant", value_t=torch.tensor(eps)))))
    y = g.op("Mul", y, weight) if has_weight else y
    return g.op("Add", y, bias) if has_bias else y
