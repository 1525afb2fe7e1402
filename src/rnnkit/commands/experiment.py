"""``rnnkit experiment memory``: the long-memory experiment (adding problem or copy task).

    rnnkit experiment memory --task adding --lengths 50 100 200 --cells rnn lstm gru \\
        --max-minutes 2 --out runs/memory-adding

trains one run per (length, cell) under the same budget and writes ``table.md``,
``results.json``, ``curves.png`` and ``gradients.png`` into ``--out``
(see :mod:`rnnkit.experiments.memory`).
"""
from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    memory = sub.add_parser("memory", help="adding problem / copy task: cells x lengths under one budget")
    d = _defaults()
    memory.add_argument("--task", choices=("adding", "copy"), default=d["task"], help=f"default {d['task']}")
    memory.add_argument("--lengths", type=int, nargs="+", metavar="T", default=list(d["lengths"]),
                        help=f"sequence lengths (default {' '.join(map(str, d['lengths']))})")
    memory.add_argument("--cells", nargs="+", metavar="CELL", default=list(d["cells"]),
                        help=f"cells from rnnkit.models.CELLS (default {' '.join(d['cells'])})")
    memory.add_argument("--max-minutes", type=float, default=d["max_minutes"],
                        help=f"wall-clock budget of each run, 0 = none (default {d['max_minutes']:g})")
    memory.add_argument("--steps", type=int, default=d["steps"],
                        help=f"training steps of each run, 0 = no limit (default {d['steps']})")
    for name in ("hidden_size", "batch_size", "eval_every", "val_size", "test_size", "seed"):
        memory.add_argument("--" + name.replace("_", "-"), type=int, default=d[name], help=f"default {d[name]}")
    memory.add_argument("--lr", type=float, default=d["lr"], help=f"Adam learning rate (default {d['lr']:g})")
    memory.add_argument("--clip-norm", type=float, default=d["clip_norm"], help=f"default {d['clip_norm']:g}")
    memory.add_argument("--out", metavar="DIR", default=None, help="output folder (default runs/memory-TASK)")


def _defaults() -> dict:
    import dataclasses

    from ..experiments.memory import MemoryExperimentConfig

    return {f.name: f.default for f in dataclasses.fields(MemoryExperimentConfig)}


def run(args) -> int:
    import logging

    if args.experiment is None:
        raise ValueError("experiment: name one, e.g. rnnkit experiment memory --task adding")
    from ..experiments.memory import MemoryExperimentConfig, run_memory_experiment

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = MemoryExperimentConfig(
        task=args.task, lengths=tuple(args.lengths), cells=tuple(args.cells), max_minutes=args.max_minutes,
        steps=args.steps, hidden_size=args.hidden_size, batch_size=args.batch_size, lr=args.lr,
        clip_norm=args.clip_norm, eval_every=args.eval_every, val_size=args.val_size, test_size=args.test_size,
        seed=args.seed,
    )
    out = args.out or f"runs/memory-{config.task}"
    metric = "mse" if config.task == "adding" else "accuracy"

    def report(row: dict) -> None:
        solved = f"solved at step {row['steps_to_solve']}" if row["steps_to_solve"] is not None else "not solved"
        print(f"{config.task} T={row['T']} {row['cell']}: {row['steps']} steps in {row['minutes']:.1f} min, "
              f"test_{metric} {row[f'test_{metric}']:.4f}, {solved} (val); {row['stopped']}", flush=True)

    results = run_memory_experiment(config, out, on_result=report)
    print(f"wrote {out}/table.md, results.json, curves.png, gradients.png ({results['wall_minutes']:.1f} min)")
    return 0
