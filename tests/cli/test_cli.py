"""The `rnnkit` command: user errors are one line on stderr (no traceback) and change nothing;
the happy paths write and read run directories as DESIGN.md describes."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

LABELS = [str(d) for d in range(10)]


def _rnnkit(args, cwd, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RNNKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "rnnkit", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _files(directory: Path) -> dict:
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One short digits run that the tests below share (read-only)."""
    cwd = tmp_path_factory.mktemp("cli")
    result = _rnnkit(["train", "digits", "--epochs", "2", "--hidden-size", "16", "--no-progress", "--out", "run"], cwd)
    assert result.returncode == 0, result.stderr
    assert "test_accuracy" in result.stdout
    return cwd / "run"


# -- user errors ---------------------------------------------------------------------------

def _assert_one_line_error(result, expected: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("args, expected", [
    (["train", "nosuch"], "nosuch"),
    (["train"], "task"),
    (["nosuch"], "nosuch"),
    (["evaluate", "/nonexistent"], "/nonexistent"),
    (["predict", "/nonexistent", "3"], "/nonexistent"),
    (["train", "digits", "--epochs", "abc", "--out", "x"], "--epochs"),
    (["train", "digits", "--lr", "-1", "--out", "x"], "lr"),
    (["train", "digits", "--lr", "nan", "--out", "x"], "lr"),
    (["train", "digits", "--max-minutes", "nan", "--out", "x"], "max_minutes"),
    (["train", "digits", "--dropout", "nan", "--out", "x"], "dropout"),
    (["train", "digits", "--cell", "nosuch", "--out", "x"], "nosuch"),
    (["train", "digits", "--bogus", "--out", "x"], "--bogus"),
    (["train", "digits", "--out", "x", "--resume"], "--resume"),
    (["train", "digits", "--out", "x", "--config", "missing.toml"], "--config"),
])
def test_user_errors_are_one_line_and_leave_nothing_behind(tmp_path, args, expected):
    _assert_one_line_error(_rnnkit(args, tmp_path), expected)
    assert not (tmp_path / "x").exists()


def test_resume_of_an_empty_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "x").mkdir()
    _assert_one_line_error(_rnnkit(["train", "digits", "--out", "x", "--resume"], tmp_path), "--resume")
    assert list((tmp_path / "x").iterdir()) == []


@pytest.mark.parametrize("toml, expected", [
    ("epochs = 1\nbogus = 3\n", "bogus"),
    ("[train]\nepochs = \"three\"\n", "epochs"),
    ("epochs = \n", "TOML"),
])
def test_bad_config_files_are_one_line_errors(tmp_path, toml, expected):
    (tmp_path / "bad.toml").write_text(toml)
    _assert_one_line_error(_rnnkit(["train", "digits", "--config", "bad.toml", "--out", "x"], tmp_path), expected)
    assert not (tmp_path / "x").exists()


def test_training_into_an_existing_run_without_resume_is_refused_and_touches_nothing(run):
    before = _files(run)
    _assert_one_line_error(_rnnkit(["train", "digits", "--epochs", "1", "--out", run], run.parent), "--resume")
    assert _files(run) == before


@pytest.mark.parametrize("args, expected", [
    (["generate", "{run}"], "generate"),
    (["predict", "{run}", "99999"], "99999"),
    (["predict", "{run}", "notes.txt"], "notes.txt"),
    (["predict", "{run}", "missing.png"], "missing.png"),
    (["evaluate", "{run}", "--data", "notes.txt"], "--data"),
])
def test_errors_about_a_trained_run_are_one_line(run, tmp_path, args, expected):
    (tmp_path / "notes.txt").write_text("not an image, not numbers\n")
    before = _files(run)
    _assert_one_line_error(_rnnkit([a.format(run=run) for a in args], tmp_path), expected)
    assert _files(run) == before


def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "other" / "preprocess.json").write_text("{}")
    _assert_one_line_error(_rnnkit(["evaluate", "other"], tmp_path), "config.json")


# -- happy paths ---------------------------------------------------------------------------

def test_tasks_lists_digits(tmp_path):
    result = _rnnkit(["tasks"], tmp_path)
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines() if line and not line[0].isspace()]
    assert "digits" in names and names == sorted(names)
    assert "test_accuracy" in result.stdout


