"""Every built-in task keeps the protocols: the run protocol the trainer relies on
(``rnnkit.training.RunTask``), dataclasses for every set of options the command line fills,
and ``predict`` / ``generate`` that take those options."""
import dataclasses
import inspect

import pytest

from rnnkit.tasks import TASKS, IndexLoader, StreamLoader, TensorData, all_tasks, get_task
from rnnkit.training import ResumableLoader, RunTask

BUILT_IN = ["adding", "alarm", "caption", "charlm", "copy", "digits", "forecast", "genome", "mnist", "music", "recommend",
            "sensors", "sentiment", "speech", "tagging", "translate"]


def test_every_module_of_the_package_registers_its_task():
    assert set(BUILT_IN) <= set(all_tasks())
    assert all_tasks() is not TASKS  # a copy: the registry changes only through register


@pytest.mark.parametrize("name", BUILT_IN)
def test_each_task_keeps_the_protocols(name):
    cls = get_task(name)
    task = cls(cls.Options())  # the defaults are valid options
    assert isinstance(task, RunTask)
    assert task.mode in ("max", "min") and task.description and task.default_data
    for options in (cls.Options, cls.PredictOptions):
        assert dataclasses.is_dataclass(options)
        options()  # every field has a default
    assert list(inspect.signature(cls.predict).parameters) == ["self", "model", "inputs", "options"]
    assert list(inspect.signature(cls.generate).parameters) == ["self", "model", "options"]
    assert cls.GenerateOptions is None or dataclasses.is_dataclass(cls.GenerateOptions)
    assert (cls.GenerateOptions is not None) == (name in ("charlm", "music"))


def test_the_task_loaders_resume_exactly():
    import torch

    from rnnkit.data import StreamBatcher

    data = TensorData({"x": torch.zeros(10, 3)})
    assert isinstance(IndexLoader(data, 4, shuffle=True), ResumableLoader)
    assert isinstance(StreamLoader(StreamBatcher(torch.arange(100), 2, 5)), ResumableLoader)


def test_an_unknown_task_names_the_choices():
    with pytest.raises(ValueError, match="unknown task .nosuch.; choose one of: adding, alarm, caption, charlm, copy, digits, forecast, genome"):
        get_task("nosuch")
