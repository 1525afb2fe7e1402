"""``rnnkit bench``: every speed ratio of issue 7 as one table, measured in one run.

Rows (training steps: forward + backward, medians, sides alternating; see ``rnnkit.bench``):

- standard RNN / LSTM / GRU layers against torch.nn's, also 2 layers bidirectional with
  lengths (torch.nn given packed sequences), target ratio 1.05;
- each variant (peephole LSTM, layer-norm LSTM and GRU, GRU reset_after=False) against
  torch.nn's standard LSTM, targets 1.25 at (100, 64, 256) and 2 at (200, 16, 128);
- the LSTM training step's achieved matrix-product FLOP rate (``bench.lstm_training_flops``
  over the median time of the "LSTM" row) as a fraction of a large matrix product's peak
  rate, measured before and after the timings (the faster counts);
- streaming generation (characters/s, ``rnnkit.Stream``, batch 1 on the CPU) against
  torch.nn.LSTM called once per character and a loop over nn.LSTMCell, targets 10 and 1.5
  (``rnnkit.bench.streaming_rates``; the contestants of ``benchmarks/streaming.py``).

``--device auto|cpu|cuda`` (auto: cuda when ``torch.cuda.is_available()``). On CUDA, layers
and inputs are on the GPU, timed regions are bracketed by ``torch.cuda.synchronize()``, the
default shapes are (100, B, 256) for B = 1, 8, 64 (``bench.CUDA_SHAPES``), torch.nn runs on
cuDNN, the standard rows have a target of 1.05 (the same cuDNN kernel on both sides) and the
variants 1.5 at (100, 64, 256) (against cuDNN's standard LSTM), the peak is torch.mm's on the
GPU, and the streaming rows are steps/s of ``rnnkit.Stream`` at batch 1 (LSTM, peephole LSTM,
GRU) against torch.nn.LSTM called once per step (cuDNN), target 2
(``rnnkit.bench.device_stream_rates``).
The header names the device (the GPU's name, or the CPU model).

The table is Markdown: `| benchmark | shape (T,B,H) | unit | rnnkit | reference | ratio |
target | met |`; "met" is yes/no where a target applies; targets say which way they point.
"""
from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]

