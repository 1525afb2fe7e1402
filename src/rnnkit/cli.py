"""The ``rnnkit`` command: tasks, train, evaluate, predict, generate.

Flags map onto typed dataclasses (``TrainConfig`` and each task's ``Options``): every field
is a ``--flag`` of its type; a TOML file given with ``--config`` sets fields too, and flags
given on the command line win. User errors print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]

# Commands that live in rnnkit.commands: name -> (module, help). Each module has
# ``add_arguments(parser)`` and ``run(args) -> int`` (the exit status).
_COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("rnnkit.commands.inspect", "gates and states of a charlm run over a text, as an HTML report"),
    "bench": ("rnnkit.commands.bench", "speed of rnnkit's layers against torch.nn, as one table"),
    "experiment": ("rnnkit.commands.experiment", "experiments over cells and lengths: rnnkit experiment memory ..."),
    "export": ("rnnkit.commands.export", "write a trained run's model as an ONNX file (dynamic batch and time)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # user errors: one line, no traceback
        from .training.trainer import TrainingStopped

        if os.environ.get("RNNKIT_DEBUG") or not isinstance(e, (ValueError, TypeError, OSError, TrainingStopped)):
            raise
        print(f"rnnkit: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1 if isinstance(e, TrainingStopped) else 2


def _dispatch(argv: list[str]) -> int:
    parser = _Parser(prog="rnnkit", description="Recurrent neural networks on PyTorch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("tasks", help="list tasks, their default data and metric")
    sub.add_parser("train", help="train a task: rnnkit train TASK [--help for its options]", add_help=False)
    ev = sub.add_parser("evaluate", help="metrics of a trained run")
    ev.add_argument("run_dir", metavar="DIR")
    ev.add_argument("--data", metavar="PATH", help="a data file in the task's format (default: the run's test split)")
    ev.add_argument("--json", action="store_true", help="print JSON")
    pr = sub.add_parser("predict", help="classify / tag / translate / transcribe / forecast inputs")
    pr.add_argument("run_dir", metavar="DIR")
    pr.add_argument("inputs", metavar="INPUT", nargs="*")
    pr.add_argument("--horizon", type=_positive_int, help="steps to forecast (forecasting tasks)")
    ge = sub.add_parser("generate", help="sample text from a trained language model")
    ge.add_argument("run_dir", metavar="DIR")
    ge.add_argument("--prime", default="", help="text to start from")
    ge.add_argument("--length", type=_positive_int, default=200)
    ge.add_argument("--temperature", type=_positive_float, default=1.0)
    ge.add_argument("--top-k", type=_non_negative_int, default=0, help="sample from the k likeliest (0 = all)")
    for name, (module, help_text) in _COMMANDS.items():
        _command_module(module).add_arguments(sub.add_parser(name, help=help_text))
    if argv[:1] == ["train"]:
        return _train(argv[1:])
    if argv[:1] == ["predict"]:  # intermixed: `predict RUN --horizon 3 5 6` reads 5 and 6 as inputs
        return _predict(pr.parse_intermixed_args(argv[1:]))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in _COMMANDS:
        return _command_module(_COMMANDS[args.command][0]).run(args)
    return {"tasks": _tasks, "evaluate": _evaluate, "predict": _predict, "generate": _generate}[args.command](args)


def _command_module(name: str):
    import importlib

    return importlib.import_module(name)


def _tasks(args) -> int:
    from .tasks.base import all_tasks

    tasks = all_tasks()
    for name in sorted(tasks):
        cls = tasks[name]
        print(f"{name:12s} {cls.description}\n{'':12s} data: {cls.default_data}\n{'':12s} metric: test_{cls.metric}")
    return 0


def _train(argv: list[str]) -> int:
    from .tasks.base import all_tasks, get_task
    from .training.run import train
    from .training.trainer import TrainConfig

    tasks = all_tasks()
    if not argv or argv[0].startswith("-"):
        head = _Parser(prog="rnnkit train", description="Train a task into a run directory.")
        head.add_argument("task", choices=sorted(tasks), help="the task to train")
        if any(a in ("-h", "--help") for a in argv):
            head.print_help()
            return 0
        head.parse_args(argv)  # exits with a usage error
    task_cls = get_task(argv[0])
    parser = _Parser(prog=f"rnnkit train {task_cls.name}", description=task_cls.description,
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--out", metavar="DIR", help=f"run directory (default: runs/{task_cls.name})")
    parser.add_argument("--config", metavar="FILE", help="a TOML file of option = value lines")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_dataclass_flags(parser.add_argument_group("training"), TrainConfig, task_cls.train_defaults)
    _add_dataclass_flags(parser.add_argument_group(f"{task_cls.name} options"), task_cls.Options)
    args = vars(parser.parse_args(argv[1:]))
    out = Path(args.pop("out", f"runs/{task_cls.name}"))
    resume, progress = args.pop("resume", False), not args.pop("no_progress", False)
    values = {**task_cls.train_defaults}
    if resume:
        values = _saved_config(out, task_cls.name)
    if "config" in args:
        values.update(_read_toml(args.pop("config")))
    values.update(args)
    train_cfg = _fill(TrainConfig, values)
    options = _fill(task_cls.Options, values)
    unknown = set(values) - {f.name for f in dataclasses.fields(TrainConfig)} - {f.name for f in dataclasses.fields(task_cls.Options)}
    if unknown:
        raise ValueError(f"--config: unknown option(s) {', '.join(sorted(unknown))} for task {task_cls.name}")
    summary = train(task_cls.name, options, train_cfg, out, resume=resume, progress=progress)
    if summary:
        shown = {k: v for k, v in summary.items() if k.startswith(("test_", "best_val_"))}
        print(f"{task_cls.name}: {json.dumps(shown)}  ({summary['stopped']}; run directory {out})")
    return 0


def _evaluate(args) -> int:
    from .training.run import evaluate

    metrics = evaluate(args.run_dir, args.data)
    print(json.dumps(metrics) if args.json else "\n".join(f"{k}: {v:.4f}" for k, v in metrics.items()))
    return 0


def _predict(args) -> int:
    from .training.run import load

    options = {"horizon": args.horizon} if args.horizon is not None else {}
    for row in load(args.run_dir).predict(args.inputs, **options):
        print(json.dumps(row))
    return 0


def _generate(args) -> int:
    from .training.run import load

    for piece in load(args.run_dir).stream(args.prime, args.length, args.temperature, args.top_k):
        print(piece, end="", flush=True)
    print()
    return 0


# -- dataclasses <-> flags ---------------------------------------------------------------------

def _add_dataclass_flags(group, cls, defaults: dict | None = None) -> None:
    """One flag per field; the help shows the default in force (the task's own where it sets one)."""
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = _field_type(f)
        default = (defaults or {}).get(f.name, f.default)
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, dest=f.name, help=f"default {default}")
        else:
            group.add_argument(flag, type=_typed(kind, flag), dest=f.name, metavar=kind.__name__.upper(),
                               help=f"default {default!r}")


