"""Labelled multivariate time series of the UEA/UCR archive: aeon's bundled sets, ``.ts`` and CSV files.

Every reader returns a :class:`SeriesSet`: one float64 array (C, T_i) per series (channels
first, as aeon gives them; lengths may differ, channels may not), and a string label each.

* :func:`bundled_sets`: the classification sets that ship inside aeon (the folders of its
  ``datasets/data`` package folder holding ``NAME_TRAIN.ts`` and ``NAME_TEST.ts`` with
  ``@classLabel true``), listed from the installed package, never downloaded.
* :func:`load_archive`: a bundled set by name (``aeon.datasets.load_classification``, read from
  aeon's own folder) or a ``.ts`` path (``aeon.datasets.load_from_ts_file``): its train and test
  sets. A ``X_TRAIN.ts`` / ``X_TEST.ts`` path whose sibling exists gives both; a lone file gives
  its series as train and no test (the caller cuts one).
* :func:`read_ts_file`: one ``.ts`` file; the lines are checked first, so a bad file fails
  with one line naming the file and the line (aeon's own errors name neither).
* :func:`read_series_csv`: one series from a CSV file, a row per time step, a column per channel.
* :func:`stratified_holdout`: a seeded cut of a share of each class (validation, test).

Aeon is imported only when a file or a set is read. Missing values (``NaN`` / ``?``) are refused.
"""
from __future__ import annotations

import csv
import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._files import check_file, read_text, shown, text_lines

__all__ = ["SeriesSet", "ArchiveSplits", "bundled_sets", "bundled_folder", "load_archive", "read_ts_file",
           "read_series_csv", "stratified_holdout", "MAX_SERIES_CHANNELS"]

MAX_SERIES_CHANNELS = 10_000  # a CSV row wider than this is not one time step of a sensor


@dataclass(frozen=True)
class SeriesSet:
    """Labelled series: ``series[i]`` is (C, T_i) float64, all finite; ``labels[i]`` its class ("" if none)."""

    series: tuple[np.ndarray, ...]
    labels: tuple[str, ...]
    source: str  # where they came from: "JapaneseVowels/train" or a file's path

    def __post_init__(self) -> None:
        if len(self.series) != len(self.labels):
            raise ValueError(f"SeriesSet: {len(self.series)} series but {len(self.labels)} labels")
        if len({s.shape[0] for s in self.series}) > 1:
            raise ValueError(f"SeriesSet: every series of {self.source} must have the same channels, "
                             f"got {sorted({s.shape[0] for s in self.series})}")

    def __len__(self) -> int:
        return len(self.series)

    @property
    def channels(self) -> int:
        return self.series[0].shape[0] if self.series else 0

    @property
    def lengths(self) -> np.ndarray:
        """(N,) int64: each series' number of time steps."""
        return np.array([s.shape[1] for s in self.series], dtype=np.int64)

    def take(self, index) -> "SeriesSet":
        """The series at ``index`` (a sequence of ints), in that order."""
        return SeriesSet(tuple(self.series[i] for i in index), tuple(self.labels[i] for i in index), self.source)


class ArchiveSplits(tuple):
    """(train, test): the archive's own split; ``test`` is None for a lone file."""

    def __new__(cls, train: SeriesSet, test: SeriesSet | None):
        return super().__new__(cls, (train, test))

    @property
    def train(self) -> SeriesSet:
        return self[0]

    @property
    def test(self) -> SeriesSet | None:
        return self[1]


