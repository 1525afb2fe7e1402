"""The ``rnnkit`` command: tasks, train, evaluate, predict, generate.

It knows no task: flags map onto typed dataclasses that each task declares (``TrainConfig``
and the task's ``Options`` for ``train TASK``; its ``PredictOptions`` for ``predict RUN``;
its ``GenerateOptions`` for ``generate RUN``): every field is a ``--flag`` of its type. For
``train`` a TOML file given with ``--config`` sets fields too, and flags given on the
command line win. ``predict`` and ``generate`` read the run's task from ``RUN`` (the first
argument) before their flags. ``train`` takes ``--device`` and ``--precision`` (``TrainConfig``
fields); ``evaluate``, ``predict`` and ``generate`` take ``--device`` (default cpu). User
errors print one line and exit with status 2 (a CUDA device the machine lacks included).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

from .checks import nonfinite_places

__all__ = ["main"]

# Commands that live in rnnkit.commands: name -> (module, help). Each module has
# ``add_arguments(parser)`` and ``run(args) -> int`` (the exit status).
_COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("rnnkit.commands.inspect", "gates and states of a charlm run over a text, as an HTML report"),
    "bench": ("rnnkit.commands.bench", "speed of rnnkit's layers against torch.nn, as one table"),
    "experiment": ("rnnkit.commands.experiment", "experiments over cells: rnnkit experiment memory ... (lengths), rnnkit experiment race ... (time)"),
    "export": ("rnnkit.commands.export", "write a trained run's model as an ONNX file (dynamic batch and time)"),
    "serve": ("rnnkit.commands.serve", "serve trained runs over HTTP (JSON API, streaming, a web page)"),
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
        from .training import TrainingStopped

        if os.environ.get("RNNKIT_DEBUG") or not isinstance(e, (ValueError, TypeError, OSError, TrainingStopped)):
            raise
        print(f"rnnkit: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1 if isinstance(e, TrainingStopped) else 2


def _dispatch(argv: list[str]) -> int:
    from .version import __version__

    parser = _Parser(prog="rnnkit", description="Recurrent neural networks on PyTorch.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("tasks", help="list tasks, their default data and metric")
    sub.add_parser("train", help="train a task: rnnkit train TASK [--help for its options]", add_help=False)
    ev = sub.add_parser("evaluate", help="metrics of a trained run")
    ev.add_argument("run_dir", metavar="DIR")
    ev.add_argument("--data", metavar="PATH", help="a data file in the task's format (default: the run's test split)")
    ev.add_argument("--json", action="store_true", help="print JSON")
    _add_device_flag(ev, default="cpu")
    sub.add_parser("predict", help="classify / tag / translate / transcribe / forecast inputs: "
                                   "rnnkit predict RUN INPUT... [the task's options]", add_help=False)
    sub.add_parser("generate", help="sample text from a trained language model: rnnkit generate RUN [options]",
                   add_help=False)
    for name, (module, help_text) in _COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if argv[:1] == [name]:  # (only the command that runs is imported: `rnnkit --help` imports no torch)
            _command_module(module).add_arguments(command)
    if argv[:1] == ["train"] and _wants_help(argv) and _train_help(argv[1:]):
        return 0  # (the help of a built-in task, read from its source: no torch import)
    # These parse their own arguments: their flags are those of the task named by TASK or RUN.
    own_parsers = {"train": _train, "predict": _predict, "generate": _generate}
    if argv[:1] and argv[0] in own_parsers:
        return own_parsers[argv[0]](argv[1:])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in _COMMANDS:
        return _command_module(_COMMANDS[args.command][0]).run(args)
    return {"tasks": _tasks, "evaluate": _evaluate}[args.command](args)


def _command_module(name: str):
    import importlib

    return importlib.import_module(name)


def _tasks(args) -> int:
    from .tasks import all_tasks

    tasks = all_tasks()
    for name in sorted(tasks):
        cls = tasks[name]
        print(f"{name:12s} {cls.description}\n{'':12s} data: {cls.default_data}\n{'':12s} metric: test_{cls.metric}")
    return 0


def _train(argv: list[str]) -> int:
    from .commands.catalog import add_train_run_flags
    from .runs import train
    from .tasks import all_tasks, get_task
    from .training import TrainConfig

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
    add_train_run_flags(parser, task_cls.name)
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
        shown = {k: v for k, v in summary.items()  # (the per-class report stays in summary.json)
                 if k.startswith(("test_", "best_val_")) and isinstance(v, (int, float))}
        print(f"{task_cls.name}: {_json_line(shown, 'train', nonfinite='null')}  ({summary['stopped']}; run directory {out})")
        if summary.get("chosen"):
            print(f"chosen for this data: {_json_line(summary['chosen'], 'train', nonfinite='null')}")
        _print_baselines(summary, task_cls, "test")
    return 0


def _print_baselines(metrics: dict, task_cls, split: str, out=None) -> None:
    """The model beside its best baseline on the task's metric; a one-line warning when it loses."""
    from .tasks.baselines import compare, comparison_lines

    line, warning = comparison_lines(compare(metrics, task_cls.metric, task_cls.mode, split))
    print(line, file=out or sys.stdout)
    if warning:
        print(f"rnnkit: warning: {warning}", file=sys.stderr)


