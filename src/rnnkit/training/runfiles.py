"""The files of a run directory, kept honest: a manifest of their hashes and checks of their structure.

``manifest.json`` maps each file that a run is read back from to its sha256::

    {"config.json": "9f2c...", "preprocess.json": "04ab...", "model.safetensors": "e3b0...", "summary.json": "..."}

Every writer installs a file with :func:`install` (a temporary file beside it, then a rename)
and the manifest is rewritten atomically around the rename: first listing both digests
(``[old, new]``, the old or the new file may be on disk if the process dies in between),
then only the new one. So a kill at any moment leaves a directory whose files match their
manifest, and every reader (:func:`read_run_bytes`) refuses a file that was changed after
training with one line that names it. Checkpoints (``checkpoints/last``) are not listed: they
carry their own checksums (``trainer.json``) and are swapped whole by renames.

A run written before rnnkit kept a manifest has none: its files are read unverified, and the
reader warns once per directory (:func:`warn_unverified`) after reading it.

:func:`check_fields` checks JSON read from a run file against a small schema, so that a file
of the wrong structure is one :class:`CheckpointError` naming the file and the field
(``trainer.json: field 'optimizer' is missing``) instead of a ``KeyError`` deep inside.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CheckpointError", "MANIFEST", "RUN_FILES", "sha256_bytes", "sha256_path", "install", "record_existing",
    "read_run_bytes", "read_run_json", "warn_unverified", "check_fields", "closed", "positive", "non_negative",
    "non_empty", "one_of",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
RUN_FILES = ("config.json", "preprocess.json", "model.safetensors", "summary.json")  # what the manifest covers
_warned: set[str] = set()  # run directories already warned about (no manifest)


class CheckpointError(ValueError):
    """A checkpoint or run directory that cannot be read back."""


# -- hashes -----------------------------------------------------------------------------------------

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, or of a folder's files (names and bytes, in sorted order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# -- writing ----------------------------------------------------------------------------------------

def install(tmp: Path, path: Path, run_dir: str | os.PathLike | None) -> None:
    """Rename the finished ``tmp`` over ``path``; with ``run_dir``, record it in the run's manifest.

    The manifest lists both the old and the new digest while the rename happens, so a reader
    after a kill at any point finds the file it sees listed.
    """
    if run_dir is None:
        os.replace(tmp, path)
        return
    run_dir = Path(run_dir)
    name = path.resolve().relative_to(run_dir.resolve()).as_posix()
    entries = _read_manifest(run_dir, missing_ok=True) or {}
    new = sha256_path(tmp)
    old = entries.get(name, [])
    entries[name] = sorted({*([old] if isinstance(old, str) else old), new})
    _write_manifest(run_dir, entries)
    os.replace(tmp, path)
    entries[name] = new
    _write_manifest(run_dir, entries)


def record_existing(run_dir: str | os.PathLike) -> None:
    """Start the manifest of a run that has none (a new run, or one written before manifests
    were kept), listing the run files that are already there as they are."""
    run_dir = Path(run_dir)
    if (run_dir / MANIFEST).exists():
        return
    entries = {name: sha256_path(run_dir / name) for name in RUN_FILES if (run_dir / name).is_file()}
    if entries:
        log.warning("%s has no %s (written before rnnkit kept one): recording its files as they are now",
                    run_dir, MANIFEST)
    _write_manifest(run_dir, entries)


def settle(run_dir: str | os.PathLike) -> None:
    """Finish what a kill left of a manifest update: an entry still listing two digests (the kill
    fell between ``install``'s rename and its second write) is set to the one the file has, and a
    stray temporary manifest goes. A settled manifest is left byte for byte as it is."""
    run_dir = Path(run_dir)
    (run_dir / f".{MANIFEST}.tmp").unlink(missing_ok=True)
    entries = _read_manifest(run_dir, missing_ok=True)
    if not entries:
        return
    settled = dict(entries)
    for name, digest in entries.items():
        if isinstance(digest, list) and (run_dir / name).is_file():
            actual = sha256_path(run_dir / name)
            if actual in digest:
                settled[name] = actual
    if settled != entries:
        _write_manifest(run_dir, settled)


def _write_manifest(run_dir: Path, entries: dict) -> None:
    tmp = run_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, run_dir / MANIFEST)


# -- reading ----------------------------------------------------------------------------------------

def _read_manifest(run_dir: Path, missing_ok: bool = False) -> dict[str, str | list[str]] | None:
    path = run_dir / MANIFEST
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise CheckpointError(f"{path} is corrupt ({str(e).splitlines()[0]})") from None
    if not isinstance(entries, dict):
        raise CheckpointError(f"{path} must be an object of file: sha256, got {type(entries).__name__}")
    for name, digest in entries.items():
        digests = digest if isinstance(digest, list) else [digest]
        if not digests or not all(isinstance(d, str) and len(d) == 64 for d in digests):
            raise CheckpointError(f"{path}: field {name!r} must be a sha256 (64 hex digits), got {digest!r:.80}")
    return entries


def read_run_bytes(run_dir: str | os.PathLike, name: str) -> bytes:
    """The bytes of the run file ``name``, verified against the run's manifest.

    A missing file or a file whose sha256 the manifest does not list is a CheckpointError
    naming it; a run without a manifest (written before rnnkit kept one) is read with a warning.
    """
    run_dir = Path(run_dir)
    path = run_dir / name
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir} is not a run directory ({name} is missing)") from None
    except OSError as e:
        raise CheckpointError(f"{path} cannot be read ({e.strerror or e})") from None
    entries = _read_manifest(run_dir)
    if entries is None:  # (the reader says so once it has read the run: warn_unverified)
        return data
    listed = entries.get(name)
    if listed is None:
        raise CheckpointError(f"{path}: not listed in the run's {MANIFEST}; the file was added after training")
    if sha256_bytes(data) not in ([listed] if isinstance(listed, str) else listed):
        raise CheckpointError(f"{path}: sha256 does not match the run's {MANIFEST}; the file was changed after training")
    return data


def warn_unverified(run_dir: str | os.PathLike) -> None:
    """Log a warning (once per directory) if the run has no manifest: its files were read unverified.

    Called by a reader after it has read the run, so that a run it refuses gets one line only.
    """
    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST).exists() and str(run_dir) not in _warned:
        _warned.add(str(run_dir))
        log.warning("%s has no %s (a run written before rnnkit kept one): its files are not verified",
                    run_dir, MANIFEST)


def read_run_json(run_dir: str | os.PathLike, name: str, schema: Any = None) -> Any:
    """A run's JSON file, verified (:func:`read_run_bytes`), parsed and checked against ``schema``."""
    path = Path(run_dir) / name
    data = read_run_bytes(run_dir, name)
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path} is corrupt ({str(e).splitlines()[0]})") from None
    if schema is not None:
        check_fields(path, value, schema)
    return value