def bundled_folder() -> Path | None:
    """aeon's ``datasets/data`` package folder, found without importing aeon; None without aeon."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def bundled_sets() -> list[str]:
    """The names of the classification sets bundled with the installed aeon, sorted."""
    folder = bundled_folder()
    if folder is None or not folder.is_dir():
        return []
    names = []
    for sub in folder.iterdir():
        train, test = sub / f"{sub.name}_TRAIN.ts", sub / f"{sub.name}_TEST.ts"
        if train.is_file() and test.is_file() and _header(train).get("classlabel", "").startswith("true"):
            names.append(sub.name)
    return sorted(names)


def load_archive(source: str, owner: str = "load_archive") -> ArchiveSplits:
    """A bundled set's name or a ``.ts`` path -> its (train, test) sets (test None for a lone file)."""
    if not source.lower().endswith(".ts"):
        names = bundled_sets()
        if source not in names:
            raise ValueError(f"{owner}: data must be a .ts file or a set bundled with aeon "
                             f"({', '.join(names) or 'none found: pip install aeon'}), got {source!r}")
        return ArchiveSplits(_load_bundled(source, "train", owner), _load_bundled(source, "test", owner))
    path = Path(source)
    stem, upper = path.name[:-3], path.name[:-3].upper()
    for mine, other in (("_TRAIN", "_TEST"), ("_TEST", "_TRAIN")):
        if upper.endswith(mine):
            sibling = path.with_name(stem[: -len(mine)] + other + path.name[-3:])
            if sibling.is_file():
                pair = {mine: path, other: sibling}
                return ArchiveSplits(read_ts_file(pair["_TRAIN"], owner), read_ts_file(pair["_TEST"], owner))
    return ArchiveSplits(read_ts_file(path, owner), None)


def _load_bundled(name: str, split: str, owner: str) -> SeriesSet:
    from aeon.datasets import load_classification

    # extract_path = aeon's own folder, where the bundled files are: nothing is fetched.
    x, y = load_classification(name, split=split, extract_path=str(bundled_folder()))
    series = _as_series(x)
    bad = next((i for i, s in enumerate(series) if not np.isfinite(s).all()), None)
    if bad is not None:
        raise ValueError(f"{owner}: {name} {split} series {bad + 1} has missing values; sensors needs complete series")
    return SeriesSet(series, tuple(str(v) for v in y), f"{name}/{split}")


def read_ts_file(path: str | os.PathLike, owner: str = "read_ts_file", labelled: bool = True) -> SeriesSet:
    """The series of one ``.ts`` file (aeon's format); with ``labelled`` each must have a class label."""
    path = Path(path)
    lines = _check_ts(owner, path, labelled)
    from aeon.datasets import load_from_ts_file

    try:
        x, y = load_from_ts_file(str(path))
    except (OSError, ValueError, TypeError, IndexError) as e:  # the lines passed our check: say what aeon saw
        detail = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{owner}: {path} is not a readable .ts file ({detail})") from None
    series = _as_series(x)
    if len(series) != len(lines):
        raise ValueError(f"{owner}: {path} holds {len(lines)} data lines but aeon read {len(series)} series")
    for i, s in enumerate(series):
        if not np.isfinite(s).all():
            raise ValueError(f"{owner}: {path} line {lines[i]}: the series has missing values (NaN or ?); "
                             "sensors needs complete series")
    labels = tuple(str(v) for v in y) if len(y) else ("",) * len(series)
    return SeriesSet(series, labels, str(path))


def _as_series(x) -> tuple[np.ndarray, ...]:
    """aeon's (N, C, T) array or list of (C, T_i) arrays -> a tuple of (C, T_i) float64 arrays."""
    return tuple(np.ascontiguousarray(np.asarray(s, dtype=np.float64)) for s in x)


def _header(path: Path) -> dict[str, str]:
    """The ``@key value`` lines of a .ts file before ``@data``, keys lower-cased (cheap: stops at @data)."""
    found = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.lower().startswith("@data"):
                break
            if line.startswith("@"):
                key, _, value = line[1:].partition(" ")
                found[key.lower()] = value.strip().lower()
    return found


