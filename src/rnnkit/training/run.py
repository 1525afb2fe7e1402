"""Train a task object into a run directory: ``fit_run(task, config, out)``.

It knows no task by name (looking tasks up, loading runs back and evaluating them is
``rnnkit.runs``' job); it needs only the :class:`~rnnkit.training.protocol.RunTask` protocol.
A run directory holds::

    config.json          task name, task options, TrainConfig, the sha256 of the data files it trained on
    preprocess.json      the task's preprocessing state (labels, vocabulary, scalers)
    model.safetensors    the best weights (by the validation metric), float32 in every precision
    metrics.jsonl        one JSON object per logged train step / evaluation
    summary.json         final and best metrics (test_*, val_*, best_val_*), the task's baselines
                         on the test split (baseline_<name>_test_<metric>), what the task chose by
                         itself (chosen), throughput, the device and precision used; a classifier's
                         per-class report on the test split (test_class_report)
    plots/*.png          curves of every logged quantity; a classifier's test confusion matrix (confusion.png)
    checkpoints/last/    everything --resume needs
    manifest.json        the sha256 of config.json, preprocess.json, model.safetensors and summary.json,
                         rewritten with each of them; readers refuse a file that does not match
                         (``rnnkit.training.runfiles``)
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import random
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .callbacks import JsonlLogger, ProgressBar
from .checkpoint import atomic_write_json, finish_swap, load_weights
from .runfiles import RUN_FILES, read_run_bytes, read_run_json, record_existing, settle, sha256_path
from .device import check_precision, resolve_device
from .distributed import all_reduce_sum, local_rank, setup, teardown
from .lock import RunLock
from .protocol import RunTask
from .trainer import Callback, TrainConfig, Trainer

log = logging.getLogger(__name__)

__all__ = ["fit_run", "seed_everything", "data_snapshot", "baseline_metrics", "split_metrics", "class_report_of",
           "SUMMARY_FIELDS"]

# What summary.json must hold for a complete run to be reported again (``--resume`` of a finished run).
SUMMARY_FIELDS = {"task": str, "steps": int, "epochs": int, "stopped": str}


def fit_run(task: RunTask, config: TrainConfig, out: str | Path, resume: bool = False,
            progress: bool = True, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train ``task`` (options set, not yet prepared) into the run directory ``out``; returns the summary.

    Steps: seed every generator with ``config.seed``; ``task.prepare`` the splits; build the
    model; write config.json and preprocess.json; train with validation (best weights to
    model.safetensors, checkpoints to checkpoints/last); evaluate the best weights on the test
    split; write summary.json and plots. ``resume`` continues the run already in ``out``.
    Under ``torchrun`` every process calls this; only rank 0 writes and gets the summary
    (the others get ``{}``). ``config.device`` and ``config.precision`` are checked against
    the machine before anything is read or written (a CUDA device it lacks, 16-mixed off
    CUDA: a one-line ValueError); summary.json records the resolved device (rank 0's, e.g.
    "cuda:0") and the precision. ``callbacks`` (rank 0 only) are called after the run's own
    (metrics.jsonl, progress bar): e.g. one that sets ``trainer.progress.stopped`` ends training.
    """
    config.validate()
    device = resolve_device(config.device, "TrainConfig", "device", local_rank=local_rank())
    check_precision("TrainConfig", "precision", config.precision, device)
    out = Path(out)
    _run_state(out, resume, config)  # the user errors first, before anything is written
    # One writer per run directory (rank 0 holds the lock; the other ranks write nothing).
    with RunLock(out) if int(os.environ.get("RANK", "0")) == 0 else contextlib.nullcontext():
        state = _run_state(out, resume, config)  # again under the lock: another writer may have been first
        if state in ("resumable", "complete"):  # what a kill may have left half done
            finish_swap(out / "checkpoints" / "last")
            settle(out)
        if state == "incomplete":  # a kill during the first checkpoint: nothing to resume from
            log.warning("%s holds only an incomplete first checkpoint (the training was killed while writing it): "
                        "starting the run over", out)
            shutil.rmtree(out / "checkpoints")
            resume = False
        elif state == "complete":
            log.warning("%s is a complete run (summary.json written): nothing to resume", out)
            return read_run_json(out, "summary.json", SUMMARY_FIELDS)
        if resume:  # a file changed since training is refused now, not after training on
            for name in RUN_FILES:
                if (out / name).is_file():
                    read_run_bytes(out, name)
        return _fit_run(task, config, out, resume, progress, device, callbacks)


