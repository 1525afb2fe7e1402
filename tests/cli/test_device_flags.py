"""`--device` and `--precision` on the command line: a GPU the machine lacks, a bad device string
or 16-mixed on the CPU is one line on stderr, exit status 2, and nothing written; a bf16 run
trains, records its device and precision, and evaluates, predicts and resumes in float32 on
the CPU."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from rnnkit.cli import main

CUDA = torch.cuda.is_available()
needs_no_cuda = pytest.mark.skipif(CUDA, reason="checks the errors of a machine without a GPU")
LABELS = [str(d) for d in range(10)]


def _rnnkit(args, cwd, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RNNKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "rnnkit", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _one_line_error(status: int, stdout: str, stderr: str, expected: str) -> None:
    assert status == 2
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert expected in lines[0]
    assert stdout == ""


def _in_process(args, capsys) -> tuple[int, str, str]:
    """``rnnkit ARGS`` in this process (faster than a subprocess): exit status, stdout, stderr."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as e:  # argparse's usage errors
        status = e.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One short digits run in bf16 on the CPU, shared read-only by the tests below."""
    cwd = tmp_path_factory.mktemp("device")
    result = _rnnkit(["train", "digits", "--epochs", "2", "--hidden-size", "16", "--device", "cpu", "--precision", "bf16",
                      "--no-progress", "--out", "run"], cwd)
    assert result.returncode == 0, result.stderr
    return cwd / "run"


@needs_no_cuda
def test_training_on_a_missing_gpu_is_one_line_exit_2_and_writes_nothing(tmp_path):
    result = _rnnkit(["train", "digits", "--device", "cuda", "--epochs", "1", "--out", "x"], tmp_path)
    _one_line_error(result.returncode, result.stdout, result.stderr, "device 'cuda' needs a CUDA GPU")
    assert result.stderr.startswith("rnnkit: error: TrainConfig: device 'cuda'")
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, expected", [
    (["--device", "gpu"], "TrainConfig: device must be auto, cpu, cuda or cuda:N (N a GPU index), got 'gpu'"),
    (["--device", "cuda:x"], "got 'cuda:x'"),
    (["--precision", "fp16"], "TrainConfig: precision must be one of 32, bf16, 16-mixed, got 'fp16'"),
    (["--device", "cpu", "--precision", "16-mixed"], "precision '16-mixed' (float16 autocast with a GradScaler) "
                                                     "needs a CUDA device, got device 'cpu'"),
    pytest.param(["--device", "cuda:1"], "device 'cuda:1' needs a CUDA GPU", marks=needs_no_cuda),
    pytest.param(["--precision", "16-mixed"], "needs a CUDA device", marks=needs_no_cuda),  # auto: the CPU here
])
def test_bad_training_devices_and_precisions_are_one_line_errors(tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    _one_line_error(*_in_process(["train", "digits", "--epochs", "1", "--out", "x", *args], capsys), expected)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A tiny character language model trained in bf16 (stateful: its carried state is autocast's too)."""
    cwd = tmp_path_factory.mktemp("lm")
    (cwd / "text.txt").write_text("the quick brown fox jumps over the lazy dog. " * 80)
    result = _rnnkit(["train", "charlm", "--data", "text.txt", "--hidden-size", "16", "--embedding-dim", "8",
                      "--seq-len", "20", "--batch-size", "4", "--epochs", "1", "--eval-every", "0", "--device", "cpu",
                      "--precision", "bf16", "--no-progress", "--out", "lm"], cwd)
    assert result.returncode == 0, result.stderr
    return cwd / "lm"


@needs_no_cuda
@pytest.mark.parametrize("command", [["evaluate", "{run}"], ["predict", "{run}", "0"], ["generate", "{lm}"]])
def test_using_a_run_on_a_missing_gpu_is_one_line_exit_2(run, lm_run, tmp_path, command):
    args = [a.format(run=run, lm=lm_run) for a in command] + ["--device", "cuda"]
    result = _rnnkit(args, tmp_path)
    _one_line_error(result.returncode, result.stdout, result.stderr, "load: device 'cuda' needs a CUDA GPU")


