"""`rnnkit predict` reads inputs from the command line, standard input (`-`) and files, and
prints UTF-8 JSON; `rnnkit generate --seed` repeats itself; `RunModel.predict` refuses a bare
string and nested lists with a message."""
import io
import json

import pytest

import rnnkit
from rnnkit import cli


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "run"
    assert cli.main(["train", "digits", "--epochs", "1", "--hidden-size", "8", "--no-progress", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def charlm_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("charlm")
    text = folder / "text.txt"
    text.write_text("to be or not to be, that is the question. " * 40, encoding="utf-8")
    out = folder / "run"
    assert cli.main(["train", "charlm", "--data", str(text), "--epochs", "1", "--hidden-size", "8",
                     "--embedding-dim", "4", "--seq-len", "8", "--batch-size", "4", "--max-steps", "5",
                     "--no-progress", "--out", str(out)]) == 0
    return out


def _rows(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_predict_reads_stdin_and_files(digits_run, tmp_path, monkeypatch, capsys):
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("3\n\n7\n"))
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("1\n2\n", encoding="utf-8")
    assert cli.main(["predict", str(digits_run), "0", "-", "--file", str(inputs)]) == 0
    assert [row["input"] for row in _rows(capsys)] == ["0", "3", "7", "1", "2"]


def test_predict_file_errors_are_one_line(digits_run, tmp_path, capsys):
    capsys.readouterr()
    assert cli.main(["predict", str(digits_run), "--file", str(tmp_path / "nosuch.txt")]) == 2
    assert capsys.readouterr().err.strip() == f"rnnkit: error: predict: --file {tmp_path / 'nosuch.txt'} does not exist"
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9\n")
    assert cli.main(["predict", str(digits_run), "--file", str(bad)]) == 2
    assert "must be UTF-8 text" in capsys.readouterr().err


def test_json_lines_keep_non_ascii_text():
    assert cli._json_line({"text": "déjà vu → ok"}, "predict") == '{"text": "déjà vu → ok"}'
    with pytest.raises(ValueError, match="non-finite"):
        cli._json_line({"p": float("nan")}, "predict")


def test_run_model_predict_refuses_a_bare_string_and_nested_lists(digits_run):
    run = rnnkit.load(digits_run)
    with pytest.raises(ValueError, match=r"^digits: predict: inputs must be a list of inputs, got a str \('12'\); "
                                         r"pass \['12'\]"):
        run.predict("12")
    with pytest.raises(ValueError, match=r"^digits: predict: inputs\[1\] must be one input .*got a list"):
        run.predict(["1", ["2", "3"]])
    assert len(run.predict(("1", "2"))) == 2


def test_generate_seed_repeats_the_text(charlm_run, capsys):
    texts = []
    for seed in ("3", "3", "4"):
        capsys.readouterr()
        assert cli.main(["generate", str(charlm_run), "--length", "40", "--seed", seed]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]
