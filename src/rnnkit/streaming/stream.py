"""Streaming inference: feed a recurrent stack one time step at a time, in O(1) memory.

For generation (a language model feeding back its own samples), live forecasting and live
transcription, a model sees one step, answers, and sees the next. Calling a whole-sequence
layer once per step pays that layer's fixed cost every step (on CPU, oneDNN's RNN primitive
is set up at every call); ``Stream`` pays it once, at construction:

- each layer becomes a step object (``rnnkit.streaming.steps``): the first "stream" backend
  (``rnnkit.layers.backends``) that declares the layer's cell config, else ``ReferenceStep``,
  which runs the cell's own reference step on copied weights;
- one preallocated buffer ``[x | h_0 | h_1 | ...]`` (B, I + sum of layer widths) holds the
  input and every layer's output: layer ``l`` reads the contiguous slice ``[h_{l-1} | h_l]``
  (its new input and its previous output) and writes its new ``h_l`` in place, so nothing is
  concatenated, copied between layers or allocated while stepping;
- every step runs under ``torch.inference_mode`` (no autograd bookkeeping) and on plain BLAS
  and elementwise kernels, never oneDNN's RNN primitive.

Memory does not grow with the number of steps: the state is the buffer.

On CUDA, a stack whose every layer has a fast step (nothing allocated while stepping, buffers
fixed) is captured once as a CUDA graph after its first step, and each later step is one graph
replay instead of a few kernel launches per layer (at batch 1 the launches are the cost). Layers
on the reference step (layer norm, cells of ``rnnkit.Recurrent``) run eagerly. ``cuda_graph=False``
turns the capture off.

``Stream`` reads the weights when it is built: after training changes them, build a new one.
Only unidirectional stacks stream (a backward direction needs the future); dropout between
layers is an effect of training and is not applied.
"""
from __future__ import annotations

import copy
import logging

import torch
from torch import Tensor, nn

from ..cells.base import BoundCell
from ..checks import check_size
from ..layers import GRU, LSTM, RECURRENT_LAYERS, RNN, Recurrent
from ..layers.backends import select
from ..layers.boundary import check_state, split_states, stack_states
from .steps import ReferenceStep

__all__ = ["Stream"]

log = logging.getLogger(__name__)

_FROM_TORCH = {nn.LSTM: LSTM, nn.GRU: GRU, nn.RNN: RNN}