def _wants_help(argv: list[str]) -> bool:
    return any(a in ("-h", "--help") for a in argv)


def _train_help(argv: list[str]) -> bool:
    """Print ``rnnkit train [TASK] --help`` from the tasks' sources, importing no torch; False for
    a task not read there (a plugin): ``_train`` prints its help."""
    from .commands.catalog import train_help_parser

    parser = train_help_parser(argv, _Parser)
    if parser is not None:
        parser.print_help()
    return parser is not None


def _evaluate(args) -> int:
    from .runs import evaluate, task_class

    metrics = evaluate(args.run_dir, args.data, args.device)
    line = _json_line(metrics, "evaluate")  # (a NaN metric is an error, in both forms)
    print(line if args.json else "\n".join(f"{k}: {v:.4f}" for k, v in metrics.items()))
    # With --json stdout is the JSON alone: the comparison goes to stderr.
    _print_baselines(metrics, task_class(args.run_dir), "test" if args.data is None else "data",
                     out=sys.stderr if args.json else None)
    return 0


def _predict(argv: list[str]) -> int:
    task_cls = _run_task(argv)
    parser = _run_parser("predict", "Predict with a trained run: one JSON line per input.", task_cls,
                         "PredictOptions", argv)
    parser.add_argument("inputs", metavar="INPUT", nargs="*", default=[],
                        help="what to predict on, in the task's format (an image, a sentence, numbers, ...); "
                             "- reads standard input, one input a line")
    parser.add_argument("--file", metavar="PATH", action="append", default=[],
                        help="read inputs from a UTF-8 text file, one a line (blank lines skipped); repeatable")
    options = vars(parser.parse_intermixed_args(argv))  # `predict RUN --horizon 3 5 6`: 5 and 6 are inputs
    run_dir, device = options.pop("run_dir"), options.pop("device", None)
    inputs = _read_inputs(options.pop("inputs"), options.pop("file"))
    from .runs import load  # (after the parsing: `rnnkit predict --help` imports no torch)

    rows = [_json_line(row, "predict") for row in load(run_dir, device).predict(inputs, **options)]
    _utf8_stdout()
    for row in rows:  # all or nothing: a NaN in any row is an error before anything is printed
        print(row)
    return 0