def _run_state(out: Path, resume: bool, config: TrainConfig) -> str:
    """"new", "resumable", "complete" (summary.json written and the same training settings:
    resuming would change nothing) or "incomplete" (only a first checkpoint's temporary files);
    a ValueError for --resume without a checkpoint, or a run in ``out`` without --resume."""
    checkpoints = out / "checkpoints"
    saved = (checkpoints / "last").exists() or (checkpoints / "last.old").exists()
    if checkpoints.exists() and not saved:
        return "incomplete"
    if resume and not saved:
        raise ValueError(f"--resume: {out} holds no checkpoint to resume from")
    if not resume and checkpoints.exists():
        raise ValueError(f"--out {out} already holds a run; pass --resume to continue it or choose another --out")
    if resume and (out / "summary.json").exists() and _recorded_train_config(out) == dataclasses.asdict(config):
        return "complete"  # a resume with other settings (more epochs) trains on
    return "resumable" if resume else "new"


def _fit_run(task: RunTask, config: TrainConfig, out: Path, resume: bool, progress: bool, device,
             extra: Sequence[Callback]) -> dict[str, Any]:
    began = time.perf_counter()  # a time budget (max_minutes) covers the whole command from here
    dist = setup(device)
    try:
        seed_everything(config.seed)
        splits = task.prepare(config.seed)
        model = task.build_model()
        loaders = {
            "train": task.loader(splits["train"], config.batch_size, shuffle=True, seed=config.seed,
                                 rank=dist.rank, world=dist.world),
            "val": task.loader(splits["val"], config.batch_size, shuffle=False),
            "test": task.loader(splits["test"], config.batch_size, shuffle=False),
        }
        callbacks = []
        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            record_existing(out)  # the manifest (a run resumed from before manifests: its files as they are)
            atomic_write_json(out / "config.json", {"task": task.name, "options": dataclasses.asdict(task.options),
                                                    "train": dataclasses.asdict(config),
                                                    "data_files": data_snapshot(task.options)}, run_dir=out)
            atomic_write_json(out / "preprocess.json", task.meta, run_dir=out)
            callbacks = [JsonlLogger(out / "metrics.jsonl"), *([ProgressBar(task.metric)] if progress else []), *extra]
        # the baselines need no model: computed before training, their time comes out of its budget
        baselines = baseline_metrics(task, splits, "test") if dist.is_main else {}
        trainer = Trainer(task, model, loaders["train"], loaders["val"], config, run_dir=out,
                          monitor=task.metric, mode=task.mode, callbacks=callbacks, dist=dist,
                          budget_spent=_rank0(time.perf_counter() - began, dist))
        p = trainer.fit(resume=resume)
        if not dist.is_main:
            return {}
        model.load_state_dict(load_weights(out / "model.safetensors", run_dir=out))  # the best weights
        test = trainer.evaluate(loaders["test"])
        test.update(split_metrics(task, model, splits["test"]))
        summary = {
            "task": task.name, "seed": config.seed, "steps": p.step, "epochs": p.epoch, "stopped": p.stopped,
            "device": str(trainer.device), "precision": config.precision,
            "skipped_steps": p.skipped, "parameters": sum(q.numel() for q in model.parameters()),
            "train_seconds": round(p.elapsed, 3), "eval_seconds_in_training": round(p.timing.get("eval", 0.0), 3),
            "train_samples_per_second": p.timing["samples"] / max(p.timing["data"] + p.timing["model"], 1e-9),
            "outside_model_fraction": _outside_fraction(p.timing),
            f"best_val_{task.metric}": p.best,
            **{f"val_{k}": v for k, v in trainer.last_val.items()},
            **{f"test_{k}": v for k, v in test.items()},
            **baselines,
        }
        report = class_report_of(task, model, splits["test"])
        if report is not None:
            summary["test_class_report"], counts, labels = report
            from ..viz.plots import plot_confusion

            plot_confusion(counts, labels, out / "plots" / "confusion.png", title=f"{out.name}: test split")
        if isinstance(task.meta, dict) and isinstance(task.meta.get("chosen"), dict):
            summary["chosen"] = task.meta["chosen"]  # what the task chose by itself for this data
        from ..viz.plots import plot_curves

        # first: summary.json marks the run complete; titled with the run's name, baselines drawn
        plot_curves(out / "metrics.jsonl", out / "plots", title=out.name, baselines=summary)
        atomic_write_json(out / "summary.json", summary, run_dir=out)
        return summary
    finally:
        teardown()


