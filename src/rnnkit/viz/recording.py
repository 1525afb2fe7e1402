"""Record the per-step gates and states of rnnkit's recurrent layers, for looking inside them.

torch's fused kernels (which ``rnnkit.LSTM``/``GRU``/``RNN`` use for their standard
configurations) never expose their gates, and slowing every run down to expose them would be
a poor trade. So recording is a mode that is off by default::

    with rnnkit.viz.record(model) as rec:   # forward hooks on every rnnkit recurrent layer
        model(x)
    rec.layers[0]["forget"]                 # (T, B, H) forget-gate activations of layer 0

Inside ``with``, a forward hook on each rnnkit recurrent layer keeps the layer's input, initial
state and lengths, and reruns every layer and direction one step at a time through the cell's
own reference step, ``layer.cell(k, d).step(xp_t, state, gates=g)`` (``lstm_step``,
``gru_step``, ``rnn_step``: the equations are never written here), which fills ``g`` with the
step's activations. The recomputed hidden states are checked against the layer's real output
each time. Outside ``with`` no hook is installed: the model runs exactly as before.

What is recorded, per layer and direction, each (T, B, H) and time-major (the course notes'
words in brackets):

- LSTM: ``input`` (learn gate i), ``forget`` (f), ``candidate`` (g, the new memory),
  ``output`` (use gate o), ``cell`` (c, the long-term memory, "remember"), ``hidden`` (h);
- GRU: ``reset`` (r), ``update`` (z), ``candidate`` (n), ``hidden`` (h);
- RNN: ``hidden`` (s).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ..cells import KINDS
from ..layers import RECURRENT_LAYERS
from ..layers.boundary import split_states, unpack_input, where_state

__all__ = ["record", "Recording", "LayerRecord", "GATES", "SIGMOID_GATES", "WORDS"]

# What each kind of layer records (the names its reference step writes into ``gates``), in the
# order the report shows them: each cell kind's own list (``CellKind.gates``).
GATES: dict[str, tuple[str, ...]] = {name: kind.gates for name, kind in KINDS.items()}
SIGMOID_GATES = frozenset({"input", "forget", "output", "reset", "update"})  # values in [0, 1]
WORDS = {  # the course notes' words, for labels
    "input": "input gate i (learn)", "forget": "forget gate f (forget)", "candidate": "candidate g (new memory)",
    "output": "output gate o (use)", "cell": "cell state c (remember)", "hidden": "hidden state h",
    "reset": "reset gate r", "update": "update gate z",
}


@dataclass
class LayerRecord:
    """What one layer and direction of one recurrent module did in one call.

    ``values[name]`` is (T, B, H) (``hidden`` is (T, B, P) with an LSTM projection), time-major
    whatever the module's ``batch_first``; steps at or past a sequence's length are zero.
    ``record["forget"]`` is ``record.values["forget"]``.
    """

    module: str  # the module's name in the model ("rnn", "encoder.lstm", "" for the model itself)
    kind: str  # "lstm", "gru" or "rnn"
    layer: int
    direction: int  # 0 forward, 1 reverse
    call: int  # which call of the module within the recording (0, 1, ...)
    x: Tensor  # (T, B, I): the layer's input in time order (the reverse direction reads it backwards)
    lengths: Tensor | None  # (B,) or None
    values: dict[str, Tensor] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Tensor:
        if name not in self.values:
            raise KeyError(f"LayerRecord: {self.kind} records {list(self.values)}, not {name!r}")
        return self.values[name]

    def keys(self):
        return self.values.keys()

    @property
    def label(self) -> str:
        return f"layer {self.layer}" + (" reverse" if self.direction else "")


class Recording:
    """The records collected by ``record``: ``layers`` in the order the steps ran."""

    def __init__(self) -> None:
        self.layers: list[LayerRecord] = []
        self._calls: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[LayerRecord]:
        return iter(self.layers)

    def last_call(self, module: str | None = None) -> list[LayerRecord]:
        """The records of the latest call of ``module`` (default: of the first module recorded)."""
        if not self.layers:
            return []
        module = self.layers[0].module if module is None else module
        calls = [r.call for r in self.layers if r.module == module]
        if not calls:
            names = sorted({r.module for r in self.layers})
            raise ValueError(f"Recording.last_call: module must be one of the recorded {names}, got {module!r}")
        return [r for r in self.layers if r.module == module and r.call == max(calls)]

    def next_call(self, module: str) -> int:
        """The index of ``module``'s next call (0, 1, ...), counted."""
        call = self._calls.get(module, 0)
        self._calls[module] = call + 1
        return call


