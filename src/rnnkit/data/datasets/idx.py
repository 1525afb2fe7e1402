"""IDX files (the MNIST format), gzipped or not: ``read_idx`` and a folder reader.

An IDX file is two zero bytes, a type byte, the number of dimensions, each dimension as a
big-endian uint32, then the values in C order (big-endian for multi-byte types).
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "read_idx_folder"]

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file (``.gz`` is decompressed). Bad files raise ValueError."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"read_idx: cannot read {path} ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise ValueError(f"read_idx: {path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"read_idx: {path} holds {len(raw) - header} data bytes, its header {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx_folder(folder: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images, labels), "test": (images, labels)}`` from an MNIST-style folder.

    Files are found by name: ``train-images*``, ``train-labels*``, ``t10k-images*`` /
    ``test-images*``, ``t10k-labels*`` / ``test-labels*`` (gzipped or not). A folder with only
    the training pair gives only "train".
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"read_idx_folder: {folder} is not a folder")
    names = {p.name: p for p in folder.iterdir() if p.is_file()}

    def find(prefixes: tuple[str, ...], kind: str) -> Path | None:
        hits = sorted(p for n, p in names.items() if n.startswith(prefixes) and kind in n)
        return hits[0] if hits else None

    out = {}
    for split, prefixes in (("train", ("train",)), ("test", ("t10k", "test"))):
        images, labels = find(prefixes, "images"), find(prefixes, "labels")
        if images is None or labels is None:
            continue
        x, y = read_idx(images), read_idx(labels)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"read_idx_folder: {images.name} {x.shape} and {labels.name} {y.shape} do not pair up "
                             "as (N, rows, cols) images and (N,) labels")
        out[split] = (x, y)
    if "train" not in out:
        raise ValueError(f"read_idx_folder: {folder} has no train-images*/train-labels* IDX pair")
    return out
