"""Tiny trained runs (once per session) and a real ``rnnkit serve`` process (once per module)."""
from __future__ import annotations

import importlib.util
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# rnnkit serve needs its extra (pip install 'rnnkit[serve]'), the tests httpx and websockets too
NEEDS = ("fastapi", "uvicorn", "multipart", "websockets", "httpx")
if any(importlib.util.find_spec(name) is None for name in NEEDS):
    collect_ignore_glob = ["test_*.py"]
else:
    import httpx

WORDS = ["the", "box", "was", "really", "a", "my", "order", "came", "today", "it", "is", "this"]
SIGNALS = {"good": "yummy", "bad": "yuck"}


def _sentiment_csv(path: Path, n: int = 200) -> None:
    import csv

    rng = random.Random(0)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("text", "label"))
        for k in range(n):
            label = list(SIGNALS)[k % 2]
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 9))]
            words.insert(rng.randint(0, len(words)), SIGNALS[label])
            writer.writerow((" ".join(words), label))


def series(n: int = 200) -> np.ndarray:
    """Monthly-looking data: trend + a 12-step season + noise."""
    t = np.arange(n)
    return 50 + 0.1 * t + 5 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(0).normal(0, 0.5, n)


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    """digits, sentiment, charlm and forecast runs, trained for seconds (their quality does not matter)."""
    from rnnkit.runs import train
    from rnnkit.tasks.charlm import CharLMOptions
    from rnnkit.tasks.digits import DigitsOptions
    from rnnkit.tasks.forecast import ForecastOptions
    from rnnkit.tasks.sentiment import SentimentOptions
    from rnnkit.training import TrainConfig

    root = tmp_path_factory.mktemp("serve_runs")
    train("digits", DigitsOptions(hidden_size=16), TrainConfig(epochs=1, lr=0.02, batch_size=64, seed=0),
          root / "digits", progress=False)
    _sentiment_csv(root / "reviews.csv")
    train("sentiment", SentimentOptions(data=str(root / "reviews.csv"), embedding_dim=8, hidden_size=8, min_freq=1,
                                        max_len=16, dropout=0.0),
          TrainConfig(epochs=3, batch_size=16, lr=0.03, seed=0), root / "sentiment", progress=False)
    rng = random.Random(0)
    words = ["the", "king", "queen", "love", "my", "lord", "sweet", "night"]
    (root / "tiny.txt").write_text("\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(300)))
    train("charlm", CharLMOptions(data=str(root / "tiny.txt"), hidden_size=16, embedding_dim=8, seq_len=20),
          TrainConfig(epochs=1, batch_size=16, lr=1e-2, eval_every=40, schedule="constant", log_every=10),
          root / "charlm", progress=False)
    (root / "series.csv").write_text("value\n" + "\n".join(repr(float(v)) for v in series()) + "\n")
    train("forecast", ForecastOptions(data=str(root / "series.csv"), column="value", season=12, window=12, horizon=3,
                                      hidden_size=8, arima="off", difference="first"),
          TrainConfig(epochs=2, batch_size=32, lr=0.01, seed=0), root / "forecast", progress=False)
    return {name: root / name for name in ("digits", "sentiment", "charlm", "forecast")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m rnnkit serve RUN... --port P`` in a subprocess, ready when GET /v1/models answers."""

    def __init__(self, run_dirs, *flags: str, cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"serve-{self.port}.log"
        self.tmp = cwd / f"tmp-{self.port}"  # the server's TMPDIR: its upload folder is made in there
        self.tmp.mkdir()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(self.tmp)}
        env.pop("RNNKIT_DEBUG", None)
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rnnkit", "serve", *map(str, run_dirs), "--port", str(self.port), *flags],
                cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rnnkit serve exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"rnnkit serve did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        return self.log.read_text()
