"""Speed of rnnkit's layers against torch.nn, as ratios measured in one run.

Every comparison runs both sides on the same fresh random input, one after the other, in an
order that rotates between repeats, so that the noise of a shared machine hits all sides
alike; the results are medians and their ratio. Timings are of one training step: forward
and backward of ``output.sum() + final state sums``, after ``zero_grad``.

On CUDA (``device="cuda"``) the layers and inputs live on the GPU and every timed region is
bracketed by ``torch.cuda.synchronize()``, so a time covers the kernels, not just their launch.

The streaming contestants (a character LM writing one character at a time through
``rnnkit.Stream``, ``torch.nn.LSTM`` called once per character, or a loop over
``nn.LSTMCell``) live here too, used by ``streaming_rates`` and by ``benchmarks/streaming.py``.
Their generators enter ``torch.inference_mode`` once per step, never across a ``yield``: a
suspended generator must not leave its caller in inference mode.

Used by ``rnnkit bench`` (``rnnkit.commands.bench``) and by ``benchmarks/layers.py``,
``benchmarks/variants.py`` and ``benchmarks/streaming.py``. Targets are benchmark targets,
never test thresholds.
"""
from __future__ import annotations

import itertools
import logging
import statistics
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = [
    "DEFAULT_SHAPES", "Case", "standard_cases", "variant_cases", "python_engine_cases", "parse_shapes",
    "training_step", "measure", "matmul_gflops", "lstm_training_flops", "target_for", "resolve_device",
    "device_name", "CUDA_SHAPES", "streaming_rates", "STREAMING_TARGETS", "draw", "streaming_models", "gen_stream",
    "gen_torch_lstm", "gen_cells", "take", "rate", "device_stream_rates", "DEVICE_STREAM_TARGET",
]

log = logging.getLogger(__name__)

DEFAULT_SHAPES = [(100, 64, 256), (200, 16, 128)]  # (T, B, I = H)
CUDA_SHAPES = [(100, 1, 256), (100, 8, 256), (100, 64, 256)]  # the default shapes on CUDA
NOISY = 1.3  # a result whose samples (some side) vary by more than this factor is flagged
# Issue 7's targets, ratio rnnkit / torch.nn, by case tag and shape (other shapes: none)
TARGETS = {
    "standard": {(100, 64, 256): 1.05, (200, 16, 128): 1.05},
    "variant": {(100, 64, 256): 1.25, (200, 16, 128): 2.0},
}
# On CUDA both sides of a standard row run the same cuDNN kernel, so rnnkit may add no more
# than on CPU; the variants (rnnkit's engine, cuBLAS + Triton step kernels) against cuDNN's
# standard LSTM: 1.5 at (100, 64, 256) (issue 12).
CUDA_TARGETS = {"standard": {shape: 1.05 for shape in CUDA_SHAPES}, "variant": {(100, 64, 256): 1.5}}
DEVICE_STREAM_TARGET = 2.0  # rnnkit.Stream's steps/s over torch.nn.LSTM called per step, batch 1 (issue 12)


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
    from . import layers as rnnkit  # the layers under the names users write

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
    """The variants on rnnkit's sequence backends, each against torch.nn's *standard LSTM* (issue 7)."""
    from . import layers as rnnkit  # the layers under the names users write

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
    from . import layers as rnnkit  # the layers under the names users write

    return [
        Case("LSTM engine=python", lambda h: rnnkit.LSTM(h, h, engine="python"), lambda h: nn.LSTM(h, h),
             tags=["python"]),
        Case("GRU engine=python", lambda h: rnnkit.GRU(h, h, engine="python"), lambda h: nn.GRU(h, h),
             tags=["python"]),
    ]


def target_for(case: Case, shape: tuple[int, int, int], device: str = "cpu") -> float | None:
    """The ratio target of a case at a shape on a device type, or None where none is set."""
    targets = CUDA_TARGETS if torch.device(device).type == "cuda" else TARGETS
    for tag in case.tags:
        if shape in targets.get(tag, {}):
            return targets[tag][shape]
    return None


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when ``torch.cuda.is_available()``, else cpu; "cpu"; "cuda" (only with CUDA)."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"bench: device must be auto, cpu or cuda, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"bench: device cuda needs CUDA, but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'})")
    return torch.device(name)


def device_name(device: torch.device | str) -> str:
    """The GPU's name for CUDA (``torch.cuda.get_device_name``), "CPU" otherwise."""
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def _sync(device: torch.device) -> None:
    """Wait for the device's queued kernels (CUDA runs them asynchronously); nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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

    With lengths (on the CPU), torch.nn is used as a user would: pack, run, unpack, all inside
    the timing. ``fused_path=False`` runs rnnkit's variants on the reference step loop
    (``backends.only("torch")``: no sequence backend). On CUDA the device is synchronised before and after (x's device).
    """
    from .layers import backends

    module.zero_grad(set_to_none=True)
    with nullcontext() if fused_path else backends.only("torch"):
        _sync(x.device)
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
        _sync(x.device)
        return time.perf_counter() - start


