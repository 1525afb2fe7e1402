"""Look inside a trained recurrent network: per-step gates and states, and a report to read them.

torch's fused kernels (which ``rnnkit.LSTM``/``GRU``/``RNN`` use for their standard
configurations) never expose their gates, and slowing every run down to expose them would be
a poor trade. So recording is a mode that is off by default::

    with rnnkit.viz.record(model) as rec:   # forward hooks on every rnnkit recurrent layer
        model(x)
    rec.layers[0]["forget"]                 # (T, B, H) forget-gate activations of layer 0

Inside ``with``, a forward hook on each rnnkit recurrent layer keeps the layer's input, initial
state and lengths, and recomputes every step with an explicit loop from the layer's own
weights (torch.nn's names: ``weight_ih_l{k}[_reverse]``, ``bias_hh_l{k}``, and the variants'
``weight_peephole_l{k}``, ``layer_norm_*_l{k}``), one layer and direction at a time, using the
cells' own input projections (``lstm_project``, ``gru_project``, ``rnn_project``) and the
equations of ``rnnkit.cells``. The recomputed hidden states are checked against the layer's
real output each time. Outside ``with`` no hook is installed: the model runs exactly as before.

What is recorded, per layer and direction, each (T, B, H) and time-major (the course notes'
words in brackets):

- LSTM: ``input`` (learn gate i), ``forget`` (f), ``candidate`` (g, the new memory),
  ``output`` (use gate o), ``cell`` (c, the long-term memory, "remember"), ``hidden`` (h);
- GRU: ``reset`` (r), ``update`` (z), ``candidate`` (n), ``hidden`` (h);
- RNN: ``hidden`` (s).

``inspect_text`` runs a character language model over a text under ``record``;
``write_html`` makes one self-contained HTML page of it (the text coloured by a unit's
activation, as in Karpathy, Johnson & Fei-Fei 2015, "Visualizing and understanding recurrent
networks"; a unit picker; gate heatmaps over time; the units that best follow simple
features of the text); ``write_pngs`` draws the same heatmaps as PNG files.
"""
from __future__ import annotations

import base64
import contextlib
import html
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ..cells.gru import gru_project, gru_step
from ..cells.lstm import lstm_project, lstm_step
from ..cells.rnn import _NONLINEARITIES, rnn_project
from ..layers._boundary import unpack_input
from ..layers.native import GRU, LSTM, RNN
from .plots import save_figure

__all__ = [
    "record", "Recording", "LayerRecord", "GATES",
    "Inspection", "inspect_text", "text_features", "unit_correlations", "write_html", "write_pngs",
]

log = logging.getLogger(__name__)

# What each kind of layer records, in the order the report shows them.
GATES: dict[str, tuple[str, ...]] = {
    "lstm": ("input", "forget", "candidate", "output", "cell", "hidden"),
    "gru": ("reset", "update", "candidate", "hidden"),
    "rnn": ("hidden",),
}
_SIGMOID_GATES = {"input", "forget", "output", "reset", "update"}  # values in [0, 1]
_WORDS = {  # the course notes' words, for labels
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
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (LSTM, GRU, RNN))]
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
        call = rec._calls.get(name, 0)
        rec._calls[name] = call + 1
        with torch.no_grad():
            records, out = _recompute(module, name, call, x, state, lengths)
        if check:
            _check_output(module, name, out, result[0])
        rec.layers.extend(records)
    return hook


def _kind(module) -> str:
    return "lstm" if isinstance(module, LSTM) else "gru" if isinstance(module, GRU) else "rnn"


