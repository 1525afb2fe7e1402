"""Training curves from a run's metrics.jsonl, drawn with matplotlib (no display needed)."""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["plot_curves", "save_figure"]


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Lay out ``fig``, write it to ``path`` (making its folder) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_curves(metrics_path: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """One PNG per quantity logged for both train and val (loss.png, accuracy.png, ...)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    names = sorted({k.split("_", 1)[1] for r in records for k in r if k.startswith(("train_", "val_"))})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        fig, ax = plt.subplots(figsize=(6, 4))
        for split in ("train", "val"):
            points = [(r["step"], r[f"{split}_{name}"]) for r in records if f"{split}_{name}" in r]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, marker="o" if split == "val" else None, ms=3, label=split)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
        written.append(save_figure(fig, out_dir / f"{name}.png"))
    return written
