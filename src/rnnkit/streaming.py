"""Streaming inference: feed a recurrent stack one time step at a time, in O(1) memory.

For generation (a language model feeding back its own samples), live forecasting and live
transcription, a model sees one step, answers, and sees the next. Calling a whole-sequence
layer once per step pays that layer's fixed cost every step (on CPU, oneDNN's RNN primitive
is set up at every call); ``Stream`` pays it once, at construction:

- each layer's ``[W_ih | W_hh]`` is concatenated (LSTM gates reordered i, f, o, g so one
  ``sigmoid`` covers three gates), and the biases summed, so a step is one ``addmm`` per layer
  (two or three for the GRU, whose candidate needs the input and recurrent parts apart);
- one preallocated buffer ``[x | h_0 | h_1 | ...]`` (B, I + sum of layer widths) holds the
  input and every layer's output: layer ``l`` reads the contiguous slice ``[h_{l-1} | h_l]``
  (its new input and its previous output) and writes its new ``h_l`` in place, so nothing is
  concatenated, copied between layers or allocated while stepping;
- every step runs under ``torch.inference_mode`` (no autograd bookkeeping) and on plain BLAS
  and elementwise kernels, never oneDNN's RNN primitive.

Memory does not grow with the number of steps: the state is the buffer.

Variants without a fast path here (layer norm, and any cell of ``rnnkit.Recurrent``) step
through the cells' own math (``lstm_step``, ``gru_step``, ``cell.step``), the same functions
the layers run over whole sequences.

``Stream`` reads the weights when it is built: after training changes them, build a new one.
Only unidirectional stacks stream (a backward direction needs the future); dropout between
layers is an effect of training and is not applied.

``CTCStreamDecoder`` turns per-frame CTC log-probabilities into text as the frames arrive
(greedy decoding: best label per frame, repeats collapsed, blanks dropped).
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor, nn

from .cells.base import _check_int
from .layers._boundary import check_state, split_states, stack_states
from .layers.recurrent import Recurrent

__all__ = ["Stream", "CTCStreamDecoder"]


class Stream:
    """Step a unidirectional recurrent stack one time step at a time.

    Args:
        layer: an ``rnnkit.RNN`` / ``LSTM`` / ``GRU`` (any variant: relu, ``proj_size``,
            ``peephole``, ``layer_norm``, ``reset_after=False``), a ``torch.nn`` RNN/LSTM/GRU,
            or an ``rnnkit.Recurrent`` over any cells. Must not be bidirectional.
        batch_size: B, the number of independent streams stepped together. Default 1.
        state: the state to start from, in the layer's format (``h`` or ``(h, c)``, each
            (num_layers, B, H_part)); zeros (or the cells' ``initial_state``) when None.

    ``step(x_t)`` takes x_t (B, I) and returns the last layer's output h_t (B, H_out), a new
    tensor. ``state`` is the current state in the layer's format, ``reset(state=None)``
    starts over. The results equal the layer's on the whole sequence, step by step (up to
    float rounding: the products are summed in another order). The weights are copied at
    construction: after training changes them, build a new Stream.

    Example:
        >>> import rnnkit
        >>> lstm = rnnkit.LSTM(3, 8, num_layers=2)
        >>> stream = Stream(lstm, batch_size=2)
        >>> xs = torch.randn(5, 2, 3)
        >>> ys = torch.stack([stream.step(x_t) for x_t in xs])
        >>> torch.allclose(ys, lstm(xs)[0], atol=1e-6)
        True
    """

    def __init__(self, layer: nn.Module, batch_size: int = 1, state=None) -> None:
        _check_int("Stream", "batch_size", batch_size)
        if not isinstance(layer, (nn.RNNBase, Recurrent)):
            raise TypeError("Stream: layer must be an rnnkit.RNN/LSTM/GRU, a torch.nn RNN/LSTM/GRU or an "
                            f"rnnkit.Recurrent, got {type(layer).__name__}")
        if layer.bidirectional:
            raise ValueError("Stream: layer must be unidirectional (a backward direction needs the future "
                             "steps), got bidirectional=True")
        self.batch_size = B = batch_size
        self.input_size = layer.input_size
        with torch.inference_mode():
            if isinstance(layer, Recurrent):
                self._steps, widths, self._state_names = _cell_steps(layer, B)
            else:
                self._steps, widths, self._state_names = _native_steps(layer, B)
            param = next(iter(layer.parameters()), None)
            self.dtype = param.dtype if param is not None else torch.get_default_dtype()
            self.device = param.device if param is not None else torch.device("cpu")
            # [x | h_0 | h_1 | ...]: layer l reads [h_{l-1} | h_l] and writes h_l in place.
            self._buf = torch.zeros(B, self.input_size + sum(widths), dtype=self.dtype, device=self.device)
            self._x = self._buf[:, : self.input_size]  # (B, I)
            offset, in_width = 0, self.input_size
            for step, width in zip(self._steps, widths):
                xh = self._buf[:, offset : offset + in_width + width]  # (B, in + H_l): [input | h_l]
                step.bind(xh, in_width)
                offset, in_width = offset + in_width, width
            self._out = self._buf[:, offset : offset + in_width]  # (B, H_out): the last layer's h
        self.output_size = widths[-1]
        self.reset(state)

    # -- state -----------------------------------------------------------------------------
    @property
    def state(self):
        """The current state in the layer's format (new tensors): h or (h, c), (num_layers, B, H_part)."""
        return stack_states([_clone(step.get_state()) for step in self._steps])

    def reset(self, state=None) -> None:
        """Start over from ``state`` (the layer's format) or from zeros / the cells' initial state."""
        with torch.inference_mode():
            if state is None:
                for step in self._steps:
                    step.set_state(None)
                return
            template = stack_states([step.get_state() for step in self._steps])
            check_state("Stream", state, template, self._state_names)
            for step, part in zip(self._steps, split_states(state, len(self._steps))):
                step.set_state(part)

    # -- stepping --------------------------------------------------------------------------
    def step(self, x_t: Tensor) -> Tensor:
        """Feed one step x_t (B, I); returns the last layer's output h_t (B, H_out), a new tensor."""
        if not isinstance(x_t, Tensor):
            raise TypeError(f"Stream.step: x_t must be a Tensor (B, I), got {type(x_t).__name__}")
        if x_t.shape != self._x.shape:
            raise ValueError(f"Stream.step: x_t must have shape {tuple(self._x.shape)} (batch_size, input_size), "
                             f"got {tuple(x_t.shape)}")
        with torch.inference_mode():
            self._x.copy_(x_t)
            self._advance()
        return self._out.clone()  # outside inference mode: an ordinary tensor

    def _advance(self) -> None:
        """One step from whatever ``self._x`` holds (inside inference_mode); the output is in ``self._out``."""
        for step in self._steps:
            step.step()

    def __repr__(self) -> str:
        kinds = ", ".join(type(s).__name__.strip("_") for s in self._steps)
        return f"Stream(batch_size={self.batch_size}, input_size={self.input_size}, layers=[{kinds}])"


