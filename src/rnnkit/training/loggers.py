"""Metric loggers besides metrics.jsonl, chosen by ``TrainConfig.logger``: TensorBoard.

``metric_loggers(config, run_dir)`` gives the trainer the callbacks the config asks for. A
logger whose package is missing is a one-line ValueError naming the extra to install.
"""
from __future__ import annotations

import os
from pathlib import Path

from .trainer import Callback, Trainer

__all__ = ["metric_loggers", "TensorBoardLogger"]


def metric_loggers(config, run_dir: str | os.PathLike | None) -> list[Callback]:
    """The callbacks ``config.logger`` asks for (rank 0 attaches them), writing under ``run_dir``."""
    if config.logger == "tensorboard":
        if run_dir is None:
            raise ValueError("TrainConfig: logger 'tensorboard' writes into the run directory, got run_dir None")
        return [TensorBoardLogger(Path(run_dir) / "tensorboard")]
    return []


class TensorBoardLogger(Callback):
    """Every train/val record as TensorBoard scalars (``train/loss``, ``val/accuracy``, ``lr``, ...)
    in ``log_dir``, by step: ``tensorboard --logdir RUN``. A resumed run appends to the same folder.

    Needs the ``tensorboard`` package (``pip install rnnkit[tensorboard]``): without it the
    constructor raises a one-line ValueError.
    """

    def __init__(self, log_dir: str | os.PathLike) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's module imports tensorboard
            raise ValueError("TrainConfig: logger 'tensorboard' needs the tensorboard package, not installed "
                             "(pip install 'rnnkit[tensorboard]')") from None
        self.log_dir, self._writer_class, self.writer = Path(log_dir), SummaryWriter, None

    def on_fit_start(self, trainer: Trainer) -> None:
        # purge_step: events a resumed run logged after its checkpoint are hidden, as metrics.jsonl cuts them
        self.writer = self._writer_class(str(self.log_dir), purge_step=trainer.progress.step or None)

    def on_step_end(self, trainer: Trainer, record: dict) -> None:
        self._write(record)

    def on_eval_end(self, trainer: Trainer, record: dict) -> None:
        self._write(record)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()

    def _write(self, record: dict) -> None:
        step = record["step"]
        for key, value in record.items():
            if key in ("split", "step", "epoch") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            split, _, name = key.partition("_")
            tag = f"{split}/{name}" if split in ("train", "val") and name else key
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()
