"""The inspect report's pictures as PNG files: gate heatmaps over time, and the text coloured by
one unit's state (Karpathy, Johnson & Fei-Fei 2015's figure)."""
from __future__ import annotations

from pathlib import Path

from .plots import save_figure
from .recording import GATES, SIGMOID_GATES
from .text import Inspection, check_choice, displayed, state_key, text_features, top_units

__all__ = ["write_pngs"]


def write_pngs(inspection: Inspection, out_dir, unit: int | None = None, layer: int = -1, max_rows: int = 64) -> list[Path]:
    """PNG heatmaps: per layer, each recorded quantity over time (units as rows, the
    ``max_rows`` whose state varies most); and the text coloured by one unit's state.

    Args:
        unit: the unit of the text picture (default: the one that best follows a text feature).
        layer: index into ``inspection.layers`` of the text picture; default the last.
        max_rows: units per heatmap.

    Returns the paths written: ``gates_l{k}[_reverse].png`` per record, then
    ``text_l{k}[_reverse]_unit{u}.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layer = check_choice(inspection.layers, unit, layer)
    if unit is None:
        top = top_units(inspection, text_features(inspection.text))
        unit = next((e["unit"] for row in top for e in row["units"] if e["record"] == layer), 0)
    text, written = inspection.text, []
    T = len(text)
    for r in inspection.layers:
        key = state_key(r.kind)
        rows = displayed(key, r[key][:, 0]).var(0).argsort(descending=True)[:max_rows].sort().values  # (R,)
        keys = [k for k in GATES[r.kind] if r[k].shape[-1] == r[key].shape[-1]]
        fig, axes = plt.subplots(len(keys), 1, figsize=(min(4 + T / 25, 20), 1.2 + 1.6 * len(keys)), squeeze=False)
        for ax, k in zip(axes[:, 0], keys):
            v = displayed(k, r[k][:, 0, rows]).t().numpy()  # (R, T)
            lo = 0.0 if k in SIGMOID_GATES else -1.0
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
    key = state_key(r.kind)
    v = displayed(key, r[key][:, 0, unit]).tolist()
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
    what = "tanh(cell state)" if key == "cell" else key
    ax.text(0.2, 0.8, f"{r.kind.upper()} {r.label}, unit {unit}: {what} (red +1, blue -1)", fontsize=8, va="center")
    for y, ln in enumerate(lines, start=2):
        for x, (ch, a) in enumerate(ln):
            # no darkest ends: the text stays legible
            ax.add_patch(plt.Rectangle((x, y - 0.5), 1, 1, color=cmap(0.5 + 0.4 * a), lw=0))
            ax.text(x + 0.5, y, ch, ha="center", va="center", fontsize=8, family="monospace")
    path = out_dir / f"text_l{r.layer}{'_reverse' * r.direction}_unit{unit}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