def _recompute(module, name: str, call: int, x, state, lengths):
    """Every layer and direction of ``module`` stepped explicitly: records and the output (T, B, D*H)."""
    cls, kind = type(module).__name__, _kind(module)
    if module.training and module.dropout > 0 and module.num_layers > 1:
        raise ValueError(f"record: {cls} {name or '(the model)'} is in training mode with dropout={module.dropout} "
                         "between layers, which cannot be recomputed; call model.eval() first")
    batch = unpack_input(cls, x, lengths, module.batch_first, module.input_size)
    x = batch.x.detach()  # (T, B, I)
    T, B = x.shape[:2]
    lengths = batch.lengths
    D = 2 if module.bidirectional else 1
    if state is None:
        state = module._state_template(B, x.device, x.dtype)
    else:
        state = batch.state_in(cls, state)
    parts = state if isinstance(state, tuple) else (state,)  # each (L*D, B, .)
    mask = None
    if lengths is not None:
        mask = torch.arange(T, device=x.device).unsqueeze(1) < lengths  # (T, B)
    records = []
    for layer in range(module.num_layers):
        outs = []
        for direction in range(D):
            k = layer * D + direction
            p = _weights(module, layer, direction)
            state0 = tuple(s[k] for s in parts)
            x_d = x if direction == 0 else _reverse(x, lengths)
            values = _STEPPERS[kind](p, x_d, state0, mask)
            if direction == 1:
                values = {key: _reverse(v, lengths) for key, v in values.items()}
            records.append(LayerRecord(name, kind, layer, direction, call, x, lengths, values))
            outs.append(values["hidden"])
        x = outs[0] if D == 1 else torch.cat(outs, -1)  # (T, B, D*H): the next layer's input
    return records, x


class _Weights:
    """One layer and direction of a module's weights under the cells' attribute names."""

    def __init__(self, **attrs) -> None:
        self.__dict__.update(attrs)


def _weights(module, layer: int, direction: int) -> _Weights:
    suffix = f"_l{layer}" + "_reverse" * direction
    names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_peephole",
             "layer_norm_ih", "layer_norm_hh", "layer_norm_c_weight", "layer_norm_c_bias"]
    attrs = {n: getattr(module, n + suffix, None) for n in names}
    attrs["reset_after"] = getattr(module, "reset_after", True)
    attrs["nonlinearity"] = getattr(module, "nonlinearity", "tanh")
    return _Weights(**attrs)


def _lstm_steps(p, x: Tensor, state0, mask: Tensor | None) -> dict[str, Tensor]:
    """LSTMCell's own step (rnnkit.cells.lstm.lstm_step), one step at a time, keeping every gate."""
    return _cell_steps(lambda gx_t, state, gates: lstm_step(p, gx_t, state, gates)[1],
                       lstm_project(p, x), tuple(state0), GATES["lstm"], mask)


def _gru_steps(p, x: Tensor, state0, mask: Tensor | None) -> dict[str, Tensor]:
    """GRUCell's own step (both reset placements), one step at a time, keeping every gate."""
    return _cell_steps(lambda gx_t, state, gates: (gru_step(p, gx_t, state[0], gates)[1],),
                       gru_project(p, x), tuple(state0), GATES["gru"], mask)


def _cell_steps(step, gx: Tensor, state: tuple, names: tuple[str, ...], mask: Tensor | None) -> dict[str, Tensor]:
    """Run ``step(gx_t, state, gates) -> state`` over gx (T, B, nH), collecting the gates."""
    out = {n: [] for n in names}
    for t in range(gx.shape[0]):
        gates: dict[str, Tensor] = {}
        state = _keep(mask, t, step(gx[t], state, gates), state)
        for n in names:
            out[n].append(gates[n])
    return _stack(out, mask)


def _rnn_steps(p, x: Tensor, state0, mask: Tensor | None) -> dict[str, Tensor]:
    """RNNCell's s_t = f(U x_t + W s_tm1 + b), one step at a time."""
    (s_tm1,) = state0  # (B, H)
    ux = rnn_project(p, x)  # (T, B, H)
    f = _NONLINEARITIES[p.nonlinearity]
    out = {"hidden": []}
    for t in range(x.shape[0]):
        s = f(ux[t] + s_tm1 @ p.weight_hh.t())
        (s_tm1,) = _keep(mask, t, (s,), (s_tm1,))
        out["hidden"].append(s)
    return _stack(out, mask)


_STEPPERS = {"lstm": _lstm_steps, "gru": _gru_steps, "rnn": _rnn_steps}


def _keep(mask: Tensor | None, t: int, new: tuple, old: tuple) -> tuple:
    """A sequence past its length keeps its state (the engine's rule)."""
    if mask is None:
        return new
    keep = mask[t].unsqueeze(-1)  # (B, 1)
    return tuple(torch.where(keep, n, o) for n, o in zip(new, old))


