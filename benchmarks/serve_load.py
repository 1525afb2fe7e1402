"""Load on `rnnkit serve`: many concurrent predict requests, with and without micro-batching.

    python benchmarks/serve_load.py [--run RUN] [--requests 1000] [--clients 16] [--inputs 1]

Starts a real server (``python -m rnnkit serve RUN``) once per mode, fires ``--requests``
predict requests from ``--clients`` concurrent clients (httpx, asyncio), and prints one
Markdown table: errors, p50 / p99 latency, requests per second and the mean number of inputs
per predict call (the X-Rnnkit-Batch header), beside the machine's load average before and
after. Without ``--run`` it trains a sentiment run on generated reviews first (a minute at
most; its accuracy does not matter, its size does: ``--hidden-size``). The clients run on the
same machine as the server and take CPU from it.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = ["the", "box", "was", "really", "a", "my", "order", "came", "today", "it", "is", "this", "yummy", "yuck",
         "coffee", "tea", "taste", "bad", "fine", "never", "again", "love", "it", "so"]


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 24))) for _ in range(n)]


def _train_run(root: Path, hidden_size: int) -> Path:
    import csv

    from rnnkit.runs import train
    from rnnkit.tasks.sentiment import SentimentOptions
    from rnnkit.training import TrainConfig

    with open(root / "reviews.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("text", "label"))
        writer.writerows((t, "good" if "yummy" in t else "bad") for t in _texts(300, 0))
    options = SentimentOptions(data=str(root / "reviews.csv"), embedding_dim=64, hidden_size=hidden_size, min_freq=1,
                               max_len=32, dropout=0.0)
    train("sentiment", options, TrainConfig(epochs=1, batch_size=32, lr=0.01, seed=0), root / "sentiment",
          progress=False)
    return root / "sentiment"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(run: Path, flags: list[str]) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "rnnkit", "serve", str(run), "--port", str(port), *flags],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"rnnkit serve exited: {process.stderr.read()}")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("rnnkit serve did not start")


async def _fire(url: str, name: str, bodies: list[dict], clients: int) -> dict:
    """Send every body once, ``clients`` at a time; latencies in seconds, errors, batch sizes."""
    import httpx

    latencies, batches, errors = [], [], []
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            start = time.perf_counter()
            try:
                r = await http.post(f"{url}/v1/models/{name}/predict", json=body)
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}: {r.text[:80]}")
                    continue
                batches.append(int(r.headers["x-rnnkit-batch"]))
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
                continue
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return {"latencies": np.array(latencies), "batches": np.array(batches), "errors": errors, "elapsed": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run directory to serve (default: train a sentiment run)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--inputs", type=int, default=1, help="inputs per request")
    parser.add_argument("--hidden-size", type=int, default=512, help="of the trained run (without --run)")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or _train_run(Path(tmp), args.hidden_size)
        name = run.resolve().name
        texts = _texts(args.requests * args.inputs, 1)
        bodies = [{"inputs": texts[k * args.inputs:(k + 1) * args.inputs]} for k in range(args.requests)]
        modes = [("micro-batching", ["--max-batch", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms)]),
                 ("no batching", ["--no-batching"])]
        rows = []
        for mode, flags in modes:
            process, url = _start(run, flags)
            try:
                asyncio.run(_fire(url, name, bodies[:50], args.clients))  # warm-up
                load_before = os.getloadavg()
                result = asyncio.run(_fire(url, name, bodies, args.clients))
                load_after = os.getloadavg()
            finally:
                process.terminate()
                process.wait(timeout=30)
            lat = result["latencies"] * 1000  # ms
            ok = len(lat)
            rows.append(f"| {mode} | {args.requests} | {args.clients} | {len(result['errors'])} | "
                        f"{np.percentile(lat, 50):.1f} | {np.percentile(lat, 99):.1f} | {ok / result['elapsed']:.0f} | "
                        f"{result['batches'].mean():.1f} | {load_before[0]:.2f} → {load_after[0]:.2f} |")
            for e in result["errors"][:3]:
                print(f"  {mode}: {e}", file=sys.stderr)
    print(f"\n`rnnkit serve` under load: {name} ({args.inputs} input(s) per request), {os.cpu_count()} CPUs, "
          f"server and clients on the same machine\n")
    print("| mode | requests | clients | errors | p50 ms | p99 ms | requests/s | inputs per predict call | load avg (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
