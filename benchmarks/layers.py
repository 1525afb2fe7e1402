"""Forward+backward speed of rnnkit's layers against torch.nn's, measured alternately.

The cases and the timing live in ``rnnkit.bench`` (``rnnkit bench`` prints the same
comparisons as one table with issue 7's targets). For every repeat both sides run on the
same fresh random input (and the same random lengths), in an order that alternates between
repeats; the table gives the median time of each side and their ratio.

    python benchmarks/layers.py                      # full run, both default shapes
    python benchmarks/layers.py --quick              # tiny smoke run
    python benchmarks/layers.py --shapes 100x64x256 --repeats 9 --json results.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform

import torch

from rnnkit import bench

QUICK_SHAPES = [(12, 4, 16)]


def print_row(row: dict) -> None:
    """One line of the results table."""
    shape = "({}, {}, {})".format(*row["shape"])
    print(f"{row['case']:<24} {shape:<16} {row['rnnkit_ms']:>10.1f} {row['torch_ms']:>10.1f} {row['ratio']:>7.2f}"
          f" {row['paired']:>7.2f}{'  noisy' * row['noisy']}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed iterations per layer (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per layer first (default 2)")
    parser.add_argument("--shapes", type=bench.parse_shapes, default=None,
                        help="comma-separated TxBxH (I = H), default 100x64x256,200x16x128")
    parser.add_argument("--cases", default=None,
                        help="only cases whose name or tag contains one of these (comma-separated)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: shape 12x4x16, 2 repeats, 1 warm-up")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    shapes = args.shapes or (QUICK_SHAPES if args.quick else bench.DEFAULT_SHAPES)
    repeats, warmup = (2, 1) if args.quick else (args.repeats, args.warmup)
    cases = bench.standard_cases() + bench.variant_cases() + bench.python_engine_cases()
    if args.cases:
        wanted = [w.strip().lower() for w in args.cases.split(",")]
        cases = [c for c in cases if any(w in c.name.lower() or w in c.tags for w in wanted)]
    gen = torch.Generator().manual_seed(args.seed)

    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "repeats": repeats, "warmup": warmup,
        "python": platform.python_version(), "machine": platform.machine(),
    }
    print(f"torch {meta['torch']}, {meta['threads']} threads, median of {repeats} (after {warmup} warm-up), "
          "forward+backward, rnnkit and torch.nn alternately (variants against torch.nn.LSTM)")
    print("ratio = median rnnkit / median torch; paired = median over repeats of rnnkit/torch (same input);"
          f" noisy = some side's samples vary by more than {bench.NOISY}x")
    print(f"{'case':<24} {'shape (T,B,H)':<16} {'rnnkit ms':>10} {'torch ms':>10} {'ratio':>7} {'paired':>7}")
    rows = []
    for shape in shapes:
        for case in cases:
            row = bench.measure(case, shape, repeats, warmup, gen)
            print_row(row)
            rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