def _stack(out: dict[str, list[Tensor]], mask: Tensor | None) -> dict[str, Tensor]:
    values = {n: torch.stack(v) for n, v in out.items()}  # each (T, B, H)
    if mask is not None:
        values = {n: v * mask.unsqueeze(-1).to(v.dtype) for n, v in values.items()}
    return values


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


# -- a text through a character language model ------------------------------------------------

FEATURES = ("position in line", "inside quotes", "inside brackets", "inside a word", "speaker's name")


@dataclass
class Inspection:
    """A text read by a character language model, with every layer's record and the model's guesses."""

    text: str
    layers: list[LayerRecord]  # each value (T, 1, H) for the T characters of text
    probability: Tensor  # (T,): the probability the model gave each character before reading it
    title: str = ""
    gradients_png: bytes | None = None  # a gradient-flow plot to embed, if any


def inspect_text(model: nn.Module, vocab, text: str, title: str = "", max_chars: int = 2000) -> Inspection:
    """Read ``text`` with a character language model (``forward(ids (B, T)) -> (logits, state)``).

    Args:
        model: e.g. ``rnnkit.load(run_dir).model`` of a charlm run.
        vocab: the run's ``rnnkit.data.Vocab`` (``run.task.vocab``): characters -> ids.
        text: at least 2 characters, at most ``max_chars``.
        title: shown at the top of the report.
    """
    if not isinstance(text, str) or len(text) < 2:
        raise ValueError(f"inspect: text must be a string of at least 2 characters, got {text!r}")
    if len(text) > max_chars:
        raise ValueError(f"inspect: text must be at most max_chars={max_chars} characters, got {len(text)}")
    ids = torch.tensor([vocab.encode(list(text))])  # (1, T)
    was_training = model.training
    model.eval()  # no dropout: the recording recomputes the layers as they run in use
    try:
        with torch.no_grad(), record(model) as rec:
            logits, _ = model(ids)  # (1, T, V)
    finally:
        model.train(was_training)
    probs = torch.softmax(logits[0].float(), -1)  # (T, V): after reading char t, the next one
    p_next = torch.ones(len(text))
    p_next[1:] = probs[:-1].gather(1, ids[0, 1:, None])[:, 0]
    return Inspection(text, rec.last_call(), p_next, title)


def text_features(text: str) -> dict[str, Tensor]:
    """Simple per-character features of a text, each (T,) float: where a unit might be looking.

    - position in line: characters since the last newline (0 at a line's first character);
    - inside quotes: 1 between an opening and a closing double quote (the quotes included);
    - inside brackets: 1 inside (), [] or {} (nesting counted once, brackets included);
    - inside a word: 1 on letters, and on an apostrophe between two letters;
    - speaker's name: 1 on a line that is a play's speaker heading (upper case, ending in ':').
    """
    pos, quote, bracket = [], [], []
    col, in_quote, depth = 0, False, 0
    for ch in text:
        pos.append(col)
        col = 0 if ch == "\n" else col + 1
        if ch == '"':
            quote.append(1.0)
            in_quote = not in_quote
        else:
            quote.append(float(in_quote))
        if ch in "([{":
            depth += 1
        bracket.append(float(depth > 0))
        if ch in ")]}":
            depth = max(depth - 1, 0)
    word = [float(ch.isalpha() or (ch == "'" and 0 < k < len(text) - 1 and text[k - 1].isalpha() and text[k + 1].isalpha()))
            for k, ch in enumerate(text)]
    speaker = []
    for line in text.split("\n"):
        name = line.rstrip(":")
        is_name = line.endswith(":") and name.strip() != "" and name == name.upper() and any(c.isalpha() for c in name)
        speaker += [float(is_name)] * len(line) + [0.0]  # the newline is not part of the name
    values = (pos, quote, bracket, word, speaker[: len(text)])
    return {name: torch.tensor(v, dtype=torch.float) for name, v in zip(FEATURES, values)}


def unit_correlations(values: Tensor, feature: Tensor) -> Tensor:
    """Pearson correlation of each unit with a feature: values (T, H), feature (T,) -> (H,).

    A constant feature or unit has no correlation: 0 there.
    """
    v = values.double() - values.double().mean(0)
    f = feature.double() - feature.double().mean()
    denom = v.norm(dim=0) * f.norm()
    r = (v * f[:, None]).sum(0) / denom.clamp_min(1e-12)
    return torch.where(denom > 1e-12, r, torch.zeros_like(r)).float()


