"""Speed of rnnkit's layers against torch.nn, as ratios measured in one run.

Every comparison runs both sides on the same fresh random input, one after the other, in an
order that rotates between repeats, so that the noise of a shared machine hits all sides
alike; the results are medians and their ratio. Timings are of one training step: forward
and backward of ``output.sum() + final state sums``, after ``zero_grad``.

Used by ``rnnkit bench`` (``rnnkit.commands.bench``) and by ``benchmarks/layers.py`` and
``benchmarks/variants.py``. Targets are benchmark targets, never test thresholds.
"""
from __future__ import annotations

import logging
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = [
    "DEFAULT_SHAPES", "Case", "standard_cases", "variant_cases", "python_engine_cases", "parse_shapes",
    "training_step", "measure", "matmul_gflops", "lstm_training_flops", "target_for", "streaming_rates",
]

log = logging.getLogger(__name__)

DEFAULT_SHAPES = [(100, 64, 256), (200, 16, 128)]  # (T, B, I = H)
NOISY = 1.3  # a result whose samples (some side) vary by more than this factor is flagged
# Issue 7's targets, ratio rnnkit / torch.nn, by case tag and shape (other shapes: none)
TARGETS = {
    "standard": {(100, 64, 256): 1.05, (200, 16, 128): 1.05},
    "variant": {(100, 64, 256): 1.25, (200, 16, 128): 2.0},
}


@dataclass
class Case:
    """One comparison: an rnnkit layer and the torch.nn layer it is measured against."""

    name: str
    make_rnnkit: Callable[[int], nn.Module]  # hidden size (= input size) -> layer
    make_torch: Callable[[int], nn.Module]
    lengths: bool = False  # random lengths in [T/2, T]; torch.nn gets a PackedSequence
    tags: list[str] = field(default_factory=list)


def standard_cases() -> list[Case]:
    """Standard layers (torch's kernels underneath), also 2 layers bidirectional with lengths."""
    import rnnkit

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
    ]


def variant_cases() -> list[Case]:
    """The variants on rnnkit's fused path, each against torch.nn's *standard LSTM* (issue 7)."""
    import rnnkit

    def lstm(h):
        return nn.LSTM(h, h)

    return [
        Case("LSTM peephole", lambda h: rnnkit.LSTM(h, h, peephole=True), lstm, tags=["variant"]),
        Case("LSTM layer_norm", lambda h: rnnkit.LSTM(h, h, layer_norm=True), lstm, tags=["variant"]),
        Case("GRU reset_after=False", lambda h: rnnkit.GRU(h, h, reset_after=False), lstm, tags=["variant"]),
        Case("GRU layer_norm", lambda h: rnnkit.GRU(h, h, layer_norm=True), lstm, tags=["variant"]),
    ]


def python_engine_cases() -> list[Case]:
    """Standard configurations forced onto rnnkit's own engine, against the same torch.nn layer."""
    import rnnkit

    return [
        Case("LSTM engine=python", lambda h: rnnkit.LSTM(h, h, engine="python"), lambda h: nn.LSTM(h, h),
             tags=["python"]),
        Case("GRU engine=python", lambda h: rnnkit.GRU(h, h, engine="python"), lambda h: nn.GRU(h, h),
             tags=["python"]),
    ]


def target_for(case: Case, shape: tuple[int, int, int]) -> float | None:
    """The ratio target of a case at a shape, or None where issue 7 sets none."""
    for tag in case.tags:
        if shape in TARGETS.get(tag, {}):
            return TARGETS[tag][shape]
    return None


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """'100x64x256,200x16x128' -> [(100, 64, 256), (200, 16, 128)] as (T, B, I = H)."""
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        try:
            shape = tuple(int(v) for v in parts)
        except ValueError:
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shapes: expected TxBxH with positive integers (e.g. 100x64x256), got {item!r}")
        shapes.append(shape)
    return shapes


def _state_sum(state) -> torch.Tensor:
    """Sum of a final state: a tensor (RNN, GRU) or a tuple (h, c) (LSTM)."""
    return state.sum() if isinstance(state, torch.Tensor) else sum(s.sum() for s in state)


def training_step(module: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None, is_torch: bool,
                  fused_path: bool = True) -> float:
    """One timed forward + backward, in seconds; the loss is output.sum() + the final state's sum.

    With lengths, torch.nn is used as a user would: pack, run, unpack, all inside the timing.
    ``fused_path=False`` runs rnnkit's variants on the step loop (``fused.disabled()``).
    """
    from .layers import fused

    module.zero_grad(set_to_none=True)
    with nullcontext() if fused_path else fused.disabled():
        start = time.perf_counter()
        if lengths is None:
            out, state = module(x)
        elif is_torch:
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            out, state = module(packed)
            out = pad_packed_sequence(out, total_length=x.shape[0])[0]
        else:
            out, state = module(x, lengths=lengths)
        (out.sum() + _state_sum(state)).backward()
        return time.perf_counter() - start


