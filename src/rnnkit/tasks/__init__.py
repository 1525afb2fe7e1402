"""Tasks: each wires one data source, one model, one loss, its metrics and decoding together."""
from .base import TASKS, IndexLoader, Task, TensorData, all_tasks, get_task, register

__all__ = ["TASKS", "Task", "TensorData", "IndexLoader", "get_task", "all_tasks", "register"]
