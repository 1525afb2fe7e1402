"""Numbers written with digit images: digits of a pool placed side by side into one image.

``compose_numbers`` draws ``count`` numbers of 1..``max_digits`` digits (the digit count
uniform, then each digit uniform; the first digit of a number of two or more digits is never
0, so a composition reads as the number it shows: "305", never "05"), and for each digit an
image of that label from the pool, at random. The images are set side by side, left to right,
into one row ``rows x (cols * digits)``, then padded with zeros (no ink) on the right up to
``cols * max_digits``::

    pool (N, 28, 28), labels (N,)  ->  images (count, 28, 28 * max_digits) uint8-or-float
                                       widths (count,) = 28 * digits, numbers (count,),
                                       picks (count, max_digits) pool indices (-1 after the end)

Deterministic in ``seed`` (NumPy's ``default_rng``). A pool built from disjoint digits (train /
val / test pools cut from one set of digit images before composing) gives test numbers written
only with digit images no training number used.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...checks import check_int

__all__ = ["ComposedNumbers", "compose_numbers", "number_digits"]


class ComposedNumbers(NamedTuple):
    """Numbers written with pool images (see the module docstring)."""

    images: np.ndarray  # (count, rows, cols * max_digits), the pool's dtype, zero right of `widths`
    widths: np.ndarray  # (count,) int64: the columns holding digits, cols * digit count
    numbers: np.ndarray  # (count,) int64: the values written
    digits: np.ndarray  # (count,) int64: how many digits each number has
    picks: np.ndarray  # (count, max_digits) int64: the pool image of each digit, -1 past the last


def number_digits(number: int) -> list[int]:
    """The decimal digits of a number >= 0, most significant first (0 -> [0])."""
    return [int(ch) for ch in str(int(number))]


def compose_numbers(pool: np.ndarray, labels: np.ndarray, count: int, max_digits: int, seed: int,
                    min_digits: int = 1) -> ComposedNumbers:
    """``count`` numbers of ``min_digits..max_digits`` digits written with ``pool``'s images.

    Args:
        pool: digit images (N, rows, cols), any numeric dtype (kept).
        labels: (N,) their digits, 0..9; every digit 0..9 must have an image (1..9 when
            every number has two or more digits).
        count: numbers to compose, >= 0.
        max_digits, min_digits: the digit counts, 1 <= min_digits <= max_digits.
        seed: the random draws' seed.
    """
    owner = "compose_numbers"
    count = check_int(owner, "count", count, minimum=0)
    max_digits = check_int(owner, "max_digits", max_digits, minimum=1)
    min_digits = check_int(owner, "min_digits", min_digits, minimum=1)
    seed = check_int(owner, "seed", seed, minimum=0)
    if min_digits > max_digits:
        raise ValueError(f"{owner}: min_digits must be <= max_digits ({max_digits}), got {min_digits}")
    pool, labels = np.asarray(pool), np.asarray(labels).astype(np.int64)
    if pool.ndim != 3 or labels.shape != pool.shape[:1]:
        raise ValueError(f"{owner}: pool must be (N, rows, cols) and labels (N,), got {pool.shape} and {labels.shape}")
    by_digit = [np.flatnonzero(labels == d) for d in range(10)]
    needed = range(10) if min_digits == 1 else range(1, 10)
    missing = [d for d in needed if len(by_digit[d]) == 0]
    if missing and count:
        raise ValueError(f"{owner}: the pool must hold an image of every digit, got none of {missing}")
    rng = np.random.default_rng(seed)
    n_rows, n_cols = pool.shape[1:]  # rows, cols of one digit image
    images = np.zeros((count, n_rows, n_cols * max_digits), dtype=pool.dtype)
    picks = np.full((count, max_digits), -1, dtype=np.int64)
    digits = rng.integers(min_digits, max_digits + 1, size=count)  # (count,)
    numbers = np.zeros(count, dtype=np.int64)
    for k in range(count):
        n = int(digits[k])
        # The first digit of a number of 2+ digits is 1..9: no leading zero.
        values = [int(rng.integers(0 if n == 1 else 1, 10))] + [int(v) for v in rng.integers(0, 10, size=n - 1)]
        for j, d in enumerate(values):
            index = int(by_digit[d][rng.integers(len(by_digit[d]))])
            picks[k, j] = index
            images[k, :, j * n_cols : (j + 1) * n_cols] = pool[index]
        numbers[k] = int("".join(map(str, values)))
    return ComposedNumbers(images, digits.astype(np.int64) * n_cols, numbers, digits.astype(np.int64), picks)
