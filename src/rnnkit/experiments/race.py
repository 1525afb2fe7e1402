"""The cell race: which recurrent cell learns a character language model best in the same time.

Every contestant (a cell, its hidden size and its number of layers) trains ``rnnkit train
charlm`` for the same wall-clock budget (``TrainConfig.max_minutes``, which covers the whole
training command: data preparation, baselines, evaluations), on the same text, split and seed,
one after another in this process, with charlm's own training defaults (batch, learning rate,
cosine schedule, evaluation cadence) but for the number of epochs, which is large (1000) so that
the time budget, not the end of the second pass, ends every contestant: the reference contestant,
``lstm:512`` (one layer of the standard LSTM, on torch.nn's fused kernels), is then exactly
``rnnkit train charlm --max-minutes M --epochs 1000``, and also plain ``rnnkit train charlm
--max-minutes M`` wherever M minutes end that run before its two epochs do (the cosine schedule
follows the larger of the steps done and the budget spent). It always races, first where the
list lacks it. Each contestant is a full run directory
(``OUT/runs/<i>-<cell>-<hidden>x<layers>``), so any of them can be evaluated, sampled or
inspected afterwards. Then::

    OUT/results.json  the configuration and one row per contestant: sizes, parameters, steps,
                      characters seen, seconds, best validation and test loss (nats/char),
                      characters per second, the validation curve as (seconds, characters
                      seen, val loss) points, the load average before and after, torch threads
    OUT/table.md      one row per contestant, sorted by best validation loss, with the
                      difference to the reference
    OUT/curves.png    validation loss against wall-clock seconds and against characters seen

The three are rewritten after every contestant, so a race stopped half way keeps what it ran.
A contestant is written ``CELL[:HIDDEN[xLAYERS]]`` (``lstm:512``, ``gru:1024x2``): CELL a name of
``rnnkit.models.CELLS``, HIDDEN charlm's hidden size (512) when left out, LAYERS 1.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["Contestant", "REFERENCE", "RaceConfig", "parse_contestant", "run_race", "format_table", "plot_race"]

log = logging.getLogger(__name__)

_SPEC = re.compile(r"(?P<cell>[A-Za-z0-9_]+)(?::(?P<hidden>[0-9]+)(?:x(?P<layers>[0-9]+))?)?")
_FORM = "CELL[:HIDDEN[xLAYERS]] (e.g. lstm:512, gru:1024x2)"


@dataclass(frozen=True)
class Contestant:
    """One runner of the race: ``num_layers`` stacked layers of ``cell`` with ``hidden_size`` units."""

    cell: str  # a name of rnnkit.models.CELLS
    hidden_size: int = 512
    num_layers: int = 1

    @property
    def spec(self) -> str:
        """The canonical ``CELL:HIDDEN[xLAYERS]`` (``xLAYERS`` only above one layer)."""
        return f"{self.cell}:{self.hidden_size}" + (f"x{self.num_layers}" if self.num_layers > 1 else "")

    @property
    def slug(self) -> str:
        """The spec as a folder name: ``lstm-512x1``."""
        return f"{self.cell}-{self.hidden_size}x{self.num_layers}"


REFERENCE = Contestant("lstm", 512, 1)  # the standard LSTM: torch.nn's fused kernels run it


def parse_contestant(text: str, default_hidden: int = 512) -> Contestant:
    """``CELL[:HIDDEN[xLAYERS]]`` -> Contestant; a one-line ValueError for anything else."""
    from ..models.recurrent import CELLS

    match = _SPEC.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"RaceConfig: contestant {text!r} is not {_FORM}")
    cell = match["cell"]
    if cell not in CELLS:
        raise ValueError(f"RaceConfig: contestant {text!r}: unknown cell {cell!r}; cells: {', '.join(CELLS)}")
    hidden = int(match["hidden"]) if match["hidden"] else default_hidden
    layers = int(match["layers"]) if match["layers"] else 1
    if hidden < 1 or layers < 1:
        raise ValueError(f"RaceConfig: contestant {text!r}: HIDDEN and LAYERS must be >= 1, got {hidden} and {layers}")
    return Contestant(cell, hidden, layers)


@dataclass
class RaceConfig:
    """What ``rnnkit experiment race`` runs; the None sizes become charlm's defaults, every value is checked."""

    cells: tuple[str, ...]  # the contestants, CELL[:HIDDEN[xLAYERS]]; lstm:512 is added first when absent
    minutes: float  # wall-clock budget of each contestant's whole training command
    task: str = "charlm"  # the only task the race knows
    seed: int = 0  # the same for every contestant: data split, initial weights
    data: str = ""  # charlm's text file; empty = the Shakespeare plays
    batch_size: int | None = None  # streams per step; None = charlm's default (64)
    seq_len: int | None = None  # characters per window (truncated BPTT); None = charlm's default (100)
    lr: float | None = None  # Adam's learning rate (cosine schedule); None = charlm's default (2e-3)
    threads: int | None = None  # torch's intra-op threads; None = torch's default
    # passes over the text at most: many, so that the time budget ends every contestant (charlm's
    # own 2 would stop a fast contestant, or every one on a GPU, before its time is up)
    epochs: int = 1000

    def __post_init__(self) -> None:
        owner = "RaceConfig"
        if isinstance(self.cells, str):
            self.cells = (self.cells,)
        self.cells = tuple(self.cells)
        if self.task != "charlm":
            raise ValueError(f"{owner}: task must be charlm (the only task the race knows), got {self.task!r}")
        if isinstance(self.minutes, bool) or not isinstance(self.minutes, (int, float)) \
                or not 0 < self.minutes < math.inf:
            raise ValueError(f"{owner}: minutes must be a number > 0, got {self.minutes!r}")
        if not self.cells:
            raise ValueError(f"{owner}: cells must name one or more contestants, {_FORM}")
        from ..tasks.charlm import CharLMOptions, CharLMTask

        charlm = CharLMOptions()
        self.batch_size = CharLMTask.train_defaults["batch_size"] if self.batch_size is None else self.batch_size
        self.seq_len = charlm.seq_len if self.seq_len is None else self.seq_len
        self.lr = CharLMTask.train_defaults["lr"] if self.lr is None else self.lr
        for name in ("batch_size", "seq_len", "epochs") + (("threads",) if self.threads is not None else ()):
            if getattr(self, name) < 1:
                raise ValueError(f"{owner}: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"{owner}: lr must be a number > 0, got {self.lr!r}")
        seen: dict[Contestant, str] = {}
        for text in self.cells:
            c = parse_contestant(text, charlm.hidden_size)
            if c in seen:
                raise ValueError(f"{owner}: contestant {c.spec} is named twice ({seen[c]!r} and {text!r})")
            seen[c] = text

    @property
    def contestants(self) -> tuple[Contestant, ...]:
        """The reference first (where the list lacks it), then the list in its order."""
        from ..tasks.charlm import CharLMOptions

        given = tuple(parse_contestant(text, CharLMOptions().hidden_size) for text in self.cells)
        return given if REFERENCE in given else (REFERENCE, *given)


def run_race(config: RaceConfig, out: str | Path, on_result: Callable[[dict], None] | None = None) -> dict:
    """Train every contestant of ``config`` into ``out`` for the same time; write the table and plot.

    ``on_result(row)`` is called after each contestant (the command line prints a line).
    Returns the content of ``results.json``.
    """
    import torch

    out = Path(out)
    runs = out / "runs"
    if runs.exists() and any(runs.iterdir()):
        raise ValueError(f"--out {out} already holds race runs; choose another --out or remove {runs}")
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _race(config, out, on_result)
    finally:
        torch.set_num_threads(threads)  # (the caller's again)


def _race(config: RaceConfig, out: Path, on_result: Callable[[dict], None] | None) -> dict:
    """``run_race``'s work, under the threads of ``config``."""
    import torch

    from ..runs import train
    from ..tasks.charlm import CharLMOptions, CharLMTask
    from ..training import TrainConfig, TrainingStopped

    runs, contestants = out / "runs", config.contestants

    def options(c: Contestant) -> CharLMOptions:
        return CharLMOptions(data=config.data, cell=c.cell, hidden_size=c.hidden_size, num_layers=c.num_layers,
                             seq_len=config.seq_len)

    # the same text, split and batches for every contestant: read once here (a bad --data fails now)
    characters_seen = _characters_counter(CharLMTask(options(REFERENCE)), config)
    train_config = TrainConfig(**{**CharLMTask.train_defaults, "max_minutes": config.minutes, "seed": config.seed,
                                  "batch_size": config.batch_size, "lr": config.lr, "epochs": config.epochs})
    runs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = {"config": {**dataclasses.asdict(config), "contestants": [c.spec for c in contestants]},
               "reference": REFERENCE.spec, "train": dataclasses.asdict(train_config), "rows": [], "baselines": {},
               "machine": {"cpus": os.cpu_count(), "torch": torch.__version__}}
    for i, c in enumerate(contestants, start=1):
        run_dir = runs / f"{i}-{c.slug}"
        log.info("race: training %s (%d of %d) for %g min", c.spec, i, len(contestants), config.minutes)
        threads, load_before = torch.get_num_threads(), _load_average()
        try:
            summary, error = train("charlm", options(c), train_config, run_dir, progress=False), None
        except TrainingStopped as e:  # (a diverging contestant loses, the race goes on)
            summary, error = {}, str(e).splitlines()[0]
        row = _row(c, run_dir, summary, error, characters_seen)
        row.update(torch_threads=threads, load_average_before=load_before, load_average_after=_load_average())
        results["rows"].append(row)
        if not results["baselines"]:
            results["baselines"] = {k[len("baseline_"):]: v for k, v in summary.items() if k.startswith("baseline_")}
        results["wall_minutes"] = (time.time() - started) / 60
        _write(results, out)
        if on_result is not None:
            on_result(row)
    return results


def _characters_counter(task, config: RaceConfig) -> Callable[[int], int]:
    """Characters a run has trained on after ``steps`` steps: charlm walks ``B`` streams of ``n``
    characters in windows of ``seq_len``, the last window of each pass shorter (``n - 1`` pairs)."""
    splits = task.prepare(config.seed)
    batcher = task.loader(splits["train"], config.batch_size, shuffle=True, seed=config.seed).batcher
    B, n = batcher.streams.shape[:2]  # streams (the batch, fewer for a short text), characters per stream
    per_pass = len(batcher)  # windows per pass over the text

    def seen(steps: int) -> int:
        passes, windows = divmod(steps, per_pass)
        return int(B * (passes * (n - 1) + windows * batcher.seq_len))
    return seen


def _row(c: Contestant, run_dir: Path, summary: dict, error: str | None, characters_seen) -> dict:
    """One contestant's results (None where a run that stopped on an error has no figure)."""
    steps = summary.get("steps")
    seconds = summary.get("train_seconds")
    characters = characters_seen(steps) if steps is not None else None
    return {
        "spec": c.spec, "reference": c == REFERENCE, "cell": c.cell, "hidden_size": c.hidden_size,
        "num_layers": c.num_layers, "run": str(run_dir), "parameters": summary.get("parameters"), "steps": steps,
        "characters": characters, "train_seconds": seconds,
        "chars_per_s": characters / seconds if characters is not None and seconds else None,
        # charlm's samples are characters: the speed of the training steps alone (evaluations aside)
        "step_chars_per_s": summary.get("train_samples_per_second"),
        "best_val_loss": summary.get("best_val_loss"), "test_loss": summary.get("test_loss"),
        "test_bpc": summary.get("test_bpc"),
        # below 1 where the budget cut the test evaluation short (its loss is then of the batches evaluated)
        "test_evaluated_fraction": summary.get("test_evaluated_fraction", 1.0) if summary else None,
        "stopped": summary.get("stopped") or error, "error": error,
        "device": summary.get("device"),
        "val_curve": _val_curve(run_dir / "metrics.jsonl", characters_seen),
    }


def _val_curve(metrics_path: Path, characters_seen) -> list[tuple[float | None, int, float]]:
    """(seconds of training, characters seen, val loss) at each validation of a run."""
    if not metrics_path.is_file():
        return []
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    return [(r.get("seconds"), characters_seen(r["step"]), r["val_loss"])
            for r in records if r.get("split") == "val" and "val_loss" in r]


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the platform has them."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _write(results: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=True))
    (out / "table.md").write_text(format_table(results))
    plot_race(results, out / "curves.png")


def _ranked(rows: list[dict]) -> list[dict]:
    """Rows by best validation loss, those without one (a failed run) last."""
    def key(r):
        v = r["best_val_loss"]
        return (0, v) if isinstance(v, (int, float)) and math.isfinite(v) else (1, 0.0)
    return sorted(rows, key=key)


def format_table(results: dict) -> str:
    """The Markdown table of a results dict: one row per contestant, best validation loss first."""
    cfg, train, rows = results["config"], results["train"], results["rows"]
    reference = next((r for r in rows if r["reference"]), None)
    ref_val = reference["best_val_loss"] if reference else None
    threads = sorted({r["torch_threads"] for r in rows})
    devices = sorted({r["device"] for r in rows if r["device"]})
    base = ", ".join(f"{k.removesuffix('_test_loss')} {v:.3f}" for k, v in sorted(results["baselines"].items())
                     if k.endswith("_test_loss"))
    lines = [
        f"Task `charlm` on {cfg['data'] or 'the Shakespeare plays'}, seed {cfg['seed']}: {cfg['minutes']:g} min of "
        f"wall-clock time per contestant for its whole training command (data preparation, baselines and "
        f"evaluations included), batch {train['batch_size']} x {cfg['seq_len']} characters, {train['optimizer']} "
        f"lr {train['lr']:g} ({train['schedule']}), clip {train['clip_norm']:g}; device {', '.join(devices) or '?'}, "
        f"{'/'.join(map(str, threads))} torch thread(s) on {results['machine']['cpus']} CPUs. Losses in nats per "
        f"character; Δ = best validation loss minus the reference's (negative: better). "
        + (f"Character n-grams on the test split: {base}. " if base else "")
        + f"Total wall time {results.get('wall_minutes', 0.0):.1f} min.", "",
        "| rank | contestant | parameters | steps | characters seen | train s | chars/s | best val | Δ vs reference "
        "| test | load (1 min) before / after | stopped |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for rank, r in enumerate(_ranked(rows), start=1):
        name = f"**reference** {r['spec']}" if r["reference"] else r["spec"]
        delta = "0" if r["reference"] else _num(_minus(r["best_val_loss"], ref_val), "{:+.4f}")
        load = " / ".join(f"{v[0]:.2f}" if v else "?" for v in (r["load_average_before"], r["load_average_after"]))
        lines.append(f"| {rank} | {name} | {_num(r['parameters'], '{:,}')} | {_num(r['steps'], '{:,}')} | "
                     f"{_num(r['characters'], '{:,}')} | {_num(r['train_seconds'], '{:.1f}')} | "
                     f"{_num(r['chars_per_s'], '{:,.0f}')} | {_num(r['best_val_loss'], '{:.4f}')} | {delta} | "
                     f"{_num(r['test_loss'], '{:.4f}')}{_cut(r.get('test_evaluated_fraction'))} | {load} | "
                     f"{r['stopped'] or ''} |")
    return "\n".join(lines) + "\n"


def _cut(fraction) -> str:
    """A note on a test loss the time budget cut short."""
    return f" ({fraction:.0%} of the test split)" if isinstance(fraction, (int, float)) and fraction < 1 else ""


def _minus(a, b):
    return a - b if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None


def _num(value, form: str) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    return form.format(value)


def plot_race(results: dict, path: str | Path) -> None:
    """Validation loss against wall-clock seconds and against characters seen, one line per contestant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz.plots import save_figure

    fig, (by_time, by_chars) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results["rows"]:
        points = [(s, c, v) for s, c, v in r["val_curve"] if v is not None and math.isfinite(v)]
        label = f"{r['spec']} (reference)" if r["reference"] else r["spec"]
        style = dict(color="black", lw=2) if r["reference"] else dict(lw=1.5)
        timed = [(s, v) for s, _, v in points if s is not None]
        if timed:
            by_time.plot(*zip(*timed), marker="o", ms=3, label=label, **style)
        if points:
            by_chars.plot([c for _, c, _ in points], [v for _, _, v in points], marker="o", ms=3, label=label, **style)
    by_time.set_xlabel("wall-clock seconds of training")
    by_chars.set_xlabel("characters seen")
    for ax in (by_time, by_chars):
        ax.set_ylabel("validation loss (nats/char)")
        ax.grid(alpha=0.3)
    by_time.set_title(f"charlm, {results['config']['minutes']:g} min per contestant")
    by_chars.set_title("the same runs by characters seen")
    by_time.legend(fontsize=8)
    save_figure(fig, Path(path))