# -- structure --------------------------------------------------------------------------------------

class closed(dict):
    """A dict schema that allows no other keys (``progress`` of trainer.json: it becomes keywords)."""


def positive(kind: type) -> Callable[[Any], None]:
    """A spec: an int (or a number, for float) > 0."""
    return _bounded(kind, lambda v: v > 0, "> 0")


def non_negative(kind: type) -> Callable[[Any], None]:
    return _bounded(kind, lambda v: v >= 0, ">= 0")


def non_empty(item: Any) -> Callable[[Any], None]:
    """A spec: a non-empty list of ``item``."""
    def check(value, where):
        _check(where[0], where[1], value, [item])
        if not value:
            raise CheckpointError(f"{where[0]}: field {where[1]!r} must be a non-empty list, got []")
    check.describe = "a non-empty list"
    return check


def one_of(*choices: str) -> Callable[[Any], None]:
    """A spec: one of the strings ``choices``."""
    def check(value, where):
        if value not in choices:
            raise CheckpointError(f"{where[0]}: field {where[1]!r} must be one of {', '.join(map(repr, choices))}, "
                                  f"got {str(value)[:60]!r}")
    check.describe = f"one of {', '.join(choices)}"
    return check


def _bounded(kind: type, ok: Callable[[Any], bool], text: str):
    def check(value, where):
        _check(where[0], where[1], value, kind)
        if not ok(value):
            raise CheckpointError(f"{where[0]}: field {where[1]!r} must be {text}, got {value!r}")
    check.describe = f"{_describe(kind)} {text}"
    return check


