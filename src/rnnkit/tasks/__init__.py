"""Tasks: each wires one data source, one model, one loss, its metrics and decoding together.

One module per task; ``register`` makes a task (from here or anywhere else) known by name.
"""
from .base import (ENTRY_POINT_GROUP, TASKS, IndexLoader, NoOptions, StreamLoader, Task, TensorData, all_tasks,
                   get_task, register)

__all__ = ["TASKS", "ENTRY_POINT_GROUP", "Task", "NoOptions", "TensorData", "IndexLoader", "StreamLoader", "get_task",
           "all_tasks", "register"]