def _clone(state):
    """Copies of inference tensors, made outside inference mode: ordinary tensors for the caller."""
    return tuple(s.clone() for s in state) if isinstance(state, tuple) else state.clone()


# -- the layers' steps ---------------------------------------------------------------------------
# Each step object owns its layer's weights (copies, read once) and buffers; ``bind`` gives it
# its slice [input | h] of the stream's buffer, and ``step`` reads the input, reads and writes h.

def _native_steps(layer: nn.RNNBase, B: int):
    """One step object per layer of an rnnkit or torch.nn RNN/LSTM/GRU, and the layers' output widths."""
    mode = layer.mode  # "LSTM", "GRU", "RNN_TANH", "RNN_RELU"
    layer_norm = getattr(layer, "layer_norm", False)
    views = layer._views() if layer_norm else None  # rnnkit's per-layer cell views (the cells' math)
    steps, widths = [], []
    for k in range(layer.num_layers):
        w = {name: _weight(layer, f"{name}_l{k}") for name in
             ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_peephole")}
        if layer_norm:
            c_width = layer.hidden_size if mode == "LSTM" else None
            steps.append(_CellStep(_frozen_view(views[k]), B, layer.proj_size or layer.hidden_size, c_width))
        elif mode == "LSTM":
            steps.append(_LSTMStep(w, B))
        elif mode == "GRU":
            steps.append(_GRUStep(w, B, getattr(layer, "reset_after", True)))
        else:
            steps.append(_RNNStep(w, B, "relu" if mode == "RNN_RELU" else "tanh"))
        widths.append(steps[-1].width)
    names = ("h", "c") if mode == "LSTM" else None
    return steps, widths, names


def _cell_steps(layer: Recurrent, B: int):
    """One step object per cell of an rnnkit.Recurrent (copies of the cells, in eval mode)."""
    steps = [_CellStep(copy.deepcopy(cell).eval(), B, getattr(cell, "output_size", None) or cell.hidden_size)
             for cell in layer.cells]
    return steps, [s.width for s in steps], None


def _weight(layer, name: str) -> Tensor | None:
    w = getattr(layer, name, None)
    return None if w is None else w.detach().clone()


def _frozen_view(view):
    """A cell view of a layer whose weights are copies (read now, not at every step)."""
    for name, value in list(vars(view).items()):
        if isinstance(value, Tensor):
            setattr(view, name, value.detach().clone())
    return view


class _LSTMStep:
    """LSTM (peephole and proj_size included): gates = [x | h] @ [W_ih | W_hh]^T + b in one addmm.

    The rows are reordered i, f, o, g (torch.nn stores i, f, g, o) so that, without
    peepholes, one sigmoid covers the three sigmoid gates.
    """

    def __init__(self, w: dict, B: int) -> None:
        H = w["weight_ih"].shape[0] // 4
        order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
        weight = torch.cat([w["weight_ih"], w["weight_hh"]], 1)[order]  # (4H, I + P): i, f, o, g
        self.weight_t = weight.t().contiguous()  # (I + P, 4H): row-vector @ matrix, measured faster than W.t()
        bias = _bias_sum(w["bias_ih"], w["bias_hh"], weight)
        self.bias = bias[order]  # (4H,)
        self.H, self.width = H, w["weight_hh"].shape[1]  # width: P with a projection, else H
        self.peephole = w["weight_peephole"]  # (3H: p_i, p_f, p_o) or None
        self.weight_hr_t = None if w["weight_hr"] is None else w["weight_hr"].t().contiguous()  # (H, P)
        kw = dict(dtype=weight.dtype, device=weight.device)
        self.gates = torch.empty(B, 4 * H, **kw)  # (B, 4H)
        self.c = torch.zeros(B, H, **kw)
        self.tanh_c = torch.empty(B, H, **kw)
        self.u = torch.empty(B, H, **kw) if self.weight_hr_t is not None else None  # o * tanh(c) before W_hr
        g = self.gates
        self.i, self.f, self.o, self.g = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
        self.if_, self.ifo = g[:, : 2 * H], g[:, : 3 * H]
        if self.peephole is not None:
            self.p_i, self.p_f, self.p_o = self.peephole.chunk(3)

    def bind(self, xh: Tensor, in_width: int) -> None:
        self.xh, self.h = xh, xh[:, in_width:]  # (B, I + P), (B, P)

    def step(self) -> None:
        torch.addmm(self.bias, self.xh, self.weight_t, out=self.gates)  # (B, 4H)
        c = self.c
        if self.peephole is None:
            self.ifo.sigmoid_()
        else:
            self.i.addcmul_(self.p_i, c)  # the gates look at the old cell state
            self.f.addcmul_(self.p_f, c)
            self.if_.sigmoid_()
        self.g.tanh_()
        c.mul_(self.f).addcmul_(self.i, self.g)  # c = f * c_tm1 + i * g
        if self.peephole is not None:
            self.o.addcmul_(self.p_o, c).sigmoid_()  # the use gate looks at the new one
        torch.tanh(c, out=self.tanh_c)
        if self.weight_hr_t is None:
            torch.mul(self.o, self.tanh_c, out=self.h)  # h = o * tanh(c)
        else:
            torch.mul(self.o, self.tanh_c, out=self.u)
            torch.mm(self.u, self.weight_hr_t, out=self.h)  # h = W_hr (o * tanh(c))

    def get_state(self):
        return self.h, self.c

    def set_state(self, state) -> None:
        if state is None:
            self.h.zero_()
            self.c.zero_()
        else:
            self.h.copy_(state[0])
            self.c.copy_(state[1])


class _HiddenState:
    """The state of a step that carries only h (GRU, Elman RNN): a view into the shared buffer."""

    def get_state(self):
        return self.h

    def set_state(self, state) -> None:
        if state is None:
            self.h.zero_()
        else:
            self.h.copy_(state)


class _GRUStep(_HiddenState):
    """GRU, both forms. reset_after=True: gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh (two
    addmm; the candidate needs W_hn h apart). reset_after=False: r, z from one addmm on [x | h];
    the candidate from x W_in^T and (r * h) W_hn^T."""

    def __init__(self, w: dict, B: int, reset_after: bool) -> None:
        W_ih, W_hh = w["weight_ih"], w["weight_hh"]  # (3H, I), (3H, H): r, z, n
        H = self.width = W_hh.shape[1]
        self.reset_after = reset_after
        kw = dict(dtype=W_ih.dtype, device=W_ih.device)
        b_ih = w["bias_ih"] if w["bias_ih"] is not None else torch.zeros(3 * H, **kw)
        b_hh = w["bias_hh"] if w["bias_hh"] is not None else torch.zeros(3 * H, **kw)
        if reset_after:
            self.W_ih_t, self.W_hh_t = W_ih.t().contiguous(), W_hh.t().contiguous()  # (I, 3H), (H, 3H)
            self.b_ih, self.b_hh = b_ih, b_hh
            self.gi, self.gh = torch.empty(B, 3 * H, **kw), torch.empty(B, 3 * H, **kw)
            self.rz, self.gh_rz = self.gi[:, : 2 * H], self.gh[:, : 2 * H]
            self.r, self.z, self.n = self.gi[:, :H], self.gi[:, H : 2 * H], self.gi[:, 2 * H :]
            self.gh_n = self.gh[:, 2 * H :]
        else:
            self.W_rz_t = torch.cat([W_ih[: 2 * H], W_hh[: 2 * H]], 1).t().contiguous()  # (I + H, 2H)
            self.b_rz = b_ih[: 2 * H] + b_hh[: 2 * H]
            self.W_in_t, self.W_hn_t = W_ih[2 * H :].t().contiguous(), W_hh[2 * H :].t().contiguous()  # (I, H), (H, H)
            self.b_n = b_ih[2 * H :] + b_hh[2 * H :]
            self.rz, self.n, self.rh = (torch.empty(B, 2 * H, **kw), torch.empty(B, H, **kw),
                                        torch.empty(B, H, **kw))
            self.r, self.z = self.rz[:, :H], self.rz[:, H:]

    def bind(self, xh: Tensor, in_width: int) -> None:
        self.xh, self.x, self.h = xh, xh[:, :in_width], xh[:, in_width:]

    def step(self) -> None:
        h = self.h
        if self.reset_after:
            torch.addmm(self.b_ih, self.x, self.W_ih_t, out=self.gi)  # (B, 3H)
            torch.addmm(self.b_hh, h, self.W_hh_t, out=self.gh)  # (B, 3H)
            self.rz.add_(self.gh_rz).sigmoid_()  # r, z
            self.n.addcmul_(self.r, self.gh_n).tanh_()  # n = tanh(x_n + r * (W_hn h + b_hn))
        else:
            torch.addmm(self.b_rz, self.xh, self.W_rz_t, out=self.rz).sigmoid_()  # (B, 2H)
            torch.addmm(self.b_n, self.x, self.W_in_t, out=self.n)  # (B, H)
            torch.mul(self.r, h, out=self.rh)
            self.n.addmm_(self.rh, self.W_hn_t).tanh_()  # n = tanh(x_n + W_hn (r * h) + b_n)
        torch.lerp(self.n, h, self.z, out=h)  # h = n + z * (h_tm1 - n)



class _RNNStep(_HiddenState):
    """Elman RNN: s = f([x | s_tm1] @ [U | W]^T + b), one addmm."""

    def __init__(self, w: dict, B: int, nonlinearity: str) -> None:
        weight = torch.cat([w["weight_ih"], w["weight_hh"]], 1)  # (H, I + H)
        self.weight_t, self.bias = weight.t().contiguous(), _bias_sum(w["bias_ih"], w["bias_hh"], weight)  # (I + H, H)
        self.width = weight.shape[0]
        self.relu = nonlinearity == "relu"
        self.pre = torch.empty(B, self.width, dtype=weight.dtype, device=weight.device)

    def bind(self, xh: Tensor, in_width: int) -> None:
        self.xh, self.h = xh, xh[:, in_width:]

    def step(self) -> None:
        torch.addmm(self.bias, self.xh, self.weight_t, out=self.pre)  # (B, H)
        if self.relu:
            torch.clamp(self.pre, min=0, out=self.h)
        else:
            torch.tanh(self.pre, out=self.h)


class _CellStep:
    """Any cell through its own math: ``project_input`` + ``step`` where it has them, else
    ``cell(x_t, state)``. The variants without a fast path (layer norm, custom cells)."""

    def __init__(self, cell, B: int, width: int, c_width: int | None = None) -> None:
        self.cell, self.B, self.width, self.c_width = cell, B, width, c_width
        self.split = hasattr(cell, "project_input") and hasattr(cell, "step")

    def bind(self, xh: Tensor, in_width: int) -> None:
        self.x, self.h = xh[:, :in_width], xh[:, in_width:]
        if hasattr(self.cell, "initial_state"):  # a cell
            self.state0 = self.cell.initial_state(self.B, device=xh.device, dtype=xh.dtype)
        else:  # one layer of rnnkit.LSTM / GRU: zeros, as the layer starts
            h0 = torch.zeros(self.B, self.width, dtype=xh.dtype, device=xh.device)
            c0 = None if self.c_width is None else torch.zeros(self.B, self.c_width, dtype=xh.dtype, device=xh.device)
            self.state0 = h0 if c0 is None else (h0, c0)
        self.state = self.state0

    def step(self) -> None:
        x = self.x
        if self.split:
            h, self.state = self.cell.step(self.cell.project_input(x), self.state)
        else:
            h, self.state = self.cell(x, self.state)
        self.h.copy_(h)

    def get_state(self):
        return self.state

    def set_state(self, state) -> None:
        self.state = self.state0 if state is None else _clone_in(state)
        first = self.state[0] if isinstance(self.state, tuple) else self.state
        if first.shape == self.h.shape:  # the output is the state's h (or the state itself)
            self.h.copy_(first)


def _clone_in(state):
    return tuple(s.clone() for s in state) if isinstance(state, tuple) else state.clone()


def _bias_sum(b_ih: Tensor | None, b_hh: Tensor | None, weight: Tensor) -> Tensor:
    if b_ih is None:
        return torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
    return b_ih + b_hh


# -- live CTC transcription ----------------------------------------------------------------------

class CTCStreamDecoder:
    """Greedy CTC decoding of frames as they arrive: text out as soon as it is decided.

    Greedy decoding takes the best label of every frame, collapses runs of the same label and
    drops blanks. A label is decided at its first frame (later frames can only repeat it or
    end the run), so each call returns the characters its frames start; a run that crosses a
    call boundary is still collapsed, because the last frame's label is remembered.

    Args:
        labels: the text of each class, index = class id (the blank's entry is never output).
        blank: the blank's class id. Default 0.

    ``feed(log_probs)`` takes (T, C) frames (or one frame (C,)) of scores (log-probabilities or
    logits: only the argmax matters) and returns the new text. ``text`` and ``ids`` hold
    everything emitted so far; ``reset()`` starts a new utterance.

    Example:
        >>> dec = CTCStreamDecoder(["-", "a", "b"])
        >>> frames = torch.eye(3).log()  # one-hot frames: blank, a, b
        >>> dec.feed(frames[[1, 1]]), dec.feed(frames[[1, 0, 1, 2]]), dec.text
        ('a', 'ab', 'aab')
    """

    def __init__(self, labels: Sequence[str], blank: int = 0) -> None:
        if isinstance(labels, str) or not isinstance(labels, Sequence) or not all(isinstance(s, str) for s in labels):
            raise TypeError(f"CTCStreamDecoder: labels must be a sequence of strings, got {type(labels).__name__}")
        if len(labels) < 2:
            raise ValueError(f"CTCStreamDecoder: labels must hold the blank and at least one label, got {len(labels)}")
        if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < len(labels):
            raise ValueError(f"CTCStreamDecoder: blank must be an int in [0, {len(labels)}), got {blank!r}")
        self.labels, self.blank = list(labels), blank
        self.reset()

    def reset(self) -> None:
        self.ids: list[int] = []
        self._pieces: list[str] = []
        self._prev: int | None = None  # the previous frame's best label (None before any frame)

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def feed(self, log_probs: Tensor) -> str:
        """Frames (T, C) or (C,) -> the text they add (possibly empty)."""
        if not isinstance(log_probs, Tensor):
            raise TypeError(f"CTCStreamDecoder.feed: log_probs must be a Tensor (T, C), got {type(log_probs).__name__}")
        C = len(self.labels)
        if log_probs.dim() == 1:
            log_probs = log_probs.unsqueeze(0)
        if log_probs.dim() != 2 or log_probs.shape[1] != C:
            raise ValueError(f"CTCStreamDecoder.feed: log_probs must be (T, {C}) or ({C},), one score per label, "
                             f"got shape {tuple(log_probs.shape)}")
        new = []
        for k in log_probs.argmax(1).tolist():  # (T,) best label per frame
            if k != self._prev and k != self.blank:
                new.append(k)
            self._prev = k
        self.ids += new
        piece = "".join(self.labels[k] for k in new)
        self._pieces.append(piece)
        return piece
