"""The long-memory experiment: which cells learn the adding problem / copy task at which lengths.

For every sequence length T and every cell, one run of the task (``rnnkit train adding`` or
``rnnkit train copy``) under the same budget: at most ``steps`` training steps and/or at most
``max_minutes`` of wall-clock time, whichever ends first. Each run is a full run directory
(``OUT/runs/<task>-T<T>-<cell>``: weights, metrics.jsonl, summary.json), so any of them can be
evaluated or inspected afterwards. Then::

    OUT/table.md       one row per (T, cell): steps, minutes, test metrics, steps to solve
    OUT/results.json   the configuration, the rows, the validation curves, gradient flows
    OUT/curves.png     validation learning curves, one panel per T, one line per cell
    OUT/gradients.png  gradient flow of each trained model, one panel per T (rnnkit.viz.gradients)

"Solved" is the task's threshold (``rnnkit.tasks.adding.SOLVED_MSE`` = 0.01, Hochreiter &
Schmidhuber 1997; ``rnnkit.tasks.copying.SOLVED_ACCURACY`` = 0.99): "steps to solve" is the
first evaluation step at which the *validation* metric met it, and a run counts as solved when
its *test* metric (of the best weights by validation) meets it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["MemoryExperimentConfig", "run_memory_experiment", "format_table", "plot_learning_curves", "MEMORY_TASKS"]

log = logging.getLogger(__name__)

MEMORY_TASKS = ("adding", "copy")
_UNBOUNDED_STEPS = 10_000_000  # the epoch length when only a time budget is given


@dataclass
class MemoryExperimentConfig:
    task: str = "adding"  # adding | copy
    lengths: tuple[int, ...] = (50, 100, 200)  # sequence lengths T
    cells: tuple[str, ...] = ("rnn", "lstm", "gru")  # names from rnnkit.models.CELLS
    max_minutes: float = 2.0  # wall-clock budget of each (T, cell) run, evaluations included; 0 = none
    steps: int = 0  # training steps of each run; 0 = no limit (then max_minutes must be set)
    hidden_size: int = 64  # units of every cell (smaller than the tasks' 128: more steps fit the budget on CPU)
    batch_size: int = 50
    lr: float = 1e-3  # Adam, constant
    clip_norm: float = 1.0
    eval_every: int = 100  # steps between validation evaluations: the resolution of "steps to solve"
    val_size: int = 1_000
    test_size: int = 10_000
    seed: int = 0
    # end a run at its first validation that meets the criterion ("steps to solve" is then its
    # last evaluation); False trains every run to the end of its budget
    stop_when_solved: bool = True

    def __post_init__(self) -> None:
        from ..models.recurrent import CELLS

        owner = "MemoryExperimentConfig"
        self.lengths, self.cells = tuple(self.lengths), tuple(self.cells)
        if self.task not in MEMORY_TASKS:
            raise ValueError(f"{owner}: task must be one of {', '.join(MEMORY_TASKS)}, got {self.task!r}")
        shortest = 2 if self.task == "adding" else 1
        if not self.lengths or not all(isinstance(T, int) and T >= shortest for T in self.lengths):
            raise ValueError(f"{owner}: lengths must be one or more ints >= {shortest} for task {self.task}, "
                             f"got {list(self.lengths)}")
        if not self.cells or any(c not in CELLS for c in self.cells):
            raise ValueError(f"{owner}: cells must be one or more of {', '.join(sorted(CELLS))}, got {list(self.cells)}")
        if len(set(self.lengths)) != len(self.lengths) or len(set(self.cells)) != len(self.cells):
            raise ValueError(f"{owner}: lengths and cells must not repeat, got lengths {list(self.lengths)}, "
                             f"cells {list(self.cells)}")
        if not (self.max_minutes >= 0 and self.steps >= 0) or (self.max_minutes == 0 and self.steps == 0):
            raise ValueError(f"{owner}: give a budget: max_minutes > 0 and/or steps > 0 (both >= 0), "
                             f"got max_minutes={self.max_minutes}, steps={self.steps}")
        for name in ("hidden_size", "batch_size", "eval_every", "val_size", "test_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{owner}: {name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and self.clip_norm >= 0):
            raise ValueError(f"{owner}: lr must be > 0 and clip_norm >= 0, got lr={self.lr}, clip_norm={self.clip_norm}")


def _task_setup(config: MemoryExperimentConfig, T: int, cell: str):
    """(task options, monitored metric, threshold test) of one run."""
    steps = config.steps or _UNBOUNDED_STEPS
    common = dict(seq_len=T, cell=cell, hidden_size=config.hidden_size, train_size=steps * config.batch_size,
                  val_size=config.val_size, test_size=config.test_size)
    if config.task == "adding":
        from ..tasks.adding import SOLVED_MSE, AddingOptions

        return AddingOptions(**common), "mse", lambda v: v < SOLVED_MSE
    from ..tasks.copying import SOLVED_ACCURACY, CopyOptions

    return CopyOptions(**common), "accuracy", lambda v: v >= SOLVED_ACCURACY


def _full_test(run_dir: Path) -> dict:
    """The run's test metrics on its whole test split, with no time budget."""
    from ..runs import evaluate

    return {**{k: v for k, v in evaluate(run_dir).items() if k.startswith("test_")}, "test_evaluated_fraction": 1.0}


