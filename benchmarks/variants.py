"""Forward+backward speed of the LSTM/GRU variants: fused sequence vs step loop vs torch.nn.

For each variant three runs share every input: the rnnkit layer on its fused whole-sequence
path (``rnnkit.layers.fused``), the same layer with the fused path disabled (the step-by-step
loop under autograd), and torch.nn's standard LSTM/GRU of the same size. Every repeat runs
the three one after the other, in an order that rotates between repeats, so the noise of a
shared machine hits all three alike. The table gives medians and the ratios to torch.nn.

    python benchmarks/variants.py                       # both default shapes, median of 5
    python benchmarks/variants.py --shapes 100x64x256 --repeats 9 --cases peephole
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

import rnnkit
from rnnkit.layers import fused

DEFAULT_SHAPES = [(100, 64, 256), (200, 16, 128)]  # (T, B, I = H)


@dataclass
class Variant:
    """An rnnkit layer off torch's kernels, and the standard torch.nn layer it is compared to."""

    name: str
    make_rnnkit: Callable[[int], nn.Module]  # hidden size (= input size) -> layer
    make_torch: Callable[[int], nn.Module]


def build_variants() -> list[Variant]:
    lstm, gru = (lambda h: nn.LSTM(h, h)), (lambda h: nn.GRU(h, h))
    return [
        Variant("LSTM peephole", lambda h: rnnkit.LSTM(h, h, peephole=True), lstm),
        Variant("LSTM layer_norm", lambda h: rnnkit.LSTM(h, h, layer_norm=True), lstm),
        Variant("LSTM engine=python", lambda h: rnnkit.LSTM(h, h, engine="python"), lstm),
        Variant("GRU reset_after=False", lambda h: rnnkit.GRU(h, h, reset_after=False), gru),
        Variant("GRU layer_norm", lambda h: rnnkit.GRU(h, h, layer_norm=True), gru),
        Variant("GRU engine=python", lambda h: rnnkit.GRU(h, h, engine="python"), gru),
    ]


def state_sum(state) -> torch.Tensor:
    return state.sum() if isinstance(state, torch.Tensor) else sum(s.sum() for s in state)


def timed_step(module: nn.Module, x: torch.Tensor, fused_path: bool) -> float:
    """One forward + backward in seconds; the loss is out.sum() + the final state's sum."""
    module.zero_grad(set_to_none=True)
    with nullcontext() if fused_path else fused.disabled():
        start = time.perf_counter()
        out, state = module(x)
        (out.sum() + state_sum(state)).backward()
        return time.perf_counter() - start


def measure(variant: Variant, shape, repeats: int, warmup: int, gen: torch.Generator) -> dict:
    """Median ms of the fused path, the step loop and torch.nn, measured in rotating order."""
    T, B, H = shape
    torch.manual_seed(0)
    ours, reference = variant.make_rnnkit(H), variant.make_torch(H)
    runs = [("fused", ours, True), ("loop", ours, False), ("torch", reference, True)]
    times = {label: [] for label, _, _ in runs}
    for r in range(warmup + repeats):
        x = torch.randn(T, B, H, generator=gen)
        for label, module, fused_path in runs[r % 3 :] + runs[: r % 3]:
            ms = timed_step(module, x, fused_path) * 1e3
            if r >= warmup:
                times[label].append(ms)
    med = {label: statistics.median(v) for label, v in times.items()}
    return {"variant": variant.name, "shape": shape, **med, "spread": max(max(v) / min(v) for v in times.values())}


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """'100x64x256,200x16x128' -> [(100, 64, 256), (200, 16, 128)] as (T, B, I=H)."""
    return [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed iterations per run (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first (default 2)")
    parser.add_argument("--shapes", type=parse_shapes, default=DEFAULT_SHAPES,
                        help="comma-separated TxBxH (I = H), default 100x64x256,200x16x128")
    parser.add_argument("--cases", default=None,
                        help="only variants whose name contains one of these (comma-separated)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    variants = build_variants()
    if args.cases:
        wanted = [w.strip().lower() for w in args.cases.split(",")]
        variants = [v for v in variants if any(w in v.name.lower() for w in wanted)]
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, forward+backward, median of {args.repeats} "
          f"(after {args.warmup} warm-up), fused / step loop / torch.nn in rotating order")
    print(f"{'variant':<24} {'shape (T,B,H)':<16} {'fused ms':>9} {'loop ms':>9} {'torch ms':>9}"
          f" {'fused/torch':>12} {'loop/torch':>11} {'loop/fused':>11} {'spread':>7}")
    for shape in args.shapes:
        for variant in variants:
            row = measure(variant, shape, args.repeats, args.warmup, gen)
            shape_text = "({}, {}, {})".format(*shape)
            print(f"{row['variant']:<24} {shape_text:<16} {row['fused']:>9.1f} {row['loop']:>9.1f} {row['torch']:>9.1f}"
                  f" {row['fused'] / row['torch']:>12.2f} {row['loop'] / row['torch']:>11.2f}"
                  f" {row['loop'] / row['fused']:>11.2f} {row['spread']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
