"""Training curves from a run's metrics.jsonl, and a classifier's confusion matrix, drawn with
matplotlib (no display needed)."""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["plot_curves", "save_figure", "baseline_lines", "confusion_matrix", "class_report", "plot_confusion"]

# Keys of evaluation records that are no curve (a cut evaluation's share of its batches).
_NOT_CURVES = {"evaluated_fraction"}


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Lay out ``fig``, write it to ``path`` (making its folder) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def baseline_lines(summary: dict, name: str) -> dict[str, float]:
    """The baselines of metric ``name`` in a summary: ``baseline_<b>_<split>_<name>`` keys as
    ``{"<b> (<split>)": value}`` (finite numbers only)."""
    lines = {}
    for key, value in summary.items():
        if not key.startswith("baseline_") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        for split in ("test", "val"):
            suffix = f"_{split}_{name}"
            if key.endswith(suffix) and len(key) > len("baseline_") + len(suffix) and value == value \
                    and abs(value) != float("inf"):
                lines[f"{key[len('baseline_'):-len(suffix)]} ({split})"] = float(value)
    return lines


def plot_curves(metrics_path: str | os.PathLike, out_dir: str | os.PathLike, title: str | None = None,
                baselines: dict | None = None) -> list[Path]:
    """One PNG per quantity logged for both train and val (loss.png, accuracy.png, ...).

    Each is titled ``"<title>: <quantity>"`` (``title``: the run's name, e.g. its folder's) and
    draws a dashed horizontal line for each baseline of its quantity: the
    ``baseline_<name>_<split>_<metric>`` keys of ``baselines`` (the run's summary). The same
    arguments draw the same bytes (a resumed run's plots equal an uninterrupted run's).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics_path = Path(metrics_path)
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    names = sorted({k.split("_", 1)[1] for r in records for k in r if k.startswith(("train_", "val_"))} - _NOT_CURVES)
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
        for k, (label, value) in enumerate(sorted(baseline_lines(baselines or {}, name).items())):
            ax.axhline(value, ls="--", lw=1, color=f"C{k + 2}", label=f"baseline {label}")
        ax.set_title(f"{title}: {name}" if title else name)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
        written.append(save_figure(fig, out_dir / f"{name}.png"))
    return written


def confusion_matrix(targets, predictions, num_classes: int):
    """``counts[i, j]``: items of class ``i`` predicted as ``j`` (numpy int64, (C, C))."""
    import numpy as np

    targets, predictions = np.asarray(targets, dtype=np.int64).ravel(), np.asarray(predictions, dtype=np.int64).ravel()
    if targets.shape != predictions.shape:
        raise ValueError(f"confusion_matrix: targets and predictions must have the same length, got "
                         f"{targets.size} and {predictions.size}")
    for name, values in (("targets", targets), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {name} must be class ids in [0, {num_classes}), got "
                             f"{int(values.min())}..{int(values.max())}")
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (targets, predictions), 1)
    return counts


def class_report(counts, labels: list[str]) -> dict[str, dict[str, float]]:
    """Per class (by label): precision, recall, f1 and support from a confusion matrix, plus
    ``"macro avg"`` (unweighted mean over the classes) — JSON-able, for summary.json."""
    import numpy as np

    counts = np.asarray(counts)
    if counts.shape != (len(labels), len(labels)):
        raise ValueError(f"class_report: counts must be ({len(labels)}, {len(labels)}) for {len(labels)} labels, "
                         f"got {counts.shape}")
    report = {}
    for i, label in enumerate(labels):
        tp, predicted, support = counts[i, i], counts[:, i].sum(), counts[i].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[label] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                         "support": int(support)}
    report["macro avg"] = {k: float(np.mean([report[label][k] for label in labels]))
                           for k in ("precision", "recall", "f1")} | {"support": int(counts.sum())}
    return report


def plot_confusion(counts, labels: list[str], path: str | os.PathLike, title: str = "") -> Path:
    """The confusion matrix as a PNG: rows the true class, columns the predicted one, each row
    shaded by its share (so rare classes show), counts written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(counts)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # (C, C), rows sum to 1
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45 if max(map(len, labels), default=0) > 3 else 0, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    if len(labels) <= 30:
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: confusion matrix" if title else "confusion matrix")
    return save_figure(fig, path)