def _stop_when_solved(metric: str, solved: Callable[[float], bool]):
    """A training callback that ends the run at the first validation whose ``metric`` meets
    ``solved`` (built here: the trainer's module imports torch, this one does not at import)."""
    from ..training.trainer import Callback

    class StopWhenSolved(Callback):
        def on_eval_end(self, trainer, record: dict) -> None:
            if solved(record[f"val_{metric}"]):
                trainer.progress.stopped = trainer.progress.stopped or f"solved at step {record['step']} (val {metric})"

    return StopWhenSolved()


def run_memory_experiment(config: MemoryExperimentConfig, out: str | Path,
                          on_result: Callable[[dict], None] | None = None) -> dict:
    """Train every (length, cell) pair of ``config`` into ``out``; write the table and plots.

    ``on_result(row)`` is called after each run (the command line prints a line). Returns
    the content of ``results.json``.
    """
    import torch

    from ..runs import train
    from ..training.trainer import TrainConfig

    out = Path(out)
    runs = out / "runs"
    if runs.exists() and any(runs.iterdir()):
        raise ValueError(f"--out {out} already holds experiment runs; choose another --out or remove {runs}")
    runs.mkdir(parents=True, exist_ok=True)
    started, load_before = time.time(), _load_average()
    rows, curves, flows = [], {}, {}
    for T in config.lengths:
        for cell in config.cells:
            options, metric, solved = _task_setup(config, T, cell)
            train_cfg = TrainConfig(epochs=1, max_minutes=config.max_minutes, batch_size=config.batch_size,
                                    lr=config.lr, clip_norm=config.clip_norm, eval_every=config.eval_every,
                                    log_every=config.eval_every, schedule="constant", seed=config.seed)
            key = f"{config.task}-T{T}-{cell}"
            log.info("memory experiment: training %s", key)
            stop = [_stop_when_solved(metric, solved)] if config.stop_when_solved else []
            summary = train(config.task, options, train_cfg, runs / key, progress=False, callbacks=stop)
            if summary.get("test_evaluated_fraction", 1.0) < 1.0:  # the budget cut the test evaluation short:
                summary = {**summary, **_full_test(runs / key)}  # the table's test metrics are of the whole set
            curve = _val_curve(runs / key / "metrics.jsonl", metric)
            solved_at = next((step for step, value in curve if solved(value)), None)
            flow = _trained_gradient_flow(runs / key)
            row = {
                "T": T, "cell": cell, "steps": summary["steps"], "minutes": summary["train_seconds"] / 60,
                "stopped": summary["stopped"], "steps_to_solve": solved_at,
                "solved": bool(solved(summary[f"test_{metric}"])),
                "best_val": summary[f"best_val_{metric}"], "run": str(runs / key),
                **{k: v for k, v in summary.items() if k.startswith("test_")},
                "gradient_first_over_last": float(flow[0] / flow[-1]) if float(flow[-1]) > 0 else float("nan"),
            }
            rows.append(row)
            curves[key] = curve
            flows[key] = [float(v) for v in flow]
            if on_result is not None:
                on_result(row)
    results = {"config": dataclasses.asdict(config), "metric": _metric(config.task), "rows": rows,
               "curves": curves, "gradient_flow": flows, "wall_minutes": (time.time() - started) / 60,
               "machine": {"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                           "load_average_before": load_before, "load_average_after": _load_average()}}
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=True))
    (out / "table.md").write_text(format_table(results))
    plot_learning_curves(results, out / "curves.png")
    _plot_flows(results, out / "gradients.png")
    return results


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the platform has them."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _metric(task: str) -> str:
    return "mse" if task == "adding" else "accuracy"


def _val_curve(metrics_path: Path, metric: str) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    return [(r["step"], r[f"val_{metric}"]) for r in records if r.get("split") == "val" and f"val_{metric}" in r]


def _trained_gradient_flow(run_dir: Path):
    """The gradient-flow curve (T,) of a trained run on the first 100 of its validation sequences."""
    from ..runs import load
    from ..viz.gradients import gradient_flow

    run = load(run_dir)
    meta = dict(run.task.meta)
    val = run.task.prepare(run.config["train"]["seed"])["val"]
    run.task.meta = meta
    batch = val.take(list(range(min(100, len(val)))))
    return gradient_flow(run.model, run.task, batch)