def measure(case: Case, shape: tuple[int, int, int], repeats: int, warmup: int, gen: torch.Generator,
            loop: bool = False) -> dict:
    """Time the sides of a case in rotating order; medians (ms), ratio and all samples.

    Sides: "rnnkit", "torch", and with ``loop`` also "loop" (the rnnkit layer with the fused
    path disabled). ``ratio`` = median rnnkit / median torch; ``paired`` = median over
    repeats of rnnkit / torch on the same input; ``spread`` = the largest max/min of a side.
    """
    T, B, H = shape
    torch.manual_seed(0)
    ours, theirs = case.make_rnnkit(H), case.make_torch(H)
    sides = [("rnnkit", ours, False, True), ("torch", theirs, True, True)]
    if loop:
        sides.append(("loop", ours, False, False))
    times = {label: [] for label, *_ in sides}
    for r in range(warmup + repeats):
        x = torch.randn(T, B, H, generator=gen)
        lengths = torch.randint(max(1, T // 2), T + 1, (B,), generator=gen) if case.lengths else None
        k = r % len(sides)
        for label, module, is_torch, fused_path in sides[k:] + sides[:k]:
            seconds = training_step(module, x, lengths, is_torch, fused_path)
            if r >= warmup:
                times[label].append(seconds * 1e3)
    med = {label: statistics.median(v) for label, v in times.items()}
    spread = max(max(v) / min(v) for v in times.values())
    row = {
        "case": case.name, "tags": list(case.tags), "shape": list(shape),
        "rnnkit_ms": med["rnnkit"], "torch_ms": med["torch"], "ratio": med["rnnkit"] / med["torch"],
        "paired": statistics.median(a / b for a, b in zip(times["rnnkit"], times["torch"])),
        "target": target_for(case, shape), "spread": spread, "noisy": spread > NOISY, "samples_ms": times,
    }
    if loop:
        row["loop_ms"] = med["loop"]
    log.debug("%s %s: %.2f", case.name, shape, row["ratio"])
    return row


def lstm_training_flops(T: int, B: int, I: int, H: int, input_grad: bool = False) -> float:
    """Matrix-product FLOPs of one LSTM training step (one layer, one direction).

    Forward: 2 T B (I + H) 4H (the input and recurrent products); backward: the same again
    for the weight gradients, 2 T B H 4H for the gradient of each h_tm1, and with
    ``input_grad`` 2 T B I 4H for the input's (``training_step``'s input needs none).
    Element-wise work is not counted.
    """
    forward = 2.0 * T * B * (I + H) * 4 * H
    backward = forward + 2.0 * T * B * H * 4 * H + (2.0 * T * B * I * 4 * H if input_grad else 0.0)
    return forward + backward


def matmul_gflops(size: int = 1024, repeats: int = 10) -> float:
    """The machine's float32 matrix-product rate (GFLOP/s): the best of torch.mm and oneDNN
    (the library torch.nn.LSTM uses on CPU) on (size, size) @ (size, size), fastest of
    ``repeats`` (a peak: on a shared machine the fastest run is the least disturbed one)."""
    from .layers import fused

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=gen), torch.randn(size, size, generator=gen)
    products = [lambda: torch.mm(a, b)]
    op = fused._gemm_for(a)
    if op is not None:
        b_t = b.t().contiguous()
        products.append(lambda: op(a, b_t, None, "none", [], ""))
    fastest = float("inf")
    for product in products:
        product()  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            product()
            fastest = min(fastest, time.perf_counter() - start)
    return 2.0 * size**3 / fastest / 1e9


# Streaming generation (issue 7, part 2): chars/s of rnnkit's Stream / each reference, at least
STREAMING_TARGETS = {"torch.nn.LSTM per step": 10.0, "nn.LSTMCell loop": 1.5}


def _streaming_script():
    """``benchmarks/streaming.py`` of the source tree this package runs from, as a module, or
    None (an installed package has no benchmarks folder)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "streaming.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("_rnnkit_streaming_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def streaming_rates(steps: int, slow_steps: int, rounds: int, hidden: int = 512, layers: int = 2) -> dict | None:
    """Characters/s of streaming generation (``benchmarks/streaming.py``'s contestants: a
    character LM with an LSTM of ``layers`` x ``hidden``, batch 1): median over rounds in
    alternating order, keyed "stream", "torch.nn.LSTM per step", "nn.LSTMCell loop".
    None where the script is not there. Uses the script's ``make_models``, ``gen_stream``,
    ``gen_torch_lstm``, ``gen_cells``, ``take`` and ``rate``."""
    script = _streaming_script()
    if script is None:
        return None
    # The script's generators enter inference mode inside and yield within it, which leaks the
    # mode to this thread while they are suspended: all of it happens inside this block, and
    # the generators are closed before it restores the caller's mode.
    with torch.inference_mode():
        lm, lstm, cells = script.make_models(65, 64, hidden, layers)
        contestants = {  # name: (character generator, characters per round)
            "stream": (script.gen_stream(lm, 1), steps),
            "torch.nn.LSTM per step": (script.gen_torch_lstm(lm, lstm, 1), slow_steps),
            "nn.LSTMCell loop": (script.gen_cells(lm, cells, 1), steps),
        }
        try:
            for gen, n in contestants.values():  # warm-up (and the stream's construction)
                script.take(gen, max(n // 5, 2))
            rates = {name: [] for name in contestants}
            names = list(contestants)
            for r in range(rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    gen, n = contestants[name]
                    rates[name].append(script.rate(gen, n))
        finally:
            for gen, _ in reversed(list(contestants.values())):
                gen.close()
    return {name: statistics.median(v) for name, v in rates.items()}
