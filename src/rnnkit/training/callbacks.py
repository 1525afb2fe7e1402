"""Callbacks the command line attaches: metrics.jsonl, a progress bar (loggers for other tools:
``rnnkit.training.loggers``)."""
from __future__ import annotations

import json
import os
import sys
from collections import deque
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
    """A tqdm bar over the training steps: the running mean loss (of the last ``window`` steps),
    the task metric, throughput and, under a time budget, the time left; then one bar per
    evaluation (validation, test).

    Under a time budget (``max_minutes``) the bar's total is the steps the budget is expected to
    allow (``trainer.cadence.expected_steps``, from the speed so far), so its ETA is the budget's.
    """

    def __init__(self, metric: str, window: int = 50) -> None:
        self.metric, self.bar, self.eval_bar = metric, None, None
        self._recent: deque[tuple[float, int]] = deque(maxlen=window)

    def on_fit_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        # total_steps is None for a loader without a length and no max_steps: a bar without an end
        self.bar = tqdm(total=trainer.total_steps, initial=trainer.progress.step, unit="step", file=sys.stderr,
                        dynamic_ncols=True, mininterval=0.5, desc=getattr(trainer.task, "name", "train"))
        self._seen = trainer.progress.step
        self._post: dict[str, str] = {}

    def on_train_batch(self, trainer: Trainer, loss_sum: float, count: int) -> None:
        self._recent.append((loss_sum, count))
        step = trainer.progress.step
        expected = trainer.cadence.expected_steps(step)
        if trainer.cadence.budget_s and expected and expected != self.bar.total:
            self.bar.total = expected
        items = sum(c for _, c in self._recent)
        self._post["loss"] = f"{sum(s for s, _ in self._recent) / items:.4f}" if items else "nan"
        left = trainer.cadence.seconds_left
        if left is not None:
            self._post["left"] = f"{int(left) // 60}:{int(left) % 60:02d}"
        self.bar.set_postfix(self._post, refresh=False)
        self.bar.update(step - self._seen)
        self._seen = step

    def on_step_end(self, trainer: Trainer, record: dict) -> None:
        self._post["samples/s"] = f"{record['samples_per_s']:.0f}"
        if f"train_{self.metric}" in record and self.metric != "loss":
            self._post[self.metric] = f"{record[f'train_{self.metric}']:.4f}"
        if trainer.last_val:
            self._post[f"val_{self.metric}"] = f"{trainer.last_val.get(self.metric, float('nan')):.4f}"
        self.bar.set_postfix(self._post, refresh=False)

    def on_eval_progress(self, trainer: Trainer, split: str, done: int, total: int | None) -> None:
        from tqdm.auto import tqdm

        if done == 1:  # a new evaluation (the one before may have been cut)
            self.close_eval_bar()
        if self.eval_bar is None:
            self.eval_bar = tqdm(total=total, unit="batch", file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
                                 desc=f"{split} evaluation", leave=False)
        self.eval_bar.update(done - self.eval_bar.n)
        if total is not None and done >= total:
            self.close_eval_bar()

    def on_eval_end(self, trainer: Trainer, record: dict) -> None:
        self.close_eval_bar()  # (a cut evaluation ends before its last batch)

    def close_eval_bar(self) -> None:
        if self.eval_bar is not None:
            self.eval_bar.close()
            self.eval_bar = None

    def on_fit_end(self, trainer: Trainer) -> None:
        self.close_eval_bar()
        self.bar.update(trainer.progress.step - self._seen)
        self.bar.close()
