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
import math
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from .runfiles import CheckpointError, check_fields, closed, install, non_empty, non_negative, read_run_bytes

__all__ = [
    "CheckpointError", "atomic_write_json", "save_weights", "load_weights", "check_finite",
    "save_checkpoint", "load_checkpoint", "capture_rng", "restore_rng", "TRAINER_STATE", "CHECKPOINT_STATE",
]


def atomic_write_json(path: str | os.PathLike, obj: Any, run_dir: str | os.PathLike | None = None) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it over ``path``; with
    ``run_dir``, the file is recorded in that run's manifest (``rnnkit.training.runfiles``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    install(tmp, path, run_dir)


def save_weights(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None,
                 run_dir: str | os.PathLike | None = None) -> None:
    """Save tensors to safetensors atomically (temporary file, then rename); with ``run_dir``,
    the file is recorded in that run's manifest."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    # safetensors wants contiguous tensors that share no storage: copy them.
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}, str(tmp), metadata)
    install(tmp, path, run_dir)


def load_weights(path: str | os.PathLike, run_dir: str | os.PathLike | None = None,
                 finite: bool = True) -> dict[str, torch.Tensor]:
    """Read a safetensors file onto the CPU.

    A missing, truncated or corrupt file raises CheckpointError naming it; so does, with
    ``finite``, a floating-point tensor holding NaN or inf (:func:`check_finite`). With
    ``run_dir``, the file (inside it) is verified against the run's manifest first.
    """
    path = Path(path)
    if run_dir is not None:
        data = read_run_bytes(run_dir, path.resolve().relative_to(Path(run_dir).resolve()).as_posix())
    elif not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    else:
        data = path.read_bytes()
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"checkpoint file {path} is corrupt or truncated ({str(e).splitlines()[0]})") from None
    if finite:
        check_finite(path, tensors)
    return tensors


def check_finite(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> None:
    """CheckpointError naming ``path`` and the first floating-point tensor that holds NaN or inf."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: tensor {name!r} holds {bad} non-finite value(s) (NaN or inf); "
                                  "these weights cannot be used")


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


def finish_swap(directory: str | os.PathLike) -> None:
    """Complete a checkpoint swap a kill interrupted after its rename: with ``directory`` there,
    its ``.old`` predecessor is garbage (``save_checkpoint`` removes it last)."""
    directory = Path(directory)
    old = directory.with_name(directory.name + ".old")
    if directory.is_dir() and old.exists():
        shutil.rmtree(old)


def load_checkpoint(directory: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    schema: dict | None = None):
    """Restore model (and optimizer) from a checkpoint folder.

    Returns ``(trainer_state, extra_tensors)``. A checkpoint interrupted in the middle of its
    swap is found under ``NAME.old``. Raises CheckpointError for anything unreadable, for
    non-finite weights, and for a trainer.json without the fields ``save_checkpoint`` writes
    or (``schema``: the Trainer passes :data:`TRAINER_STATE`) without those its caller reads.
    """
    directory = Path(directory)
    if not (directory / "trainer.json").is_file() and (directory.with_name(directory.name + ".old") / "trainer.json").is_file():
        directory = directory.with_name(directory.name + ".old")
    meta_path = directory / "trainer.json"
    if not meta_path.is_file():
        raise CheckpointError(f"no checkpoint in {directory} (trainer.json is missing)")
    try:
        state = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint file {meta_path} is corrupt ({str(e).splitlines()[0]})") from None
    check_fields(meta_path, state, CHECKPOINT_STATE)
    if schema is not None:
        check_fields(meta_path, state, schema)
    for name, digest in state.get("files", {}).items():
        if not (directory / name).is_file() or _sha256(directory / name) != digest:
            raise CheckpointError(f"checkpoint file {directory / name} is missing, truncated or changed (checksum mismatch)")
    weights = load_weights(directory / "model.safetensors")
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {directory} does not fit this model: {str(e).splitlines()[0]}") from None
    flat = load_weights(directory / "optimizer.safetensors", finite=False)
    extra = {k[len("extra/"):]: v for k, v in flat.items() if k.startswith("extra/")}
    torch_rng = extra.get("rng/torch")
    if schema is not None and "rng" in schema and (torch_rng is None or torch_rng.dtype != torch.uint8
                                                   or torch_rng.dim() != 1):
        raise CheckpointError(f"{directory / 'optimizer.safetensors'}: tensor 'extra/rng/torch' is missing or not "
                              "a generator state (uint8, 1-D)")
    if optimizer is not None:
        _load_optimizer(optimizer, flat, state["optimizer"], meta_path)
    return state, extra