class Stream:
    """Step a unidirectional recurrent stack one time step at a time.

    Args:
        layer: an ``rnnkit.RNN`` / ``LSTM`` / ``GRU`` (any variant: relu, ``proj_size``,
            ``peephole``, ``layer_norm``, ``reset_after=False``), a ``torch.nn`` RNN/LSTM/GRU
            (converted with ``rnnkit.LSTM.from_torch`` etc.), or an ``rnnkit.Recurrent`` over
            any cells. Must not be bidirectional.
        batch_size: B, the number of independent streams stepped together. Default 1.
        state: the state to start from, in the layer's format (``h`` or ``(h, c)``, each
            (num_layers, B, H_part)); the layer's ``initial_state`` (zeros) when None.
        cuda_graph: on CUDA, replay the steps as one captured CUDA graph where every layer has
            a fast step (default True); no effect on other devices.

    ``step(x_t)`` takes x_t (B, I) and returns the last layer's output h_t (B, H_out), a new
    tensor. ``state`` is the current state in the layer's format, ``reset(state=None)``
    starts over. The results equal the layer's on the whole sequence, step by step (up to
    float rounding: the products are summed in another order). The weights are copied at
    construction: after training changes them, build a new Stream.

    For models that put their own input and head around the stream without a copy (e.g.
    ``rnnkit.models.LanguageModelStream``), the buffer is public: write x_t into ``input``
    (B, I), call ``advance()``, read ``output`` (B, H_out); all three under
    ``torch.inference_mode()``, since the buffer holds inference tensors. ``output`` is a view
    that the next ``advance`` overwrites.

    Example:
        >>> import rnnkit
        >>> lstm = rnnkit.LSTM(3, 8, num_layers=2)
        >>> stream = Stream(lstm, batch_size=2)
        >>> xs = torch.randn(5, 2, 3)
        >>> ys = torch.stack([stream.step(x_t) for x_t in xs])
        >>> torch.allclose(ys, lstm(xs)[0], atol=1e-6)
        True
    """

    def __init__(self, layer: nn.Module, batch_size: int = 1, state=None, cuda_graph: bool = True) -> None:
        check_size("Stream", "batch_size", batch_size)
        if not isinstance(cuda_graph, bool):
            raise TypeError(f"Stream: cuda_graph must be a bool, got {type(cuda_graph).__name__}")
        if not isinstance(layer, (nn.RNNBase, Recurrent) + RECURRENT_LAYERS):
            raise TypeError("Stream: layer must be an rnnkit layer (RNN/LSTM/GRU, MinGRU, SRU, ...), a torch.nn "
                            f"RNN/LSTM/GRU or an rnnkit.Recurrent, got {type(layer).__name__}")
        if layer.bidirectional:
            raise ValueError("Stream: layer must be unidirectional (a backward direction needs the future "
                             "steps), got bidirectional=True")
        layer = _as_rnnkit(layer)
        self.batch_size = B = batch_size
        self.input_size = layer.input_size
        param = next(iter(layer.parameters()), None)
        self.dtype = param.dtype if param is not None else torch.get_default_dtype()
        self.device = param.device if param is not None else torch.device("cpu")
        if isinstance(layer, Recurrent):
            cells, self._state_names = list(layer.cells), None
        else:  # one cell of the reference equations per layer, over the layer's parameters
            cells, self._state_names = layer.bound_cells(), layer.kind.state_names
        like = torch.empty(0, dtype=self.dtype, device=self.device)
        with torch.inference_mode():
            self._steps = [_step_for(cell, B, like) for cell in cells]
            self._state0 = split_states(layer.initial_state(B, device=self.device, dtype=self.dtype), len(cells))
            widths = [step.width for step in self._steps]
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
        # None: not yet captured (the first advance runs eagerly, then captures); False: never
        self._graph = None if cuda_graph and self.device.type == "cuda" and all(
            not isinstance(step, ReferenceStep) for step in self._steps) else False
        self.reset(state)

    # -- state -----------------------------------------------------------------------------
    @property
    def state(self):
        """The current state in the layer's format (new tensors): h or (h, c), (num_layers, B, H_part)."""
        return stack_states([_clone(step.get_state()) for step in self._steps])

    def reset(self, state=None) -> None:
        """Start over from ``state`` (the layer's format) or from the layer's initial state."""
        with torch.inference_mode():
            if state is None:
                parts = self._state0
            else:
                check_state("Stream", state, stack_states(self._state0), self._state_names)
                parts = split_states(state, len(self._steps))
            for step, part in zip(self._steps, parts):
                step.set_state(part)

    # -- stepping --------------------------------------------------------------------------
    def step(self, x_t: Tensor) -> Tensor:
        """Feed one step x_t (B, I); returns the last layer's output h_t (B, H_out), a new tensor."""
        if not isinstance(x_t, Tensor):
            raise TypeError(f"Stream.step: x_t must be a Tensor (B, I), got {type(x_t).__name__}")
        if x_t.shape != self._x.shape:
            raise ValueError(f"Stream.step: x_t must have shape {tuple(self._x.shape)} (batch_size, input_size), "
                             f"got {tuple(x_t.shape)}")
        if x_t.dtype != self.dtype:
            raise TypeError(f"Stream.step: x_t must have dtype {self.dtype} (the layer's weights'), got {x_t.dtype}")
        if x_t.device != self.device:
            raise ValueError(f"Stream.step: x_t must be on {self.device} (the layer's weights' device), got {x_t.device}")
        with torch.inference_mode():
            self._x.copy_(x_t)
            self.advance()
        return self._out.clone()  # outside inference mode: an ordinary tensor

    @property
    def input(self) -> Tensor:
        """(B, I): the buffer's input slice, which ``advance`` reads; write x_t into it in place
        (``stream.input.copy_(x_t)``, or ``out=stream.input``) under ``torch.inference_mode()``."""
        return self._x

    @property
    def output(self) -> Tensor:
        """(B, H_out): the last layer's output after the latest ``advance`` (a view into the buffer,
        overwritten by the next step; clone it to keep it)."""
        return self._out

    def advance(self) -> None:
        """One step from whatever ``input`` holds; the result is in ``output``. Call it under
        ``torch.inference_mode()`` (``step`` does): the buffer holds inference tensors."""
        if self._graph:
            self._graph.replay()
            return
        for step in self._steps:
            step.step()
        if self._graph is None:  # after a first eager step (warm: cuBLAS set up), capture the next
            self._graph = self._capture()

    def _capture(self):
        """The layers' steps as one CUDA graph over the fixed buffers (recorded, not run); False
        (eager steps from now on, one warning) where the capture fails."""
        graph = torch.cuda.CUDAGraph()
        try:
            torch.cuda.synchronize(self.device)
            with torch.cuda.graph(graph):
                for step in self._steps:
                    step.step()
        except RuntimeError as error:
            log.warning("rnnkit.Stream: capturing the steps as a CUDA graph failed (%s); stepping eagerly",
                        str(error).splitlines()[0] if str(error) else type(error).__name__)
            return False
        return graph

    def __repr__(self) -> str:
        kinds = ", ".join(type(s).__name__.strip("_") for s in self._steps)
        return f"Stream(batch_size={self.batch_size}, input_size={self.input_size}, layers=[{kinds}])"


def _as_rnnkit(layer: nn.Module) -> nn.Module:
    """An rnnkit layer as it is; a torch.nn.LSTM/GRU/RNN converted to rnnkit's (its weights copied)."""
    if isinstance(layer, RECURRENT_LAYERS + (Recurrent,)):
        return layer
    cls = _FROM_TORCH.get(type(layer))
    if cls is None:
        raise TypeError("Stream: layer must be an rnnkit.RNN/LSTM/GRU, a torch.nn RNN/LSTM/GRU or an "
                        f"rnnkit.Recurrent, got {type(layer).__name__}")
    device = layer.weight_ih_l0.device
    # the new layer's initialisation is overwritten by the copy: leave the caller's RNG alone
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return cls.from_torch(layer)


def _step_for(cell, batch_size: int, like: Tensor):
    """The step object of one layer: the first "stream" backend declaring the cell's config,
    else the cell's own step (on copied weights, or a copy of the cell in eval mode)."""
    config = cell.backend_config() if hasattr(cell, "backend_config") else None
    backend = select("stream", config, like)
    if backend is not None:
        return backend.run(config, _copied(cell.weights()), batch_size)
    width = getattr(cell, "output_size", None) or cell.hidden_size
    if isinstance(cell, BoundCell):
        frozen = BoundCell(cell.kind, cell.config, _copied(cell.weights()))
    else:
        frozen = copy.deepcopy(cell).eval()
    return ReferenceStep(frozen, batch_size, width)


def _copied(weights):
    """The typed tuple of weights with every tensor copied (read now, never again)."""
    return type(weights)(*(None if w is None else w.detach().clone() for w in weights))


def _clone(state):
    """Copies of inference tensors, made outside inference mode: ordinary tensors for the caller."""
    return tuple(s.clone() for s in state) if isinstance(state, tuple) else state.clone()