def test_a_bf16_language_model_generates_in_float32_on_the_cpu(lm_run, capsys):
    summary = json.loads((lm_run / "summary.json").read_text())
    assert (summary["device"], summary["precision"]) == ("cpu", "bf16")
    status, out, err = _in_process(["generate", lm_run, "--prime", "the ", "--length", "30", "--device", "cpu"], capsys)
    assert status == 0, err
    assert out.startswith("the ") and len(out.rstrip("\n")) >= 4


@pytest.mark.parametrize("command", [["evaluate", "{run}"], ["predict", "{run}", "0"]])
def test_a_bad_device_string_for_a_run_is_a_one_line_usage_error(run, capsys, command):
    args = [a.format(run=run) for a in command] + ["--device", "gpu"]
    _one_line_error(*_in_process(args, capsys),
                    "argument --device: must be auto, cpu, cuda or cuda:N (N a GPU index), got 'gpu'")


def test_a_bf16_run_records_its_device_and_precision(run):
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["device"], summary["precision"]) == ("cpu", "bf16")
    config = json.loads((run / "config.json").read_text())["train"]
    assert (config["device"], config["precision"]) == ("cpu", "bf16")


def test_a_bf16_run_evaluates_and_predicts_in_float32_on_the_cpu(run, capsys):
    summary = json.loads((run / "summary.json").read_text())
    status, out, err = _in_process(["evaluate", run, "--json", "--device", "cpu"], capsys)
    assert status == 0, err
    metrics = json.loads(out)
    assert metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1.5 / 180)  # bf16 vs float32 sums
    for device in ("cpu", "auto") if not CUDA else ("cpu",):
        status, out, err = _in_process(["predict", run, "0", "5", "--device", device], capsys)
        assert status == 0, err
        rows = [json.loads(line) for line in out.splitlines()]
        assert [r["input"] for r in rows] == ["0", "5"] and all(r["label"] in LABELS for r in rows)


def test_a_bf16_run_resumes_in_float32_through_the_command_line(run, tmp_path, capsys):
    copy = tmp_path / "more"
    shutil.copytree(run, copy)
    status, out, err = _in_process(["train", "digits", "--out", copy, "--resume", "--epochs", "3", "--precision", "32",
                                    "--device", "cpu", "--no-progress"], capsys)
    assert status == 0, err
    summary = json.loads((copy / "summary.json").read_text())
    assert (summary["steps"], summary["precision"], summary["device"]) == (69, "32", "cpu")
    assert json.loads((copy / "config.json").read_text())["options"]["hidden_size"] == 16  # kept from the run


# -- on a GPU ---------------------------------------------------------------------------------

@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_a_gpu_run_in_16_mixed_loads_on_the_cpu_and_a_cpu_run_on_the_gpu(run, tmp_path, capsys):
    beyond = f"cuda:{torch.cuda.device_count()}"
    result = _rnnkit(["train", "digits", "--device", beyond, "--epochs", "1", "--out", "x"], tmp_path)
    _one_line_error(result.returncode, result.stdout, result.stderr, f"device '{beyond}' needs GPU")
    assert not (tmp_path / "x").exists()
    status, _, err = _in_process(["train", "digits", "--epochs", "2", "--hidden-size", "16", "--device", "cuda",
                                  "--precision", "16-mixed", "--no-progress", "--out", tmp_path / "gpu"], capsys)
    assert status == 0, err
    summary = json.loads((tmp_path / "gpu" / "summary.json").read_text())
    assert summary["device"].startswith("cuda:") and summary["precision"] == "16-mixed"
    for run_dir, device in ((tmp_path / "gpu", "cpu"), (run, "cuda")):
        status, out, err = _in_process(["evaluate", run_dir, "--json", "--device", device], capsys)
        assert status == 0, err
        assert json.loads(out)["test_accuracy"] == pytest.approx(
            json.loads((run_dir / "summary.json").read_text())["test_accuracy"], abs=2.5 / 180)
        status, out, err = _in_process(["predict", run_dir, "0", "5", "--device", device], capsys)
        assert status == 0, err
        assert [json.loads(line)["input"] for line in out.splitlines()] == ["0", "5"]