def format_table(results: dict) -> str:
    """The Markdown table of a results dict (rows sorted as run: by T, then cell)."""
    cfg, rows = results["config"], results["rows"]
    budget = []
    if cfg["steps"]:
        budget.append(f"at most {cfg['steps']} steps")
    if cfg["max_minutes"]:
        budget.append(f"at most {cfg['max_minutes']:g} min")
    lines = [f"Task `{cfg['task']}`, hidden size {cfg['hidden_size']}, batch {cfg['batch_size']}, Adam lr {cfg['lr']:g}, "
             f"clip {cfg['clip_norm']:g}, seed {cfg['seed']}; budget per run: {' and '.join(budget)}; "
             f"validation every {cfg['eval_every']} steps on {cfg['val_size']} sequences, "
             f"test on {cfg['test_size']}. Total wall time {results['wall_minutes']:.1f} min"
             f"{_machine_note(results.get('machine'))}.", ""]
    if cfg["task"] == "adding":
        lines += ["| T | cell | steps | minutes | test MSE | baseline MSE | test acc. (abs. err. < 0.04) | "
                  "steps to solve (val MSE < 0.01) | solved | grad. norm h_1 / h_T |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|"]
        for r in rows:
            lines.append(f"| {r['T']} | {r['cell']} | {r['steps']} | {r['minutes']:.1f} | {r['test_mse']:.4f} | "
                         f"{r['test_baseline_mse']:.4f} | {r['test_accuracy']:.3f} | {_steps(r)} | "
                         f"{'yes' if r['solved'] else 'no'} | {r['gradient_first_over_last']:.1e} |")
    else:
        lines += ["| T | cell | steps | minutes | test loss | baseline loss | test copy accuracy | "
                  "steps to solve (val acc. >= 0.99) | solved | grad. norm h_1 / h_T |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|"]
        for r in rows:
            lines.append(f"| {r['T']} | {r['cell']} | {r['steps']} | {r['minutes']:.1f} | {r['test_loss']:.4f} | "
                         f"{r['test_baseline_loss']:.4f} | {r['test_accuracy']:.3f} | {_steps(r)} | "
                         f"{'yes' if r['solved'] else 'no'} | {r['gradient_first_over_last']:.1e} |")
    return "\n".join(lines) + "\n"


def _machine_note(machine: dict | None) -> str:
    if not machine:
        return ""
    note = f" ({machine['torch_threads']} torch thread(s) on {machine['cpus']} CPUs"
    if machine.get("load_average_before") and machine.get("load_average_after"):
        note += (f"; load average {machine['load_average_before'][0]:.2f} before, "
                 f"{machine['load_average_after'][0]:.2f} after")
    return note + ")"


def _steps(row: dict) -> str:
    return str(row["steps_to_solve"]) if row["steps_to_solve"] is not None else "not within budget"


def plot_learning_curves(results: dict, path: str | Path) -> None:
    """Validation metric against step: one panel per T, one line per cell, baseline and threshold dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz.plots import save_figure

    cfg = results["config"]
    lengths = cfg["lengths"]
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.5 * len(lengths), 3.8), squeeze=False)
    for ax, T in zip(axes[0], lengths):
        for cell in cfg["cells"]:
            curve = results["curves"].get(f"{cfg['task']}-T{T}-{cell}", [])
            if curve:
                steps, values = zip(*curve)
                ax.plot(steps, values, label=cell)
        if cfg["task"] == "adding":
            ax.axhline(1 / 6, color="gray", ls="--", lw=1, label="predict 1.0 (1/6)")
            ax.axhline(0.01, color="gray", ls=":", lw=1, label="solved (0.01)")
            ax.set_yscale("log")
            ax.set_ylabel("validation MSE")
        else:
            ax.axhline(1 / 8, color="gray", ls="--", lw=1, label="chance (1/8)")
            ax.axhline(0.99, color="gray", ls=":", lw=1, label="solved (0.99)")
            ax.set_ylabel("validation copy accuracy")
        ax.set_title(f"{cfg['task']}, T = {T}")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)
    save_figure(fig, path)


def _plot_flows(results: dict, path: Path) -> None:
    """The trained models' gradient flows, one panel per T (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz.plots import save_figure

    cfg = results["config"]
    lengths = cfg["lengths"]
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.5 * len(lengths), 3.8), squeeze=False)
    for ax, T in zip(axes[0], lengths):
        for cell in cfg["cells"]:
            flow = [v if v > 0 and math.isfinite(v) else float("nan")
                    for v in results["gradient_flow"].get(f"{cfg['task']}-T{T}-{cell}", [])]
            ax.plot(range(1, len(flow) + 1), flow, label=cell)
        ax.set_yscale("log")
        ax.set_title(f"trained, {cfg['task']}, T = {T}")
        ax.set_xlabel("time step t")
        ax.set_ylabel("mean ||d loss / d h_t||")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)
    save_figure(fig, Path(path))
