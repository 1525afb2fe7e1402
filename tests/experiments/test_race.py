"""The cell race: contestants parsed and checked, the reference always raced (first where the list
lacks it), every contestant a run of the same time on the same data, results.json, the table
sorted with the reference named, the plot; the command line's one-line errors."""
import json
import random

import pytest

from rnnkit.cli import main
from rnnkit.experiments.race import REFERENCE, Contestant, RaceConfig, format_table, parse_contestant
from rnnkit.tasks.charlm import CharLMTask
from rnnkit.training import TrainConfig

MINUTES = 0.05  # 3 s per contestant, data preparation included


def _text(n: int = 20_000) -> str:
    rng = random.Random(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler"]
    return " ".join(rng.choice(words) for _ in range(n // 4))[:n]


@pytest.fixture(scope="module")
def race(tmp_path_factory):
    """One race through the command line: the reference (added), gru:16, rnn:16x2."""
    root = tmp_path_factory.mktemp("race")
    (root / "text.txt").write_text(_text())
    out = root / "out"
    argv = ["experiment", "race", "--task", "charlm", "--minutes", str(MINUTES), "--cells", "gru:16", "rnn:16x2",
            "--data", str(root / "text.txt"), "--batch-size", "4", "--seq-len", "20", "--threads", "1",
            "--out", str(out)]
    return out, argv, main(argv)


# -- contestants ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("lstm", Contestant("lstm", 512, 1)),
    ("lstm:512", REFERENCE),
    ("gru:1024x2", Contestant("gru", 1024, 2)),
    ("rnn_relu:64x3", Contestant("rnn_relu", 64, 3)),
])
def test_a_spec_is_cell_hidden_and_layers(text, expected):
    assert parse_contestant(text) == expected
    assert parse_contestant(expected.spec) == expected  # the canonical spec reads back


@pytest.mark.parametrize("text, words", [
    ("lstm:", "is not CELL\\[:HIDDEN\\[xLAYERS\\]\\]"),
    ("lstm:abc", "is not CELL"),
    ("lstm:512x", "is not CELL"),
    ("lstm:512:2", "is not CELL"),
    ("lstm x2", "is not CELL"),
    ("", "is not CELL"),
    ("tcn:128", "unknown cell 'tcn'; cells: rnn, "),
    ("lstm:0", "HIDDEN and LAYERS must be >= 1, got 0 and 1"),
    ("gru:64x0", "HIDDEN and LAYERS must be >= 1, got 64 and 0"),
])
def test_a_bad_spec_is_one_clear_error(text, words):
    with pytest.raises(ValueError, match=f"RaceConfig: contestant '{text}'.*{words}"):
        parse_contestant(text)


def test_the_reference_is_always_raced_first_where_the_list_lacks_it():
    assert RaceConfig(cells=("gru:256", "rnn"), minutes=1).contestants == (
        REFERENCE, Contestant("gru", 256, 1), Contestant("rnn", 512, 1))
    assert RaceConfig(cells=("gru", "lstm:512x1"), minutes=1).contestants == (Contestant("gru", 512, 1), REFERENCE)
    assert RaceConfig(cells=("lstm:512x2",), minutes=1).contestants == (REFERENCE, Contestant("lstm", 512, 2))


def test_the_defaults_are_charlms():
    cfg = RaceConfig(cells=("gru",), minutes=1)
    assert (cfg.batch_size, cfg.seq_len, cfg.lr) == (CharLMTask.train_defaults["batch_size"], 100,
                                                     CharLMTask.train_defaults["lr"])
    assert cfg.epochs == 1000  # not charlm's 2: the time budget must end every contestant


@pytest.mark.parametrize("changes, words", [
    (dict(cells=("gru", "gru:512x1")), "contestant gru:512 is named twice \\('gru' and 'gru:512x1'\\)"),
    (dict(cells=("lstm", "lstm:512")), "contestant lstm:512 is named twice"),
    (dict(cells=()), "cells must name one or more contestants"),
    (dict(minutes=0), "minutes must be a number > 0, got 0"),
    (dict(minutes=-1.5), "minutes must be a number > 0, got -1.5"),
    (dict(minutes=float("nan")), "minutes must be a number > 0, got nan"),
    (dict(task="adding"), "task must be charlm .*got 'adding'"),
    (dict(batch_size=0), "batch_size must be >= 1, got 0"),
    (dict(threads=0), "threads must be >= 1, got 0"),
    (dict(epochs=0), "epochs must be >= 1, got 0"),
    (dict(lr=0.0), "lr must be a number > 0"),
])
def test_the_config_rejects_bad_values(changes, words):
    with pytest.raises(ValueError, match=f"RaceConfig: {words}"):
        RaceConfig(**{"cells": ("gru",), "minutes": 1, **changes})


# -- one race ---------------------------------------------------------------------------------------

def test_the_race_writes_a_run_per_contestant_and_its_files(race, capsys):
    out, _, status = race
    assert status == 0
    names = ["1-lstm-512x1", "2-gru-16x1", "3-rnn-16x2"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == names
    for name in names:
        assert (out / "runs" / name / "summary.json").is_file() and (out / "runs" / name / "model.safetensors").is_file()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_contestant_trains_the_same_time_on_the_same_data(race):
    out, _, _ = race
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert [r["spec"] for r in rows] == ["lstm:512", "gru:16", "rnn:16x2"] == results["config"]["contestants"]
    assert [r["reference"] for r in rows] == [True, False, False]
    configs = [json.loads((out / "runs" / p / "config.json").read_text()) for p in ("1-lstm-512x1", "2-gru-16x1")]
    # the reference is `rnnkit train charlm --max-minutes M --epochs 1000` with the race's batch and data
    plain = TrainConfig(**{**CharLMTask.train_defaults, "max_minutes": MINUTES, "batch_size": 4, "epochs": 1000})
    assert configs[0]["train"] == configs[1]["train"] == results["train"] == json.loads(json.dumps(vars(plain)))
    assert configs[0]["options"]["data"] == configs[1]["options"]["data"]
    for r, (hidden, layers) in zip(rows, [(512, 1), (16, 1), (16, 2)]):
        summary = json.loads((out / "runs" / r["run"].split("/")[-1] / "summary.json").read_text())
        assert (r["hidden_size"], r["num_layers"]) == (hidden, layers)
        assert r["stopped"] == f"time budget of {MINUTES} min reached" and r["error"] is None
        assert (r["parameters"], r["steps"], r["train_seconds"]) == (summary["parameters"], summary["steps"],
                                                                    summary["train_seconds"])
        assert (r["best_val_loss"], r["test_loss"]) == (summary["best_val_loss"], summary["test_loss"])
        assert r["test_evaluated_fraction"] == summary.get("test_evaluated_fraction", 1.0)
        # the characters trained on, as the trainer counted them (charlm's samples are characters)
        progress = json.loads((out / "runs" / r["run"].split("/")[-1] / "checkpoints/last/trainer.json").read_text())
        assert r["characters"] == progress["progress"]["timing"]["samples"] > 0
        assert r["chars_per_s"] == pytest.approx(r["characters"] / r["train_seconds"])
        assert r["torch_threads"] == 1 and len(r["load_average_before"]) == len(r["load_average_after"]) == 3
        # the validation curve: seconds and characters grow; its best point is the best validation loss
        seconds, chars, losses = zip(*r["val_curve"])
        assert len(losses) >= 2 and list(seconds) == sorted(seconds) and list(chars) == sorted(chars)
        assert 0 < seconds[-1] <= r["train_seconds"] and chars[-1] == r["characters"]
        assert min(losses) == pytest.approx(r["best_val_loss"])
    assert results["baselines"]["5gram_test_loss"] > 0


def test_the_table_is_sorted_by_validation_loss_and_names_the_reference(race):
    out, _, _ = race
    rows = json.loads((out / "results.json").read_text())["rows"]
    lines = [line for line in (out / "table.md").read_text().splitlines() if line.startswith("| ") and "---" not in line]
    assert len(lines) == 1 + len(rows)
    body = lines[1:]
    ordered = sorted(rows, key=lambda r: r["best_val_loss"])
    assert [line.split(" | ")[1].split()[-1] for line in body] == [r["spec"] for r in ordered]
    reference = next(line for line in body if "**reference** lstm:512" in line)
    assert reference.split(" | ")[8] == "0"
    ref_val = rows[0]["best_val_loss"]
    for line, r in zip(body, ordered):
        assert line.split(" | ")[7] == f"{r['best_val_loss']:.4f}"
        if not r["reference"]:
            assert line.split(" | ")[8] == f"{r['best_val_loss'] - ref_val:+.4f}"


def test_a_failed_contestant_sorts_last_without_figures():
    row = dict(spec="gru:16", reference=False, parameters=None, steps=None, characters=None, train_seconds=None,
               chars_per_s=None, best_val_loss=None, test_loss=None, load_average_before=None,
               load_average_after=None, stopped="loss is nan at step 3", device=None, torch_threads=1)
    ref = {**row, "spec": "lstm:512", "reference": True, "best_val_loss": 2.5, "test_loss": 2.6, "steps": 10,
           "device": "cpu", "stopped": "time budget of 1 min reached", "test_evaluated_fraction": 0.5}
    results = {"config": {"data": "", "seed": 0, "minutes": 1, "seq_len": 100}, "baselines": {},
               "train": vars(TrainConfig()), "rows": [row, ref], "machine": {"cpus": 2}}
    body = [line for line in format_table(results).splitlines() if line.startswith("| ")][1:]  # (after the header)
    assert "**reference** lstm:512" in body[0] and "| 2.5000 | 0 | 2.6000 (50% of the test split) |" in body[0]
    assert "| gru:16 | — |" in body[1] and "loss is nan at step 3" in body[1]


def test_the_command_line_prints_a_line_per_contestant_and_refuses_to_overwrite(race, capsys):
    out, argv, _ = race
    assert main(argv) == 2  # the runs are there already: nothing is overwritten
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds race runs" in err[0]


@pytest.mark.parametrize("cells, words", [
    (["lstm:abc"], "contestant 'lstm:abc' is not CELL[:HIDDEN[xLAYERS]]"),
    (["tcn"], "unknown cell 'tcn'"),
    (["gru", "gru:512"], "contestant gru:512 is named twice"),
])
def test_bad_contestants_are_one_line_errors_that_leave_nothing_behind(tmp_path, capsys, cells, words):
    assert main(["experiment", "race", "--minutes", "1", "--cells", *cells, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnnkit: error: RaceConfig: ") and words in err[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("args, words", [
    (["--minutes", "0", "--cells", "gru"], "minutes must be a number > 0, got 0.0"),
    (["--minutes", "-2", "--cells", "gru"], "minutes must be a number > 0, got -2.0"),
    (["--minutes", "1", "--cells", "gru", "--data", "missing.txt"], "charlm: --data missing.txt is not a file"),
])
def test_bad_budgets_and_data_are_one_line_errors(tmp_path, capsys, args, words):
    assert main(["experiment", "race", *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not (tmp_path / "x" / "runs").exists()


@pytest.mark.parametrize("args, words", [
    (["--task", "adding", "--minutes", "1", "--cells", "gru"], "argument --task: invalid choice: 'adding'"),
    (["--minutes", "1"], "the following arguments are required: --cells"),
    (["--minutes", "soon", "--cells", "gru"], "argument --minutes: invalid float value: 'soon'"),
])
def test_usage_errors_are_one_line_with_status_2(capsys, args, words):
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", "race", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