@contextlib.contextmanager
def record(model: nn.Module, check: bool = True) -> Iterator[Recording]:
    """Record per-step gates and states of every rnnkit recurrent layer in ``model``.

    Args:
        model: any module; its ``rnnkit.LSTM``/``GRU``/``RNN`` submodules (or itself) are recorded.
        check: compare the recomputed hidden states with each layer's real output, and raise
            RuntimeError if they differ (they never should). Default True.

    Hooks exist only inside ``with``; they are removed on exit, even after an error. A layer in
    training mode with dropout between its layers cannot be recomputed (the dropout mask is
    drawn inside the fused kernel): call ``model.eval()`` first.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"record: model must be a torch.nn.Module, got {type(model).__name__}")
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, RECURRENT_LAYERS)]
    if not layers:
        raise ValueError(f"record: model must contain an rnnkit.LSTM, GRU or RNN layer, got none in {type(model).__name__}")
    rec = Recording()
    handles = [m.register_forward_hook(_make_hook(rec, name, check), with_kwargs=True) for name, m in layers]
    try:
        yield rec
    finally:
        for handle in handles:
            handle.remove()


def _make_hook(rec: Recording, name: str, check: bool):
    def hook(module, args, kwargs, result):
        x = args[0] if args else kwargs["x"]
        state = args[1] if len(args) > 1 else kwargs.get("state")
        lengths = args[2] if len(args) > 2 else kwargs.get("lengths")
        call = rec.next_call(name)
        with torch.no_grad():
            records, out = _recompute(module, name, call, x, state, lengths)
        if check:
            _check_output(module, name, out, result[0])
        rec.layers.extend(records)
    return hook


def _recompute(module, name: str, call: int, x, state, lengths):
    """Every layer and direction of ``module`` stepped explicitly: records and the output (T, B, D*H)."""
    cls, kind = type(module).__name__, module.kind.name
    if module.training and module.dropout > 0 and module.num_layers > 1:
        raise ValueError(f"record: {cls} {name or '(the model)'} is in training mode with dropout={module.dropout} "
                         "between layers, which cannot be recomputed; call model.eval() first")
    batch = unpack_input(cls, x, lengths, module.batch_first, module.input_size)
    x = batch.x.detach()  # (T, B, I)
    T, B = x.shape[:2]
    lengths = batch.lengths
    D = 2 if module.bidirectional else 1
    if state is None:
        state = module.initial_state(B, device=x.device, dtype=x.dtype)
    else:
        state = batch.state_in(cls, state)
    states0 = split_states(state, module.num_layers * D)  # one (B, ...) state per layer and direction
    mask = None
    if lengths is not None:
        mask = torch.arange(T, device=x.device).unsqueeze(1) < lengths  # (T, B)
    records = []
    for layer in range(module.num_layers):
        outs = []
        for direction in range(D):
            x_d = x if direction == 0 else _reverse(x, lengths)
            values = _steps(module.cell(layer, direction), x_d, states0[layer * D + direction], GATES[kind], mask)
            if direction == 1:
                values = {key: _reverse(v, lengths) for key, v in values.items()}
            records.append(LayerRecord(name, kind, layer, direction, call, x, lengths, values))
            outs.append(values["hidden"])
        x = outs[0] if D == 1 else torch.cat(outs, -1)  # (T, B, D*H): the next layer's input
    return records, x


def _steps(cell, x: Tensor, state, names: tuple[str, ...], mask: Tensor | None) -> dict[str, Tensor]:
    """The cell's reference step over x (T, B, I), one step at a time, keeping every gate it writes."""
    xp = cell.project_input(x)  # (T, B, G): the input part of every step in one product
    out: dict[str, list[Tensor]] = {n: [] for n in names}
    for t in range(xp.shape[0]):
        gates: dict[str, Tensor] = {}
        _, new_state = cell.step(xp[t], state, gates=gates)
        state = _keep(mask, t, new_state, state)
        for n in names:
            out[n].append(gates[n])
    values = {n: torch.stack(v) for n, v in out.items()}  # each (T, B, H)
    if mask is not None:
        values = {n: v * mask.unsqueeze(-1).to(v.dtype) for n, v in values.items()}
    return values


def _keep(mask: Tensor | None, t: int, new, old):
    """A sequence past its length keeps its state (the engine's rule); states are tensors or tuples."""
    if mask is None:
        return new
    return where_state(mask[t].unsqueeze(-1), new, old)  # mask[t] (B,) -> (B, 1)


def _reverse(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse time within each sequence's length (padding stays in place): (T, B, F)."""
    if lengths is None:
        return x.flip(0)
    steps = torch.arange(x.shape[0], device=x.device).unsqueeze(1)  # (T, 1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (T, B)
    return x.gather(0, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _check_output(module, name: str, recomputed: Tensor, output) -> None:
    """The recomputed hidden states must be the layer's output: (T, B, D*H) time-major."""
    if isinstance(output, PackedSequence):
        output = pad_packed_sequence(output)[0]
    elif output.dim() == 2:
        output = output.unsqueeze(1)
    elif module.batch_first:
        output = output.transpose(0, 1)
    tol = 1e-4 if recomputed.dtype in (torch.float32, torch.float64) else 2e-2
    T = min(output.shape[0], recomputed.shape[0])
    err = (recomputed[:T].float() - output[:T].detach().float()).abs().max().item() if T else 0.0
    if not err <= tol * max(1.0, output.detach().abs().max().item()):
        raise RuntimeError(f"record: the recomputed hidden states of {type(module).__name__} {name or '(the model)'} "
                           f"differ from its output by {err:.3g}; the recorded gates would be wrong")
