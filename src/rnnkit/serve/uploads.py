"""Uploaded files (images, audio) as private temporary files, for the tasks whose predict reads paths.

Each file is written, size-limited, to a new file of mode 0600 inside the server's own
temporary folder (mode 0700), under a random name with a suffix from an allowed list; only
that path reaches the task; the file is deleted when the request is done. Nothing the client
sends (its file name included) becomes a path.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from .config import ServeConfig
from .models import Inputs
from .requests import RequestError

__all__ = ["Upload", "save_upload", "display_name"]

_CHUNK = 1 << 16


class Upload:
    """One saved upload: the private ``path`` the task reads and the ``name`` shown in outputs."""

    def __init__(self, path: str, name: str) -> None:
        self.path, self.name = path, name

    def delete(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def display_name(filename: str | None, k: int) -> str:
    """The client's file name without any folders (for the output's ``input``), at most 200 characters."""
    name = PureWindowsPath(PurePosixPath(filename or "").name).name if filename else ""
    return (name or f"upload-{k + 1}")[:200]


async def save_upload(upload, k: int, kind: Inputs, folder: Path, config: ServeConfig) -> Upload:
    """Write the ``k``-th uploaded file (a starlette UploadFile) to a private file in ``folder``."""
    where = f"files[{k}]"
    name = display_name(upload.filename, k)
    suffix = Path(name).suffix.lower()
    if suffix not in kind.files:
        raise RequestError(422, where, f"{where} ({name!r}) must be a file ending in one of {', '.join(kind.files)}")
    fd, path = tempfile.mkstemp(suffix=suffix, dir=folder)  # mode 0600, a random name
    saved, size = Upload(path, name), 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(_CHUNK):
                size += len(chunk)
                if size > config.max_upload_bytes:
                    raise RequestError(413, where, f"{where} is larger than the {config.max_upload_bytes:,} bytes "
                                                   "allowed (--max-upload-bytes)")
                out.write(chunk)
        if size == 0:
            raise RequestError(422, where, f"{where} ({name!r}) is empty")
    except BaseException:
        saved.delete()
        raise
    return saved
