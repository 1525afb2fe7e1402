"""The sentiment task's reference: TF-IDF (word 1-2 grams) + logistic regression, side by side
with a trained rnnkit run, on exactly the run's train/val/test split.

The split is re-made from the run's own options and seed (``config.json``), so both models
see the same training texts and are scored on the same test texts. The baseline's ``C`` is
picked on the val split by macro-F1, as the run's best epoch is; it is fitted twice, with
and without balanced class weights.

    python benchmarks/sentiment_baseline.py --run /tmp/sent          # compare with a run
    python benchmarks/sentiment_baseline.py                           # the baseline alone (fine food, seed 0)
    python benchmarks/sentiment_baseline.py --run /tmp/sent --json out.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from rnnkit.tasks.sentiment import SentimentOptions, tfidf_baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a sentiment run directory to compare with")
    parser.add_argument("--seed", type=int, default=0, help="split seed when there is no --run")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    options, seed, rows = SentimentOptions(), args.seed, []
    if args.run is not None:
        config = json.loads((args.run / "config.json").read_text())
        summary = json.loads((args.run / "summary.json").read_text())
        if config.get("task") != "sentiment":
            parser.error(f"--run {args.run} is a run of task {config.get('task')!r}, not sentiment")
        options, seed = SentimentOptions(**config["options"]), config["train"]["seed"]
        rows.append({"model": f"rnnkit {options.cell} (bi={options.bidirectional}, pooling={options.pooling})",
                     "test_accuracy": summary["test_accuracy"], "test_f1": summary["test_f1"],
                     "val_f1": summary["best_val_f1"], "seconds": summary["train_seconds"]})
    for weighted in (True, False):
        start = time.perf_counter()
        result = tfidf_baseline(dataclasses.replace(options, class_weights=weighted), seed)
        rows.append({"model": f"TF-IDF 1-2 grams + LR (C={result['C']:g}, {'balanced' if weighted else 'unweighted'})",
                     "test_accuracy": result["test_accuracy"], "test_f1": result["test_f1"],
                     "val_f1": result["val_f1"], "seconds": time.perf_counter() - start})

    print(f"{'model':58s} {'test acc':>9s} {'test F1':>8s} {'val F1':>7s} {'seconds':>8s}")
    for r in rows:
        print(f"{r['model']:58s} {r['test_accuracy']:9.4f} {r['test_f1']:8.4f} {r['val_f1']:7.4f} {r['seconds']:8.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