def baseline_metrics(task: Any, splits: Any, split: str) -> dict[str, float]:
    """``task.baselines(splits)`` as ``{"baseline_<name>_<split>_<metric>": value}``.

    The hook is optional (a task without one has no baselines). A baseline that fails (a
    missing package, a fit that does not converge) costs a warning, never the trained run.
    """
    hook = getattr(task, "baselines", None)
    if hook is None:
        return {}
    start = time.perf_counter()
    try:
        results = hook(splits)
    except Exception as e:  # the model is trained and saved: report it without the baselines
        log.warning("%s: no baselines (%s: %s)", getattr(task, "name", "task"), type(e).__name__, e)
        return {}
    log.info("%s: baselines computed in %.1f s", getattr(task, "name", "task"), time.perf_counter() - start)
    return {f"baseline_{name}_{split}_{metric}": float(value)
            for name, scores in results.items() for metric, value in scores.items()}


def split_metrics(task: Any, model: torch.nn.Module, data: Any) -> dict[str, float]:
    """``task.split_metrics(model, data)``: the metrics that need a whole split at once (not sums
    over batches, e.g. where in a whole signal an alarm fires), model in eval mode, no gradients.

    The hook is optional; its keys join the batch metrics (``test_<key>`` in summary.json).
    """
    hook = getattr(task, "split_metrics", None)
    if hook is None:
        return {}
    with _evaluating(model):
        return {k: float(v) for k, v in hook(model, data).items()}


def class_report_of(task: Any, model: torch.nn.Module, data: Any):
    """For a classifier (a task with ``label_predictions(model, data) -> (targets, predictions)``,
    class ids): ``(report, counts, labels)`` — the per-class precision / recall / F1 / support
    (``rnnkit.viz.plots.class_report``), the (C, C) confusion counts and the label names
    (``task.meta["labels"]``); None for other tasks."""
    hook = getattr(task, "label_predictions", None)
    labels = task.meta.get("labels") if isinstance(getattr(task, "meta", None), dict) else None
    if hook is None or not labels:
        return None
    from ..viz.plots import class_report, confusion_matrix

    with _evaluating(model):
        targets, predictions = hook(model, data)
    counts = confusion_matrix(targets, predictions, len(labels))
    return class_report(counts, list(labels)), counts, list(labels)


@contextlib.contextmanager
def _evaluating(model: torch.nn.Module):
    """The model in eval mode without gradients inside the block, its mode restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _rank0(seconds: float, dist) -> float:
    """Rank 0's value on every process (a time budget must end on the same step everywhere)."""
    return float(all_reduce_sum(seconds if dist.is_main else 0.0, dist))


def _recorded_train_config(out: Path) -> dict | None:
    try:
        return json.loads((out / "config.json").read_text())["train"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def data_snapshot(options: Any) -> dict[str, dict[str, str]]:
    """The data files a task's options name, with their sha256: ``{field: {"path", "sha256"}}``.

    The fields are ``data`` and ``*_data`` (``test_data``) whose value is an existing file or
    folder; a named data set ("sunspots") or "" (the default data) has no file to hash.
    ``rnnkit evaluate RUN`` re-reads these files and refuses one whose sha256 changed.
    """
    files = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if (f.name == "data" or f.name.endswith("_data")) and isinstance(value, str) and value and Path(value).exists():
            files[f.name] = {"path": value, "sha256": sha256_path(value)}
    return files


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _outside_fraction(timing: dict) -> float:
    """Share of the training loop's time spent outside the model (data, logging)."""
    total = timing["data"] + timing["model"] + timing["other"]
    return (timing["data"] + timing["other"]) / total if total else 0.0
