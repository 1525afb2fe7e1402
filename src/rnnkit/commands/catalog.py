"""What the command line's help says about options, and how it says it without importing torch.

Every option is a field of a typed dataclass (``TrainConfig``, a task's ``Options``,
``PredictOptions``, ``GenerateOptions``). Its help sentence is, in this order:

1. the field's ``metadata["help"]`` (``field(default=..., metadata={"help": "..."})``);
2. its attribute comment in the source: the comment after the field on its line, else the
   comment lines right above it (``hidden_size: int = 64  # per direction``);
3. the glossary below, for the names every task shares (``hidden_size``, ``dropout``, ...).

A ``cell`` option lists the cell names (the keys of ``rnnkit.models.CELLS``).

The task modules and ``rnnkit.training`` import torch (seconds). So that ``rnnkit --help`` and
``rnnkit train TASK --help`` answer at once, :func:`builtin_tasks` and :func:`train_config_doc`
read the same facts from the source files with ``ast``, importing nothing; a task they cannot
read statically (a plugin, an ``Options`` defined elsewhere) is simply absent and the command
line imports it instead. ``tests/cli/test_help.py`` checks that the two readings agree.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import sys
import textwrap
import tokenize
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["FieldDoc", "TaskDoc", "fields_of", "builtin_tasks", "train_config_doc", "cell_names", "GLOSSARY",
           "add_flags", "typed", "train_help_parser", "add_train_run_flags", "other_task_names"]

_PACKAGE = Path(__file__).resolve().parent.parent  # src/rnnkit

# Help for the field names that many tasks share and that their sources leave undocumented.
GLOSSARY: dict[str, str] = {
    "hidden_size": "units in each recurrent layer's state h",
    "num_layers": "recurrent layers stacked on each other",
    "embedding_dim": "size of the learned vector of each input token",
    "char_embedding_dim": "size of the learned vector of each character (character features)",
    "char_channels": "filters of the character CNN (character features)",
    "dropout": "dropout probability between layers and before the head, in [0, 1)",
    "bidirectional": "read each sequence both ways (forward and backward layers side by side)",
    "cell": "the recurrent cell",
    "data": "a data file (or folder) in the task's format; empty = the task's default data",
    "lr": "learning rate of the optimizer (the schedule multiplies it)",
    "weight_decay": "L2 penalty on the weights (decoupled for adamw)",
    "seed": "seed of every random generator (data order, initial weights, dropout)",
    "beam_size": "hypotheses kept by beam search",
    "max_digits": "most digits per utterance (see min_digits)",
    "max_rate": "fastest speaking rate, words per minute (see min_rate)",
    "val_endings": "numbers ending in these digits are held out for validation",
}


@dataclass(frozen=True)
class FieldDoc:
    """One option: ``--name`` of type ``kind`` ("int", "float", "bool" or "str")."""

    name: str
    kind: str
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class TaskDoc:
    """What the help of ``rnnkit train NAME`` (and ``predict`` / ``generate``) needs of a task."""

    name: str
    description: str
    default_data: str
    options: tuple[FieldDoc, ...]
    train_defaults: dict
    predict: tuple[FieldDoc, ...]
    generate: tuple[FieldDoc, ...] | None  # None: the task does not generate text


def fields_of(cls) -> list[FieldDoc]:
    """The options of the dataclass ``cls`` (imported), each with its help sentence."""
    comments = _source_comments(cls)
    docs = []
    for f in dataclasses.fields(cls):
        about = f.metadata.get("help") or comments.get(f.name) or GLOSSARY.get(f.name, "")
        default = f.default if f.default is not dataclasses.MISSING else None
        docs.append(FieldDoc(f.name, _kind(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")),
                             default, _with_choices(f.name, about)))
    return docs


@lru_cache(maxsize=None)
def builtin_tasks() -> dict[str, TaskDoc]:
    """The tasks of ``rnnkit/tasks/*.py`` read from their source (nothing is imported)."""
    tasks = {}
    for path in sorted((_PACKAGE / "tasks").glob("*.py")):
        tree, comments = _parse(path)
        classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
        for node in classes.values():
            if any(_name(d) == "register" for d in node.decorator_list):
                doc = _task_doc(node, classes, comments)
                if doc is not None:
                    tasks[doc.name] = doc
    return tasks


@lru_cache(maxsize=None)
def train_config_doc() -> tuple[FieldDoc, ...]:
    """``TrainConfig``'s options, read from ``training/trainer.py``'s source."""
    tree, comments = _parse(_PACKAGE / "training" / "trainer.py")
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainConfig")
    return _dataclass_doc(node, comments)


@lru_cache(maxsize=None)
def cell_names() -> tuple[str, ...]:
    """The keys of ``rnnkit.models.CELLS``, read from ``models/recurrent.py``."""
    tree, _ = _parse(_PACKAGE / "models" / "recurrent.py")
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
        if _name(target) == "CELLS" and isinstance(node.value, ast.Dict):
            return tuple(ast.literal_eval(k) for k in node.value.keys)
    return ()


# -- flags -----------------------------------------------------------------------------------------

def add_flags(group, docs, defaults: dict | None = None) -> None:
    """One ``--flag`` per option (a ``FieldDoc``) in the argparse ``group``: typed, and helped by the
    option's sentence and the default in force (``defaults``: the task's own, where it sets one)."""
    kinds = {"int": int, "float": float, "bool": bool, "str": str}
    for d in docs:
        kind = kinds[d.kind]
        default = (defaults or {}).get(d.name, d.default)
        about = (d.help or d.name.replace("_", " ")).replace("%", "%%")
        if "default" not in about.lower():
            about += f" (default: {default if kind is bool else repr(default)})"
        if kind is bool:
            group.add_argument(d.flag, action=argparse.BooleanOptionalAction, dest=d.name, help=about)
        else:
            group.add_argument(d.flag, type=typed(kind, d.flag), dest=d.name, metavar=kind.__name__.upper(), help=about)


def typed(kind: type, flag: str):
    """An argparse ``type=`` that converts to ``kind`` with a one-line error naming ``flag``."""
    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects {kind.__name__}, got {text!r}") from None
    return convert


def add_train_run_flags(parser, task: str) -> None:
    """The flags of ``rnnkit train TASK`` that are no dataclass field."""
    parser.add_argument("--out", metavar="DIR", help=f"run directory (default: runs/{task})")
    parser.add_argument("--config", metavar="FILE", help="a TOML file of option = value lines")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_help_parser(argv: list[str], parser_class=argparse.ArgumentParser):
    """The parser whose help ``rnnkit train [TASK] ...`` prints, built from the sources (no torch);
    None for a task not read there (a plugin: the command line imports it)."""
    tasks = builtin_tasks()
    if not argv or argv[0].startswith("-"):
        head = parser_class(prog="rnnkit train", description="Train a task into a run directory.")
        head.add_argument("task", choices=sorted(set(tasks) | other_task_names()),
                          help="the task to train (`rnnkit tasks` describes them)")
        return head
    doc = tasks.get(argv[0])
    if doc is None or argv[0] in other_task_names():
        return None
    parser = parser_class(prog=f"rnnkit train {doc.name}", description=doc.description,
                          argument_default=argparse.SUPPRESS)
    add_train_run_flags(parser, doc.name)
    add_flags(parser.add_argument_group("training"), train_config_doc(), doc.train_defaults)
    add_flags(parser.add_argument_group(f"{doc.name} options"), doc.options)
    return parser


def other_task_names() -> set[str]:
    """Tasks besides rnnkit's own: registered in this process, or declared by installed packages."""
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="rnnkit.tasks")}  # (rnnkit.tasks.ENTRY_POINT_GROUP)
    base = sys.modules.get("rnnkit.tasks.base")  # loaded: tasks may have been registered in this process
    if base is not None:
        names |= set(base.TASKS) - set(builtin_tasks())
    return names


# -- reading source --------------------------------------------------------------------------

def _parse(path: Path) -> tuple[ast.Module, dict[int, tuple[str, bool]]]:
    """The module's tree and its comments: line -> (text, whether the line holds only the comment)."""
    source = path.read_text(encoding="utf-8")
    return ast.parse(source), _comments(source)


def _comments(source: str) -> dict[int, tuple[str, bool]]:
    found = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            alone = tok.line[: tok.start[1]].strip() == ""
            found[tok.start[0]] = (tok.string.lstrip("#").strip(), alone)
    return found


def _source_comments(cls) -> dict[str, str]:
    """Field name -> attribute comment, from the source of the class (empty where unreadable)."""
    try:
        lines, first = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    source = textwrap.dedent("".join(lines))
    try:
        node = ast.parse(source).body[0]
    except (SyntaxError, IndexError):
        return {}
    if not isinstance(node, ast.ClassDef):
        return {}
    return {f.name: f.help for f in _dataclass_doc(node, _comments(source)) if f.help}


def _task_doc(node: ast.ClassDef, classes: dict[str, ast.ClassDef], comments) -> TaskDoc | None:
    attrs = {}
    for item in node.body:
        if isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name):
            attrs[item.targets[0].id] = item.value
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
            attrs[item.target.id] = item.value
    try:
        name = ast.literal_eval(attrs["name"])
        text = {k: ast.literal_eval(attrs[k]) if k in attrs else "" for k in ("description", "default_data")}
        defaults = ast.literal_eval(attrs["train_defaults"]) if "train_defaults" in attrs else {}
    except (KeyError, ValueError):
        return None

    def options(attr: str, absent):
        if attr not in attrs:
            return absent
        value = attrs[attr]
        if isinstance(value, ast.Constant) and value.value is None:
            return None
        cls_name = _name(value)
        if cls_name == "NoOptions":
            return ()
        if cls_name not in classes:
            raise LookupError(cls_name)
        return _dataclass_doc(classes[cls_name], comments)

    try:
        return TaskDoc(name, text["description"], text["default_data"], options("Options", ()), defaults,
                       options("PredictOptions", ()), options("GenerateOptions", None))
    except (LookupError, ValueError):  # an Options class from elsewhere: the CLI imports this task
        return None


def _dataclass_doc(node: ast.ClassDef, comments: dict[int, tuple[str, bool]]) -> tuple[FieldDoc, ...]:
    docs = []
    for item in node.body:
        if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
            continue
        annotation = ast.unparse(item.annotation)
        if annotation.startswith("ClassVar"):
            continue
        default, about = _default_and_help(item.value)
        if not about:
            about = _comment_of(item, comments)
        if not about:
            about = GLOSSARY.get(item.target.id, "")
        docs.append(FieldDoc(item.target.id, _kind(annotation.strip("'\"")), default, _with_choices(item.target.id, about)))
    return tuple(docs)


def _default_and_help(value: ast.expr | None) -> tuple[Any, str]:
    """The literal default of a field and the help of ``field(..., metadata={"help": ...})``."""
    if value is None:
        return None, ""
    if isinstance(value, ast.Call) and _name(value.func) == "field":
        keywords = {k.arg: k.value for k in value.keywords}
        about = ""
        if "metadata" in keywords:
            try:
                about = ast.literal_eval(keywords["metadata"]).get("help", "")
            except ValueError:
                pass
        return (_literal(keywords["default"]) if "default" in keywords else None), about
    return _literal(value), ""


def _literal(value: ast.expr) -> Any:
    try:
        return ast.literal_eval(value)
    except ValueError:
        return ast.unparse(value)


def _comment_of(item: ast.AnnAssign, comments: dict[int, tuple[str, bool]]) -> str:
    """The comment after the field (on its last line), else the comment lines right above it."""
    for line in (item.end_lineno, item.lineno):
        if line in comments and not comments[line][1]:
            return comments[line][0]
    above, line = [], item.lineno - 1
    while line in comments and comments[line][1]:
        text = comments[line][0]
        if text.startswith("--"):  # a section marker (``# -- data``), not this field's comment
            break
        above.insert(0, text)
        line -= 1
    return " ".join(above)


def _with_choices(name: str, about: str) -> str:
    """``cell`` options say which cells there are."""
    if name == "cell" and " | " not in about and cell_names():
        return f"{about}: {' | '.join(cell_names())}" if about else " | ".join(cell_names())
    return about


def _kind(annotation: str) -> str:
    first = annotation.split("|")[0].strip()
    return first if first in ("int", "float", "bool", "str") else "str"


def _name(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _name(node.func)
    return ""
