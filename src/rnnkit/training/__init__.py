"""Training: the model- and task-agnostic trainer, its protocols, checkpoints, distributed
helpers, and ``fit_run`` (a task object trained into a run directory)."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .protocol import Loader, ResumableLoader, RunTask, StepOutput, TrainingTask
from .run import fit_run
from .trainer import Callback, TrainConfig, Trainer, TrainingStopped, detach_state, evaluate_batches

__all__ = [
    "Callback", "StepOutput", "TrainConfig", "Trainer", "TrainingStopped", "detach_state", "evaluate_batches",
    "TrainingTask", "RunTask", "Loader", "ResumableLoader", "fit_run",
    "CheckpointError", "save_checkpoint", "load_checkpoint",
]
