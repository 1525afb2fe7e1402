"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, written atomically.

A training checkpoint is a folder::

    model.safetensors       the model's weights
    optimizer.safetensors   the optimizer's tensors (moments, step counts) and RNG/carry tensors
    trainer.json            step, epoch, data order, RNG, scheduler, early stopping, file checksums

It is written into ``NAME.tmp`` and swapped in with renames, so a crash at any moment leaves
either the old or the new checkpoint whole; the checksums in ``trainer.json`` catch a file
that was cut short or changed afterwards.

Tensors are copied to the CPU to be saved and are read back onto the CPU (what ``map_location``
does for ``torch.load``); ``load_state_dict`` then copies them to wherever the model and the
optimizer live. So a run trained on a GPU resumes or loads on a CPU-only machine, and back.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = [
    "CheckpointError", "atomic_write_json", "save_weights", "load_weights",
    "save_checkpoint", "load_checkpoint", "capture_rng", "restore_rng",
]


class CheckpointError(ValueError):
    """A checkpoint or run directory that cannot be read back."""


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def save_weights(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save tensors to safetensors atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    # safetensors wants contiguous tensors that share no storage: copy them.
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}, str(tmp), metadata)
    os.replace(tmp, path)


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file onto the CPU; a missing, truncated or corrupt file raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {path} is corrupt or truncated ({e})") from None


def save_checkpoint(
    directory: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write a checkpoint folder atomically (see the module docstring)."""
    directory = Path(directory)
    tmp, old = directory.with_name(directory.name + ".tmp"), directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    opt_tensors, opt_json = _flatten_optimizer(optimizer.state_dict())
    opt_tensors.update({f"extra/{k}": v for k, v in (tensors or {}).items()})
    save_weights(tmp / "model.safetensors", model.state_dict())
    save_weights(tmp / "optimizer.safetensors", opt_tensors)
    state = dict(trainer_state, optimizer=opt_json, files={
        name: _sha256(tmp / name) for name in ("model.safetensors", "optimizer.safetensors")
    })
    atomic_write_json(tmp / "trainer.json", state)
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None):
    """Restore model (and optimizer) from a checkpoint folder.

    Returns ``(trainer_state, extra_tensors)``. A checkpoint interrupted in the middle of its
    swap is found under ``NAME.old``. Raises CheckpointError for anything unreadable.
    """
    directory = Path(directory)
    if not (directory / "trainer.json").is_file() and (directory.with_name(directory.name + ".old") / "trainer.json").is_file():
        directory = directory.with_name(directory.name + ".old")
    meta_path = directory / "trainer.json"
    if not meta_path.is_file():
        raise CheckpointError(f"no checkpoint in {directory} (trainer.json is missing)")
    try:
        state = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint file {meta_path} is corrupt ({e})") from None
    for name, digest in state.get("files", {}).items():
        if not (directory / name).is_file() or _sha256(directory / name) != digest:
            raise CheckpointError(f"checkpoint file {directory / name} is missing, truncated or changed (checksum mismatch)")
    weights = load_weights(directory / "model.safetensors")
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {directory} does not fit this model: {str(e).splitlines()[0]}") from None
    flat = load_weights(directory / "optimizer.safetensors")
    extra = {k[len("extra/"):]: v for k, v in flat.items() if k.startswith("extra/")}
    if optimizer is not None:
        optimizer.load_state_dict(_unflatten_optimizer(flat, state["optimizer"]))
    return state, extra


def capture_rng() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The state of every random number generator training uses: (JSON part, tensor part)."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    json_part = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    return json_part, tensors


def restore_rng(json_part: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, state, gauss = json_part["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = json_part["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng/torch"])
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state_dict -> (tensors by 'state/<param>/<key>', JSON-able rest)."""
    tensors, plain = {}, {}
    for pid, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{pid}/{key}"] = value
            else:
                plain.setdefault(str(pid), {})[key] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, {"state": plain, "param_groups": groups}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("state/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entries in plain["state"].items():
        state.setdefault(int(pid), {}).update(entries)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in plain["param_groups"]]
    return {"state": state, "param_groups": groups}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
