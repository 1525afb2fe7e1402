"""Data parallel on CPU: two real processes (torchrun, gloo) learn what one process learns on the
same global batches, and only rank 0 writes. On a machine with two GPUs, the same over NCCL."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TORCHRUN = Path(sys.executable).parent / "torchrun"
TRAIN = ["-m", "rnnkit", "train", "digits", "--epochs", "1", "--hidden-size", "16", "--no-progress", "--seed", "0",
         "--eval-every", "10", "--device", "cpu"]
HAS_TORCHRUN = TORCHRUN.exists() or shutil.which("torchrun")


def _run(cmd, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.skipif(not HAS_TORCHRUN, reason="torchrun is not installed")
def test_two_processes_match_one_on_the_same_global_batch(tmp_path):
    torchrun = str(TORCHRUN) if TORCHRUN.exists() else shutil.which("torchrun")
    two = _run([torchrun, "--standalone", "--nproc_per_node", "2", *TRAIN, "--out", "D2"], tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one = _run([sys.executable, *TRAIN, "--out", "D1"], tmp_path)
    assert one.returncode == 0, one.stderr

    d1, d2 = tmp_path / "D1", tmp_path / "D2"
    for name in ("checkpoints/last/model.safetensors", "model.safetensors"):
        w1, w2 = load_file(d1 / name), load_file(d2 / name)
        assert w1.keys() == w2.keys()
        for key in w1:  # the order of the float reductions differs, nothing else
            torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=1e-5, msg=f"{name}: {key}")
    assert load_file(d1 / "checkpoints/last/model.safetensors")["head.weight"].abs().sum() > 0

    # Rank 0 alone writes: every record once, the same records as one process logs.
    r1, r2 = _records(d1), _records(d2)
    keys = [(r["split"], r["step"]) for r in r2]
    assert len(keys) == len(set(keys))
    assert keys == [(r["split"], r["step"]) for r in r1]
    for a, b in zip(r1, r2):
        for k, v in a.items():
            if k.startswith(("train_", "val_")):  # train metrics cover the global batch, not rank 0's half
                tolerance = 1.5 / 64 if k.endswith("accuracy") else 1e-4  # a near-tie may flip one sample
                assert b[k] == pytest.approx(v, abs=tolerance), (a["step"], k)
    assert two.stdout.count("; run directory ") == 1  # one summary line, from rank 0
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (d1, d2))
    assert s2["steps"] == s1["steps"] == 23
    assert s2["test_accuracy"] == pytest.approx(s1["test_accuracy"], abs=1.5 / 180)
    assert sorted(p.name for p in d2.iterdir()) == sorted(p.name for p in d1.iterdir())


@pytest.mark.skipif(not HAS_TORCHRUN or torch.cuda.device_count() < 2, reason="needs torchrun and two CUDA GPUs")
def test_two_gpu_processes_over_nccl_learn_and_rank_0_writes(tmp_path):
    torchrun = str(TORCHRUN) if TORCHRUN.exists() else shutil.which("torchrun")
    cuda = [a if a != "cpu" else "cuda" for a in TRAIN]
    two = _run([torchrun, "--standalone", "--nproc_per_node", "2", *cuda, "--out", "G2"], tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    summary = json.loads((tmp_path / "G2" / "summary.json").read_text())
    assert summary["device"] == "cuda:0" and summary["steps"] == 23 and summary["test_accuracy"] > 0.2  # (CPU: 0.39)
    assert two.stdout.count("; run directory ") == 1