def _read_inputs(inputs: list[str], files: list[str]) -> list[str]:
    """The INPUTs, with ``-`` replaced by standard input's lines, then the lines of each --file
    (blank lines skipped, line ends dropped)."""
    def lines(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip()]

    out = []
    for item in inputs:
        out.extend(lines(sys.stdin.read()) if item == "-" else [item])
    for path in files:
        try:
            out.extend(lines(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ValueError(f"predict: --file {path} does not exist") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"predict: --file {path} must be UTF-8 text, got a byte 0x{e.object[e.start]:02x} "
                             f"at offset {e.start}") from None
    return out


def _utf8_stdout() -> None:
    """Print UTF-8 whatever the locale (JSON lines keep non-ASCII text as it is)."""
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    if encoding != "utf8" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")


def _json_line(obj, command: str, nonfinite: str = "error") -> str:
    """``obj`` as one line of strict JSON (no NaN / Infinity, which JSON has not).

    A non-finite number is a one-line ValueError naming where it is (``nonfinite="error"``), or
    null, with a warning on stderr (``"null"``: for a summary that is already saved).
    """
    bad = list(nonfinite_places(obj))
    if bad and nonfinite == "error":
        raise ValueError(f"{command}: the result holds a non-finite number at {', '.join(bad[:3])} "
                         "(NaN or inf: the model's outputs are not finite)")
    if bad:
        print(f"rnnkit: warning: {', '.join(bad[:3])} is not finite (NaN or inf): printed as null", file=sys.stderr)
    return json.dumps(_finite_or_none(obj), allow_nan=False, ensure_ascii=False)


def _finite_or_none(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def _generate(argv: list[str]) -> int:
    task_cls = _run_task(argv)
    if task_cls is not None and task_cls.GenerateOptions is None:
        raise ValueError(f"task {task_cls.name} does not generate text; use `rnnkit predict`")
    parser = _run_parser("generate", "Sample text from a trained run, printed as it comes.", task_cls,
                         "GenerateOptions", argv)
    if task_cls is None or "seed" not in {f.name for f in dataclasses.fields(task_cls.GenerateOptions)}:
        from .commands.catalog import typed

        parser.add_argument("--seed", type=typed(int, "--seed"), metavar="INT",
                            help="seed of the sampling: the same seed, the same text (default: a fresh sample each time)")
    options = vars(parser.parse_args(argv))
    run_dir, device, seed = options.pop("run_dir"), options.pop("device", None), options.pop("seed", None)
    from .runs import load  # (after the parsing: `rnnkit generate --help` imports no torch)

    model = load(run_dir, device)
    if seed is not None:
        from .training.run import seed_everything

        seed_everything(seed)
    _utf8_stdout()
    for piece in model.stream(**options):
        print(piece, end="", flush=True)
    print()
    return 0


def _run_task(argv: list[str]):
    """The task class of the run named by the first argument that is not a flag; None if there is none."""
    run_dir = next((a for a in argv if not a.startswith("-")), None)
    if run_dir is None:
        return None
    from .runs import task_class

    return task_class(run_dir)


def _run_parser(command: str, description: str, task_cls, attr: str, argv: list[str]) -> argparse.ArgumentParser:
    """A parser for ``rnnkit COMMAND RUN``: RUN and the flags of the run's task's ``attr`` dataclass.

    Without a RUN (``rnnkit predict --help``) the help lists every task's flags instead.
    """
    epilog = _options_by_task(command, attr) if task_cls is None and any(a in ("-h", "--help") for a in argv) else None
    parser = _Parser(prog=f"rnnkit {command}", description=description, epilog=epilog,
                     formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS)
    parser.add_argument("run_dir", metavar="RUN", help="a run directory (from rnnkit train)")
    _add_device_flag(parser)
    options_cls = getattr(task_cls, attr, None)
    if options_cls is not None:
        _add_dataclass_flags(parser.add_argument_group(f"{task_cls.name} options"), options_cls)
    return parser


def _options_by_task(command: str, attr: str) -> str:
    """The flags each task takes after ``rnnkit COMMAND RUN`` (for the help without a RUN): rnnkit's
    own tasks read from their source (no torch import), others imported."""
    from .commands.catalog import builtin_tasks, fields_of, other_task_names

    docs = {name: doc.predict if attr == "PredictOptions" else doc.generate for name, doc in builtin_tasks().items()}
    others = other_task_names()
    if others:
        from .tasks import all_tasks

        for name, cls in all_tasks().items():
            if name in others:
                docs[name] = None if getattr(cls, attr) is None else fields_of(getattr(cls, attr))
    lines, plain = [], []
    for name, fields in sorted(docs.items()):
        if fields is None:
            continue
        flags = " ".join(_flag_usage(f) for f in fields)
        if flags:
            lines.append(f"  {name:12s} {flags}")
        else:
            plain.append(name)
    if plain:
        lines.append(f"  {', '.join(plain)}: none")
    if not lines:
        return f"no task {command}s"
    return f"the options of each run's task (`rnnkit {command} RUN --help` explains them):\n" + "\n".join(lines)


def _add_device_flag(parser, default=argparse.SUPPRESS) -> None:
    """``--device`` of the commands that use a trained run (training's is a TrainConfig field)."""
    def device(text: str) -> str:
        from .training.device import DEVICES, check_device  # (imports torch: only when a --device is given)

        try:
            return check_device("rnnkit", "--device", text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {DEVICES}, got {text!r}") from None

    parser.add_argument("--device", type=device, default=default, metavar="DEVICE",
                        help="where the model runs: cpu | auto | cuda | cuda:N (default cpu), in float32")


# -- dataclasses <-> flags ---------------------------------------------------------------------

def _add_dataclass_flags(group, cls, defaults: dict | None = None) -> None:
    """One flag per field of the dataclass ``cls``, with its help sentence (``catalog.add_flags``)."""
    from .commands.catalog import add_flags, fields_of

    add_flags(group, fields_of(cls), defaults)


def _flag_usage(d) -> str:
    """``--flag TYPE`` of an option (a ``FieldDoc``)."""
    return f"--[no-]{d.flag[2:]}" if d.kind == "bool" else f"{d.flag} {d.kind.upper()}"


def _field_type(f) -> type:
    name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
    return {"int": int, "float": float, "bool": bool, "str": str}.get(name.split("|")[0].strip(), str)


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
    """The options and training settings of the run in ``out`` (config.json, verified and checked)."""
    from .runs import read_config

    if not (out / "config.json").is_file():
        raise ValueError(f"--resume: {out}/config.json is missing")
    cls, options, train_cfg = read_config(out)
    if cls.name != task:
        raise ValueError(f"--resume: {out} holds a run of task {cls.name!r}, not {task!r}")
    return {**dataclasses.asdict(options), **dataclasses.asdict(train_cfg)}


if __name__ == "__main__":
    sys.exit(main())