def measure(case: Case, shape: tuple[int, int, int], repeats: int, warmup: int, gen: torch.Generator,
            loop: bool = False, device: torch.device | str = "cpu") -> dict:
    """Time the sides of a case in rotating order; medians (ms), ratio and all samples.

    Sides: "rnnkit", "torch", and with ``loop`` also "loop" (the rnnkit layer with the fused
    path disabled). ``ratio`` = median rnnkit / median torch; ``paired`` = median over
    repeats of rnnkit / torch on the same input; ``spread`` = the largest max/min of a side.
    Layers and inputs are on ``device``; ``gen`` (a CPU generator) draws the inputs.
    """
    T, B, H = shape
    device = torch.device(device)
    torch.manual_seed(0)
    ours, theirs = case.make_rnnkit(H).to(device), case.make_torch(H).to(device)
    sides = [("rnnkit", ours, False, True), ("torch", theirs, True, True)]
    if loop:
        sides.append(("loop", ours, False, False))
    times = {label: [] for label, *_ in sides}
    for r in range(warmup + repeats):
        x = torch.randn(T, B, H, generator=gen).to(device)
        lengths = torch.randint(max(1, T // 2), T + 1, (B,), generator=gen) if case.lengths else None
        k = r % len(sides)
        for label, module, is_torch, fused_path in sides[k:] + sides[:k]:
            seconds = training_step(module, x, lengths, is_torch, fused_path)
            if r >= warmup:
                times[label].append(seconds * 1e3)
    med = {label: statistics.median(v) for label, v in times.items()}
    spread = max(max(v) / min(v) for v in times.values())
    row = {
        "case": case.name, "tags": list(case.tags), "shape": list(shape), "device": device.type,
        "rnnkit_ms": med["rnnkit"], "torch_ms": med["torch"], "ratio": med["rnnkit"] / med["torch"],
        "paired": statistics.median(a / b for a, b in zip(times["rnnkit"], times["torch"])),
        "target": target_for(case, shape, device), "spread": spread, "noisy": spread > NOISY, "samples_ms": times,
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


def matmul_gflops(size: int = 1024, repeats: int = 10, device: torch.device | str = "cpu") -> float:
    """The device's float32 matrix-product rate (GFLOP/s): on CPU the best of torch.mm and
    oneDNN (the library torch.nn.LSTM uses on CPU), on CUDA torch.mm (with torch's TF32
    setting), on (size, size) @ (size, size), fastest of ``repeats`` (a peak: on a shared
    machine the fastest run is the least disturbed one)."""
    from .kernels import gemm

    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=gen).to(device) for _ in range(2))
    products = [lambda: torch.mm(a, b)]
    op = gemm.gemm_for(a)  # None off the CPU
    if op is not None:
        b_t = b.t().contiguous()
        products.append(lambda: op(a, b_t, None, "none", [], ""))
    fastest = float("inf")
    for product in products:
        product()  # warm-up
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            product()
            _sync(device)
            fastest = min(fastest, time.perf_counter() - start)
    return 2.0 * size**3 / fastest / 1e9



# -- streaming generation (issue 7, part 2) ----------------------------------------------------
# chars/s of rnnkit's Stream / each reference, at least
STREAMING_TARGETS = {"torch.nn.LSTM per step": 10.0, "nn.LSTMCell loop": 1.5}


def draw(logits: torch.Tensor, gen: torch.Generator, temperature: float = 1.0) -> int:
    """The sampler every contestant shares (``rnnkit.models.sample``'s, top_k = 0)."""
    return int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen))


def streaming_models(vocab: int, embedding: int, hidden: int, layers: int):
    """The contestants' weights: (rnnkit ``LanguageModel``, the same LSTM as ``torch.nn.LSTM``
    (batch_first), the same LSTM as a list of ``nn.LSTMCell``, one per layer), all in eval mode,
    seeded (torch.manual_seed(0)); the head is scaled x4 for a peakier, trained-like distribution."""
    from .models import LanguageModel, LanguageModelConfig

    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(vocab_size=vocab, embedding_dim=embedding, hidden_size=hidden,
                                           num_layers=layers)).eval()
    with torch.no_grad():
        lm.head.weight.mul_(4.0)  # a peakier distribution, as a trained model's
    lstm = lm.rnn.to_torch().eval()  # torch.nn.LSTM with the same weights (batch_first)
    cells = []
    for k in range(layers):
        cell = nn.LSTMCell(embedding if k == 0 else hidden, hidden)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(getattr(lstm, f"{name}_l{k}"))
        cells.append(cell.eval())
    return lm, lstm, cells


