"""One writer per run directory; every state a kill can leave is resumable or restartable; a
finished run resumed is left byte for byte as it was (issue 13)."""
import os
import signal
import subprocess
import sys
import time

import pytest

from rnnkit.cli import main
from rnnkit.training.lock import RunLock, RunLocked

TRAIN = ["train", "digits", "--epochs", "1", "--hidden-size", "8", "--no-progress"]


def _files(run_dir):
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_a_second_writer_is_refused_with_one_line_and_touches_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out):
        before = _files(out)
        assert main([*TRAIN, "--out", str(out)]) == 2
        assert _files(out) == before  # nothing written
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by another training" in err[0]


def test_the_lock_is_taken_over_once_its_holder_is_gone(tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        with pytest.raises(RunLocked):
            RunLock(out).__enter__()
    with RunLock(out):  # released: taken again
        pass


def test_two_processes_into_one_out_one_runs_one_is_refused(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "rnnkit", *TRAIN[:3], "3", *TRAIN[4:], "--out", str(out)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "config.json").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first holds the lock once it writes config.json
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    # refused by the lock while the first trains, or (if it came late) by the run already there
    assert second.returncode == 2
    assert "in use by another training" in second.stderr or "already holds a run" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    steps = [line for line in (out / "metrics.jsonl").read_text().splitlines()]
    solo = tmp_path / "solo"
    assert main([*TRAIN[:3], "3", *TRAIN[4:], "--out", str(solo)]) == 0
    assert len(steps) == len((solo / "metrics.jsonl").read_text().splitlines())  # one run's lines, no more


def test_a_kill_leaves_the_lock_free(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "rnnkit", *TRAIN[:3], "50", *TRAIN[4:], "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (out / "config.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with RunLock(out):  # the operating system released it with the process
        pass


@pytest.mark.parametrize("resume", [False, True], ids=["rerun", "resume"])
def test_an_incomplete_first_checkpoint_starts_the_run_over(tmp_path, resume, caplog):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    # as a kill while writing the first checkpoint leaves it: config and metrics, only last.tmp
    (out / "summary.json").unlink()
    (out / "checkpoints" / "last").rename(out / "checkpoints" / "last.tmp")
    (out / "checkpoints" / "last.tmp" / "model.safetensors").write_bytes(b"half")
    assert main([*TRAIN, "--out", str(out), *(["--resume"] if resume else [])]) == 0
    assert "incomplete first checkpoint" in caplog.text
    assert (out / "summary.json").exists() and not (out / "checkpoints" / "last.tmp").exists()


def test_resuming_a_finished_run_changes_no_byte(tmp_path, caplog):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    before = _files(out)
    for _ in range(2):
        assert main([*TRAIN, "--out", str(out), "--resume"]) == 0
    assert _files(out) == before
    assert "complete run" in caplog.text
