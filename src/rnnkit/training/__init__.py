"""Training: the model-agnostic trainer, checkpoints, distributed helpers and runs."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .trainer import Callback, StepOutput, TrainConfig, Trainer, TrainingStopped, detach_state

__all__ = [
    "Callback", "StepOutput", "TrainConfig", "Trainer", "TrainingStopped", "detach_state",
    "CheckpointError", "save_checkpoint", "load_checkpoint",
]
