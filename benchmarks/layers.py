"""Forward+backward speed of rnnkit's layers against torch.nn's, measured alternately.

Each case pairs an rnnkit layer with the torch.nn layer it should be compared to. For every
repeat both run on the same fresh random input (and the same random lengths), one after the
other, and the order alternates between repeats, so that the noise of a shared machine hits
both sides alike. The table gives the median time of each side and their ratio.

    python benchmarks/layers.py                      # full run, both default shapes
    python benchmarks/layers.py --quick              # tiny smoke run
    python benchmarks/layers.py --shapes 100x64x256 --repeats 9 --json results.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit

DEFAULT_SHAPES = [(100, 64, 256), (200, 16, 128)]  # (T, B, I = H)
QUICK_SHAPES = [(12, 4, 16)]
NOISY = 1.3  # a row whose samples (either side) vary by more than this factor is flagged


@dataclass
class Case:
    """One comparison: an rnnkit layer and the torch.nn layer it is measured against."""

    name: str
    make_rnnkit: Callable[[int], nn.Module]  # hidden size (= input size) -> layer
    make_torch: Callable[[int], nn.Module]
    lengths: bool = False  # random lengths in [T/2, T]; torch.nn gets a PackedSequence
    tags: list[str] = field(default_factory=list)


def build_cases() -> list[Case]:
    """All cases: standard layers, 2-layer bidirectional with lengths, variants, generic engine."""
    bi = dict(num_layers=2, bidirectional=True)
    return [
        Case("LSTM", lambda h: rnnkit.LSTM(h, h), lambda h: nn.LSTM(h, h), tags=["standard"]),
        Case("GRU", lambda h: rnnkit.GRU(h, h), lambda h: nn.GRU(h, h), tags=["standard"]),
        Case("RNN(tanh)", lambda h: rnnkit.RNN(h, h), lambda h: nn.RNN(h, h), tags=["standard"]),
        Case("LSTM 2L-bi lengths", lambda h: rnnkit.LSTM(h, h, **bi), lambda h: nn.LSTM(h, h, **bi),
             lengths=True, tags=["standard", "packed"]),
        Case("GRU 2L-bi lengths", lambda h: rnnkit.GRU(h, h, **bi), lambda h: nn.GRU(h, h, **bi),
             lengths=True, tags=["standard", "packed"]),
        Case("RNN 2L-bi lengths", lambda h: rnnkit.RNN(h, h, **bi), lambda h: nn.RNN(h, h, **bi),
             lengths=True, tags=["standard", "packed"]),
        Case("LSTM peephole", lambda h: rnnkit.LSTM(h, h, peephole=True), lambda h: nn.LSTM(h, h), tags=["variant"]),
        Case("LSTM layer_norm", lambda h: rnnkit.LSTM(h, h, layer_norm=True), lambda h: nn.LSTM(h, h), tags=["variant"]),
        Case("GRU reset_after=False", lambda h: rnnkit.GRU(h, h, reset_after=False), lambda h: nn.GRU(h, h),
             tags=["variant"]),
        Case("GRU layer_norm", lambda h: rnnkit.GRU(h, h, layer_norm=True), lambda h: nn.GRU(h, h), tags=["variant"]),
        Case("LSTM engine=python", lambda h: rnnkit.LSTM(h, h, engine="python"), lambda h: nn.LSTM(h, h),
             tags=["python"]),
        Case("GRU engine=python", lambda h: rnnkit.GRU(h, h, engine="python"), lambda h: nn.GRU(h, h), tags=["python"]),
    ]


def state_sum(state) -> torch.Tensor:
    """Sum of a final state: a tensor (RNN, GRU) or a tuple (h, c) (LSTM)."""
    return state.sum() if isinstance(state, torch.Tensor) else sum(s.sum() for s in state)


def step(module: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None, is_torch: bool) -> float:
    """One timed forward + backward, in seconds; the loss is out.sum() + the final state's sum.

    With lengths, torch.nn is used as a user would: pack, run, unpack, all inside the timing.
    """
    module.zero_grad(set_to_none=True)
    start = time.perf_counter()
    if lengths is None:
        out, state = module(x)
    elif is_torch:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, state = module(packed)
        out = pad_packed_sequence(out, total_length=x.shape[0])[0]
    else:
        out, state = module(x, lengths=lengths)
    (out.sum() + state_sum(state)).backward()
    return time.perf_counter() - start


def measure(case: Case, shape: tuple[int, int, int], repeats: int, warmup: int, gen: torch.Generator) -> dict:
    """Time both layers of a case alternately; return medians (ms), the ratio and all samples."""
    T, B, H = shape
    torch.manual_seed(0)
    ours, theirs = case.make_rnnkit(H), case.make_torch(H)

    def inputs():
        x = torch.randn(T, B, H, generator=gen)
        lengths = torch.randint(T // 2, T + 1, (B,), generator=gen) if case.lengths else None
        return x, lengths

    for _ in range(warmup):
        x, lengths = inputs()
        step(ours, x, lengths, False)
        step(theirs, x, lengths, True)
    times = {"rnnkit": [], "torch": []}
    for r in range(repeats):
        x, lengths = inputs()
        order = [("rnnkit", ours, False), ("torch", theirs, True)]
        for label, module, is_torch in order if r % 2 == 0 else order[::-1]:
            times[label].append(step(module, x, lengths, is_torch) * 1e3)
    med_ours, med_theirs = statistics.median(times["rnnkit"]), statistics.median(times["torch"])
    paired = statistics.median(a / b for a, b in zip(times["rnnkit"], times["torch"]))
    spread = max(max(v) / min(v) for v in times.values())  # > NOISY: the machine was busy
    return {
        "case": case.name, "tags": case.tags, "shape": list(shape),
        "rnnkit_ms": med_ours, "torch_ms": med_theirs, "ratio": med_ours / med_theirs,
        "paired_ratio_median": paired, "spread": spread, "noisy": spread > NOISY, "samples_ms": times,
    }


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """'100x64x256,200x16x128' -> [(100, 64, 256), (200, 16, 128)] as (T, B, I=H)."""
    shapes = []
    for item in text.split(","):
        T, B, H = (int(v) for v in item.lower().split("x"))
        shapes.append((T, B, H))
    return shapes


def print_row(row: dict) -> None:
    """One line of the results table."""
    shape = "({}, {}, {})".format(*row["shape"])
    print(f"{row['case']:<24} {shape:<16} {row['rnnkit_ms']:>10.1f} {row['torch_ms']:>10.1f} {row['ratio']:>7.2f}"
          f" {row['paired_ratio_median']:>7.2f}{'  noisy' * row['noisy']}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed iterations per layer (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per layer first (default 2)")
    parser.add_argument("--shapes", type=parse_shapes, default=None,
                        help="comma-separated TxBxH (I = H), default 100x64x256,200x16x128")
    parser.add_argument("--cases", default=None, help="only cases whose name or tag contains one of these (comma-separated)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: shape 12x4x16, 2 repeats, 1 warm-up")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    shapes = args.shapes or (QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    repeats, warmup = (2, 1) if args.quick else (args.repeats, args.warmup)
    cases = build_cases()
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
          "forward+backward, rnnkit and torch.nn alternately")
    print("ratio = median rnnkit / median torch; paired = median over repeats of rnnkit/torch (same input);"
          f" noisy = some side's samples vary by more than {NOISY}x")
    print(f"{'case':<24} {'shape (T,B,H)':<16} {'rnnkit ms':>10} {'torch ms':>10} {'ratio':>7} {'paired':>7}")
    rows = []
    for shape in shapes:
        for case in cases:
            row = measure(case, shape, repeats, warmup, gen)
            print_row(row)
            rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
