"""The training loop. It knows nothing about recurrent networks, tasks or models: it asks a
*task* for the loss of a batch and for metrics, and does the rest (BPTT or truncated BPTT,
clipping, optimizer and schedule, evaluation, early stopping, budgets, checkpoints and resume),
on the device and in the precision of its config (``rnnkit.training.device``).

What it asks of the task and of the loaders is written in :mod:`rnnkit.training.protocol`::

    out = task.step(model, batch, state)   # StepOutput(loss_sum, count, stats, state)
    task.metrics(totals) -> dict           # from summed stats: {"loss": ..., "accuracy": ...}
    task.split_time(batch, k) -> [batch]   # windows of k steps, for truncated BPTT
    task.stateful                          # carry the state from batch to batch (streams)

The training loader is any re-iterable of batches (a ``torch.utils.data.DataLoader`` too);
a ``ResumableLoader`` also resumes exactly mid-epoch. Logging, progress bars and plots attach
through callbacks; only rank 0 gets them.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .cadence import Cadence, Clock
from .checkpoint import (TRAINER_STATE, CheckpointError, capture_rng, load_checkpoint, restore_rng, save_checkpoint,
                         save_weights)
from .device import Precision, check_device, check_precision, move_to_device, resolve_device
from .distributed import DistInfo, all_reduce_sum
from .evaluation import detach_state, evaluate_batches, weights_dtype
from .protocol import Loader, ResumableLoader, StepOutput, TrainingTask

__all__ = ["TrainConfig", "StepOutput", "Callback", "Trainer", "TrainingStopped", "detach_state", "evaluate_batches"]

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 20  # passes over the training data
    # wall-clock budget in minutes for training and the evaluations after it; the schedule,
    # logging and validation scale to it (rnnkit.training.cadence); 0 = none
    max_minutes: float = 0.0
    max_steps: int = 0  # budget of training batches (the schedule ends with it); 0 = none
    batch_size: int = 64  # sequences per optimizer step, over all processes together
    optimizer: str = "adam"  # the optimizer: adam | adamw | sgd | rmsprop
    lr: float = 3e-3  # learning rate of the optimizer (the schedule multiplies it)
    weight_decay: float = 0.0  # L2 penalty on the weights (decoupled for adamw); 0 = none
    momentum: float = 0.9  # momentum of sgd and rmsprop (the others ignore it)
    schedule: str = "constant"  # learning-rate schedule: constant | cosine | step (x0.5 every quarter of training)
    warmup_steps: int = 0  # steps of linear warm-up of the learning rate from 0; 0 = none
    clip_norm: float = 5.0  # largest gradient norm: larger gradients are scaled down to it; 0 = no clipping
    bptt: int = 0  # truncated BPTT: window in time steps, one update per window; 0 = full BPTT
    eval_every: int = 0  # validate every N steps; 0 = at the end of each epoch
    patience: int = 0  # early stopping after N validations without improvement; 0 = off
    # the weights the run keeps: best (those of the best validation metric) | last (the final ones:
    # validation only draws the curve; for validation sets too small to choose between epochs)
    keep: str = "best"
    on_nonfinite: str = "stop"  # on a NaN/inf loss: stop (training ends, checkpoints kept) | skip (the step)
    log_every: int = 10  # steps between train records in metrics.jsonl (under max_minutes: at most 1/50 of the run)
    seed: int = 0  # seed of every random generator (data order, initial weights, dropout)
    # where to train: auto (CUDA when torch sees a GPU, else the CPU) | cpu | cuda | cuda:N;
    # under torchrun, auto and cuda give each process the GPU of its LOCAL_RANK
    device: str = "auto"
    # arithmetic of the forward pass: 32 | bf16 (autocast to bfloat16, CPU or GPU) | 16-mixed (autocast
    # to float16 + GradScaler, CUDA only); the weights stay float32 in every precision
    precision: str = "32"
    # metrics also go to: "" (metrics.jsonl only) | tensorboard (event files in RUN/tensorboard,
    # `tensorboard --logdir RUN`; needs `pip install rnnkit[tensorboard]`)
    logger: str = ""

    def validate(self) -> None:
        choices = {"optimizer": ("adam", "adamw", "sgd", "rmsprop"), "schedule": ("constant", "cosine", "step"),
                   "on_nonfinite": ("stop", "skip"), "logger": ("", "tensorboard"),
                   "keep": ("best", "last")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_minutes", "max_steps", "lr", "clip_norm", "bptt", "eval_every", "patience", "warmup_steps",
                     "weight_decay"):
            if not getattr(self, name) >= 0:  # (NaN too)
                raise ValueError(f"TrainConfig: {name} must be >= 0, got {getattr(self, name)}")
        check_device("TrainConfig", "device", self.device)  # its form; resolve_device says if the machine has it
        check_precision("TrainConfig", "precision", self.precision)


class TrainingStopped(RuntimeError):
    """Training cannot go on (a non-finite loss with on_nonfinite='stop')."""


class Callback:
    """Hooks called on rank 0. ``record`` is the dict written to metrics.jsonl (``on_step_end``
    at the logged steps); ``on_train_batch`` comes after every step with its summed loss and
    item count; ``on_eval_progress`` after every evaluated batch of ``split`` ("val", "test")."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...
    def on_train_batch(self, trainer: "Trainer", loss_sum: float, count: int) -> None: ...
    def on_step_end(self, trainer: "Trainer", record: dict) -> None: ...
    def on_eval_progress(self, trainer: "Trainer", split: str, done: int, total: int | None) -> None: ...
    def on_eval_end(self, trainer: "Trainer", record: dict) -> None: ...
    def on_fit_end(self, trainer: "Trainer") -> None: ...


