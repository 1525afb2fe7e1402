"""Streaming generation speed and memory: rnnkit's Stream against per-step torch loops.

A character-level language model (embedding -> 2-layer LSTM, H=512 -> linear head, batch 1)
writes text one character at a time: each drawn character is fed back. Every contestant runs
the same weights and the same sampler (softmax, multinomial with a seeded generator), under
``torch.inference_mode``, so only the recurrent step differs:

- ``stream``: ``rnnkit.models.sample`` (``LanguageModelStream`` over ``rnnkit.Stream``);
- ``torch.nn.LSTM per step``: ``torch.nn.LSTM`` called once per character (oneDNN on, torch's
  default), and the same with oneDNN switched off per call (rnnkit's sampler before Stream);
- ``nn.LSTMCell loop``: two ``torch.nn.LSTMCell`` stepped by hand.

The contestants are ``rnnkit.bench``'s (the ones ``rnnkit bench`` times); this script adds the
oneDNN-off variant, the memory check and ``--compare-run``.

Contestants run in rounds, in an order that alternates between rounds, each one continuing
its own text (set-up costs are outside the timing); the table gives each one's median and
best characters/s over the rounds and the stream's ratio to it (on a shared machine the best
round is the one least disturbed by other jobs). Then the stream writes 100,000
characters and the process's peak and current resident memory are read after 1,000 and after
100,000 (``resource.getrusage``, /proc/self/statm), with tracemalloc's peak of Python objects.

    python benchmarks/streaming.py --threads 1
    python benchmarks/streaming.py --threads 2
    python benchmarks/streaming.py --quick          # tiny smoke run
    python benchmarks/streaming.py --compare-run runs/charlm   # same text as the old per-step path?
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
import tracemalloc
import warnings

import torch

from rnnkit.bench import draw, gen_cells, gen_stream, gen_torch_lstm, rate, take
from rnnkit.bench import streaming_models as make_models
from rnnkit.models import sample


@torch.no_grad()
def _old_call(model, ids: list[list[int]], state):
    """One call of the whole model, oneDNN off (not across a yield: the modes would leak)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # mkldnn.flags warns about TF32 on every switch
        with torch.backends.mkldnn.flags(enabled=False):
            return model(torch.tensor(ids), state)


def old_sample(model, prime: list[int], n: int, temperature: float, gen: torch.Generator):
    """rnnkit's sampler before Stream: the whole model called once per character, oneDNN off."""
    with torch.no_grad():
        logits, state = model(torch.tensor([prime]))
    for _ in range(n):
        nxt = draw(logits[0, -1], gen, temperature)
        yield nxt
        logits, state = _old_call(model, [[nxt]], state)


def compare_run(run_dir: str, n: int, prime_text: str = "ROMEO:\n", temperature: float = 0.8) -> None:
    import rnnkit

    run = rnnkit.load(run_dir)
    prime = run.task.vocab.encode(list(prime_text))
    print(f"# {run_dir}: {n} characters after {prime_text!r}, temperature {temperature}, "
          f"{torch.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.2f}")
    for seed in (0, 1, 2):
        start = time.perf_counter()
        old = list(old_sample(run.model, prime, n, temperature, torch.Generator().manual_seed(seed)))
        middle = time.perf_counter()
        new = list(sample(run.model, prime, n, temperature, 0, torch.Generator().manual_seed(seed)))
        end = time.perf_counter()
        diff = next((k for k, (a, b) in enumerate(zip(old, new)) if a != b), None)
        print(f"seed {seed}: identical {old == new} (first difference: {diff}); old path {n / (middle - start):,.0f} "
              f"chars/s, stream {n / (end - middle):,.0f} chars/s")


def rss_now_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=65, help="characters (default 65, like Shakespeare's)")
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds per contestant (default 9)")
    parser.add_argument("--steps", type=int, default=500, help="characters per round for the fast loops (default 500)")
    parser.add_argument("--slow-steps", type=int, default=100,
                        help="characters per round for torch.nn.LSTM per step (default 100)")
    parser.add_argument("--memory-steps", type=int, default=100_000, help="characters for the memory check")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--compare-run", default=None, metavar="DIR",
                        help="only check that a trained charlm run writes the same text with rnnkit's sampler as "
                             "with the old per-step path (3 seeds, --compare-chars characters each)")
    parser.add_argument("--compare-chars", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.rounds, args.steps, args.slow_steps, args.memory_steps = 32, 1, 50, 20, 2000
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.compare_run:
        compare_run(args.compare_run, args.compare_chars)
        return

    lm, lstm, cells = make_models(args.vocab, args.embedding, args.hidden, args.layers)
    # The same weights and the same generator: the contestants write the same first characters.
    n_check = 50
    first = [take(g, n_check) for g in (gen_stream(lm, 7), gen_cells(lm, cells, 7), gen_torch_lstm(lm, lstm, 7))]
    same = first[0] == first[1] == first[2]
    contestants = {  # name: (generator, characters per round)
        "stream (rnnkit.Stream)": (gen_stream(lm, 1), args.steps),
        "nn.LSTMCell loop": (gen_cells(lm, cells, 1), args.steps),
        "torch.nn.LSTM per step": (gen_torch_lstm(lm, lstm, 1), args.slow_steps),
        "torch.nn.LSTM per step, oneDNN off": (gen_torch_lstm(lm, lstm, 1, onednn=False), args.steps),
    }
    for gen, n in contestants.values():  # warm-up (and the stream's construction, outside the timing)
        take(gen, max(n // 5, 5))
    rates: dict[str, list[float]] = {name: [] for name in contestants}
    names = list(contestants)
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            gen, n = contestants[name]
            rates[name].append(rate(gen, n))

    print(f"# streaming generation: {args.layers}-layer LSTM, H={args.hidden}, E={args.embedding}, V={args.vocab}, "
          f"batch 1; torch {torch.__version__}, {torch.get_num_threads()} thread(s); load average "
          f"{os.getloadavg()[0]:.2f} at the end; {args.rounds} rounds; same text from all: {same}")
    print(f"{'contestant':<36} {'median chars/s':>15} {'stream is':>10} {'best chars/s':>13} {'stream is':>10}")
    stream_med, stream_best = statistics.median(rates[names[0]]), max(rates[names[0]])
    for name in names:
        med, best = statistics.median(rates[name]), max(rates[name])
        print(f"{name:<36} {med:>15,.0f} {stream_med / med:>9.2f}x {best:>13,.0f} {stream_best / best:>9.2f}x")

    # Memory over a long stream: the model, the stream and the sampler; nothing per step is kept.
    tracemalloc.start()
    stream = lm.stream()
    gen = torch.Generator().manual_seed(3)
    logits = stream.read(torch.tensor([[1]]))[0]
    ids = torch.zeros(1, dtype=torch.long)
    marks = {}
    first = min(1000, args.memory_steps)
    for step in range(1, args.memory_steps + 1):
        ids[0] = draw(logits, gen)
        logits = stream.step(ids)[0]
        if step in (first, args.memory_steps):
            marks[step] = (peak_rss_mib(), rss_now_mib(), tracemalloc.get_traced_memory()[1] / 2**10)
    tracemalloc.stop()
    print(f"{'characters streamed':<22} {'peak RSS MiB':>13} {'RSS now MiB':>12} {'tracemalloc peak KiB':>21}")
    for step, (peak, now, traced) in marks.items():
        print(f"{step:<22,} {peak:>13.1f} {now:>12.1f} {traced:>21.1f}")


if __name__ == "__main__":
    main()
