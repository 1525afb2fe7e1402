"""An OS-level lock on a run directory, held for a training's whole life.

Two trainings writing into one ``--out`` interleave their metrics and delete each other's
temporary checkpoint files. ``RunLock(out)`` takes an exclusive ``flock`` on ``out/.lock``
(created if missing, and left empty: a resumed or repeated run changes no byte of it). The operating system
releases the lock when the process ends, however it ends (a SIGKILL included), so a dead
run's lock is never stale: the next training takes it over. A second writer gets one line
(``RunLocked``, a ValueError: the CLI prints it and exits with status 2) before it reads or
writes anything else. On systems without ``fcntl`` (Windows) the lock does nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

__all__ = ["RunLock", "RunLocked"]


class RunLocked(ValueError):
    """Another process holds the run directory's lock."""


class RunLock:
    """``with RunLock(directory):`` — exclusive use of ``directory`` for the block."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / ".lock"
        self._fd: int | None = None
        self._created = False

    def __enter__(self) -> "RunLock":
        if fcntl is None:
            return self
        self._created = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLocked(f"--out {self.directory} is in use by another training; wait for it to end or "
                            "choose another --out") from None
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        if self._created and os.listdir(self.directory) == [self.path.name]:
            self.path.unlink()  # a run that failed before writing anything leaves no folder behind
            self.directory.rmdir()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
