"""What the trainer asks of a task and of a loader: the rules, written where they are enforced.

The trainer (``Trainer``) and ``fit_run`` know no task, model or command line; they rely
only on the protocols below. ``rnnkit.tasks.Task`` is one implementation (the one every
built-in task subclasses), but any object with these members will do.

- :class:`TrainingTask`: what ``Trainer`` calls: ``step``, ``metrics``, ``split_time``,
  ``stateful``.
- :class:`RunTask`: what ``fit_run`` needs on top to train a task into a run directory:
  ``name``, ``options``, ``metric``, ``mode``, ``meta``, ``prepare``, ``build_model``, ``loader``.
- :class:`Loader`: any re-iterable of batches (a list, a ``torch.utils.data.DataLoader``).
- :class:`ResumableLoader`: a loader that can stop and continue exactly mid-epoch.

A batch is whatever the task's ``step`` accepts: the trainer only passes it on.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, NamedTuple, Protocol, runtime_checkable

from torch import Tensor, nn

__all__ = ["StepOutput", "TrainingTask", "RunTask", "Loader", "ResumableLoader"]


class StepOutput(NamedTuple):
    """What ``task.step`` returns for one batch (or one truncated-BPTT window of it)."""

    loss_sum: Tensor  # scalar: the loss SUMMED over `count` items, never their mean
    count: int  # the items the loss covers (sequences, tokens, values); > 0 for a batch trained on
    stats: dict  # summable numbers for `metrics`, e.g. {"correct": 57}; plain floats/ints
    state: Any = None  # the recurrent state to carry on (truncated BPTT, stateful tasks), or None


@runtime_checkable
class TrainingTask(Protocol):
    """The task as the training loop sees it.

    Rules:

    - ``step(model, batch, state=None) -> StepOutput`` computes the loss of one batch. It is
      called with the model in train mode (gradients on) to train, and in eval mode under
      ``torch.no_grad()`` to evaluate; it may behave differently in the two (data
      augmentation only when ``model.training``). It never calls ``backward`` or an
      optimizer. During distributed training ``model`` is wrapped in DDP: call it, don't
      reach into its attributes. Random draws must come from torch's, numpy's or Python's
      global generator (seeded and checkpointed by the trainer) for resume to be exact.
    - ``loss_sum`` is a SUM over the batch's ``count`` items. The trainer divides by the
      count summed over all processes, so the gradient is that of the mean over the global
      batch, and losses of batches of any size add up to exact epoch metrics. A mean would
      weight small batches too much and break both.
    - ``stats`` are numbers that add up over batches (and processes): counts and sums, never
      ratios. ``"loss_sum"`` and ``"count"`` are reserved names.
    - ``metrics(totals) -> dict[str, float]`` turns ``{"loss_sum": ..., "count": ..., **summed
      stats}`` into metrics; it must return ``"loss"`` (and the task's ``metric``, see
      :class:`RunTask`) and cope with ``count == 0`` (an empty loader). Its keys are logged
      as ``train_<key>``, ``val_<key>`` and ``test_<key>``; the values must be plain floats.
    - ``split_time(batch, window) -> list`` is called only with ``TrainConfig.bptt > 0``: the
      batch cut along time into consecutive windows of at most ``window`` steps, in order,
      each a batch ``step`` accepts. The trainer makes one optimizer step per window and
      hands the detached ``state`` of one window to the next. A task that cannot cut its
      batches raises ``ValueError`` naming itself.
    - ``stateful``: True when batch ``i + 1`` continues the sequences of batch ``i`` row by row
      (stream batching, as ``rnnkit.data.StreamBatcher`` gives): the detached state of each
      batch is then passed into the next one, in training and in evaluation alike, and reset
      to None at the start of every epoch and of every evaluation pass. False: each batch
      starts from ``state=None``.
    - ``state`` (the carried state) must be a tensor or a flat tuple of tensors (an LSTM's
      ``(h, c)``): checkpoints store it to resume a stateful task mid-epoch. Under autocast
      the trainer keeps it in the weights' dtype between batches.
    - Devices and precision: the batch ``step`` gets is already on the model's device (the
      trainer moves its tensors, ``rnnkit.training.move_to_device``), and ``step`` runs under
      autocast with ``TrainConfig.precision`` "bf16" or "16-mixed". Tensors ``step`` makes
      itself go on the batch's device (``torch.arange(T, device=x.device)``); its loss may
      come out in float32 or lower (autocast's choice), its stats are plain numbers.
    """

    stateful: bool

    def step(self, model: nn.Module, batch: Any, state: Any = None) -> StepOutput: ...

    def metrics(self, totals: dict[str, float]) -> dict[str, float]: ...

    def split_time(self, batch: Any, window: int) -> list: ...


@runtime_checkable
class RunTask(TrainingTask, Protocol):
    """A task that ``fit_run`` can train into a run directory (see ``rnnkit.training.run``).

    Rules:

    - ``name``: the task's registered name; written to ``config.json`` as ``"task"``.
    - ``options``: a dataclass instance (model and data settings); written to ``config.json``
      with ``dataclasses.asdict``, and the task must be rebuildable from that dict.
    - ``metric``: the key of ``metrics()`` that selects the best weights on the validation
      split and drives early stopping; ``summary.json`` reports ``best_val_<metric>`` and
      ``test_<metric>``.
    - ``mode``: ``"max"`` if a larger ``metric`` is better, ``"min"`` if a smaller one is. A
      NaN value never counts as an improvement.
    - ``meta``: the preprocessing state (labels, vocabulary, scalers) that ``prepare`` fits on
      the training split. It must be JSON-able (dicts, lists, str, int, float, bool, None;
      tuples come back as lists): it is written to ``preprocess.json`` and set back on the
      task before ``build_model`` when a run is loaded. Nothing is pickled.
    - ``prepare(seed) -> {"train": data, "val": data, "test": data}``: the three splits, the
      same for the same seed; fills ``meta``. Called once per run, before ``build_model``.
    - ``build_model() -> nn.Module``: a fresh model sized from ``options`` and ``meta``; its
      initialisation draws from torch's global generator, which ``fit_run`` seeds.
    - ``loader(data, batch_size, shuffle, seed=0, rank=0, world=1) -> Loader`` batches one
      split. The training loader gets ``shuffle=True``, the run's seed, and under DDP this
      process's ``rank`` of ``world``: every process must draw the same global order and keep
      its own share. It should be a :class:`ResumableLoader` for ``--resume`` to continue
      exactly; validation and test loaders get ``shuffle=False``.
    """

    name: str
    options: Any
    metric: str
    mode: str
    meta: dict

    def prepare(self, seed: int) -> Mapping[str, Any]: ...

    def build_model(self) -> nn.Module: ...

    def loader(self, data: Any, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0,
               world: int = 1) -> "Loader": ...


@runtime_checkable
class Loader(Protocol):
    """Batches for the trainer: any re-iterable of batches, a ``torch.utils.data.DataLoader`` included.

    Rules:

    - Each ``iter(loader)`` is one pass (epoch) over the data. An iterator, such as a
      generator, is exhausted after one pass: give a re-iterable (a list, a DataLoader, an
      object whose ``__iter__`` starts over). The trainer refuses an iterator where it would
      need a second pass.
    - ``len(loader)``, where the loader has it, is the number of batches in an epoch; the
      trainer uses it to size the learning-rate schedule and the progress bar. Without it,
      ``TrainConfig.max_steps`` (or ``max_minutes``) must say how long training lasts for a
      schedule that decays (cosine, step).
    - Under DDP, each process's loader yields that process's share of each global batch.
    - A loader that is not a :class:`ResumableLoader` is not told the epoch, and ``--resume``
      starts the interrupted epoch again from its beginning (the batches trained on before
      the checkpoint come again, in the order the loader then gives).
    """

    def __iter__(self) -> Iterator[Any]: ...


@runtime_checkable
class ResumableLoader(Loader, Protocol):
    """A loader that resumes exactly in the middle of an epoch (``rnnkit.tasks.IndexLoader``).

    Rules:

    - ``__len__()``: the batches in a whole epoch (not only those left after resuming).
    - ``set_epoch(epoch)`` is called before each pass with the 0-based epoch number; the order
      of epoch ``e`` must depend only on the loader's seed and ``e``. Called with the epoch the
      loader is already in, it must keep its position (that is how a resumed epoch continues).
    - ``state_dict() -> dict``: JSON-able; at least the epoch and the number of batches of it
      handed out so far. A batch counts as handed out once it is yielded, so a checkpoint
      written while it is trained on resumes after it.
    - ``load_state_dict(state)``: the next pass continues right after the last batch handed
      out when ``state`` was taken; settings that change the order (seed, batch size) must
      match, or it raises ``ValueError``.
    """

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...
