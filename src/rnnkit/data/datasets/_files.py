"""What the text readers of this package share: the size limit, and a file read whole as text.

A reader is handed files it did not make, so every failure is the reader's one-line
``ValueError`` naming the file (and where possible the line): never a decoder's traceback, and
never a read of a file too large to hold (a text data file is read whole, then parsed).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

MAX_TEXT_BYTES = 512 << 20  # 512 MiB: a text data file larger than this is refused before it is read


def check_file(owner: str, path: Path, max_bytes: int = MAX_TEXT_BYTES) -> int:
    """The size of the regular file ``path``; ValueError when it is missing or larger than ``max_bytes``."""
    try:
        if not path.is_file():
            raise ValueError(f"{owner}: {path} does not exist or is not a file")
        size = path.stat().st_size
    except OSError as e:  # a path too long, a folder we may not list
        raise ValueError(f"{owner}: cannot read {path} ({e.strerror or type(e).__name__})") from None
    if size > max_bytes:
        raise ValueError(f"{owner}: {path} is {size:,} bytes, more than the {max_bytes:,}-byte limit "
                         "for a data file read whole")
    return size


def read_text(owner: str, path: Path, encoding: str = "utf-8", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The whole file as text, newlines as written (``\\r\\n`` kept: the CSV reader needs them).

    A file that is not valid ``encoding`` raises ValueError giving the byte offset and the line.
    """
    check_file(owner, path, max_bytes)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{owner}: cannot read {path} ({e.strerror or type(e).__name__})") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{owner}: {path} is not UTF-8 text ({e.reason} at byte {e.start}, line {line})") from None


def text_lines(text: str) -> io.StringIO:
    """``text`` as a file of lines split at ``\\n``, ``\\r`` or ``\\r\\n``, kept untranslated (as
    ``open(..., newline="")`` gives them, which ``csv.reader`` expects)."""
    return io.StringIO(text, newline="")


def csv_rows(owner: str, path: Path) -> list[tuple[int, list[str]]]:
    """The rows of a UTF-8 CSV file that are not blank, each with its line number (a quoted field
    may span lines): ``[(line, cells), ...]``. A file that is not valid CSV (a quote in the wrong
    place, a field over the csv module's size limit) raises one ValueError naming file and line."""
    reader = csv.reader(text_lines(read_text(owner, path, encoding="utf-8-sig")))
    numbered, line = [], 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                numbered.append((line, row))
            line = reader.line_num + 1
    except csv.Error as e:
        if "field limit" in str(e):
            raise ValueError(f"{owner}: {path} line {reader.line_num}: a field is longer than "
                             f"{csv.field_size_limit():,} characters, the CSV field size limit") from None
        raise ValueError(f"{owner}: {path} line {reader.line_num}: not valid CSV ({e})") from None
    return numbered


def shown(names: list[str], limit: int = 20) -> str:
    """Names read from a file (a header's columns) as a one-line message lists them: ``a, b, c``,
    each printable and at most 40 characters, at most ``limit`` of them."""
    def one(name: str) -> str:
        name = name if name.isprintable() else repr(name)[1:-1]
        return name if len(name) <= 40 else name[:37] + "..."

    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(one(name) for name in names[:limit]) + more
