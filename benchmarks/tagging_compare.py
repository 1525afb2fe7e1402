"""The tagging task's comparison: unidirectional vs bidirectional, per-token softmax vs CRF,
trained on the same generated data, scored overall and on the ambiguous sentences.

Each configuration is one ordinary ``rnnkit train tagging`` run with the task's defaults
(only ``--bidirectional`` / ``--crf`` differ) into ``OUT/<name>-data<k>``, once per
``--data-seeds`` value: each data seed is another split of the templates into
train / val / test, so the mean over data seeds does not hang on which templates one split
happened to hold out. An existing finished run is read, not retrained. Prints a markdown
table per data seed and of the means, and draws ``--plots`` (bar chart of the mean test
scores, validation F1 curves of the first data seed).

    python benchmarks/tagging_compare.py --out /tmp/tagcmp --data-seeds 0,1,2 --plots docs/plots
    python benchmarks/tagging_compare.py --out /tmp/tagcmp --configs bi-softmax,bi-crf
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from rnnkit.tasks.tagging import TaggingOptions, TaggingTask
from rnnkit.training import TrainConfig
from rnnkit.runs import train

CONFIGS = {
    "uni-softmax": {"bidirectional": False, "crf": False},
    "bi-softmax": {"bidirectional": True, "crf": False},
    "uni-crf": {"bidirectional": False, "crf": True},
    "bi-crf": {"bidirectional": True, "crf": True},
}
COLUMNS = ("test_f1", "test_precision", "test_recall", "test_ambiguous_f1", "test_ambiguous_word_accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="parent folder of the runs")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--seed", type=int, default=0, help="training seed (initialisation, batch order)")
    parser.add_argument("--data-seeds", default="0", help="comma-separated data seeds (template splits and Faker)")
    parser.add_argument("--epochs", type=int, default=TaggingTask.train_defaults["epochs"])
    parser.add_argument("--no-char-features", action="store_true", help="word embeddings only")
    parser.add_argument("--plots", type=Path, help="folder for tagging-compare.png and tagging-val-f1.png")
    args = parser.parse_args()
    torch.set_num_threads(1)

    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"--configs: unknown {unknown}; choose from {', '.join(CONFIGS)}")
    train_config = TrainConfig(**{**TaggingTask.train_defaults, "epochs": args.epochs, "seed": args.seed})
    data_seeds = [int(k) for k in args.data_seeds.split(",")]
    rows = []
    for data_seed in data_seeds:
        for name in names:
            run_dir = args.out / f"{name}-data{data_seed}"
            options = TaggingOptions(**CONFIGS[name], data_seed=data_seed, char_features=not args.no_char_features)
            if (run_dir / "summary.json").exists():
                summary = json.loads((run_dir / "summary.json").read_text())
            else:
                summary = train("tagging", options, train_config, run_dir, progress=False)
            rows.append({"config": name, "data_seed": data_seed, **{k: summary.get(k, float("nan")) for k in COLUMNS},
                         "train_seconds": summary["train_seconds"], "parameters": summary["parameters"],
                         "run": str(run_dir)})
            print(f"done {name} data_seed={data_seed}: test_f1={summary['test_f1']:.4f}", flush=True)

    means = []
    for name in names:
        mine = [r for r in rows if r["config"] == name]
        means.append({"config": name, "data_seed": "mean", **{k: sum(r[k] for r in mine) / len(mine) for k in COLUMNS},
                      "train_seconds": sum(r["train_seconds"] for r in mine) / len(mine),
                      "parameters": mine[0]["parameters"], "run": mine[0]["run"]})
    print("| config | data seed | " + " | ".join(COLUMNS) + " | train s | parameters |")
    print("|---" * (len(COLUMNS) + 4) + "|")
    for r in rows + means:
        print(f"| {r['config']} | {r['data_seed']} | " + " | ".join(f"{r[k]:.4f}" for k in COLUMNS)
              + f" | {r['train_seconds']:.0f} | {r['parameters']:,} |")
    (args.out / "compare.json").write_text(json.dumps(rows + means, indent=1))
    if args.plots:
        _plot(means, args.plots, len(data_seeds))


def _plot(rows: list[dict], folder: Path, n_seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    shown = ("test_f1", "test_ambiguous_f1", "test_ambiguous_word_accuracy")
    labels = ("entity F1 (all test)", "entity F1 (ambiguous sentences)", "ambiguous word's tag right")
    fig, ax = plt.subplots(figsize=(8, 4.4))
    width = 0.8 / len(rows)
    for k, r in enumerate(rows):
        xs = [i + (k - (len(rows) - 1) / 2) * width for i in range(len(shown))]
        bars = ax.bar(xs, [r[m] for m in shown], width, label=r["config"])
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(shown)), labels)
    ax.set_ylim(0, 1.08)
    ax.set_title(f"tagging, held-out templates (mean of {n_seeds} template splits)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(rows), fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "tagging-compare.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        records = [json.loads(line) for line in (Path(r["run"]) / "metrics.jsonl").read_text().splitlines()]
        val = [(x["step"], x["val_f1"]) for x in records if x.get("split") == "val"]
        ax.plot(*zip(*val), marker="o", ms=3, label=r["config"])
    ax.set_xlabel("step")
    ax.set_ylabel("validation entity F1")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "tagging-val-f1.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