def _state_key(kind: str) -> str:
    return "cell" if kind == "lstm" else "hidden"


def _display(name: str, v: Tensor) -> Tensor:
    """Values as coloured: the cell state through tanh (as h sees it), the rest as they are."""
    return torch.tanh(v) if name == "cell" else v


def _top_units(inspection: Inspection, features: dict[str, Tensor], k: int = 8) -> list[dict]:
    """The k units (of any layer) that best follow each feature, by |r| on the state key."""
    rows = []
    for fname, feat in features.items():
        best = []
        for li, r in enumerate(inspection.layers):
            key = _state_key(r.kind)
            corr = unit_correlations(_display(key, r[key][:, 0]), feat)  # (H,)
            for u in corr.abs().topk(min(k, corr.numel())).indices.tolist():
                best.append((abs(corr[u].item()), corr[u].item(), li, u))
        best.sort(reverse=True)
        rows.append({"feature": fname, "constant": bool(feat.std() == 0),
                     "units": [{"record": li, "unit": u, "r": round(c, 3)} for _, c, li, u in best[:k]]})
    return rows


def _pick_units(inspection: Inspection, top: list[dict], max_units: int, unit: int | None, layer: int) -> list[list[int]]:
    """Per record, the units the report carries: all when few, else the most telling ones."""
    records = inspection.layers
    total = sum(r[_state_key(r.kind)].shape[-1] for r in records)
    if total <= max_units:
        return [list(range(r[_state_key(r.kind)].shape[-1])) for r in records]
    chosen: list[set[int]] = [set() for _ in records]
    if unit is not None:
        chosen[layer].add(unit)
    for rank in range(3):  # the best unit of each feature first, then the second best, ...
        for row in top:
            if rank < len(row["units"]) and sum(map(len, chosen)) < max_units:
                entry = row["units"][rank]
                chosen[entry["record"]].add(entry["unit"])
    # then, layer by layer in turn, the units whose state varies most over the text
    by_var = []
    for r in records:
        key = _state_key(r.kind)
        by_var.append(_display(key, r[key][:, 0]).var(0).argsort(descending=True).tolist())
    depth = 0
    while sum(map(len, chosen)) < max_units and depth < max(map(len, by_var)):
        for li, order in enumerate(by_var):
            if depth < len(order) and sum(map(len, chosen)) < max_units:
                chosen[li].add(order[depth])
        depth += 1
    return [sorted(c) for c in chosen]


_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"  # 64 levels, 1 char each


def _quantise(v: Tensor, lo: float) -> str:
    """Values in [lo, 1] to one character each (64 levels): (T,) -> str."""
    q = ((v.float().clamp(lo, 1.0) - lo) / (1.0 - lo) * 63).round().long().tolist()
    return "".join(_ALPHABET[i] for i in q)


def _check_choice(records: list[LayerRecord], unit: int | None, layer: int) -> int:
    """Check the chosen layer (an index into records, negative from the end) and unit; the layer index."""
    if not records:
        raise ValueError("inspect: the model ran no rnnkit recurrent layer on the text")
    if not -len(records) <= layer < len(records):
        raise ValueError(f"inspect: layer must be in [0, {len(records)}) (a layer, or layer and direction), got {layer}")
    layer = layer % len(records)
    width = records[layer][_state_key(records[layer].kind)].shape[-1]
    if unit is not None and not 0 <= unit < width:
        raise ValueError(f"inspect: unit must be in [0, {width}) for {records[layer].label}, got {unit}")
    return layer