def _check_ts(owner: str, path: Path, labelled: bool) -> list[int]:
    """Check the lines of a .ts file; return the line numbers (1-based) of its series."""
    if path.suffix.lower() != ".ts":
        raise ValueError(f"{owner}: a series file must end in .ts, got {path}")
    text = read_text(owner, path)
    header, data_at, series_lines = {}, None, []
    dims = None
    for number, raw in enumerate(text_lines(text), 1):
        line = raw.strip()
        if not line or (data_at is None and line.startswith("#")):
            continue
        if data_at is None:
            if not line.startswith("@"):
                raise ValueError(f"{owner}: {path} line {number}: expected a @key line or @data before the series, "
                                 f"got {line[:40]!r}")
            key, _, value = line[1:].partition(" ")
            if key.lower() == "data":
                data_at = number
            header[key.lower()] = value.strip().lower()
            continue
        series_lines.append(number)
        if header.get("timestamps", "false") == "true":
            continue  # "(t, v)" pairs: aeon parses them
        parts = line.split(":")
        has_label = header.get("classlabel", "false").startswith("true")
        channels = parts[:-1] if has_label else parts
        if has_label and not parts[-1].strip():
            raise ValueError(f"{owner}: {path} line {number}: the class label after the last ':' is empty")
        if dims is None:
            dims = len(channels)
        if len(channels) != dims or not channels:
            raise ValueError(f"{owner}: {path} line {number}: expected {dims} channels separated by ':', "
                             f"got {len(channels)}")
        widths = set()
        for c, channel in enumerate(channels):
            values = channel.split(",")
            widths.add(len(values))
            for v in values:
                v = v.strip()
                if v != "?" and not _is_number(v):
                    raise ValueError(f"{owner}: {path} line {number}: channel {c + 1} holds {v[:30]!r}, not a number")
        if len(widths) > 1:
            raise ValueError(f"{owner}: {path} line {number}: the channels have different lengths {sorted(widths)}")
    if data_at is None:
        raise ValueError(f"{owner}: {path} has no @data line: not a .ts file")
    if not series_lines:
        raise ValueError(f"{owner}: {path} holds no series after its @data line {data_at}")
    if labelled and not header.get("classlabel", "false").startswith("true"):
        raise ValueError(f"{owner}: {path} has no class labels (its header says @classLabel "
                         f"{header.get('classlabel', 'nothing') or 'nothing'}); sensors needs labelled series")
    return series_lines


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_series_csv(path: str | os.PathLike, owner: str = "read_series_csv") -> np.ndarray:
    """One series (C, T) float64 from a CSV file: a row per time step, a column per channel.

    A first row that is not all numbers is a header and skipped. Every row must have the same
    number of columns, each a finite number; bad rows raise ValueError naming the file and line.
    """
    path = Path(path)
    check_file(owner, path)
    rows, width, header = [], None, None
    reader = csv.reader(text_lines(read_text(owner, path)))
    for row in reader:
        number = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row]
        if header is None and not rows and not all(_is_number(c) for c in cells):
            header = cells
            width = len(cells)
            continue
        if width is None:
            width = len(cells)
        if len(cells) != width:
            raise ValueError(f"{owner}: {path} line {number}: expected {width} columns (one per channel), got {len(cells)}")
        if width > MAX_SERIES_CHANNELS:
            raise ValueError(f"{owner}: {path} line {number}: {width} columns, more than the {MAX_SERIES_CHANNELS:,} "
                             "channels a series may have")
        try:
            values = [float(c) for c in cells]
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise ValueError(f"{owner}: {path} line {number}: {bad[:30]!r} is not a number") from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{owner}: {path} line {number}: values must be finite numbers, got {shown(cells, 8)}")
        rows.append(values)
    if not rows:
        raise ValueError(f"{owner}: {path} holds no time steps")
    return np.asarray(rows, dtype=np.float64).T.copy()  # (T, C) -> (C, T)


def stratified_holdout(labels, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(kept, held): a seeded share ``fraction`` of each class held out, the rest kept, both sorted.

    Each class holds out round(fraction * n_k) of its n_k items, at most n_k - 1 (every class
    keeps one); at least one item in all is held out when any class has two.
    """
    if not 0.0 < fraction < 1.0:  # (NaN too)
        raise ValueError(f"stratified_holdout: fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    labels = list(labels)
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    held: list[int] = []
    spare = []  # classes that could give one more
    for label in sorted(by_class):
        members = rng.permutation(by_class[label]).tolist()
        k = min(math.floor(fraction * len(members) + 0.5), len(members) - 1)
        held += members[:k]
        if len(members) - k > 1:
            spare.append(members[k])
    if not held and spare:
        held.append(spare[0])
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], sorted(held)
