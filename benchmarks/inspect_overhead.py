"""Recording off costs nothing: a model that has been recorded (hooks installed, then removed)
runs as fast as one never recorded. Prints ratios measured in one run, interleaved rounds.

    python benchmarks/inspect_overhead.py [--hidden 512] [--layers 2] [--batch 32] [--seq 100] [--rounds 15]
"""
import argparse
import copy
import statistics
import time

import torch

from rnnkit.models import LanguageModel, LanguageModelConfig
from rnnkit.viz.inspect import record


def timed(fn, repeats):
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    never = LanguageModel(LanguageModelConfig(vocab_size=100, hidden_size=a.hidden, num_layers=a.layers)).eval()
    was = copy.deepcopy(never)
    x = torch.randint(0, 100, (a.batch, a.seq))
    with torch.no_grad(), record(was):  # recording on, once: then off again
        was(x)
    assert not any(m._forward_hooks for m in was.modules())
    with torch.no_grad():
        same = torch.equal(never(x)[0], was(x)[0])

    def fwd(m):
        with torch.no_grad():
            m(x)

    def train_step(m):
        m.zero_grad()
        logits, _ = m(x)
        logits.float().pow(2).mean().backward()

    rows = {"forward (no_grad)": fwd, "forward+backward": train_step}
    for m in (never, was):
        fwd(m), train_step(m)  # warm up
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; LSTM {a.layers}x{a.hidden}, "
          f"batch {a.batch} x {a.seq} chars; {a.rounds} interleaved rounds x {a.repeats} calls; outputs equal: {same}")
    medians = {}
    for name, fn in rows.items():
        t_never, t_was = [], []
        for _ in range(a.rounds):
            t_never.append(timed(lambda: fn(never), a.repeats))
            t_was.append(timed(lambda: fn(was), a.repeats))
        ratios = [w / n for w, n in zip(t_was, t_never)]
        medians[name] = statistics.median(t_never)
        print(f"{name:18s} never recorded {medians[name] * 1e3:8.1f} ms  after recording "
              f"{statistics.median(t_was) * 1e3:8.1f} ms  ratio {statistics.median(ratios):.3f} "
              f"(rounds {min(ratios):.3f}..{max(ratios):.3f})")

    def recorded():
        with torch.no_grad(), record(was):
            was(x)

    on = statistics.median(timed(recorded, 1) for _ in range(3))
    print(f"recording on (for scale): {on * 1e3:.0f} ms per forward, {on / medians['forward (no_grad)']:.1f}x a plain forward")


if __name__ == "__main__":
    main()