@dataclass
class _Progress:
    """What a checkpoint must hold to continue exactly."""

    step: int = 0  # batches trained on
    epoch: int = 0
    best: float | None = None  # best monitored validation value
    bad_evals: int = 0  # evaluations since the best
    elapsed: float = 0.0  # seconds of training before this process
    skipped: int = 0  # steps skipped for a non-finite loss
    stopped: str = ""  # why training ended
    timing: dict = field(default_factory=lambda: {"data": 0.0, "model": 0.0, "other": 0.0, "eval": 0.0, "samples": 0})


class Trainer:
    """Train ``model`` on ``task``'s batches.

    Args:
        task: a ``TrainingTask``: step / metrics / split_time / stateful (``rnnkit.training.protocol``).
        model: the module to train (wrapped in DDP here when ``dist.world > 1``).
        train_loader: a ``Loader``: any re-iterable of batches, a ``torch.utils.data.DataLoader``
            too. Its ``len()``, where it has one, sizes the schedule. A ``ResumableLoader``
            (set_epoch / state_dict / load_state_dict / __len__, as ``rnnkit.tasks.IndexLoader``)
            resumes exactly mid-epoch; any other loader restarts the interrupted epoch from
            its beginning on ``fit(resume=True)``.
        val_loader: a ``Loader`` evaluated at the end of each epoch (or every ``eval_every``
            steps), or None (then every evaluation point only writes a checkpoint).
        config: TrainConfig.
        run_dir: where checkpoints and best weights go (rank 0 writes); None = nowhere.
        monitor: validation metric to select the best model and stop early, e.g. "accuracy".
        mode: "max" or "min" for the monitored metric.
        callbacks: Callback objects (logging, progress, plots).
        dist: rank and world size.
        budget_spent: seconds of ``config.max_minutes`` the command used before training (reading
            the data, the baselines): training and its final evaluations get the rest. Every
            process must pass the same value (``fit_run`` passes rank 0's).

    The model moves to ``config.device`` (resolved: "auto" is CUDA when there is a GPU; under
    torchrun, ``cuda:LOCAL_RANK``) before the optimizer is built, and every batch follows it
    (``move_to_device``: the tensors of dicts, tuples, lists and dataclasses, non-blocking). The
    forward pass and the loss run under autocast for ``config.precision`` "bf16" and
    "16-mixed", evaluation included; the weights, gradients and optimizer state stay float32.
    ``self.device`` is the resolved device.
    """

    def __init__(self, task: TrainingTask, model: nn.Module, train_loader: Loader, val_loader: Loader | None,
                 config: TrainConfig, run_dir: str | Path | None = None, monitor: str = "loss", mode: str = "min",
                 callbacks: list[Callback] = (), dist: DistInfo = DistInfo(), budget_spent: float = 0.0) -> None:
        config.validate()
        if mode not in ("max", "min"):
            raise ValueError(f"Trainer: mode must be max or min, got {mode!r}")
        _check_reiterable("train_loader", train_loader, config.epochs > 1)
        _check_reiterable("val_loader", val_loader, config.epochs > 1 or config.eval_every > 0)
        self.task, self.raw_model, self.config = task, model, config
        self.train_loader, self.val_loader = train_loader, val_loader
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.monitor, self.mode, self.dist = monitor, mode, dist
        from .loggers import metric_loggers  # (it imports Callback from here)

        self.callbacks = list(callbacks) + metric_loggers(config, run_dir) if dist.is_main else []
        self.device = resolve_device(config.device, "TrainConfig", "device",
                                     local_rank=dist.local_rank if dist.world > 1 else None)
        check_precision("TrainConfig", "precision", config.precision, self.device)  # 16-mixed needs CUDA
        self.precision = Precision(config.precision, self.device)
        model.to(self.device)  # before the optimizer, whose state lives beside the weights
        self.model = dist.wrap(model, self.device)
        # the state carried from batch to batch (truncated BPTT, streams) is kept in the weights'
        # dtype, as the next batch's input is: under autocast the layers return it in bf16/fp16
        self._carry_dtype = weights_dtype(model) if config.precision != "32" else None
        self.optimizer = _make_optimizer(config, model.parameters())
        self.total_steps = _planned_steps(config, _batches_per_epoch(train_loader))
        self.progress = _Progress()
        # when to log and evaluate; its clock (rank 0's) also measures the time budget's use
        self.cadence = Cadence(config, self.total_steps, spent=budget_spent)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(config, self.total_steps, lambda: self.cadence.budget_used))
        self.last_val: dict = {}
        self._last_eval_step = -1
        self._deadline = None  # perf_counter() at which the time budget ends (set by fit)
        self._last_eval_seconds = 0.0  # the last validation's duration (the final ones take about as long)

    # -- the loop ---------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> _Progress:
        """Train until ``epochs``, a budget or early stopping ends it; ``resume`` continues the
        run in ``run_dir`` from its last checkpoint. Returns the progress (steps, epochs, best)."""
        cfg = self.config
        carry = None
        if resume:
            carry = self._restore()
        p = self.progress  # after _restore, which replaces it
        resumable = isinstance(self.train_loader, ResumableLoader)
        for cb in self.callbacks:
            cb.on_fit_start(self)
        start = time.perf_counter() - p.elapsed
        self._deadline = start + self.cadence.budget_s if cfg.max_minutes else None
        self.cadence.logged(p.step)
        while p.epoch < cfg.epochs and not p.stopped:
            if cfg.max_steps and p.step >= cfg.max_steps:  # (a resumed run that had spent it)
                p.stopped = f"step budget of {cfg.max_steps} steps reached"
                break
            if resumable:
                self.train_loader.set_epoch(p.epoch)
            self.model.train()
            if not self.task.stateful:
                carry = None
            t_data = time.perf_counter()
            for batch in self.train_loader:
                batch = move_to_device(batch, self.device)  # (counted as data time)
                t_model = time.perf_counter()
                p.timing["data"] += t_model - t_data
                loss, count, stats, carry = self._train_batch(batch, carry)
                p.step += 1
                t_other = time.perf_counter()
                p.timing["model"] += t_other - t_model
                p.timing["samples"] += count
                p.elapsed = t_other - start
                self.cadence.tick(self._clock())
                # The schedule counts batches (its length is epochs * batches), not BPTT windows.
                self.scheduler.step()
                for cb in self.callbacks:
                    cb.on_train_batch(self, loss, count)
                if self.cadence.log_due(p.step):
                    self._log_train(loss, count, stats)
                t_eval = time.perf_counter()
                if self.cadence.eval_due(p.step, self._last_eval_step):
                    self._evaluate_and_checkpoint(carry)
                t_data = time.perf_counter()
                # evaluation and checkpoints are not part of a training step's cost
                p.timing["other"] += t_eval - t_other
                p.timing["eval"] += t_data - t_eval
                if self.cadence.budget_spent():
                    p.stopped = p.stopped or f"time budget of {cfg.max_minutes} min reached"
                if cfg.max_steps and p.step >= cfg.max_steps:
                    p.stopped = p.stopped or f"step budget of {cfg.max_steps} steps reached"
                if p.stopped:
                    break
            else:
                p.epoch += 1
                carry = None
                # (an eval_every step that ends the epoch has been evaluated already)
                if (not cfg.eval_every or p.epoch == cfg.epochs) and self._last_eval_step != p.step:
                    t_eval = time.perf_counter()
                    self._evaluate_and_checkpoint(carry)
                    p.timing["eval"] += time.perf_counter() - t_eval
        if not p.stopped:
            p.stopped = f"{cfg.epochs} epochs done"
        if self._last_eval_step != p.step:  # stopped mid-epoch: keep what was learned
            self._evaluate_and_checkpoint(carry)
        p.elapsed = time.perf_counter() - start
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return p

    def _clock(self) -> Clock:
        """Rank 0's time (under a budget): so every process logs, evaluates and stops at the same step."""
        p = self.progress
        if not self.config.max_minutes:
            return Clock(p.elapsed)
        clock = torch.tensor([p.elapsed, p.timing["eval"], self._last_eval_seconds], dtype=torch.float64)
        if self.dist.world > 1:  # the others' clocks count for nothing
            clock = all_reduce_sum(clock.to(self.device) if self.dist.is_main else torch.zeros_like(clock, device=self.device),
                                   self.dist).cpu()
        return Clock(*clock.tolist())

    def _train_batch(self, batch, carry):
        """One batch: windows of truncated BPTT (or the whole batch), one update each."""
        cfg, p = self.config, self.progress
        windows = self.task.split_time(batch, cfg.bptt) if cfg.bptt else [batch]
        total_loss, total_count, totals = 0.0, 0, {}
        for window in windows:
            with self.precision.autocast():  # the forward pass and the loss; backward runs outside
                out = self.task.step(self.model, window, carry)
            count = int(all_reduce_sum(float(out.count), self.dist))
            if count < 1:  # the loss is divided by it
                raise ValueError(f"Trainer: task.step must count at least one item in a training batch "
                                 f"(StepOutput.count), got {count} at step {p.step + 1}")
            loss_sum = float(all_reduce_sum(out.loss_sum.detach(), self.dist))
            if not math.isfinite(loss_sum):
                if cfg.on_nonfinite == "stop":
                    raise TrainingStopped(
                        f"loss is {loss_sum} at step {p.step + 1} (epoch {p.epoch + 1}); training stopped, "
                        "the checkpoints written so far are kept"
                    )
                log.warning("skipping step %d: loss is %s", p.step + 1, loss_sum)
                p.skipped += 1
                self.optimizer.zero_grad(set_to_none=True)
                carry = None
                continue
            # Each process divides by the global count; DDP averages over `world`, so
            # multiplying by `world` makes the gradient that of the global batch exactly.
            self.precision.backward(out.loss_sum * (self.dist.world / count))
            if cfg.clip_norm:
                self.precision.unscale_(self.optimizer)  # (16-mixed: clip the true gradients)
                nn.utils.clip_grad_norm_(self.raw_model.parameters(), cfg.clip_norm)
            self.precision.step(self.optimizer)
            self.optimizer.zero_grad(set_to_none=True)
            carry = detach_state(out.state, self._carry_dtype) if (cfg.bptt or self.task.stateful) else None
            total_loss, total_count = total_loss + loss_sum, total_count + count
            for k, v in out.stats.items():  # summed over processes, like the loss
                totals[k] = totals.get(k, 0.0) + all_reduce_sum(float(v), self.dist)
        # Only a stateful task (streams) carries the state on to the next batch.
        return total_loss, total_count, totals, carry if self.task.stateful else None

    # -- evaluation, checkpoints ------------------------------------------------------------

    def evaluate(self, loader: Loader, split: str = "test") -> dict[str, float]:
        """The task's metrics over every batch of ``loader`` (loss included), on the trainer's
        device and in its precision. After ``fit`` with ``max_minutes``, within what is left of
        the budget: cut past it, the metrics then hold ``evaluated_fraction`` (see ``evaluate_batches``)."""
        def progress(done: int, total: int | None) -> None:
            for cb in self.callbacks:
                cb.on_eval_progress(self, split, done, total)

        t0 = time.perf_counter()
        metrics = evaluate_batches(self.task, self.raw_model, loader, self.device, self.precision.precision,
                                   deadline=self._deadline, on_batch=progress)
        if split == "val":
            self._last_eval_seconds = time.perf_counter() - t0
        return metrics

    def _evaluate_and_checkpoint(self, carry) -> None:
        p = self.progress
        self._last_eval_step = p.step
        if self.val_loader is None:
            self._checkpoint(carry, improved=True)
            return
        metrics = self.evaluate(self.val_loader, "val")
        value = metrics.get(self.monitor, float("nan"))
        better = math.isfinite(value) and (
            p.best is None or (value > p.best if self.mode == "max" else value < p.best)
        )
        if better:
            p.best, p.bad_evals = value, 0
        else:
            p.bad_evals += 1
            if self.config.patience and p.bad_evals >= self.config.patience:
                p.stopped = f"early stopping: val_{self.monitor} did not improve for {p.bad_evals} evaluations"
        self.last_val = metrics
        record = {"split": "val", "step": p.step, "epoch": p.epoch, **{f"val_{k}": v for k, v in metrics.items()}}
        if self.config.max_minutes:  # when, for curves against time (a budgeted run's records follow its clock anyway)
            record["seconds"] = round(p.elapsed, 3)  # of training so far, earlier evaluations included
        for cb in self.callbacks:
            cb.on_eval_end(self, record)
        self._checkpoint(carry, improved=better or self.config.keep == "last")

    def _checkpoint(self, carry, improved: bool) -> None:
        if self.run_dir is None or not self.dist.is_main:
            return
        if not all(torch.isfinite(q).all() for q in self.raw_model.parameters()):
            log.warning("step %d: the weights are not finite; keeping the previous checkpoints", self.progress.step)
            return
        rng_json, tensors = capture_rng()
        if carry is not None:
            parts = carry if isinstance(carry, tuple) else (carry,)
            tensors.update({f"carry/{i}": t for i, t in enumerate(parts)})
        state = {
            "progress": asdict(self.progress), "rng": rng_json, "loader": self._loader_state(),
            "scheduler": {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"},
            "carry_is_tuple": isinstance(carry, tuple), "callbacks": {}, "last_val": self.last_val,
            "scaler": self.precision.state_dict(),
        }
        for cb in self.callbacks:
            if hasattr(cb, "state_dict"):
                state["callbacks"][type(cb).__name__] = cb.state_dict()
        if improved:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_weights(self.run_dir / "model.safetensors", self.raw_model.state_dict(), run_dir=self.run_dir)
        save_checkpoint(self.run_dir / "checkpoints" / "last", self.raw_model, self.optimizer, state, tensors)

    def _restore(self):
        """Load checkpoints/last: weights, optimizer, schedule, RNG, data order, progress."""
        state, tensors = load_checkpoint(self.run_dir / "checkpoints" / "last", self.raw_model, self.optimizer,
                                         schema=TRAINER_STATE)
        self.progress = _Progress(**state["progress"])
        self.progress.timing = {**_Progress().timing, **self.progress.timing}  # keys added since
        self.progress.stopped = ""
        # Every checkpoint is written by an evaluation at its step: don't evaluate it again.
        self._last_eval_step, self.last_val = self.progress.step, state.get("last_val", {})
        # The schedule's function comes from the config; LambdaLR wants a placeholder for it.
        self.scheduler.load_state_dict({"lr_lambdas": [None] * len(self.scheduler.lr_lambdas), **state["scheduler"]})
        exact = isinstance(self.train_loader, ResumableLoader) and state.get("loader") is not None
        if exact:
            try:
                self.train_loader.load_state_dict(state["loader"])
            except (ValueError, TypeError, KeyError) as e:
                raise CheckpointError(f"{self.run_dir / 'checkpoints' / 'last' / 'trainer.json'}: field 'loader' does "
                                      f"not fit this run's loader ({str(e).splitlines()[0] if str(e) else e!r})") from None
        else:  # the loader cannot skip what it handed out: the interrupted epoch starts again
            log.info("resuming at step %d: the train loader is not resumable; epoch %d starts again from its "
                     "first batch", self.progress.step, self.progress.epoch + 1)
        restore_rng(state["rng"], tensors)
        self.precision.load_state_dict(state.get("scaler", {}))
        for cb in self.callbacks:
            if hasattr(cb, "load_state_dict") and type(cb).__name__ in state["callbacks"]:
                cb.load_state_dict(state["callbacks"][type(cb).__name__])
        carry = [tensors[f"carry/{i}"] for i in range(len(tensors)) if f"carry/{i}" in tensors]
        if not carry or not exact:  # a state carried mid-epoch belongs to the batches that come next
            return None
        carry = move_to_device(carry, self.device)  # (read on the CPU: the run may have moved)
        return tuple(carry) if state["carry_is_tuple"] else carry[0]

    def _loader_state(self) -> dict | None:
        """The train loader's position (None for a loader that cannot resume mid-epoch)."""
        if isinstance(self.train_loader, ResumableLoader):
            return self.train_loader.state_dict()
        return None

    def _log_train(self, loss: float, count: int, stats: dict) -> None:
        if not self.callbacks:
            return
        p = self.progress
        metrics = self.task.metrics({"loss_sum": loss, "count": count, **stats}) if count else {}
        busy = p.timing["data"] + p.timing["model"]
        record = {"split": "train", "step": p.step, "epoch": p.epoch, "lr": self.scheduler.get_last_lr()[0],
                  "samples_per_s": p.timing["samples"] / busy if busy else 0.0, **{f"train_{k}": v for k, v in metrics.items()}}
        for cb in self.callbacks:
            cb.on_step_end(self, record)


def _check_reiterable(name: str, loader, passes: bool) -> None:
    """Refuse a one-shot iterator (a generator) where more than one pass over it is needed."""
    if passes and isinstance(loader, Iterator):
        raise ValueError(f"Trainer: {name} must be re-iterable (a list, a DataLoader, an object whose __iter__ "
                         f"starts over), got an iterator ({type(loader).__name__}), which is exhausted after one pass")


def _batches_per_epoch(loader) -> int | None:
    """``len(loader)``, or None for a loader without a length (an IterableDataset's DataLoader)."""
    try:
        return len(loader)
    except TypeError:
        return None


def _planned_steps(cfg: TrainConfig, per_epoch: int | None) -> int | None:
    """Training batches the schedule spans: epochs x batches per epoch, capped by max_steps.

    None when neither is known; then only a constant schedule (or a time budget) can run.
    """
    planned = [n for n in (cfg.epochs * max(1, per_epoch) if per_epoch is not None else 0, cfg.max_steps) if n]
    if planned:
        return min(planned)
    if cfg.schedule != "constant" and not cfg.max_minutes:
        raise ValueError(f"Trainer: schedule {cfg.schedule!r} needs the length of training, but the train loader "
                         "has no len(); set max_steps (or max_minutes), or use schedule='constant'")
    return None


def _make_optimizer(cfg: TrainConfig, params):
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _lr_lambda(cfg: TrainConfig, total_steps: int | None, budget_used=lambda: 0.0):
    """Multiplier of the base learning rate at optimizer step s.

    With a time budget (``max_minutes``) the schedule's progress is the larger of the steps
    done and the budget spent (``budget_used()``), so a cosine or step schedule ends when the
    budget does rather than being cut off half way. ``total_steps`` None (a loader without a
    length and no max_steps): the budget alone measures progress.
    """
    def factor(s: int) -> float:
        # 1) linear warm-up
        if s < cfg.warmup_steps:
            return (s + 1) / cfg.warmup_steps
        # 2) then the schedule over the remaining steps
        done = (s - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps) if total_steps is not None else 0.0
        progress = min(1.0, max(done, budget_used()))
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if cfg.schedule == "step":
            return 0.5 ** int(progress * 4)
        return 1.0
    return factor
