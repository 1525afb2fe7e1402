"""Forward+backward speed of the post-2017 cells against rnnkit's LSTM, and against their own loop.

For every cell: its layer on the backend the registry picks (the parallel scan for minGRU,
minLSTM, SRU and mLSTM), the same layer on the reference step loop (``backends.only("torch")``:
no sequence backend), and ``rnnkit.LSTM`` of the same hidden size (torch's fused kernels),
timed in rotating order on the same fresh input each repeat (``rnnkit.bench.training_step``:
output.sum() + the final state's sum, backward). Prints medians and the ratios
LSTM / cell ("x faster than LSTM") and loop / cell ("x faster than its loop"), with the load average.

    python benchmarks/modern_cells.py                          # T=1024, B=16, H=256 (issue 16)
    python benchmarks/modern_cells.py --cells mingru minlstm --repeats 3 --no-loop
    python benchmarks/modern_cells.py --quick                  # a tiny smoke run
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics

import torch

import rnnkit
from rnnkit.bench import training_step

LAYERS = {"mingru": "MinGRU", "minlstm": "MinLSTM", "indrnn": "IndRNN", "sru": "SRU", "slstm": "SLSTM",
          "mlstm": "MLSTM"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="1024x16x256", help="TxBxH (I = H), default 1024x16x256")
    parser.add_argument("--cells", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-loop", action="store_true", help="skip the reference loop (slow at large T)")
    parser.add_argument("--quick", action="store_true", help="shape 64x4x32, 2 repeats")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    T, B, H = (64, 4, 32) if args.quick else (int(v) for v in args.shape.lower().split("x"))
    repeats = 2 if args.quick else args.repeats
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or 'cpu'}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    print(f"# forward+backward, T={T} B={B} H={H}; medians of {repeats} (ms)")
    print(f"{'cell':<8} {'backend':<14} {'cell ms':>9} {'loop ms':>9} {'LSTM ms':>9} {'vs LSTM':>8} {'vs loop':>8}")
    gen = torch.Generator().manual_seed(0)
    rows = []
    for name in args.cells:
        torch.manual_seed(0)
        layer, lstm = getattr(rnnkit, LAYERS[name])(H, H), rnnkit.LSTM(H, H)
        backend = rnnkit.layers.backends.select("sequence", layer.cell_config(), torch.zeros(1))
        sides = [("cell", layer, True), ("lstm", lstm, True)] + [("loop", layer, False)] * (not args.no_loop)
        times = {label: [] for label, *_ in sides}
        for r in range(args.warmup + repeats):
            x = torch.randn(T, B, H, generator=gen)
            k = r % len(sides)
            for label, module, fused in sides[k:] + sides[:k]:
                seconds = training_step(module, x, None, False, fused)
                if r >= args.warmup:
                    times[label].append(seconds * 1e3)
        med = {label: statistics.median(v) for label, v in times.items()}
        row = {"cell": name, "backend": backend.name if backend else "reference", "shape": [T, B, H], **med,
               "x_vs_lstm": med["lstm"] / med["cell"], "x_vs_loop": med.get("loop", float("nan")) / med["cell"],
               "load": os.getloadavg()}
        rows.append(row)
        loop = f"{med['loop']:9.1f}" if "loop" in med else f"{'-':>9}"
        print(f"{name:<8} {row['backend']:<14} {med['cell']:9.1f} {loop} {med['lstm']:9.1f} "
              f"{row['x_vs_lstm']:7.2f}x {row['x_vs_loop']:7.2f}x", flush=True)
    print(f"# load after: {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
