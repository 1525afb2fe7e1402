"""Forward+backward speed of the LSTM/GRU variants: fused sequence vs step loop vs torch.nn.

For each variant three runs share every input: the rnnkit layer on its fused whole-sequence
path (a "sequence" backend of ``rnnkit.layers.backends``), the same layer on the reference
step-by-step loop under autograd, and torch.nn's standard LSTM of the same size (issue 7's reference for
every variant). The order rotates between repeats (``rnnkit.bench.measure``), so the noise
of a shared machine hits all three alike. The table gives medians and the ratios.

    python benchmarks/variants.py                       # both default shapes, median of 5
    python benchmarks/variants.py --shapes 100x64x256 --repeats 9 --cases peephole

The input side's per-gate layer norm runs on the compiled kernel (``rnnkit.kernels.gate_norm``)
in the sequence backends; it was previewed here as ``--input-norm fused`` and is now how the
backends call the cells' ``lstm_project`` / ``gru_project``.
"""
from __future__ import annotations

import argparse

import torch

from rnnkit import bench


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed iterations per run (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first (default 2)")
    parser.add_argument("--shapes", type=bench.parse_shapes, default=bench.DEFAULT_SHAPES,
                        help="comma-separated TxBxH (I = H), default 100x64x256,200x16x128")
    parser.add_argument("--cases", default=None,
                        help="only variants whose name contains one of these (comma-separated)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--no-loop", action="store_true", help="skip the step loop (the slowest side)")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    variants = bench.variant_cases()
    if args.cases:
        wanted = [w.strip().lower() for w in args.cases.split(",")]
        variants = [v for v in variants if any(w in v.name.lower() for w in wanted)]
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, forward+backward, median of {args.repeats} "
          f"(after {args.warmup} warm-up), fused / step loop / torch.nn.LSTM in rotating order; "
          f"input norm: {args.input_norm}")
    print(f"{'variant':<24} {'shape (T,B,H)':<16} {'fused ms':>9} {'loop ms':>9} {'torch ms':>9}"
          f" {'fused/torch':>12} {'loop/torch':>11} {'loop/fused':>11} {'target':>7} {'spread':>7}")
    for shape in args.shapes:
        for variant in variants:
            row = bench.measure(variant, shape, args.repeats, args.warmup, gen, loop=not args.no_loop)
            row.setdefault("loop_ms", float("nan"))
            shape_text = "({}, {}, {})".format(*shape)
            target = "" if row["target"] is None else f"{row['target']:.2f}"
            print(f"{row['case']:<24} {shape_text:<16} {row['rnnkit_ms']:>9.1f} {row['loop_ms']:>9.1f}"
                  f" {row['torch_ms']:>9.1f} {row['ratio']:>12.2f} {row['loop_ms'] / row['torch_ms']:>11.2f}"
                  f" {row['loop_ms'] / row['rnnkit_ms']:>11.2f} {target:>7} {row['spread']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