def test_the_console_script_is_installed(tmp_path):
    script = Path(sys.executable).parent / "rnnkit"
    if not script.exists():
        pytest.skip("no rnnkit console script beside this Python")
    result = subprocess.run([str(script), "tasks"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "digits" in result.stdout


def test_train_writes_every_run_file(run):
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "digits"
    assert config["options"]["hidden_size"] == 16
    assert config["train"]["epochs"] == 2 and config["train"]["lr"] == 3e-3  # the task's default
    assert json.loads((run / "preprocess.json").read_text())["labels"] == LABELS

    weights = load_file(run / "model.safetensors")
    assert "head.weight" in weights and weights["head.weight"].shape == (10, 2 * 16)
    for name in ("model.safetensors", "optimizer.safetensors", "trainer.json"):
        assert (run / "checkpoints" / "last" / name).is_file()

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in records} == {"train", "val"}
    keys = [(r["split"], r["step"]) for r in records]
    assert len(keys) == len(set(keys))
    assert [r["step"] for r in records if r["split"] == "val"] == [23, 46]  # the end of each epoch
    assert all("train_loss" in r and "lr" in r for r in records if r["split"] == "train")

    summary = json.loads((run / "summary.json").read_text())
    for key in ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "best_val_accuracy"):
        assert 0 <= summary[key] < 10, key
    assert summary["steps"] == 46 and summary["epochs"] == 2
    assert summary["best_val_accuracy"] == max(r["val_accuracy"] for r in records if r["split"] == "val")

    plots = sorted(p.name for p in (run / "plots").glob("*.png"))
    assert plots == ["accuracy.png", "confusion.png", "loss.png"]  # confusion: the test split
    for name in plots:
        assert (run / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    leftovers = [p.name for p in run.rglob("*") if p.name.endswith((".tmp", ".old"))]
    assert leftovers == []


def test_evaluate_reproduces_the_summary(run, tmp_path):
    summary = json.loads((run / "summary.json").read_text())
    result = _rnnkit(["evaluate", run, "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["test_accuracy"] == summary["test_accuracy"]
    assert metrics["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-9)


def test_evaluate_on_a_data_file(run, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = np.hstack([digits.data[:20], digits.target[:20, None]])  # 64 pixels (0-16) + label
    np.savetxt(tmp_path / "some.csv", rows, delimiter=",", fmt="%d")
    result = _rnnkit(["evaluate", run, "--data", "some.csv", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert 0 <= metrics["data_accuracy"] <= 1 and metrics["data_accuracy"] * 20 == round(metrics["data_accuracy"] * 20)


def test_predict_prints_one_json_line_per_input(run, tmp_path):
    result = _rnnkit(["predict", run, "0", "5"], tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in rows] == ["0", "5"]
    for r in rows:
        assert r["label"] in LABELS
        assert 0.1 <= r["probability"] <= 1


def test_predict_reads_an_image_file(run, tmp_path):
    from PIL import Image, ImageDraw

    img = Image.new("L", (32, 32), 255)  # a dark "1" on white paper
    ImageDraw.Draw(img).line([(16, 4), (16, 28)], fill=0, width=5)
    img.save(tmp_path / "one.png")
    result = _rnnkit(["predict", run, "one.png", "7"], tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in rows] == ["one.png", "7"]
    assert all(r["label"] in LABELS for r in rows)


def test_config_file_sets_options_and_flags_win(tmp_path):
    (tmp_path / "opts.toml").write_text(
        '[train]\nepochs = 3\nlr = 0.01\nbatch_size = 128\n\n[options]\ncell = "gru"\nhidden_size = 8\n'
    )
    result = _rnnkit(["train", "digits", "--config", "opts.toml", "--epochs", "1", "--no-progress", "--out", "c"],
                     tmp_path)
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["train"]["epochs"] == 1  # the flag
    assert config["train"]["lr"] == 0.01 and config["train"]["batch_size"] == 128  # the file
    assert config["options"]["cell"] == "gru" and config["options"]["hidden_size"] == 8
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["steps"] == 12  # 1,438 / 128
    assert load_file(tmp_path / "c" / "model.safetensors")["rnn.weight_ih_l0"].shape == (3 * 8, 8)  # GRU: r, z, n


def test_resume_can_extend_a_finished_run(run, tmp_path):
    copy = tmp_path / "more"
    shutil.copytree(run, copy)
    result = _rnnkit(["train", "digits", "--out", copy, "--resume", "--epochs", "3", "--no-progress"], tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((copy / "summary.json").read_text())
    assert summary["steps"] == 69 and summary["epochs"] == 3
    assert json.loads((copy / "config.json").read_text())["options"]["hidden_size"] == 16  # kept from the run
    records = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "val"] == [23, 46, 69]
