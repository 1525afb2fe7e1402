"""The memory experiment: every (length, cell) run under the budget, the table, results.json and
plots agree with the runs, "steps to solve" with the validation curve; the command line."""
import json

import pytest

from rnnkit.cli import main
from rnnkit.experiments.memory import MemoryExperimentConfig, run_memory_experiment
from rnnkit.runs import evaluate

TINY = dict(hidden_size=16, lr=1e-2, eval_every=20, val_size=100, test_size=200, max_minutes=0)


def test_adding_experiment_writes_table_results_and_plots(tmp_path):
    cfg = MemoryExperimentConfig(task="adding", lengths=(2, 6), cells=("rnn", "lstm"), steps=200, **TINY,
                                 stop_when_solved=False)
    seen = []
    results = run_memory_experiment(cfg, tmp_path, on_result=seen.append)
    for name in ("table.md", "results.json", "curves.png", "gradients.png"):
        assert (tmp_path / name).stat().st_size > 0
    rows = results["rows"]
    assert [(r["T"], r["cell"]) for r in rows] == [(2, "rnn"), (2, "lstm"), (6, "rnn"), (6, "lstm")] and seen == rows
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == json.loads(json.dumps(rows))
    for r in rows:
        assert r["steps"] == 200  # the step budget, exactly
        curve = results["curves"][f"adding-T{r['T']}-{r['cell']}"]
        assert [step for step, _ in curve] == list(range(20, 201, 20))
        # steps to solve: the first validation MSE under 0.01, as the curve says
        below = [step for step, mse in curve if mse < 0.01]
        assert r["steps_to_solve"] == (below[0] if below else None)
        assert r["solved"] == (r["test_mse"] < 0.01)
        assert len(results["gradient_flow"][f"adding-T{r['T']}-{r['cell']}"]) == r["T"]
        # each run is a run directory: evaluating it again gives the table's test MSE
        assert evaluate(r["run"])["test_mse"] == pytest.approx(r["test_mse"], rel=1e-5)
    assert rows[1]["solved"] and rows[1]["steps_to_solve"] is not None  # an LSTM learns T = 2 in 200 steps
    table = (tmp_path / "table.md").read_text().splitlines()
    assert "budget per run: at most 200 steps" in table[0]
    assert len([line for line in table if line.startswith("| ")]) == 1 + len(rows)
    assert "| 2 | lstm | 200 |" in table[5] and f"| {rows[1]['steps_to_solve']} | yes |" in table[5]


def test_a_run_stops_at_its_first_solving_validation(tmp_path):
    cfg = MemoryExperimentConfig(task="adding", lengths=(2,), cells=("lstm",), steps=200, **TINY)
    (row,) = run_memory_experiment(cfg, tmp_path)["rows"]
    solved_at = row["steps_to_solve"]
    assert solved_at is not None and solved_at < 200  # as in the 200-step run above
    assert row["steps"] == solved_at and row["stopped"] == f"solved at step {solved_at} (val mse)"
    curve = json.loads((tmp_path / "results.json").read_text())["curves"]["adding-T2-lstm"]
    assert curve[-1][0] == solved_at and curve[-1][1] < 0.01 and all(mse >= 0.01 for _, mse in curve[:-1])
    assert row["solved"] == (row["test_mse"] < 0.01)


def test_copy_experiment_and_the_time_budget(tmp_path):
    cfg = MemoryExperimentConfig(task="copy", lengths=(3,), cells=("gru",), steps=0,
                                 **{**TINY, "max_minutes": 0.002})  # 0.12 s: a few steps
    results = run_memory_experiment(cfg, tmp_path)
    (row,) = results["rows"]
    assert row["stopped"] == "time budget of 0.002 min reached" and row["steps"] >= 1
    # the budget cut the run's own test evaluation short: the table's are of the whole test set
    summary = json.loads((tmp_path / "runs" / "copy-T3-gru" / "summary.json").read_text())
    assert summary["test_evaluated_fraction"] < 1.0 and row["test_evaluated_fraction"] == 1.0
    assert row["test_accuracy"] == pytest.approx(evaluate(row["run"])["test_accuracy"], rel=1e-6)
    assert row["test_baseline_loss"] == pytest.approx(10 * 2.0794415416798357 / 23)
    assert 0.0 <= row["test_accuracy"] <= 1.0
    assert "test copy accuracy" in (tmp_path / "table.md").read_text()


@pytest.mark.parametrize("changes, words", [
    (dict(task="parity"), "task must be one of adding, copy, got 'parity'"),
    (dict(lengths=(1, 50)), "lengths must be one or more ints >= 2 for task adding, got \\[1, 50\\]"),
    (dict(lengths=()), "lengths must be one or more ints"),
    (dict(cells=("lstm", "tcn")), "cells must be one or more of .*got \\['lstm', 'tcn'\\]"),
    (dict(cells=("lstm", "lstm")), "lengths and cells must not repeat"),
    (dict(max_minutes=0, steps=0), "give a budget: max_minutes > 0 and/or steps > 0"),
    (dict(steps=-1), "give a budget"),
    (dict(eval_every=0), "eval_every must be >= 1, got 0"),
])
def test_config_rejects_bad_values(changes, words):
    with pytest.raises(ValueError, match=f"MemoryExperimentConfig: {words}"):
        MemoryExperimentConfig(**changes)


def test_command_line(tmp_path, capsys):
    out = tmp_path / "exp"
    argv = ["experiment", "memory", "--task", "adding", "--lengths", "3", "--cells", "gru", "--steps", "20",
            "--max-minutes", "0", "--eval-every", "10", "--val-size", "50", "--test-size", "50", "--hidden-size", "8",
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "adding T=3 gru: 20 steps" in printed and f"wrote {out}/table.md" in printed
    assert json.loads((out / "results.json").read_text())["config"]["lengths"] == [3]
    assert main(argv) == 2  # the runs are there already: nothing is overwritten
    assert "already holds experiment runs" in capsys.readouterr().err
    assert main(["experiment", "memory", "--cells", "tcn", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cells must be one or more of" in err[0]
    assert main(["experiment"]) == 2
    assert "experiment: name one" in capsys.readouterr().err