_COLUMNS = ["benchmark", "shape (T,B,H)", "unit", "rnnkit", "reference", "ratio", "target", "met"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="short run: median of 3 after 1 warm-up (default 7 after 2)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch.set_num_threads(N) (default: torch's)")
    parser.add_argument("--shapes", default=None, metavar="TxBxH,...",
                        help="comma-separated shapes (I = H), default 100x64x256,200x16x128")
    parser.add_argument("--repeats", type=int, default=None, metavar="N",
                        help="timed repeats per side (overrides --quick)")
    parser.add_argument("--warmup", type=int, default=None, metavar="N",
                        help="untimed repeats first (overrides --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                        help="where the layers run: auto (cuda if available, else cpu), cpu or cuda")
    parser.add_argument("--stream-steps", type=int, default=None, metavar="N",
                        help="characters (steps on CUDA) per streaming round (default 2000, --quick 300; "
                             "0: no streaming rows)")


def _check_args(args) -> None:
    for name in ("threads", "repeats"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"bench: --{name} must be a positive integer, got {value}")
    for name in ("warmup", "stream_steps"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise ValueError(f"bench: --{name.replace('_', '-')} must be an integer >= 0, got {value}")
    if args.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"bench: --device must be auto, cpu or cuda, got {args.device!r}")


def _machine() -> str:
    """CPU model, cores and load average, as far as the platform tells."""
    import os
    import platform

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return f"{model}, {os.cpu_count()} logical CPUs{load}"


def _print_row(cells: list) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def _timing_row(row: dict) -> list:
    target = row["target"]
    met = "" if target is None else ("yes" if row["ratio"] <= target else "no")
    shape = "({}, {}, {})".format(*row["shape"])
    name = row["case"] + (" (noisy)" if row["noisy"] else "")
    reference = "torch.nn." + ("LSTM" if "variant" in row["tags"] else row["case"].split()[0].split("(")[0])
    return [name, shape, "ms", f"{row['rnnkit_ms']:.3f}", f"{reference} {row['torch_ms']:.3f}",
            f"{row['ratio']:.2f}", "" if target is None else f"<= {target:.2f}", met]


def run(args) -> int:
    import datetime

    import torch

    from .. import bench

    _check_args(args)
    device = bench.resolve_device(args.device)
    default_shapes = bench.CUDA_SHAPES if device.type == "cuda" else bench.DEFAULT_SHAPES
    shapes = bench.parse_shapes(args.shapes) if args.shapes else default_shapes
    repeats = args.repeats or (3 if args.quick else 7)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)

    print(f"rnnkit bench, {datetime.datetime.now().isoformat(timespec='seconds')}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"machine: {_machine()}")
    if device.type == "cuda":
        print(f"device: cuda, {bench.device_name(device)} (CUDA {torch.version.cuda}, "
              f"cuDNN {torch.backends.cudnn.version()}); torch.nn runs on cuDNN")
    else:
        print("device: cpu (the machine above); torch.nn runs on oneDNN")
    print(f"training steps (forward + backward), median of {repeats} after {warmup} warm-up, sides alternating; "
          "ratio = rnnkit / reference (time), achieved / peak (FLOP rate)\n")
    peak = bench.matmul_gflops(device=device)  # again after the timings: the faster of the two counts
    _print_row(_COLUMNS)
    _print_row(["---"] * len(_COLUMNS))
    lstm_ms = {}
    for shape in shapes:
        for case in bench.standard_cases() + bench.variant_cases():
            row = bench.measure(case, shape, repeats, warmup, gen, device=device)
            _print_row(_timing_row(row))
            if case.name == "LSTM":
                lstm_ms[shape] = row["rnnkit_ms"]
    peak = max(peak, bench.matmul_gflops(device=device))
    for shape, ms in lstm_ms.items():
        T, B, H = shape
        achieved = bench.lstm_training_flops(T, B, H, H) / (ms / 1e3) / 1e9
        _print_row(["LSTM training FLOP rate", "({}, {}, {})".format(*shape), "GFLOP/s", f"{achieved:.1f}",
                    f"1024^3 matmul {peak:.1f}", f"{achieved / peak:.2f}", "", ""])
    if args.stream_steps != 0:
        for row in _streaming_rows(args) if device.type == "cpu" else _device_streaming_rows(args, device):
            _print_row(row)
    return 0


def _device_streaming_rows(args, device) -> list[list]:
    """Streaming at batch 1 on the GPU (``rnnkit.bench.device_stream_rates``): steps/s of
    ``rnnkit.Stream`` against torch.nn.LSTM (cuDNN) called once per step."""
    from .. import bench

    steps = args.stream_steps or (300 if args.quick else 2000)
    rates = bench.device_stream_rates(device, steps, 1 if args.quick else 3)
    reference = "torch.nn.LSTM per step"
    target = bench.DEVICE_STREAM_TARGET
    rows = []
    for name, value in rates.items():
        if name == reference:
            continue
        ratio = value / rates[reference]
        rows.append([f"streaming step, {name} vs {reference}", "2-layer H=256, batch 1", "steps/s", f"{value:.0f}",
                     f"{reference} {rates[reference]:.0f}", f"{ratio:.2f}", f">= {target:.2f}",
                     "yes" if ratio >= target else "no"])
    return rows


def _streaming_rows(args) -> list[list]:
    """Streaming generation rows (``rnnkit.bench.streaming_rates``: the CPU, batch 1)."""
    from .. import bench

    steps = args.stream_steps or (300 if args.quick else 2000)
    rates = bench.streaming_rates(steps, max(steps // 7, 2), 1 if args.quick else 3)
    rows = []
    for reference, target in bench.STREAMING_TARGETS.items():
        ratio = rates["stream"] / rates[reference]
        rows.append([f"streaming generation vs {reference}", "2-layer H=512, batch 1", "chars/s",
                     f"{rates['stream']:.0f}", f"{reference} {rates[reference]:.0f}", f"{ratio:.2f}",
                     f">= {target:.2f}", "yes" if ratio >= target else "no"])
    return rows
