"""``rnnkit experiment``: many training runs compared in one table and one plot.

    rnnkit experiment memory --task adding --lengths 50 100 200 --cells rnn lstm gru \\
        --max-minutes 2 --out runs/memory-adding

trains one run per (length, cell) under the same budget and writes ``table.md``,
``results.json``, ``curves.png`` and ``gradients.png`` into ``--out``
(see :mod:`rnnkit.experiments.memory`).

    rnnkit experiment race --task charlm --minutes 10 --cells lstm:512 gru:512 rnn:1024x2

trains each contestant on charlm for the same wall-clock time, one after another, beside the
reference ``lstm:512``, and writes ``table.md``, ``results.json`` and ``curves.png`` into
``--out`` (see :mod:`rnnkit.experiments.race`).
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
    memory.add_argument("--stop-when-solved", action=argparse.BooleanOptionalAction, default=d["stop_when_solved"],
                        help="end each run at its first validation that meets the criterion (default: yes)")
    memory.add_argument("--out", metavar="DIR", default=None, help="output folder (default runs/memory-TASK)")
    _add_race(sub)


def _add_race(sub) -> None:
    from .catalog import builtin_tasks

    charlm = builtin_tasks()["charlm"]  # (read from its source: the help imports no torch)
    hidden = next(f.default for f in charlm.options if f.name == "hidden_size")
    seq_len = next(f.default for f in charlm.options if f.name == "seq_len")
    race = sub.add_parser("race", help="charlm: cells trained for the same wall-clock time, beside lstm:512",
                          description="Train each contestant on charlm for the same wall-clock time, one after "
                                      "another, beside the reference lstm:512 (always raced, first); write "
                                      "table.md, results.json and curves.png into --out.")
    race.add_argument("--task", choices=("charlm",), default="charlm", help="the task raced (default charlm)")
    race.add_argument("--minutes", type=float, required=True, metavar="M",
                      help="wall-clock budget of each contestant's whole training command, data preparation included")
    race.add_argument("--cells", nargs="+", required=True, metavar="SPEC",
                      help=f"contestants CELL[:HIDDEN[xLAYERS]], e.g. lstm:512 gru:1024x2; CELL from "
                           f"rnnkit.models.CELLS, HIDDEN default {hidden}, LAYERS default 1")
    race.add_argument("--seed", type=int, default=0, help="data split and initial weights, the same for all (default 0)")
    race.add_argument("--out", metavar="DIR", default=None, help="output folder (default runs/race-charlm)")
    race.add_argument("--data", metavar="FILE", default="", help="a UTF-8 text file (default: the Shakespeare plays)")
    race.add_argument("--batch-size", type=int, default=None, metavar="N",
                      help=f"streams per step (default charlm's, {charlm.train_defaults['batch_size']})")
    race.add_argument("--seq-len", type=int, default=None, metavar="N",
                      help=f"characters per window, the truncated-BPTT length (default charlm's, {seq_len})")
    race.add_argument("--lr", type=float, default=None, metavar="X",
                      help=f"Adam learning rate, cosine schedule (default charlm's, {charlm.train_defaults['lr']:g})")
    race.add_argument("--threads", type=int, default=None, metavar="N",
                      help="torch intra-op threads (default: torch's, usually one per core)")
    race.add_argument("--epochs", type=int, default=1000, metavar="N",
                      help="passes over the text at most: many, so that the time budget ends every contestant "
                           "(default 1000; charlm's own is 2)")


def _defaults() -> dict:
    import dataclasses

    from ..experiments.memory import MemoryExperimentConfig

    return {f.name: f.default for f in dataclasses.fields(MemoryExperimentConfig)}


def run(args) -> int:
    import logging

    if args.experiment is None:
        raise ValueError("experiment: name one, e.g. rnnkit experiment memory --task adding, "
                         "rnnkit experiment race --minutes 5 --cells gru:512")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.experiment == "race":
        return _race(args)
    from ..experiments.memory import MemoryExperimentConfig, run_memory_experiment

    config = MemoryExperimentConfig(
        task=args.task, lengths=tuple(args.lengths), cells=tuple(args.cells), max_minutes=args.max_minutes,
        steps=args.steps, hidden_size=args.hidden_size, batch_size=args.batch_size, lr=args.lr,
        clip_norm=args.clip_norm, eval_every=args.eval_every, val_size=args.val_size, test_size=args.test_size,
        seed=args.seed, stop_when_solved=args.stop_when_solved,
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


def _race(args) -> int:
    from ..experiments.race import RaceConfig, run_race

    config = RaceConfig(cells=tuple(args.cells), minutes=args.minutes, task=args.task, seed=args.seed, data=args.data,
                        batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr, threads=args.threads, epochs=args.epochs)
    out = args.out or f"runs/race-{config.task}"
    total = len(config.contestants)
    done: list[dict] = []

    def report(row: dict) -> None:
        done.append(row)
        head = f"race {len(done)}/{total} {row['spec']}" + (" (reference)" if row["reference"] else "")
        if row["error"]:
            print(f"{head}: {row['error']}", flush=True)
            return
        print(f"{head}: {row['steps']} steps, {row['characters']:,} characters in {row['train_seconds']:.1f} s "
              f"({_number(row['chars_per_s'], '{:,.0f}')} chars/s), best val {_number(row['best_val_loss'], '{:.4f}')}, "
              f"test {_number(row['test_loss'], '{:.4f}')} nats/char; {row['stopped']}", flush=True)

    results = run_race(config, out, on_result=report)
    print(f"wrote {out}/table.md, results.json, curves.png ({results['wall_minutes']:.1f} min)")
    return 0


def _number(value, form: str) -> str:
    return form.format(value) if isinstance(value, (int, float)) else "?"
