"""The server's parts without a server: settings, what a task may be sent, strict JSON, the
micro-batcher's split and its fallback when one request of a batch is bad."""
from __future__ import annotations

import asyncio

import pytest

from rnnkit.serve import Inputs, RequestError, ServeConfig, finite_json, inputs_of
from rnnkit.serve.batching import MicroBatcher
from rnnkit.serve.models import ServedModel
from rnnkit.serve.requests import parse_generate, parse_predict
from rnnkit.tasks import Task
from rnnkit.tasks.charlm import CharLMGenerateOptions
from rnnkit.tasks.forecast import ForecastPredictOptions
from rnnkit.tasks.sentiment import SentimentTask


@pytest.mark.parametrize("field, value", [("port", -1), ("max_batch", 0), ("max_inputs", True),
                                          ("batch_wait_ms", float("nan")), ("max_steps", 1.5)])
def test_config_refuses_bad_settings_naming_them(field, value):
    with pytest.raises(ValueError, match=field):
        ServeConfig(**{field: value})


def test_a_task_must_say_what_its_predict_reads():
    class PathTask(Task):
        name = "pathtask"

    with pytest.raises(ValueError, match="serve_inputs"):
        inputs_of(PathTask)
    PathTask.serve_inputs = Inputs("text")
    assert inputs_of(PathTask).json == "text"
    assert inputs_of(SentimentTask) == Inputs("text")


def test_finite_json_names_the_non_finite_value():
    assert finite_json({"a": [1.5, None]}) == b'{"a": [1.5, null]}'
    with pytest.raises(RequestError) as e:
        finite_json({"outputs": [{"p": 0.5}, {"p": float("nan")}]})
    assert (e.value.status, e.value.field) == (500, "outputs[1].p")


def test_parsing_checks_each_field():
    config = ServeConfig(max_inputs=2, max_steps=10)
    req = parse_predict({"inputs": [1, 2.5, "3"], "horizon": 4}, Inputs("number", per_input=False),
                        ForecastPredictOptions, config)
    assert req.inputs == ("1.0", "2.5", "3") and req.options == (("horizon", 4),)
    for body, status, field in [({"inputs": [1, 2, 3]}, 413, "inputs"), ({"inputs": [1], "horizon": None}, None, None)]:
        if status is None:
            assert parse_predict(body, Inputs("number"), ForecastPredictOptions, config).options == (("horizon", None),)
            continue
        with pytest.raises(RequestError) as e:
            parse_predict(body, Inputs("text"), ForecastPredictOptions, config)
        assert (e.value.status, e.value.field) == (status, field)
    assert parse_generate({"length": 5, "temperature": 1}, CharLMGenerateOptions, config).options == {
        "length": 5, "temperature": 1.0}
    with pytest.raises(RequestError) as e:
        parse_generate({"length": 11}, CharLMGenerateOptions, config)
    assert (e.value.status, e.value.field) == (413, "length")


class _EchoRun:
    """A stand-in for RunModel: one row per input; "bad" is a ValueError, as a task's own check."""

    def __init__(self):
        self.calls = []

    def predict(self, inputs, **options):
        self.calls.append(list(inputs))
        if "bad" in inputs:
            raise ValueError("bad input")
        return [{"input": s, "upper": s.upper()} for s in inputs]


def test_the_batcher_splits_rows_back_and_isolates_a_bad_request():
    async def main():
        run = _EchoRun()
        model = ServedModel("echo", run, Inputs("text"))
        batcher = MicroBatcher(model, max_batch=8, wait=0.05)
        batcher.start()
        jobs = [("a", "b"), ("c",), ("bad",), ("d", "e", "f")]
        results = await asyncio.gather(*(batcher.predict(j, ()) for j in jobs), return_exceptions=True)
        await batcher.stop()
        return run, results

    run, results = asyncio.run(main())
    assert run.calls[0] == ["a", "b", "c", "bad", "d", "e", "f"]  # one call for all four
    assert sorted(run.calls[1:]) == [["a", "b"], ["bad"], ["c"], ["d", "e", "f"]]  # then one by one
    assert [r["upper"] for r in results[0].rows] == ["A", "B"] and results[3].rows[2]["input"] == "f"
    assert isinstance(results[2], ValueError)


@pytest.mark.parametrize("args, expected", [
    (["/nonexistent/run"], "/nonexistent/run"),
    (["RUN", "RUN"], "two runs are named"),
])
def test_command_line_errors_are_one_line(runs, args, expected):
    import os
    import subprocess
    import sys

    args = [str(runs["digits"]) if a == "RUN" else a for a in args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RNNKIT_DEBUG", None)
    done = subprocess.run([sys.executable, "-m", "rnnkit", "serve", *args, "--port", "1"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr, done.stderr


def test_every_built_in_task_says_what_its_predict_reads():
    from rnnkit.tasks import all_tasks

    for name, cls in all_tasks().items():
        if cls.__module__.startswith("rnnkit.tasks."):
            inputs_of(cls)  # raises for a task serve would refuse at start-up


def test_a_request_cannot_name_a_file_for_the_server_to_write():
    from rnnkit.tasks.music import MusicGenerateOptions

    with pytest.raises(RequestError) as e:
        parse_generate({"bars": 2, "out": "/tmp/x.mid"}, MusicGenerateOptions, ServeConfig())
    assert e.value.field == "out" and "may not set it" in str(e.value)
    assert parse_generate({"bars": 2}, MusicGenerateOptions, ServeConfig()).options == {"bars": 2}