def _report_data(inspection: Inspection, max_units: int, unit: int | None, layer: int) -> dict:
    records = inspection.layers
    layer = _check_choice(records, unit, layer)
    features = text_features(inspection.text)
    top = _top_units(inspection, features)
    picked = _pick_units(inspection, top, max_units, unit, layer)
    layers = []
    for li, (r, units) in enumerate(zip(records, picked)):
        keys = [k for k in GATES[r.kind] if r[k].shape[-1] == r[_state_key(r.kind)].shape[-1]]
        corr = {f: unit_correlations(_display(_state_key(r.kind), r[_state_key(r.kind)][:, 0]), feat)
                for f, feat in features.items()}
        layers.append({
            "label": r.label, "kind": r.kind, "width": r[_state_key(r.kind)].shape[-1], "keys": keys,
            "units": units, "state": _state_key(r.kind),
            "corr": {f: [round(c[u].item(), 2) for u in units] for f, c in corr.items()},
            "values": {k: [_quantise(_display(k, r[k][:, 0, u]), 0.0 if k in _SIGMOID_GATES else -1.0) for u in units]
                       for k in keys},
        })
    default_layer = layer
    default_unit = unit if unit is not None else _default_unit(top, layers, default_layer)
    return {
        "title": inspection.title, "text": inspection.text, "alphabet": _ALPHABET,
        "probability": [round(p, 3) for p in inspection.probability.tolist()],
        "layers": layers, "words": _WORDS, "sigmoid": sorted(_SIGMOID_GATES),
        "top": [{**row, "units": [{**e, "index": layers[e["record"]]["units"].index(e["unit"])}
                                  for e in row["units"] if e["unit"] in layers[e["record"]]["units"]]} for row in top],
        "start": {"layer": default_layer, "unit": default_unit},
    }


def _default_unit(top: list[dict], layers: list[dict], layer: int) -> int:
    """The unit of ``layer`` that best follows any feature (position in line first)."""
    for row in top:
        for e in row["units"]:
            if e["record"] == layer and e["unit"] in layers[layer]["units"]:
                return e["unit"]
    return layers[layer]["units"][0]


