"""Training: the model- and task-agnostic trainer, its protocols, checkpoints, distributed
helpers, devices and precision, and ``fit_run`` (a task object trained into a run directory)."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .device import PRECISIONS, Precision, module_device, move_to_device, resolve_device
from .protocol import Loader, ResumableLoader, RunTask, StepOutput, TrainingTask
from .run import fit_run
from .trainer import Callback, TrainConfig, Trainer, TrainingStopped, detach_state, evaluate_batches

__all__ = [
    "Callback", "StepOutput", "TrainConfig", "Trainer", "TrainingStopped", "detach_state", "evaluate_batches",
    "TrainingTask", "RunTask", "Loader", "ResumableLoader", "fit_run",
    "CheckpointError", "save_checkpoint", "load_checkpoint",
    "PRECISIONS", "Precision", "resolve_device", "move_to_device", "module_device",
]