def gen_stream(lm, seed: int):
    """rnnkit's sampler: ``LanguageModelStream`` over ``rnnkit.Stream`` (what ``rnnkit generate`` runs)."""
    from .models import sample

    return sample(lm, [1], 10**9, generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def _lstm_call(lm, lstm, nxt: int, state, onednn: bool):
    """One torch.nn.LSTM call on character ``nxt``: (logits (V,), state)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # mkldnn.flags warns about TF32 on every switch
        with nullcontext() if onednn else torch.backends.mkldnn.flags(enabled=False):
            out, state = lstm(lm.embedding(torch.tensor([[nxt]])), state)  # (1, 1, H)
    return lm.head(out[0, -1]), state


def gen_torch_lstm(lm, lstm, seed: int, onednn: bool = True):
    """torch.nn.LSTM called once per character (oneDNN switched off per call with ``onednn=False``)."""
    gen = torch.Generator().manual_seed(seed)
    logits, state = _lstm_call(lm, lstm, 1, None, True)
    while True:
        nxt = draw(logits, gen)
        yield nxt
        logits, state = _lstm_call(lm, lstm, nxt, state, onednn)


@torch.inference_mode()
def _cells_call(lm, cells, nxt: int, states: list) -> torch.Tensor:
    """One step of the nn.LSTMCell stack on character ``nxt`` (states updated in the list): logits (V,)."""
    x = lm.embedding(torch.tensor([nxt]))  # (1, E)
    for k, cell in enumerate(cells):
        states[k] = cell(x, states[k])
        x = states[k][0]  # (1, H)
    return lm.head(x[0])


def gen_cells(lm, cells, seed: int):
    """A loop over torch.nn.LSTMCell, one cell per layer."""
    gen = torch.Generator().manual_seed(seed)
    H = cells[0].hidden_size
    states = [(torch.zeros(1, H), torch.zeros(1, H)) for _ in cells]
    nxt = 1
    while True:
        nxt = draw(_cells_call(lm, cells, nxt, states), gen)
        yield nxt


def take(gen, n: int) -> list[int]:
    """The next n characters of a generator."""
    return list(itertools.islice(gen, n))


def rate(gen, n: int) -> float:
    """Characters per second of writing the next n characters."""
    start = time.perf_counter()
    take(gen, n)
    return n / (time.perf_counter() - start)


def streaming_rates(steps: int, slow_steps: int, rounds: int, hidden: int = 512, layers: int = 2,
                    vocab: int = 65, embedding: int = 64) -> dict:
    """Characters/s of streaming generation on the CPU (a character LM with an LSTM of ``layers``
    x ``hidden``, batch 1): median over rounds in alternating order, keyed "stream",
    "torch.nn.LSTM per step" (``slow_steps`` characters a round), "nn.LSTMCell loop"."""
    lm, lstm, cells = streaming_models(vocab, embedding, hidden, layers)
    contestants = {  # name: (character generator, characters per round)
        "stream": (gen_stream(lm, 1), steps),
        "torch.nn.LSTM per step": (gen_torch_lstm(lm, lstm, 1), slow_steps),
        "nn.LSTMCell loop": (gen_cells(lm, cells, 1), steps),
    }
    for gen, n in contestants.values():  # warm-up (and the stream's construction)
        take(gen, max(n // 5, 2))
    rates = {name: [] for name in contestants}
    names = list(contestants)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            gen, n = contestants[name]
            rates[name].append(rate(gen, n))
    return {name: statistics.median(v) for name, v in rates.items()}


def device_stream_rates(device: torch.device | str, steps: int, rounds: int = 3, hidden: int = 256,
                        layers: int = 2) -> dict:
    """Steps/s of streaming at batch 1 on ``device`` (a ``layers`` x ``hidden`` stack, input of
    ``hidden``): ``rnnkit.Stream`` over an LSTM, a peephole LSTM and a GRU, against torch.nn.LSTM
    (cuDNN on CUDA) called once per step with its state passed on. Each side steps through the
    same ``steps`` inputs, already on the device, inside ``torch.inference_mode``; timed to a
    device synchronisation; median over rounds in alternating order."""
    from . import layers as rnnkit
    from .streaming import Stream

    device = torch.device(device)
    torch.manual_seed(0)
    xs = torch.randn(steps, 1, hidden, device=device)
    reference = nn.LSTM(hidden, hidden, num_layers=layers).to(device).eval()
    streams = {
        "Stream LSTM": Stream(rnnkit.LSTM(hidden, hidden, num_layers=layers).to(device)),
        "Stream LSTM peephole": Stream(rnnkit.LSTM(hidden, hidden, num_layers=layers, peephole=True).to(device)),
        "Stream GRU": Stream(rnnkit.GRU(hidden, hidden, num_layers=layers).to(device)),
    }

    def run_stream(stream):
        def go():
            for x in xs:
                stream.step(x)
        return go

    def run_reference():
        state = None
        for x in xs:
            _, state = reference(x[None], state)

    contestants = {name: run_stream(stream) for name, stream in streams.items()}
    contestants["torch.nn.LSTM per step"] = run_reference
    rates = {name: [] for name in contestants}
    names = list(contestants)
    with torch.inference_mode():
        for go in contestants.values():  # warm-up (the streams' graph capture)
            go()
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                _sync(device)
                start = time.perf_counter()
                contestants[name]()
                _sync(device)
                rates[name].append(steps / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in rates.items()}
