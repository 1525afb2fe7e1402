"""Callbacks the command line attaches: metrics.jsonl, a progress bar."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .trainer import Callback, Trainer

__all__ = ["JsonlLogger", "ProgressBar"]


class JsonlLogger(Callback):
    """Appends every train/val record to ``path``, one JSON object per line.

    Its state (the file size at a checkpoint) lets a resumed run cut the lines logged after
    the checkpoint, so metrics.jsonl reads as if the run had never been interrupted.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.progress.step == 0:  # a fresh run: drop what an unresumable earlier run left
            self.path.write_text("")

    def on_step_end(self, trainer: Trainer, record: dict) -> None:
        self._write(record)

    def on_eval_end(self, trainer: Trainer, record: dict) -> None:
        self._write(record)

    def _write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def state_dict(self) -> dict:
        return {"offset": self.path.stat().st_size if self.path.exists() else 0}

    def load_state_dict(self, state: dict) -> None:
        if self.path.exists():
            os.truncate(self.path, min(state["offset"], self.path.stat().st_size))


class ProgressBar(Callback):
    """A tqdm bar over all training steps, showing loss, the task metric and throughput."""

    def __init__(self, metric: str) -> None:
        self.metric, self.bar = metric, None

    def on_fit_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        # total_steps is None for a loader without a length and no max_steps: a bar without an end
        self.bar = tqdm(total=trainer.total_steps, initial=trainer.progress.step, unit="step", file=sys.stderr,
                        dynamic_ncols=True, mininterval=0.5, desc=getattr(trainer.task, "name", "train"))
        self._seen = trainer.progress.step

    def on_step_end(self, trainer: Trainer, record: dict) -> None:
        self.bar.update(record["step"] - self._seen)
        self._seen = record["step"]
        post = {"loss": f"{record.get('train_loss', float('nan')):.4f}", "samples/s": f"{record['samples_per_s']:.0f}"}
        if f"train_{self.metric}" in record:
            post[self.metric] = f"{record[f'train_{self.metric}']:.4f}"
        if trainer.last_val:
            post[f"val_{self.metric}"] = f"{trainer.last_val.get(self.metric, float('nan')):.4f}"
        self.bar.set_postfix(post, refresh=False)

    def on_fit_end(self, trainer: Trainer) -> None:
        self.bar.update(trainer.progress.step - self._seen)
        self.bar.close()
