"""Labelled signals for anomaly alarms: aeon's bundled UCR anomaly set and any labelled CSV.

Every reader returns a :class:`LabelledSignal`: the values (N, C) oldest first, a 0/1 label per
row (1 = inside a labelled anomaly), the value columns' names and, where the source says it,
the length of its normal training part (the leading rows guaranteed free of anomalies).

* :func:`load_kdd_tsad_135`: UCR anomaly archive no. 135, InternalBleeding16 (arterial blood
  pressure, 7,501 values; one labelled anomaly at rows 4187-4198), as aeon ships it under
  ``aeon/datasets/data/KDD-TSAD_135``: its ``*_TEST.csv`` is the whole signal and its
  ``*_TRAIN.csv`` the normal training part, a prefix of it (1,200 rows: the ``1200`` of the
  archive's file name ``135_UCR_Anomaly_InternalBleeding16_1200_4187_4199.txt``). The files
  are read directly (aeon itself is not imported: it takes seconds); only the package must
  be installed.
* :func:`read_anomaly_csv`: a CSV file in the same layout: a header row, an optional
  ``timestamp`` column (ignored), one or more numeric value columns and an ``is_anomaly``
  column of 0/1 (optional where labels are not needed: ``labels_required=False``).
* :func:`load_anomaly_signal`: either, by name or path.
* :func:`anomaly_regions`: the labelled regions as ``(start, end)`` row ranges.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._files import csv_rows, shown

__all__ = ["LabelledSignal", "ANOMALY_SETS", "LABEL_COLUMN", "TIME_COLUMN", "load_kdd_tsad_135",
           "read_anomaly_csv", "load_anomaly_signal", "anomaly_regions"]

LABEL_COLUMN = "is_anomaly"  # 0/1 per row
TIME_COLUMN = "timestamp"  # ignored where present
_KDD_135 = ("KDD-TSAD_135", "135_UCR_Anomaly_InternalBleeding16")


@dataclass(frozen=True)
class LabelledSignal:
    """A (multivariate) signal with a 0/1 anomaly label per row, oldest row first."""

    values: np.ndarray  # (N, C) float64, all finite
    labels: np.ndarray  # (N,) int64, 0 or 1; all 0 where the source has no labels
    columns: tuple[str, ...]  # the C value columns' names
    train_length: int  # rows of the normal training part the source declares; 0 = it says nothing
    name: str  # where it came from: "KDD-TSAD_135" or the file's name
    labelled: bool = True  # False: the source has no is_anomaly column (labels are all 0 by default)

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or not np.isfinite(self.values).all():
            raise ValueError(f"LabelledSignal: values must be an (N, C) array of finite numbers, "
                             f"got shape {self.values.shape}")
        if self.labels.shape != (len(self.values),):
            raise ValueError(f"LabelledSignal: labels must have shape ({len(self.values)},), got {self.labels.shape}")
        if len(self.columns) != self.values.shape[1]:
            raise ValueError(f"LabelledSignal: {len(self.columns)} column names for {self.values.shape[1]} columns")
        if not 0 <= self.train_length <= len(self.values):
            raise ValueError(f"LabelledSignal: train_length must be in [0, {len(self.values)}], "
                             f"got {self.train_length}")

    def __len__(self) -> int:
        return len(self.values)


def anomaly_regions(labels: np.ndarray) -> list[tuple[int, int]]:
    """The runs of 1 in ``labels`` (N,) as ``(start, end)`` row ranges, end exclusive, in order."""
    flags = np.concatenate([[0], (np.asarray(labels) > 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(flags))  # rises at even places, falls at odd ones
    return [(int(edges[k]), int(edges[k + 1])) for k in range(0, len(edges), 2)]


def _aeon_data_folder() -> Path:
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the KDD-TSAD_135 data set needs the aeon package: pip install aeon")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def load_kdd_tsad_135() -> LabelledSignal:
    """UCR anomaly archive no. 135, InternalBleeding16, from aeon's bundled files (see the module docstring)."""
    folder, stem = _aeon_data_folder() / _KDD_135[0], _KDD_135[1]
    whole = read_anomaly_csv(folder / f"{stem}_TEST.csv")
    normal = read_anomaly_csv(folder / f"{stem}_TRAIN.csv")
    n = len(normal)
    if n >= len(whole) or not np.array_equal(normal.values, whole.values[:n]) or normal.labels.any():
        raise ValueError(f"load_kdd_tsad_135: {folder} does not hold the archive's layout (the TRAIN file must be "
                         "an anomaly-free prefix of the TEST file)")
    return LabelledSignal(whole.values, whole.labels, ("value",), n, _KDD_135[0])