def check_fields(file: str | os.PathLike, value: Any, schema: Any) -> None:
    """Check JSON ``value`` read from ``file`` against ``schema``; a CheckpointError names the field.

    A schema is a type (``int`` excludes bools; ``float`` takes ints too and must be finite;
    ``dict``, ``list``, ``object`` = anything), ``None`` (null), a tuple of schemas (any of
    them), ``[item]`` (a list of items), ``{key: schema}`` (a dict with those keys; a key
    ending in ``?`` may be missing; other keys are allowed unless it is :class:`closed`; the
    key ``"*"`` checks the value of every key), or a
    function ``check(value, (file, field))`` that raises CheckpointError (``positive(int)``).
    """
    _check(str(file), "", value, schema)


def _check(file: str, field: str, value: Any, schema: Any) -> None:
    if isinstance(schema, tuple):
        if not any(_fits(value, s) for s in schema):
            _wrong(file, field, value, " or ".join(_describe(s) for s in schema))
        for s in schema:
            if _fits(value, s):
                return _check(file, field, value, s)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            _wrong(file, field, value, "a list")
        for i, item in enumerate(value):
            _check(file, f"{field}[{i}]", item, schema[0])
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            _wrong(file, field, value, "an object")
        for key, sub in schema.items():
            if key == "*":
                for other, item in value.items():
                    _check(file, f"{field}.{other}" if field else str(other), item, sub)
                continue
            optional, key = key.endswith("?"), key.rstrip("?")
            name = f"{field}.{key}" if field else key
            if key not in value:
                if optional:
                    continue
                raise CheckpointError(f"{file}: field {name!r} is missing")
            _check(file, name, value[key], sub)
        if isinstance(schema, closed):
            extra = sorted(set(value) - {k.rstrip("?") for k in schema})
            if extra:
                raise CheckpointError(f"{file}: field {field!r} has unknown keys {extra[:5]}")
    elif callable(schema) and not isinstance(schema, type):
        schema(value, (file, field))
    elif not _fits(value, schema):
        _wrong(file, field, value, _describe(schema))


def _fits(value: Any, schema: Any) -> bool:
    """Whether ``value`` has the outer type of ``schema`` (for choosing among a tuple's)."""
    if schema is None:
        return value is None
    if schema is object:
        return True
    if schema is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if schema is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(schema, list):
        return isinstance(value, list)
    if isinstance(schema, dict):
        return isinstance(value, dict)
    if isinstance(schema, tuple):
        return any(_fits(value, s) for s in schema)
    if isinstance(schema, type):
        return isinstance(value, schema)
    return True  # a function: it checks


def _describe(schema: Any) -> str:
    if schema is None:
        return "null"
    if isinstance(schema, list):
        return "a list"
    if isinstance(schema, dict):
        return "an object"
    if schema is float:
        return "a finite number"
    if isinstance(schema, type):
        return {int: "an int", str: "a string", bool: "a bool", list: "a list", dict: "an object"}.get(
            schema, schema.__name__)
    return getattr(schema, "describe", "valid")


def _wrong(file: str, field: str, value: Any, expected: str) -> None:
    shown = json.dumps(value)[:60] if _jsonable(value) else repr(value)[:60]
    name = f"field {field!r}" if field else "the file"
    raise CheckpointError(f"{file}: {name} must be {expected}, got {_json_type(value)} {shown}")


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError, RecursionError):
        return False


def _json_type(value: Any) -> str:
    names = {bool: "bool", int: "int", float: "number", str: "string", list: "list", dict: "object", type(None): "null"}
    return names.get(type(value), type(value).__name__)

