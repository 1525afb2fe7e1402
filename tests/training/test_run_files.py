"""Run directories read back only as they were written (issue 13).

A manifest of sha256 hashes is kept beside the run files and every reader checks it; weights
with NaN or inf are refused; each run file of the wrong structure is one error naming the file
and the field; a config.json that describes a model larger than memory is refused before
anything is allocated; ``evaluate RUN`` refuses data files that changed since training; and
what the command line prints as JSON is always strict JSON.
"""
import hashlib
import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import rnnkit
from rnnkit.cli import main
from rnnkit.runs import evaluate, train
from rnnkit.tasks.digits import DigitsOptions
from rnnkit.tasks.sentiment import SentimentOptions
from rnnkit.training import CheckpointError, TrainConfig
from rnnkit.training.runfiles import MANIFEST, RUN_FILES


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny digits run (3 steps) that each test copies."""
    out = tmp_path_factory.mktemp("run-files") / "run"
    train("digits", DigitsOptions(hidden_size=8), TrainConfig(epochs=1, max_steps=3, batch_size=32), out, progress=False)
    return out


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def rehash(run_dir) -> None:
    """Rewrite the manifest for the files as they are now (a change made to look legitimate)."""
    entries = {name: hashlib.sha256((run_dir / name).read_bytes()).hexdigest()
               for name in RUN_FILES if (run_dir / name).is_file()}
    (run_dir / MANIFEST).write_text(json.dumps(entries))


def edit_json(run_dir, name, change) -> None:
    data = json.loads((run_dir / name).read_text())
    data = change(data)
    (run_dir / name).write_text(json.dumps(data))
    rehash(run_dir)


def cli(args, capsys) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line(status, out, err, *expected) -> None:
    assert status == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in lines[0], lines[0]


# -- 1. the manifest ------------------------------------------------------------------------------

def test_the_manifest_lists_every_run_file_with_its_sha256(run):
    manifest = json.loads((run / MANIFEST).read_text())
    assert sorted(manifest) == sorted(RUN_FILES)
    for name, digest in manifest.items():
        assert digest == hashlib.sha256((run / name).read_bytes()).hexdigest(), name
    assert not list(run.glob(".*.tmp"))


def test_a_byte_flip_in_the_weights_is_refused_naming_the_file(run, capsys):
    data = bytearray((run / "model.safetensors").read_bytes())
    data[-5] ^= 0x40  # inside the last tensor: still a valid safetensors file
    (run / "model.safetensors").write_bytes(bytes(data))
    load_file(run / "model.safetensors")  # (safetensors itself sees nothing wrong)
    with pytest.raises(CheckpointError, match="model.safetensors: sha256 does not match the run's manifest.json"):
        rnnkit.load(run)
    for args in (["evaluate", run], ["predict", run, "0"], ["export", run, "--out", run.parent / "m.onnx"]):
        assert_one_line(*cli(args, capsys), "model.safetensors", "sha256")


@pytest.mark.parametrize("name", ["config.json", "preprocess.json", "summary.json"])
def test_an_edited_json_file_is_refused_naming_it(run, name, capsys):
    (run / name).write_text((run / name).read_text().replace("\n", "\n ", 1))  # the same JSON, other bytes
    if name == "summary.json":  # read by --resume of a finished run
        status, out, err = cli(["train", "digits", "--out", run, "--resume", "--no-progress"], capsys)
    else:
        status, out, err = cli(["predict", run, "0"], capsys)
    assert_one_line(status, out, err, name, "sha256 does not match")


def test_resume_refuses_changed_weights_before_training(run, capsys):
    before = (run / "summary.json").read_bytes()
    save_file({k: v * 2 for k, v in load_file(run / "model.safetensors").items()}, run / "model.safetensors")
    status, out, err = cli(["train", "digits", "--out", run, "--resume", "--epochs", "2", "--no-progress"], capsys)
    assert_one_line(status, out, err, "model.safetensors", "sha256 does not match")
    assert (run / "summary.json").read_bytes() == before  # nothing rewritten with those weights


def test_a_run_without_a_manifest_loads_with_a_warning(run, caplog):
    (run / MANIFEST).unlink()
    with caplog.at_level(logging.WARNING, logger="rnnkit"):
        rnnkit.load(run).predict(["0"])
    assert any(MANIFEST in r.getMessage() and "not verified" in r.getMessage() for r in caplog.records)


def test_a_kill_during_a_write_leaves_the_old_or_the_new_file_accepted(run):
    """The manifest lists both digests while a file is swapped in."""
    from rnnkit.training.checkpoint import save_weights

    old = load_file(run / "model.safetensors")
    save_weights(run / "model.safetensors", {k: v + 1 for k, v in old.items()}, run_dir=run)
    new_digest = json.loads((run / MANIFEST).read_text())["model.safetensors"]
    old_bytes = (run / "model.safetensors").read_bytes()
    # The state between the two manifest writes: both digests listed, the old file still there.
    manifest = json.loads((run / MANIFEST).read_text())
    save_file(old, run / "model.safetensors")
    manifest["model.safetensors"] = sorted([new_digest, hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()])
    (run / MANIFEST).write_text(json.dumps(manifest))
    rnnkit.load(run)
    (run / "model.safetensors").write_bytes(old_bytes)  # the new one
    rnnkit.load(run)


# -- 2. non-finite weights --------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_file_and_tensor(run, bad, capsys):
    weights = load_file(run / "model.safetensors")
    weights["head.bias"][3] = bad
    save_file(weights, run / "model.safetensors")
    rehash(run)
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor 'head.bias' holds 1 non-finite"):
        rnnkit.load(run)
    assert_one_line(*cli(["evaluate", run], capsys), "model.safetensors", "head.bias", "non-finite")


# -- 3. strict JSON out -----------------------------------------------------------------------------

def test_predict_and_evaluate_print_strict_json(run, capsys):
    status, out, _ = cli(["predict", run, "0", "5"], capsys)
    assert status == 0
    rows = [json.loads(line, parse_constant=pytest.fail) for line in out.splitlines()]
    assert [r["input"] for r in rows] == ["0", "5"]
    status, out, _ = cli(["evaluate", run, "--json"], capsys)
    assert status == 0 and set(json.loads(out, parse_constant=pytest.fail)) >= {"test_loss", "test_accuracy"}


def test_outputs_that_are_not_finite_are_an_error_not_nan(run, capsys, monkeypatch):
    """A model whose outputs are NaN: predict and evaluate say so in one line instead of
    printing NaN (not JSON); nothing is printed before the error."""
    from rnnkit.tasks.digits import DigitsTask

    monkeypatch.setattr(DigitsTask, "predict", lambda self, model, inputs, options: [
        {"input": s, "label": "3", "probability": float("nan") if s == "5" else 0.5} for s in inputs])
    assert_one_line(*cli(["predict", run, "0", "5"], capsys), "predict", "non-finite", "probability")
    monkeypatch.setattr(rnnkit.runs, "evaluate", lambda *args: {"test_loss": float("inf"), "test_accuracy": 0.1})
    for args in (["evaluate", run, "--json"], ["evaluate", run]):
        assert_one_line(*cli(args, capsys), "evaluate", "non-finite", "test_loss")


# -- 4. structure -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, change, expected", [
    ("config.json", lambda c: {**c, "options": {**c["options"], "hidden_size": "16"}}, "field 'options.hidden_size'"),
    ("config.json", lambda c: {**c, "options": {**c["options"], "bogus": 1}}, "field 'options.bogus'"),
    ("config.json", lambda c: {**c, "train": {**c["train"], "batch_size": 0}}, "field 'train'"),
    ("config.json", lambda c: {k: v for k, v in c.items() if k != "options"}, "field 'options' is missing"),
    ("config.json", lambda c: [c], "config.json"),
    ("preprocess.json", lambda m: {}, "field 'labels' is missing"),
    ("preprocess.json", lambda m: {**m, "labels": "0123456789"}, "field 'labels' must be a list"),
    ("preprocess.json", lambda m: {**m, "pixel_max": 0}, "field 'pixel_max' must be > 0"),
    ("preprocess.json", lambda m: {**m, "labels": m["labels"][:3]}, "does not fit the model"),
    ("preprocess.json", lambda m: [m], "preprocess.json: the file must be an object"),
])
def test_a_run_file_of_the_wrong_structure_is_one_error_naming_file_and_field(run, name, change, expected, capsys):
    edit_json(run, name, change)
    with pytest.raises(CheckpointError, match=name) as error:
        rnnkit.load(run)
    assert expected in str(error.value)
    assert_one_line(*cli(["predict", run, "0"], capsys), name)


@pytest.mark.parametrize("change, expected", [
    (lambda s: {}, "field 'optimizer' is missing"),
    (lambda s: {**s, "progress": {**s["progress"], "stepz": 1}}, "field 'progress' has unknown keys"),
    (lambda s: {**s, "progress": {**s["progress"], "step": -1}}, "field 'progress.step' must be >= 0"),
    (lambda s: {**s, "rng": {**s["rng"], "python": [3, [1, 2], None]}}, "field 'rng.python'"),
    (lambda s: {**s, "scheduler": {**s["scheduler"], "optimizer": 5}}, "field 'scheduler' has unknown keys"),
    (lambda s: {**s, "optimizer": {**s["optimizer"], "param_groups": [{**s["optimizer"]["param_groups"][0],
                                                                        "lr": "fast"}]}}, "param_groups[0].lr"),
    (lambda s: {**s, "loader": {**s["loader"], "seed": 99}}, "field 'loader'"),
    (lambda s: {**s, "callbacks": {"JsonlLogger": {"offset": "x"}}}, "field 'callbacks.JsonlLogger.offset'"),
])
def test_a_wrong_trainer_json_is_one_error_on_resume(run, change, expected, capsys):
    path = run / "checkpoints" / "last" / "trainer.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    status, out, err = cli(["train", "digits", "--out", run, "--resume", "--epochs", "2", "--no-progress"], capsys)
    assert_one_line(status, out, err, "trainer.json", expected)


def test_a_wrong_summary_json_is_one_error(run, capsys):
    edit_json(run, "summary.json", lambda s: {k: v for k, v in s.items() if k != "stopped"})
    status, out, err = cli(["train", "digits", "--out", run, "--resume", "--no-progress"], capsys)
    assert_one_line(status, out, err, "summary.json", "field 'stopped' is missing")


def test_a_vocabulary_of_the_wrong_structure_names_the_problem():
    from rnnkit.data import Vocab

    state = Vocab(tokens=("a", "b")).to_dict()
    with pytest.raises(ValueError, match=r"^Vocab.from_dict: tokens\[1\] = 'a' appears more than once"):
        Vocab.from_dict({**state, "tokens": ["a", "a"]})
    with pytest.raises(TypeError, match=r"^Vocab.from_dict: tokens\[0\] must be a str"):
        Vocab.from_dict({**state, "tokens": [1]})


@pytest.mark.parametrize("hidden_size, expected", [
    (10**6, "more than this machine's memory"),  # 16 TB of LSTM weights
    (32, "does not fit the model"),  # a size that fits in memory but not the weights
])
def test_a_config_sized_beyond_the_weights_or_memory_is_refused_before_allocating(run, hidden_size, expected, capsys):
    edit_json(run, "config.json", lambda c: {**c, "options": {**c["options"], "hidden_size": hidden_size}})
    with pytest.raises(CheckpointError, match="config.json") as error:
        rnnkit.load(run)
    assert expected in str(error.value)
    if hidden_size == 10**6:
        assert "hidden_size = 1000000" in str(error.value)
    assert_one_line(*cli(["evaluate", run], capsys), "config.json", expected)


# -- 5. the data a run trained on ---------------------------------------------------------------------

REVIEWS = "text,label\n" + "".join(
    f"{w} {v} film number {i},{'pos' if w == 'good' else 'neg'}\n"
    for i in range(60) for w, v in [(("good", "bad")[i % 2], ("fine", "awful")[i % 2])]
)


def test_evaluate_refuses_a_data_file_changed_since_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the run records the path as given: relative
    (tmp_path / "reviews.csv").write_text(REVIEWS)
    options = SentimentOptions(data="reviews.csv", hidden_size=4, embedding_dim=4, embedding_init="random",
                               min_freq=1, max_len=8, bidirectional=False)
    train("sentiment", options, TrainConfig(epochs=1, max_steps=2, batch_size=16), "run", progress=False)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["data_files"]
    assert recorded["data"]["sha256"] == hashlib.sha256(REVIEWS.encode()).hexdigest()
    before = evaluate("run")

    (tmp_path / "reviews.csv").write_text(REVIEWS.replace("awful", "dreadful"))
    with pytest.raises(ValueError, match=r"data file reviews.csv changed since training \(sha256 .*pass --data"):
        evaluate("run")
    assert_one_line(*cli(["evaluate", "run"], capsys), "reviews.csv", "changed since training")
    status, out, _ = cli(["evaluate", "run", "--data", "reviews.csv", "--json"], capsys)  # asked for: no check
    assert status == 0 and "data_loss" in json.loads(out)

    (tmp_path / "reviews.csv").write_text(REVIEWS)
    assert evaluate("run") == before
    (tmp_path / "reviews.csv").unlink()
    assert_one_line(*cli(["evaluate", "run"], capsys), "reviews.csv", "missing")
