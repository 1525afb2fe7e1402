"""forecast's --normalize/--difference auto: chosen on the validation part only, recorded in
preprocess.json, config.json and summary.json, printed by `rnnkit train`."""
import json

import numpy as np
import pytest

from rnnkit.cli import main as cli_main
from rnnkit.tasks.forecast import ForecastOptions, ForecastTask

pytest.importorskip("sklearn")


def _trend_csv(path, n=200, slope=2.0) -> str:
    """A series that climbs far above its training range: what the global scaler cannot read."""
    t = np.arange(n)
    y = 100 + slope * t + 10 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(0).normal(0, 1, n)
    path.write_text("value\n" + "\n".join(repr(float(v)) for v in y) + "\n")
    return str(path)


def _task(csv, **options) -> ForecastTask:
    return ForecastTask(ForecastOptions(**{"data": csv, "column": "value", "season": 12, "window": 12,
                                           "arima": "off", **options}))


def test_a_trending_series_is_not_read_with_the_global_scaler_alone(tmp_path):
    task = _task(_trend_csv(tmp_path / "s.csv"))
    task.prepare(0)
    chosen = task.meta["chosen"]
    assert (task.options.normalize, task.options.difference) == (chosen["normalize"], chosen["difference"])
    assert set(chosen["val_rmse"]) == {f"{n}/{d}" for n in ("global", "window") for d in ("none", "first", "seasonal")}
    assert min(chosen["val_rmse"].values()) == chosen["val_rmse"][f"{chosen['normalize']}/{chosen['difference']}"]
    assert chosen["val_rmse"]["global/none"] > 2 * min(chosen["val_rmse"].values())
    assert f"{chosen['normalize']}/{chosen['difference']}" != "global/none"


def test_only_the_options_left_at_auto_are_chosen_and_the_test_part_is_never_read(tmp_path):
    values = np.loadtxt(_trend_csv(tmp_path / "a.csv"), skiprows=1)
    changed = values.copy()
    changed[-30:] = changed[-30:] * -5  # a test part unlike anything before it
    (tmp_path / "b.csv").write_text("value\n" + "\n".join(repr(float(v)) for v in changed) + "\n")
    a, b = _task(str(tmp_path / "a.csv"), normalize="window"), _task(str(tmp_path / "b.csv"), normalize="window")
    a.prepare(0), b.prepare(0)
    assert a.meta["chosen"] == b.meta["chosen"] and a.options.normalize == "window"
    assert set(a.meta["chosen"]["val_rmse"]) == {"window/none", "window/first", "window/seasonal"}
    fixed = _task(str(tmp_path / "a.csv"), normalize="global", difference="none")
    fixed.prepare(0)
    assert "chosen" not in fixed.meta


def test_the_choice_is_recorded_in_the_run_and_printed(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(["train", "forecast", "--data", _trend_csv(tmp_path / "s.csv"), "--column", "value",
                     "--season", "12", "--window", "12", "--arima", "off", "--hidden-size", "4", "--max-steps", "2",
                     "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    chosen = summary["chosen"]
    assert json.loads((out / "preprocess.json").read_text())["chosen"] == chosen
    assert config["options"]["normalize"] == chosen["normalize"] and config["options"]["difference"] == chosen["difference"]
    assert f"chosen for this data: " in printed and f'"normalize": "{chosen["normalize"]}"' in printed
    assert "baseline_naive_test_rmse" in summary and "baselines (lower is better)" in printed
    assert cli_main(["evaluate", str(out)]) == 0  # a loaded run uses the recorded choice
