"""Run ``rnnkit`` with SIGKILL injected at a chosen ``os.replace`` / ``os.rename`` / ``shutil.rmtree``.

Two ways to start such a run, both a process of its own that the kill ends:

* ``python tests/training/fault_helpers.py train digits --out RUN ...`` — a fresh interpreter,
  exactly what a user starts (importing rnnkit costs 4-8 s on a busy 2-core machine);
* :func:`start` — a child forked from a ``multiprocessing`` fork server that has imported
  rnnkit once and done nothing else, so each run costs only its training. The child begins
  with the state of a fresh interpreter that has imported rnnkit: every generator is seeded by
  the run itself, and no module has done any work yet.

Environment of the script (``start`` takes the same settings as arguments; without them the
run is a plain ``rnnkit.cli.main``):

    FAULT_SCOPE      only calls whose path lies under this folder count (the run directory:
                     the kernel cache and other files outside it do not move the count)
    FAULT_LOG        append one JSON line per counted call, before making it: {"n", "op", "path",
                     "target", "t"} (paths relative to FAULT_SCOPE; "t": time.monotonic(), one clock
                     for every process of the machine)
    FAULT_KILL_AT    the 1-based number of the counted call at which the process kills itself
    FAULT_KILL_WHEN  "before" (the call never happens) or "after" (it has happened); default "before"

The kill is ``os.kill(os.getpid(), SIGKILL)``: no ``finally``, no ``atexit``, no flushed buffers,
as a power cut or the OOM killer would leave the run directory.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass

OPS = ("replace", "rename", "rmtree")  # every way the package moves or deletes files of a run


class Injector:
    """Counts the file operations of ``OPS`` under ``scope`` and kills the process at call ``kill_at``."""

    def __init__(self, scope: str | None, log: str | None, kill_at: int, when: str) -> None:
        if when not in ("before", "after"):
            raise ValueError(f"Injector: FAULT_KILL_WHEN must be before or after, got {when!r}")
        self.scope = os.path.realpath(scope) if scope else None
        self.log, self.kill_at, self.when = log, kill_at, when
        self.count = 0

    def _counted(self, path) -> bool:
        if self.scope is None:
            return True
        real = os.path.realpath(os.fspath(path))
        return real == self.scope or real.startswith(self.scope + os.sep)

    def wrap(self, op: str, original):
        def wrapper(path, *args, **kwargs):
            if not self._counted(path):
                return original(path, *args, **kwargs)
            self.count += 1
            n = self.count
            if self.log:
                target = os.fspath(args[0]) if args and op != "rmtree" else None
                with open(self.log, "a") as f:  # (before the call: a line cut short by a kill is one not made)
                    f.write(json.dumps({"n": n, "op": op, "path": self._relative(path),
                                        "target": self._relative(target) if target else None,
                                        "t": time.monotonic()}) + "\n")
            if n == self.kill_at and self.when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(path, *args, **kwargs)
            if n == self.kill_at and self.when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return wrapper

    def _relative(self, path) -> str:
        path = os.path.realpath(os.fspath(path))
        return os.path.relpath(path, self.scope) if self.scope else path

    def install(self) -> None:
        # pathlib's Path.replace / Path.rename call os.replace / os.rename, found at call time
        os.replace = self.wrap("replace", os.replace)
        os.rename = self.wrap("rename", os.rename)
        shutil.rmtree = self.wrap("rmtree", shutil.rmtree)


@dataclass(frozen=True)
class Fault:
    """Where to kill a run: the ``kill_at``-th counted call (0: never), ``when`` "before" or "after" it."""

    kill_at: int = 0
    when: str = "before"
    log: str | None = None  # a file for one JSON line per counted call


# What the fork server imports once: rnnkit, and what a run imports on first use (the digits
# data set's sklearn, the plots' pyplot, whose backend is chosen only when a figure is drawn).
PRELOAD = ["rnnkit.cli", "rnnkit.viz.plots", "sklearn.datasets", "matplotlib.pyplot"]
_context = None


def _server():
    """The fork server's context; the server starts with the first run, importing ``PRELOAD``."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def start(argv: list[str], scope: str | os.PathLike, output: str | os.PathLike, fault: Fault = Fault()):
    """Start ``rnnkit ARGV`` in a forked child, counting file operations under ``scope``; its
    stdout and stderr go to the file ``output``. Returns the started ``multiprocessing.Process``
    (``.pid`` to kill it from outside, ``.join()``, ``.exitcode``: -9 after a SIGKILL)."""
    process = _server().Process(target=_child, args=(list(argv), os.fspath(scope), os.fspath(output), fault))
    process.start()
    return process


def stop() -> None:
    """Stop the fork server (if this process started one) and forget the preload list."""
    global _context
    if _context is not None:
        _context.set_forkserver_preload([])
        from multiprocessing import forkserver

        getattr(forkserver._forkserver, "_stop", lambda: None)()  # (private; absent: it ends with this process)
        _context = None


def _child(argv: list[str], scope: str, output: str, fault: Fault) -> None:
    import torch

    torch.set_num_threads(1)  # tiny tensors: one thread, as in the test suite (conftest.py)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    Injector(scope, fault.log, fault.kill_at, fault.when).install()
    from rnnkit.cli import main as rnnkit_main

    code = rnnkit_main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def main(argv: list[str]) -> int:
    env = os.environ
    Injector(env.get("FAULT_SCOPE"), env.get("FAULT_LOG"), int(env.get("FAULT_KILL_AT", "0")),
             env.get("FAULT_KILL_WHEN", "before")).install()
    from rnnkit.cli import main as rnnkit_main  # after the patch: modules that bind the names at import see it too

    return rnnkit_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