def _load_optimizer(optimizer: torch.optim.Optimizer, flat: dict, plain: dict, meta_path: Path) -> None:
    """The optimizer's state from a checkpoint; its hyper-parameters must have the types of ``optimizer``'s own."""
    mine = optimizer.state_dict()["param_groups"]
    groups = plain["param_groups"]
    if len(groups) != len(mine):
        raise CheckpointError(f"{meta_path}: field 'optimizer.param_groups' must have {len(mine)} group(s), "
                              f"got {len(groups)}")
    for i, (group, own) in enumerate(zip(groups, mine)):
        for key, value in own.items():
            got = group.get(key, _MISSING)
            if not _same_kind(got, value):
                raise CheckpointError(f"{meta_path}: field 'optimizer.param_groups[{i}].{key}' must be "
                                      f"{type(value).__name__} like this optimizer's, got {got!r:.60}")
        if group["params"] != list(own["params"]):
            raise CheckpointError(f"{meta_path}: field 'optimizer.param_groups[{i}].params' must be "
                                  f"{list(own['params'])!r:.60}, got {group['params']!r:.60}")
    try:
        optimizer.load_state_dict(_unflatten_optimizer(flat, plain))
    except (ValueError, TypeError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{meta_path}: field 'optimizer' does not fit this optimizer "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _same_kind(got: Any, mine: Any) -> bool:
    """Whether a loaded hyper-parameter ``got`` has the kind of the optimizer's own ``mine``
    (finite numbers for numbers, lists of them for tuples, None or a bool for an unset flag)."""
    if got is _MISSING:
        return False
    if mine is None or isinstance(mine, bool):
        return got is None or isinstance(got, bool)
    if isinstance(mine, (int, float)):
        return isinstance(got, (int, float)) and not isinstance(got, bool) and math.isfinite(got)
    if isinstance(mine, (tuple, list)):
        return (isinstance(got, list) and len(got) == len(mine)
                and all(_same_kind(g, m) for g, m in zip(got, mine)))
    return isinstance(got, type(mine))


def _python_rng(value: Any, where: tuple[str, str]) -> None:
    """A spec: the state of Python's generator, as capture_rng writes it (tried on a spare generator)."""
    try:
        version, state, gauss = value
        random.Random().setstate((version, tuple(state), gauss))
    except (TypeError, ValueError, OverflowError, IndexError, KeyError) as e:
        raise CheckpointError(f"{where[0]}: field {where[1]!r} is not a Python generator state ({e})") from None


def _numpy_rng(value: Any, where: tuple[str, str]) -> None:
    """A spec: the state of numpy's global generator, as capture_rng writes it (tried on a spare one)."""
    try:
        name, keys, pos, has_gauss, cached = value
        np.random.RandomState().set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    except (TypeError, ValueError, OverflowError, IndexError, KeyError) as e:
        raise CheckpointError(f"{where[0]}: field {where[1]!r} is not a numpy generator state ({e})") from None


_MISSING = object()
# What trainer.json holds whoever saved it (save_checkpoint writes these two fields).
CHECKPOINT_STATE = {
    "optimizer": {"state": {}, "param_groups": [{"params": [int]}]},
    "files?": closed({"model.safetensors?": str, "optimizer.safetensors?": str}),  # (absent: checked as read)
}
# What trainer.json must hold: what Trainer._restore reads (progress is _Progress's fields, as keywords).
TRAINER_STATE = {
    "progress": closed({
        "step?": non_negative(int), "epoch?": non_negative(int), "best?": (float, None),
        "bad_evals?": non_negative(int), "elapsed?": non_negative(float), "skipped?": non_negative(int),
        "stopped?": str,
        "timing?": {"data?": float, "model?": float, "other?": float, "eval?": float, "samples?": float},
    }),
    "rng": {"python": _python_rng, "numpy": _numpy_rng},
    "loader": (dict, None),
    # closed: LambdaLR.load_state_dict sets every key as an attribute of the scheduler
    "scheduler": closed({"base_lrs": non_empty(float), "last_epoch": int, "_step_count?": int, "_last_lr?": [float],
                         "_is_initial?": bool, "_get_lr_called_within_step?": bool, "verbose?": bool}),
    "carry_is_tuple": bool,
    "callbacks": {"JsonlLogger?": {"offset": non_negative(int)}},
    "last_val?": dict,
    "scaler?": {"scale?": float, "growth_factor?": float, "backoff_factor?": float, "growth_interval?": int,
                "_growth_tracker?": int},
}


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
