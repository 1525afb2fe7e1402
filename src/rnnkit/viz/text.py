"""A text read by a character language model, under ``record``; and what its units follow.

``inspect_text`` runs the model over the text with every recurrent layer recorded
(``rnnkit.viz.recording``) and keeps the probability the model gave each character.
``text_features`` gives simple per-character features of the text (position in line, inside
quotes, ...) and ``unit_correlations`` how well each unit follows one; ``top_units`` the units
of any layer that follow each feature best. The report (``rnnkit.viz.report``) and the PNGs
(``rnnkit.viz.heatmaps``) are drawn from an ``Inspection``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .recording import LayerRecord, record

__all__ = ["FEATURES", "Inspection", "inspect_text", "text_features", "unit_correlations", "top_units",
           "state_key", "displayed", "check_choice"]

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


def state_key(kind: str) -> str:
    """The recorded quantity that stands for a layer's memory: the LSTM's cell, else the hidden state."""
    return "cell" if kind == "lstm" else "hidden"


def displayed(name: str, v: Tensor) -> Tensor:
    """Values as coloured: the cell state through tanh (as h sees it), the rest as they are."""
    return torch.tanh(v) if name == "cell" else v


def top_units(inspection: Inspection, features: dict[str, Tensor], k: int = 8) -> list[dict]:
    """The k units (of any layer) that best follow each feature, by |r| on the state key.

    One row per feature: ``{"feature", "constant", "units": [{"record", "unit", "r"}, ...]}``,
    ``record`` an index into ``inspection.layers``.
    """
    rows = []
    for fname, feat in features.items():
        best = []
        for li, r in enumerate(inspection.layers):
            key = state_key(r.kind)
            corr = unit_correlations(displayed(key, r[key][:, 0]), feat)  # (H,)
            for u in corr.abs().topk(min(k, corr.numel())).indices.tolist():
                best.append((abs(corr[u].item()), corr[u].item(), li, u))
        best.sort(reverse=True)
        rows.append({"feature": fname, "constant": bool(feat.std() == 0),
                     "units": [{"record": li, "unit": u, "r": round(c, 3)} for _, c, li, u in best[:k]]})
    return rows


def check_choice(records: list[LayerRecord], unit: int | None, layer: int) -> int:
    """Check the chosen layer (an index into records, negative from the end) and unit; the layer index."""
    if not records:
        raise ValueError("inspect: the model ran no rnnkit recurrent layer on the text")
    if not -len(records) <= layer < len(records):
        raise ValueError(f"inspect: layer must be in [0, {len(records)}) (a layer, or layer and direction), got {layer}")
    layer = layer % len(records)
    width = records[layer][state_key(records[layer].kind)].shape[-1]
    if unit is not None and not 0 <= unit < width:
        raise ValueError(f"inspect: unit must be in [0, {width}) for {records[layer].label}, got {unit}")
    return layer
