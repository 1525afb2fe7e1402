"""The inspect report: one self-contained HTML page of an ``Inspection``.

The page (the text coloured by a unit's activation, as in Karpathy, Johnson & Fei-Fei 2015,
"Visualizing and understanding recurrent networks"; a unit picker; gate heatmaps over time; the
units that best follow simple features of the text) is the template ``templates/report.html``,
shipped as package data: its CSS and script are written there, and this module only fills its
placeholders ``{{TITLE}}``, ``{{GRADIENTS}}`` and ``{{DATA}}`` (the JSON the script reads).
"""
from __future__ import annotations

import base64
import html
import json
import logging
import re
from importlib import resources
from pathlib import Path

from torch import Tensor

from .recording import GATES, SIGMOID_GATES, WORDS
from .text import Inspection, check_choice, displayed, state_key, text_features, top_units, unit_correlations

__all__ = ["write_html", "render_template", "report_template", "PLACEHOLDER"]

log = logging.getLogger(__name__)

PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")  # {{NAME}} in a template
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"  # 64 levels, 1 char each


def report_template() -> str:
    """The report's HTML template, read from the package data."""
    return resources.files(__package__).joinpath("templates", "report.html").read_text(encoding="utf-8")


def render_template(template: str, values: dict[str, str]) -> str:
    """Fill every ``{{NAME}}`` of ``template`` with ``values[NAME]``, in one pass (a value is never
    scanned for placeholders). A placeholder without a value, or a value without a placeholder,
    is a ValueError: nothing is left unfilled by accident."""
    names = set(PLACEHOLDER.findall(template))
    if names != set(values):
        raise ValueError(f"render_template: the template's placeholders are {sorted(names)}, "
                         f"got values for {sorted(values)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


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
    page = render_template(report_template(), {
        "TITLE": html.escape(inspection.title or "rnnkit inspect"),
        "GRADIENTS": gradients,
        "DATA": json.dumps(data, separators=(",", ":")).replace("</", "<\\/"),
    })
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    log.info("inspect: wrote %s (%d KB)", path, path.stat().st_size // 1024)
    return path


def _report_data(inspection: Inspection, max_units: int, unit: int | None, layer: int) -> dict:
    """The JSON the page's script reads: the text, the probabilities, and per record the units
    carried, their correlations with each feature and their quantised values over time."""
    records = inspection.layers
    layer = check_choice(records, unit, layer)
    features = text_features(inspection.text)
    top = top_units(inspection, features)
    picked = _pick_units(inspection, top, max_units, unit, layer)
    layers = []
    for r, units in zip(records, picked):
        key = state_key(r.kind)
        keys = [k for k in GATES[r.kind] if r[k].shape[-1] == r[key].shape[-1]]
        corr = {f: unit_correlations(displayed(key, r[key][:, 0]), feat) for f, feat in features.items()}
        layers.append({
            "label": r.label, "kind": r.kind, "width": r[key].shape[-1], "keys": keys,
            "units": units, "state": key,
            "corr": {f: [round(c[u].item(), 2) for u in units] for f, c in corr.items()},
            "values": {k: [_quantise(displayed(k, r[k][:, 0, u]), 0.0 if k in SIGMOID_GATES else -1.0) for u in units]
                       for k in keys},
        })
    start_unit = unit if unit is not None else _default_unit(top, layers, layer)
    return {
        "title": inspection.title, "text": inspection.text, "alphabet": _ALPHABET,
        "probability": [round(p, 3) for p in inspection.probability.tolist()],
        "layers": layers, "words": WORDS, "sigmoid": sorted(SIGMOID_GATES),
        "top": [{**row, "units": [{**e, "index": layers[e["record"]]["units"].index(e["unit"])}
                                  for e in row["units"] if e["unit"] in layers[e["record"]]["units"]]} for row in top],
        "start": {"layer": layer, "unit": start_unit},
    }


def _default_unit(top: list[dict], layers: list[dict], layer: int) -> int:
    """The unit of ``layer`` that best follows any feature (position in line first)."""
    for row in top:
        for e in row["units"]:
            if e["record"] == layer and e["unit"] in layers[layer]["units"]:
                return e["unit"]
    return layers[layer]["units"][0]


def _pick_units(inspection: Inspection, top: list[dict], max_units: int, unit: int | None, layer: int) -> list[list[int]]:
    """Per record, the units the report carries: all when few, else the most telling ones."""
    records = inspection.layers
    total = sum(r[state_key(r.kind)].shape[-1] for r in records)
    if total <= max_units:
        return [list(range(r[state_key(r.kind)].shape[-1])) for r in records]
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
        key = state_key(r.kind)
        by_var.append(displayed(key, r[key][:, 0]).var(0).argsort(descending=True).tolist())
    depth = 0
    while sum(map(len, chosen)) < max_units and depth < max(map(len, by_var)):
        for li, order in enumerate(by_var):
            if depth < len(order) and sum(map(len, chosen)) < max_units:
                chosen[li].add(order[depth])
        depth += 1
    return [sorted(c) for c in chosen]


def _quantise(v: Tensor, lo: float) -> str:
    """Values in [lo, 1] to one character each (64 levels): (T,) -> str."""
    q = ((v.float().clamp(lo, 1.0) - lo) / (1.0 - lo) * 63).round().long().tolist()
    return "".join(_ALPHABET[i] for i in q)