ANOMALY_SETS = {"KDD-TSAD_135": load_kdd_tsad_135}


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of the rows that are not blank; a one-line ValueError for bad CSV."""
    return csv_rows("read_anomaly_csv", path)


def read_anomaly_csv(path: str | os.PathLike, columns: str = "", labels_required: bool = True) -> LabelledSignal:
    """A labelled signal from a CSV file whose first row names the columns.

    Args:
        path: the CSV file, rows oldest first.
        columns: the value columns, comma-separated; "" = every column but ``timestamp`` and
            ``is_anomaly``.
        labels_required: refuse a file without an ``is_anomaly`` column (training needs the
            labels; scoring a new signal does not, and its labels are then all 0).

    Every value cell must be a finite number and every label 0 or 1: anything else (an empty
    cell, a word, NaN, a short row) raises ``ValueError`` naming the file and the line, never
    skipped (a dropped row would shift every later index). The file declares no training part
    (``train_length`` 0).
    """
    path = Path(path)
    numbered = _rows(path)
    if not numbered:
        raise ValueError(f"read_anomaly_csv: {path} is empty (expected a header row naming the columns)")
    header = [cell.strip() for cell in numbered[0][1]]
    if LABEL_COLUMN not in header and labels_required:
        raise ValueError(f"read_anomaly_csv: {path} line {numbered[0][0]}: no {LABEL_COLUMN!r} column (0/1 per row); "
                         f"its columns: {shown(header)}")
    names = [c.strip() for c in columns.split(",") if c.strip()] or [
        c for c in header if c not in (LABEL_COLUMN, TIME_COLUMN)]
    if not names:
        raise ValueError(f"read_anomaly_csv: {path} line {numbered[0][0]}: no value column besides "
                         f"{TIME_COLUMN!r} and {LABEL_COLUMN!r}; its columns: {shown(header)}")
    for name in names:
        if name not in header:
            raise ValueError(f"read_anomaly_csv: {path} has no column {name!r}; its columns: {shown(header)}")
    at = [header.index(name) for name in names]
    at_label = header.index(LABEL_COLUMN) if LABEL_COLUMN in header else None
    values, labels = [], []
    for line, row in numbered[1:]:
        if len(row) != len(header):
            raise ValueError(f"read_anomaly_csv: {path} line {line}: expected {len(header)} fields, got {len(row)}")
        out = []
        for name, k in zip(names, at):
            out.append(_finite(row[k], path, line, name))
        values.append(out)
        if at_label is not None:
            cell = row[at_label].strip()
            if cell not in ("0", "1", "0.0", "1.0"):
                raise ValueError(f"read_anomaly_csv: {path} line {line}: column {LABEL_COLUMN!r} must be 0 or 1, "
                                 f"got {_quoted(cell)}")
            labels.append(int(float(cell)))
    if not values:
        raise ValueError(f"read_anomaly_csv: {path} has a header but no data rows")
    label_array = np.asarray(labels if at_label is not None else [0] * len(values), dtype=np.int64)
    return LabelledSignal(np.asarray(values, dtype=np.float64), label_array, tuple(names), 0, path.name,
                          at_label is not None)


def load_anomaly_signal(data: str, columns: str = "") -> LabelledSignal:
    """A bundled set by name (``ANOMALY_SETS``) or a labelled CSV file by path."""
    if data in ANOMALY_SETS:
        if columns:
            raise ValueError(f"load_anomaly_signal: columns applies to a CSV file, not to the bundled {data}")
        return ANOMALY_SETS[data]()
    if Path(data).is_file():
        return read_anomaly_csv(data, columns)
    raise ValueError(f"load_anomaly_signal: data must be {' or '.join(ANOMALY_SETS)} or a CSV file, got {data!r} "
                     "(no such file)")


def _finite(cell: str, path: Path, line: int, column: str) -> float:
    cell = cell.strip()
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"read_anomaly_csv: {path} line {line}: column {column!r} must hold a finite number, "
                         f"got {_quoted(cell)}")
    return value


def _quoted(cell: str) -> str:
    return repr(cell if len(cell) <= 40 else cell[:37] + "...")
