"""IDX files (the MNIST format), gzipped or not: ``read_idx`` and a folder reader.

An IDX file is two zero bytes, a type byte, the number of dimensions, each dimension as a
big-endian uint32, then the values in C order (big-endian for multi-byte types).

The header is checked before anything is allocated: at most ``MAX_IDX_DIMS`` dimensions whose
values take at most ``MAX_IDX_BYTES``, and exactly as many data bytes as the file holds (for a
``.gz`` file, only that many are decompressed, plus one to see that nothing follows). Every
failure, a corrupt gzip stream included, is a one-line ``ValueError`` naming the file.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["read_idx", "read_idx_folder", "MAX_IDX_BYTES", "MAX_IDX_DIMS"]

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_IDX_BYTES = 1 << 30  # 1 GiB of values (full MNIST's training images are 47 MB, EMNIST's largest 0.55 GB)
MAX_IDX_DIMS = 8  # MNIST files have 1 (labels) or 3 (images)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file (``.gz`` is decompressed). Bad files raise ValueError naming them."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"read_idx: {path} does not exist or is not a file")
    gz = path.suffix == ".gz"
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            return _read_idx(f, path, None if gz else os.fstat(f.fileno()).st_size)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        what = "gzip file" if gz else "file"
        detail = (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(f"read_idx: {path} is not a readable {what} ({detail})") from None


def _read_idx(f: BinaryIO, path: Path, size: int | None) -> np.ndarray:
    """Header first, then exactly the data bytes it declares (``size``: the file's, None when gzipped)."""
    magic = f.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _TYPES:
        raise ValueError(f"read_idx: {path} is not an IDX file (bad magic number {magic.hex()})")
    ndim = magic[3]
    if ndim > MAX_IDX_DIMS:
        raise ValueError(f"read_idx: {path} header declares {ndim} dimensions, at most {MAX_IDX_DIMS} are read")
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"read_idx: {path} ends inside its header ({ndim} dimensions need {4 * ndim} bytes, "
                         f"got {len(dims)})")
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = np.dtype(_TYPES[magic[2]])
    expected = math.prod(shape) * dtype.itemsize  # (Python ints: no overflow)
    if expected > MAX_IDX_BYTES:
        raise ValueError(f"read_idx: {path} header declares shape {shape} of {dtype.name}, {expected:,} bytes, "
                         f"more than the {MAX_IDX_BYTES:,}-byte limit")
    held = None if size is None else size - 4 - 4 * ndim
    if held is not None and held != expected:
        raise ValueError(f"read_idx: {path} holds {held} data bytes, its header {shape} needs {expected}")
    raw = f.read(expected + 1)  # one more: a gzipped file must end there too
    if len(raw) != expected:
        held = f"more than {expected}" if len(raw) > expected else len(raw)
        raise ValueError(f"read_idx: {path} holds {held} data bytes, its header {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx_folder(folder: str | os.PathLike,
                    num_classes: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images, labels), "test": (images, labels)}`` from an MNIST-style folder.

    Files are found by name: ``train-images*``, ``train-labels*``, ``t10k-images*`` /
    ``test-images*``, ``t10k-labels*`` / ``test-labels*`` (gzipped or not). A folder with only
    the training pair gives only "train".

    Images must be (N, rows, cols) with N >= 1 and finite values; labels (N,) of an integer
    type, >= 0, and below ``num_classes`` when it is given (a model's class count). Anything
    else raises ValueError naming the file.
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
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or x.size == 0:
            raise ValueError(f"read_idx_folder: {images} {x.shape} and {labels} {y.shape} do not pair up "
                             "as (N, rows, cols) images and (N,) labels with N, rows, cols >= 1")
        _check_values(images, x, labels, y, num_classes)
        out[split] = (x, y)
    if "train" not in out:
        raise ValueError(f"read_idx_folder: {folder} has no train-images*/train-labels* IDX pair")
    return out


def _check_values(images: Path, x: np.ndarray, labels: Path, y: np.ndarray, num_classes: int | None) -> None:
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
        raise ValueError(f"read_idx_folder: {images} image {bad} holds a NaN or infinite pixel")
    if y.dtype.kind not in "iu":
        raise ValueError(f"read_idx_folder: {labels} labels must be an integer IDX type (ubyte, byte, short, int), "
                         f"got {y.dtype.name}")
    bad = y < 0
    if num_classes is not None:
        bad |= y >= num_classes
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        expected = f"in 0..{num_classes - 1}" if num_classes is not None else ">= 0"
        raise ValueError(f"read_idx_folder: {labels} label {k} is {int(y[k])}, labels must be {expected}")