def write_html(inspection: Inspection, path, unit: int | None = None, layer: int = -1, max_units: int = 128) -> Path:
    """One self-contained HTML page (inline CSS, script and data; nothing fetched) of an inspection.

    Args:
        unit: the unit shown first (default: the one that best follows a text feature).
        layer: index into ``inspection.layers`` (layer * directions + direction); default the last.
        max_units: with more units than this in all layers together, the page carries the most
            telling ones: the best for each feature, ``unit``, then those whose state varies most.
    """
    data = _report_data(inspection, max_units, unit, layer)
    gradients = ""
    if inspection.gradients_png is not None:
        b64 = base64.b64encode(inspection.gradients_png).decode()
        gradients = (f'<h2>Gradient flow</h2><img id="gradients" alt="gradient norm against distance in time" '
                     f'src="data:image/png;base64,{b64}">')
    page = _PAGE.replace("{{TITLE}}", html.escape(inspection.title or "rnnkit inspect"))
    page = page.replace("{{GRADIENTS}}", gradients)
    page = page.replace("{{DATA}}", json.dumps(data, separators=(",", ":")).replace("</", "<\\/"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    log.info("inspect: wrote %s (%d KB)", path, path.stat().st_size // 1024)
    return path


def write_pngs(inspection: Inspection, out_dir, unit: int | None = None, layer: int = -1, max_rows: int = 64) -> list[Path]:
    """PNG heatmaps: per layer, each recorded quantity over time (units as rows, the
    ``max_rows`` whose state varies most); and the text coloured by one unit's state."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layer = _check_choice(inspection.layers, unit, layer)
    if unit is None:
        top = _top_units(inspection, text_features(inspection.text))
        unit = next((e["unit"] for row in top for e in row["units"] if e["record"] == layer), 0)
    text, written = inspection.text, []
    T = len(text)
    for r in inspection.layers:
        key = _state_key(r.kind)
        rows = _display(key, r[key][:, 0]).var(0).argsort(descending=True)[:max_rows].sort().values  # (R,)
        keys = [k for k in GATES[r.kind] if r[k].shape[-1] == r[key].shape[-1]]
        fig, axes = plt.subplots(len(keys), 1, figsize=(min(4 + T / 25, 20), 1.2 + 1.6 * len(keys)), squeeze=False)
        for ax, k in zip(axes[:, 0], keys):
            v = _display(k, r[k][:, 0, rows]).t().numpy()  # (R, T)
            lo = 0.0 if k in _SIGMOID_GATES else -1.0
            im = ax.imshow(v, aspect="auto", interpolation="nearest", cmap="viridis" if lo == 0 else "RdBu_r",
                           vmin=lo, vmax=1.0)
            ax.set_ylabel(k, rotation=0, ha="right", va="center")
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, pad=0.01, fraction=0.02)
            ax.set_xticks([])
        _char_ticks(axes[-1, 0], text)
        axes[0, 0].set_title(f"{r.kind.upper()} {r.label}: {len(rows)} units (rows) over {T} characters"
                             + (" (tanh of the cell state)" if key == "cell" else ""))
        written.append(save_figure(fig, out_dir / f"gates_l{r.layer}{'_reverse' * r.direction}.png"))
    written.append(_text_png(plt, inspection, layer, unit, out_dir))
    return written


def _char_ticks(ax, text: str) -> None:
    if len(text) <= 120:
        ax.set_xticks(range(len(text)))
        ax.set_xticklabels(["⏎" if c == "\n" else c for c in text], fontsize=7, family="monospace")


def _text_png(plt, inspection: Inspection, li: int, unit: int, out_dir: Path) -> Path:
    """The text, character by character, on the colour of one unit's state (Karpathy et al.'s figure)."""
    r = inspection.layers[li]
    key = _state_key(r.kind)
    v = _display(key, r[key][:, 0, unit]).tolist()
    cmap = plt.get_cmap("RdBu_r")
    lines, line = [], []
    for ch, a in zip(inspection.text, v):
        if ch == "\n":
            lines.append(line)
            line = []
        else:
            line.append((ch, a))
    lines.append(line)
    lines = [ln[i : i + 100] for ln in lines for i in range(0, max(len(ln), 1), 100)]  # wrap at 100
    width = max(len(ln) for ln in lines) if lines else 1
    fig = plt.figure(figsize=(max(width, 20) * 0.11, 0.6 + 0.22 * len(lines)))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, max(width, 20))
    ax.set_ylim(len(lines) + 1.5, 0)
    ax.axis("off")
    ax.text(0.2, 0.8, f"{r.kind.upper()} {r.label}, unit {unit}: {'tanh(cell state)' if key == 'cell' else key} (red +1, blue -1)", fontsize=8, va="center")
    for y, ln in enumerate(lines, start=2):
        for x, (ch, a) in enumerate(ln):
            ax.add_patch(plt.Rectangle((x, y - 0.5), 1, 1, color=cmap(0.5 + 0.4 * a), lw=0))  # no darkest ends: text stays legible
            ax.text(x + 0.5, y, ch, ha="center", va="center", fontsize=8, family="monospace")
    path = out_dir / f"text_l{r.layer}{'_reverse' * r.direction}_unit{unit}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gradients_png(model: nn.Module, task, text: str, vocab) -> bytes:
    """The gradient-flow plot (``rnnkit.viz.gradients``) of the model on the text, as PNG bytes."""
    from .gradients import gradient_flow, plot_gradient_flow

    ids = torch.tensor([vocab.encode(list(text))])  # (1, T)
    batch = {"x": ids[:, :-1], "y": ids[:, 1:]}
    curve = gradient_flow(model, task, batch)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gradients.png"
        plot_gradient_flow({_describe(model): curve}, path, title="|| d loss / d h_t || of the last layer, over the text")
        return path.read_bytes()


def _describe(model: nn.Module) -> str:
    for m in model.modules():
        if isinstance(m, (LSTM, GRU, RNN)):
            return f"{_kind(m).upper()} {m.num_layers}x{m.hidden_size}"
    return type(model).__name__


_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{TITLE}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.4em}
#controls label{margin-right:1em}
#text{font-family:ui-monospace,monospace;font-size:14px;line-height:1.45;white-space:pre-wrap;border:1px solid #ccc;padding:.6em;word-break:break-all}
#text span{cursor:crosshair}
#info{font-family:ui-monospace,monospace;font-size:13px;min-height:1.4em;margin:.4em 0}
canvas{border:1px solid #ccc;image-rendering:pixelated;display:block;margin:.3em 0}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
td a{cursor:pointer;color:#0645ad}
.legend{font-size:12px;color:#555}
#errors{color:#b00}
.row{display:flex;align-items:flex-start}#stripnames{font-size:12px;line-height:16px;padding:calc(.3em + 1px) 6px 0 0;text-align:right}
</style></head><body>
<h1>{{TITLE}}</h1>
<div id="errors"></div>
<div id="controls">
<label>layer <select id="layer"></select></label>
<label>unit <select id="unit"></select></label>
<label>colour by <select id="key"></select></label>
</div>
<p class="legend">Each character is coloured by the chosen unit's value after reading it: red +1, white 0, blue &minus;1
(gates, which lie in [0, 1]: white 0, red 1). Hover a character for all of this unit's values there.</p>
<div id="text"></div>
<div id="info"></div>
<h2>This unit's gates over time</h2>
<p class="legend">One row per recorded quantity, one column per character.</p>
<div class="row"><div id="stripnames"></div><canvas id="strip"></canvas></div>
<h2>The layer over time</h2>
<p class="legend">One row per unit carried in this page (the chosen one is marked), one column per character; click a row to choose its unit.</p>
<canvas id="heat"></canvas>
<h2>Units that follow simple features of the text</h2>
<p class="legend">Pearson correlation over this text between each unit's state and the feature; click a unit to choose it.</p>
<table id="top"><thead><tr><th>feature</th><th>units (r)</th></tr></thead><tbody></tbody></table>
{{GRADIENTS}}
<script id="data" type="application/json">{{DATA}}</script>
<script>
"use strict";
window.onerror=function(m){document.getElementById("errors").textContent+="script error: "+m+"\n";};
const D=JSON.parse(document.getElementById("data").textContent);
const LEVEL={};for(let i=0;i<D.alphabet.length;i++)LEVEL[D.alphabet[i]]=i/63;
const SIG=new Set(D.sigmoid);
const T=D.text.length;
let cur={layer:D.start.layer,unit:D.start.unit,key:null};
function val(L,key,k,t){const lo=SIG.has(key)?0:-1;return lo+(1-lo)*LEVEL[L.values[key][k][t]];}
function colour(v,sig){
  // diverging white->red for positive, white->blue for negative (gates: white->red on [0,1])
  const a=sig?v:Math.max(-1,Math.min(1,v)),w=Math.abs(a),to=a>=0?[214,39,40]:[31,119,180];
  return "rgb("+to.map(x=>Math.round(255+(x-255)*w)).join(",")+")";
}
function rgb(v,sig){const m=colour(v,sig).match(/\d+/g);return m.map(Number);}
const sel={layer:document.getElementById("layer"),unit:document.getElementById("unit"),key:document.getElementById("key")};
D.layers.forEach((L,i)=>{const o=document.createElement("option");o.value=i;o.textContent=L.kind.toUpperCase()+" "+L.label+" ("+L.width+" units)";sel.layer.appendChild(o);});
const textDiv=document.getElementById("text");
const spans=[];
for(let t=0;t<T;t++){const s=document.createElement("span");s.textContent=D.text[t];s.dataset.t=t;spans.push(s);textDiv.appendChild(s);}
function fillUnits(){
  const L=D.layers[cur.layer];sel.unit.innerHTML="";
  L.units.forEach((u,k)=>{const o=document.createElement("option");o.value=u;
    const best=Object.entries(L.corr).map(([f,c])=>[f,c[k]]).sort((a,b)=>Math.abs(b[1])-Math.abs(a[1]))[0];
    o.textContent=u+(best?"  ("+best[0]+" r="+best[1]+")":"");sel.unit.appendChild(o);});
  if(!L.units.includes(cur.unit))cur.unit=L.units[0];
  sel.unit.value=cur.unit;
  sel.key.innerHTML="";
  L.keys.forEach(k=>{const o=document.createElement("option");o.value=k;o.textContent=(D.words[k]||k)+(k==="cell"?" (tanh)":"");sel.key.appendChild(o);});
  if(!L.keys.includes(cur.key))cur.key=L.state;
  sel.key.value=cur.key;
}
function drawText(){
  const L=D.layers[cur.layer],k=L.units.indexOf(cur.unit),sig=SIG.has(cur.key);
  for(let t=0;t<T;t++){spans[t].style.background=colour(val(L,cur.key,k,t),sig);}
  textDiv.dataset.unit=cur.unit;textDiv.dataset.layer=cur.layer;textDiv.dataset.key=cur.key;
}
function paint(canvas,rows,cols,get,scaleX,scaleY){
  canvas.width=cols*scaleX;canvas.height=rows*scaleY;
  const ctx=canvas.getContext("2d"),img=ctx.createImageData(canvas.width,canvas.height);
  for(let r=0;r<rows;r++)for(let c=0;c<cols;c++){const [R,G,B]=get(r,c);
    for(let y=r*scaleY;y<(r+1)*scaleY;y++)for(let x=c*scaleX;x<(c+1)*scaleX;x++){const i=4*(y*canvas.width+x);img.data[i]=R;img.data[i+1]=G;img.data[i+2]=B;img.data[i+3]=255;}}
  ctx.putImageData(img,0,0);return ctx;
}
function painted(canvas){
  // how many pixels differ from white: a check that the heatmap was really drawn
  const d=canvas.getContext("2d").getImageData(0,0,canvas.width,canvas.height).data;let n=0;
  for(let i=0;i<d.length;i+=4)if(d[i]<250||d[i+1]<250||d[i+2]<250)n++;
  canvas.dataset.painted=n;
}
function drawStrip(){
  const L=D.layers[cur.layer],k=L.units.indexOf(cur.unit),c=document.getElementById("strip");
  const sx=Math.max(1,Math.min(6,Math.floor(1100/T)));
  const ctx=paint(c,L.keys.length,T,(r,t)=>rgb(val(L,L.keys[r],k,t),SIG.has(L.keys[r])),sx,16);
  const names=document.getElementById("stripnames");names.innerHTML="";
  L.keys.forEach(key=>{const d=document.createElement("div");d.textContent=key;names.appendChild(d);});
  c.title=L.keys.join(", ");painted(c);
}
function drawHeat(){
  const L=D.layers[cur.layer],c=document.getElementById("heat"),key=cur.key,sig=SIG.has(key);
  const sx=Math.max(1,Math.min(6,Math.floor(1100/T))),sy=Math.max(2,Math.min(8,Math.floor(600/L.units.length)));
  const ctx=paint(c,L.units.length,T,(r,t)=>rgb(val(L,key,r,t),sig),sx,sy);
  const k=L.units.indexOf(cur.unit);ctx.strokeStyle="#0a0";ctx.lineWidth=2;ctx.strokeRect(1,k*sy,c.width-2,sy);
  painted(c);
}
function drawTop(){
  const body=document.querySelector("#top tbody");body.innerHTML="";
  D.top.forEach(row=>{const tr=document.createElement("tr");const td=document.createElement("td");td.textContent=row.feature+(row.constant?" (constant in this text)":"");tr.appendChild(td);
    const cell=document.createElement("td");
    row.units.forEach(e=>{const a=document.createElement("a");a.textContent=D.layers[e.record].label+" #"+e.unit+" ("+e.r+")  ";
      a.onclick=()=>{cur.layer=e.record;cur.unit=e.unit;sel.layer.value=e.record;fillUnits();draw();};cell.appendChild(a);});
    tr.appendChild(cell);body.appendChild(tr);});
}
function draw(){drawText();drawStrip();drawHeat();document.body.dataset.drawn=(+document.body.dataset.drawn||0)+1;}
textDiv.addEventListener("mouseover",ev=>{const t=ev.target.dataset.t;if(t===undefined)return;
  const L=D.layers[cur.layer],k=L.units.indexOf(cur.unit);
  document.getElementById("info").textContent=JSON.stringify(D.text[t])+" at "+t+": "+L.keys.map(key=>key+" "+val(L,key,k,t).toFixed(2)).join("  ")+"  p(char)="+D.probability[t];});
document.getElementById("heat").addEventListener("click",ev=>{const L=D.layers[cur.layer],c=ev.target;
  const r=Math.floor(ev.offsetY*c.height/c.clientHeight/(c.height/L.units.length));if(L.units[r]!==undefined){cur.unit=L.units[r];sel.unit.value=cur.unit;draw();}});
sel.layer.onchange=()=>{cur.layer=+sel.layer.value;fillUnits();draw();};
sel.unit.onchange=()=>{cur.unit=+sel.unit.value;draw();};
sel.key.onchange=()=>{cur.key=sel.key.value;draw();};
sel.layer.value=cur.layer;fillUnits();drawTop();draw();
</script></body></html>
"""
