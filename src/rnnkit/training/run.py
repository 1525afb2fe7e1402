"""Runs: train a task into a run directory, evaluate it, load it back for prediction.

A run directory holds::

    config.json          task name, task options, TrainConfig
    preprocess.json      the task's preprocessing state (labels, vocabulary, scalers)
    model.safetensors    the best weights (by the validation metric)
    metrics.jsonl        one JSON object per logged train step / evaluation
    summary.json         final and best metrics (test_*, val_*, best_val_*), throughput
    plots/*.png          curves of every logged quantity
    checkpoints/last/    everything --resume needs
"""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..tasks.base import Task, get_task
from .callbacks import JsonlLogger, ProgressBar
from .checkpoint import CheckpointError, atomic_write_json, load_weights
from .distributed import setup, teardown
from .trainer import TrainConfig, Trainer

__all__ = ["train", "load", "load_task", "evaluate", "RunModel"]


def train(task_name: str, options, config: TrainConfig, out: str | Path, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train ``task_name`` with ``options`` (its Options dataclass) into ``out``; returns the summary."""
    config.validate()
    out = Path(out)
    if resume and not (out / "checkpoints" / "last").exists() and not (out / "checkpoints" / "last.old").exists():
        raise ValueError(f"--resume: {out} holds no checkpoint to resume from")
    if not resume and (out / "checkpoints").exists():
        raise ValueError(f"--out {out} already holds a run; pass --resume to continue it or choose another --out")
    dist = setup()
    try:
        _seed_everything(config.seed)
        task = get_task(task_name)(options)
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
            atomic_write_json(out / "config.json", {"task": task_name, "options": dataclasses.asdict(options),
                                                    "train": dataclasses.asdict(config)})
            atomic_write_json(out / "preprocess.json", task.meta)
            callbacks = [JsonlLogger(out / "metrics.jsonl")] + ([ProgressBar(task.metric)] if progress else [])
        trainer = Trainer(task, model, loaders["train"], loaders["val"], config, run_dir=out,
                          monitor=task.metric, mode=task.mode, callbacks=callbacks, dist=dist)
        p = trainer.fit(resume=resume)
        if not dist.is_main:
            return {}
        model.load_state_dict(load_weights(out / "model.safetensors"))  # the best weights
        test = trainer.evaluate(loaders["test"])
        summary = {
            "task": task_name, "seed": config.seed, "steps": p.step, "epochs": p.epoch, "stopped": p.stopped,
            "skipped_steps": p.skipped, "parameters": sum(q.numel() for q in model.parameters()),
            "train_seconds": round(p.elapsed, 3), "eval_seconds_in_training": round(p.timing.get("eval", 0.0), 3),
            "train_samples_per_second": p.timing["samples"] / max(p.timing["data"] + p.timing["model"], 1e-9),
            "outside_model_fraction": _outside_fraction(p.timing),
            f"best_val_{task.metric}": p.best,
            **{f"val_{k}": v for k, v in trainer.last_val.items()},
            **{f"test_{k}": v for k, v in test.items()},
        }
        atomic_write_json(out / "summary.json", summary)
        from ..viz.plots import plot_curves

        plot_curves(out / "metrics.jsonl", out / "plots")
        return summary
    finally:
        teardown()


class RunModel(nn.Module):
    """A trained model with its task, ready for prediction: ``rnnkit.load(run_dir)``.

    ``forward`` is the model's; ``predict(inputs)`` and ``generate(...)`` decode as the task does.
    """

    def __init__(self, model: nn.Module, task: Task, config: dict) -> None:
        super().__init__()
        self.model, self.task, self.config = model, task, config

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def predict(self, inputs: list[str], **options) -> list[dict]:
        unknown = set(options) - set(self.task.predict_options)
        if unknown:
            raise ValueError(f"{self.task.name}: predict takes no option {', '.join(sorted(unknown))}")
        return self.task.predict(self.model, list(inputs), **options)

    def stream(self, prime: str = "", length: int = 200, temperature: float = 1.0, top_k: int = 0) -> Iterator[str]:
        """Generated text, piece by piece as it is sampled."""
        return self.task.generate(self.model, prime, length, temperature, top_k)

    def generate(self, prime: str = "", length: int = 200, temperature: float = 1.0, top_k: int = 0) -> str:
        return "".join(self.stream(prime, length, temperature, top_k))


def load_task(run_dir: str | Path) -> tuple[Task, dict]:
    """The task of a run, with its options and preprocessing state restored."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    try:
        config = json.loads((run_dir / "config.json").read_text())
        meta = json.loads((run_dir / "preprocess.json").read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"{run_dir} is not a run directory ({Path(e.filename).name} is missing)") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{run_dir}: config.json or preprocess.json is corrupt ({e})") from None
    try:
        cls = get_task(config["task"])
        task = cls(cls.Options(**config["options"]))
    except (KeyError, TypeError) as e:  # JSON, but not a run's config
        raise CheckpointError(f"{run_dir}/config.json is not an rnnkit run config ({type(e).__name__}: {e})") from None
    task.meta = meta
    return task, config


def load(run_dir: str | Path) -> RunModel:
    """Load a run directory's best weights into its model, in eval mode."""
    task, config = load_task(run_dir)
    model = task.build_model()
    try:
        model.load_state_dict(load_weights(Path(run_dir) / "model.safetensors"))
    except RuntimeError as e:
        raise CheckpointError(f"{run_dir}/model.safetensors does not fit the model: {str(e).splitlines()[0]}") from None
    return RunModel(model, task, config).eval()


def evaluate(run_dir: str | Path, data: str | None = None) -> dict[str, float]:
    """Metrics of a trained run on its test split (re-made from its seed) or on a data file."""
    run = load(run_dir)
    task, train_cfg = run.task, TrainConfig(**run.config["train"])
    if data is None:
        meta = dict(task.meta)
        dataset = task.prepare(train_cfg.seed)["test"]
        task.meta = meta  # keep the preprocessing the model was trained with
    else:
        dataset = task.load_data(data)
    trainer = Trainer(task, run.model, None, None, dataclasses.replace(train_cfg, epochs=1))
    metrics = trainer.evaluate(task.loader(dataset, train_cfg.batch_size, shuffle=False))
    return {f"{'test' if data is None else 'data'}_{k}": v for k, v in metrics.items()}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _outside_fraction(timing: dict) -> float:
    """Share of the training loop's time spent outside the model (data, logging)."""
    total = timing["data"] + timing["model"] + timing["other"]
    return (timing["data"] + timing["other"]) / total if total else 0.0
