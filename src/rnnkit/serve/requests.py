"""Checking what a request asks for, before any inference: every error names its field.

A ``RequestError(status, field, message)`` becomes the JSON answer
``{"error": message, "field": field}`` with that HTTP status: 413 for a configured size limit
(``ServeConfig``: number of inputs, length of a string, steps), 422 for anything malformed.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .config import ServeConfig
from .models import Inputs

__all__ = ["RequestError", "PredictRequest", "GenerateRequest", "parse_predict", "parse_generate",
           "parse_options", "check_value", "MAX_SEED"]

MAX_SEED = 2**53 - 1  # the largest integer a JSON number holds exactly in every client (JavaScript)
_DIGITS = set("0123456789")


class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, the ``field`` at fault and why."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field}


@dataclass(frozen=True)
class PredictRequest:
    inputs: tuple[str, ...]  # as ``rnnkit predict`` takes them: strings
    options: tuple[tuple[str, Any], ...]  # the task's PredictOptions fields given, sorted (hashable: batches group by it)


@dataclass(frozen=True)
class GenerateRequest:
    options: dict[str, Any]  # the task's GenerateOptions fields given
    seed: int | None
    stream: bool


def _type_name(value: Any) -> str:
    return "null" if value is None else {bool: "boolean", int: "integer", float: "number", str: "string",
                                         list: "array", dict: "object"}.get(type(value), type(value).__name__)


def check_value(value: Any, kind: Inputs, where: str, config: ServeConfig) -> str:
    """One JSON input -> the string ``rnnkit predict`` would get; RequestError naming ``where``."""
    if kind.json == "text":
        if not isinstance(value, str):
            raise RequestError(422, where, f"{where} must be a string, got {_type_name(value)}")
        text = value
    elif kind.json == "index":
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            text = str(value)
        elif isinstance(value, str) and value and len(value) <= 9 and set(value) <= _DIGITS:
            text = value
        else:  # never a path: files come as uploads
            raise RequestError(422, where, f"{where} must be an index (a whole number >= 0); upload image files "
                                           f"as multipart/form-data, got {_type_name(value)} {str(value)[:40]!r}")
    elif kind.json == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise RequestError(422, where, f"{where} must be a number, got {_type_name(value)}")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise RequestError(422, where, f"{where} must be a finite number, got {str(value)[:40]!r}")
        text = repr(number) if not isinstance(value, str) else value
    else:
        raise RequestError(422, "inputs", f"this model reads files only: upload them as multipart/form-data "
                                          f"({', '.join(kind.files)})")
    if len(text) > config.max_string_length:
        raise RequestError(413, where, f"{where} has {len(text)} characters, more than the "
                                       f"{config.max_string_length} allowed (--max-string-length)")
    return text


def parse_options(cls, given: dict[str, Any], config: ServeConfig, owner: str) -> dict[str, Any]:
    """The fields of dataclass ``cls`` in ``given``, typed as declared and checked one by one by
    the dataclass itself; an int field over ``config.max_steps`` is a 413; a field whose metadata
    says ``writes_file`` (music's ``out``) is a 422: no request names a path on the server."""
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("writes_file")}
    out = {}
    for name, value in given.items():
        if name in {f.name for f in dataclasses.fields(cls)} - set(fields):
            raise RequestError(422, name, f"{owner}: {name} names a file to write on the server's machine; "
                                          "a request may not set it")
        if name not in fields:
            known = ", ".join(fields) or "none"
            raise RequestError(422, name, f"{owner} takes no field {name!r} (its options: {known})")
        kind = _field_kind(fields[name])
        if value is None and "None" in str(fields[name].type):
            out[name] = None
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise RequestError(422, name, f"{name} must be {_type_name(kind())}, got {_type_name(value)}")
        if kind is int and value > config.max_steps:
            raise RequestError(413, name, f"{name} is {value}, more than the {config.max_steps} allowed (--max-steps)")
        if kind is str and len(value) > config.max_string_length:
            raise RequestError(413, name, f"{name} has {len(value)} characters, more than the "
                                          f"{config.max_string_length} allowed (--max-string-length)")
        try:
            cls(**{name: value})  # each field's own check (__post_init__), on its own
        except (TypeError, ValueError) as e:
            raise RequestError(422, name, str(e).splitlines()[0] if str(e) else f"{name}: invalid") from None
        out[name] = value
    return out


def _field_kind(f) -> type:
    name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
    return {"int": int, "float": float, "bool": bool, "str": str}.get(name.split("|")[0].strip(), str)


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise RequestError(422, "body", f"the body must be a JSON object, got {_type_name(body)}")
    return body


def parse_predict(body: Any, kind: Inputs, options_cls, config: ServeConfig) -> PredictRequest:
    """``{"inputs": [...], <PredictOptions fields>}`` -> a PredictRequest."""
    body = dict(_object(body))
    if "inputs" not in body and not kind.empty_ok:
        raise RequestError(422, "inputs", "inputs is required: a list of what to predict on")
    raw = body.pop("inputs", [])
    if not isinstance(raw, list):
        raise RequestError(422, "inputs", f"inputs must be a list, got {_type_name(raw)}")
    limit, flag = (config.max_inputs, "--max-inputs") if kind.per_input else (config.max_history, "--max-history")
    if len(raw) > limit:
        raise RequestError(413, "inputs", f"inputs has {len(raw)} items, more than the {limit} allowed ({flag})")
    if not raw and not kind.empty_ok:
        raise RequestError(422, "inputs", "inputs must hold at least one item")
    inputs = tuple(check_value(v, kind, f"inputs[{k}]", config) for k, v in enumerate(raw))
    options = parse_options(options_cls, body, config, "predict")
    return PredictRequest(inputs, tuple(sorted(options.items())))


def parse_generate(body: Any, options_cls, config: ServeConfig) -> GenerateRequest:
    """``{<GenerateOptions fields: prime, length, ...>, "seed": int, "stream": bool}`` -> a GenerateRequest."""
    body = dict(_object(body))
    seed, stream = body.pop("seed", None), body.pop("stream", False)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise RequestError(422, "seed", f"seed must be an integer in [0, 2**53 - 1] or null, got {str(seed)[:40]}")
    if not isinstance(stream, bool):
        raise RequestError(422, "stream", f"stream must be a boolean, got {_type_name(stream)}")
    return GenerateRequest(parse_options(options_cls, body, config, "generate"), seed, stream)
