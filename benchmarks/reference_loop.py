"""The reference step loop's per-step overhead: an LSTMCell with a projection (no backend takes
it) in rnnkit.Recurrent, weights gathered once per sequence (BoundCell, the engine's way) against
gathered at every step (the cell module stepped directly), alternated in one process.

    python benchmarks/reference_loop.py
"""
import time

import torch

import rnnkit
from rnnkit.cells import LSTMCell
from rnnkit.layers import recurrent


def main() -> None:
    torch.set_num_threads(1)
    layer = rnnkit.Recurrent(lambda n: LSTMCell(n, 32, proj_size=16), 32)
    x = torch.randn(100, 8, 32)  # (T, B, I)
    bound = recurrent.BoundCell
    times = {"once per sequence": [], "every step": []}
    for _ in range(8):
        for mode in times:
            recurrent.BoundCell = bound if mode == "once per sequence" else object  # object: never rebound
            layer(x)
            start = time.perf_counter()
            for _ in range(10):
                layer(x)
            times[mode].append((time.perf_counter() - start) / 10 * 1e3)
    recurrent.BoundCell = bound
    for mode, ms in times.items():
        print(f"weights gathered {mode}: fastest 4 of 8, ms per forward: {[round(t, 2) for t in sorted(ms)[:4]]}")


if __name__ == "__main__":
    main()