def _field_type(f) -> type:
    name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
    return {"int": int, "float": float, "bool": bool, "str": str}.get(name.split("|")[0].strip(), str)


def _typed(kind: type, flag: str):
    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects {kind.__name__}, got {text!r}") from None
    return convert


def _fill(cls, values: dict):
    """An instance of dataclass ``cls`` from the entries of ``values`` that are its fields."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            value, kind = values[f.name], _field_type(f)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"option {f.name} must be {kind.__name__}, got {value!r}")
            kwargs[f.name] = value
    return cls(**kwargs)


def _read_toml(path: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"--config: file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"--config: {path} is not valid TOML ({e})") from None
    flat = {}
    for key, value in data.items():  # sections ([train], [options]) are only for reading
        flat.update(value if isinstance(value, dict) else {key: value})
    return flat


def _saved_config(out: Path, task: str) -> dict:
    try:
        saved = json.loads((out / "config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        raise ValueError(f"--resume: {out}/config.json is missing or unreadable") from None
    if saved.get("task") != task:
        raise ValueError(f"--resume: {out} holds a run of task {saved.get('task')!r}, not {task!r}")
    if not isinstance(saved.get("options"), dict) or not isinstance(saved.get("train"), dict):
        raise ValueError(f"--resume: {out}/config.json is not an rnnkit run config (no options/train)")
    return {**saved["options"], **saved["train"]}


def _number(kind: type, minimum: float, strict: bool, wanted: str):
    """An argparse type: text -> kind, at least (or, if strict, above) minimum."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not (value > minimum if strict else value >= minimum):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value
    return convert


_positive_int = _number(int, 1, False, "a positive integer")
_non_negative_int = _number(int, 0, False, "an integer >= 0")
_positive_float = _number(float, 0, True, "a number > 0")


if __name__ == "__main__":
    sys.exit(main())
