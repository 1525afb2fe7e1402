"""`rnnkit --help` teaches: every option has a sentence (not only its default), `--version`
answers, and the help of `rnnkit`, `rnnkit train [TASK]`, `predict` and `generate` imports no
torch (read from the sources by rnnkit.commands.catalog, which must agree with the classes)."""
import argparse
import dataclasses
import re
import subprocess
import sys

import pytest

import rnnkit
from rnnkit import cli
from rnnkit.commands.catalog import builtin_tasks, cell_names, fields_of, train_config_doc
from rnnkit.tasks import all_tasks
from rnnkit.training import TrainConfig


def _option_helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {a.option_strings[0]: a.help or "" for a in parser._actions
            if a.option_strings and a.option_strings[0] not in ("-h", "--help")}


def _explains(text: str) -> bool:
    """More than "default X": at least two words besides the default."""
    return len(re.sub(r"\(default:.*?\)\s*$", "", text).split()) >= 2


def _parser(*groups) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    for cls in groups:
        cli._add_dataclass_flags(parser.add_argument_group(cls.__name__), cls)
    return parser


def test_every_option_of_every_parser_explains_itself():
    classes = [TrainConfig]
    for cls in all_tasks().values():
        classes += [c for c in (cls.Options, cls.PredictOptions, cls.GenerateOptions) if c is not None]
    vague = {f"{cls.__name__} {flag}: {text!r}" for cls in classes
             for flag, text in _option_helps(_parser(cls)).items() if not _explains(text)}
    assert not vague


def test_a_cell_option_lists_the_cells_and_choices_show():
    helps = _option_helps(_parser(all_tasks()["digits"].Options, TrainConfig))
    assert cell_names() and all(name in helps["--cell"] for name in cell_names())
    assert "adam | adamw | sgd | rmsprop" in helps["--optimizer"]
    assert "(default: 64)" in helps["--hidden-size"]


def test_the_catalogue_read_from_source_agrees_with_the_classes():
    tasks = all_tasks()
    docs = builtin_tasks()
    assert set(docs) == {name for name, cls in tasks.items() if cls.__module__.startswith("rnnkit.tasks.")}
    for name, doc in docs.items():
        cls = tasks[name]
        assert (doc.description, doc.default_data, doc.train_defaults) == (cls.description, cls.default_data,
                                                                          cls.train_defaults)
        assert doc.options == tuple(fields_of(cls.Options)), name
        assert doc.predict == tuple(fields_of(cls.PredictOptions)), name
        assert doc.generate == (None if cls.GenerateOptions is None else tuple(fields_of(cls.GenerateOptions))), name
    assert train_config_doc() == tuple(fields_of(TrainConfig))
    assert {f.name: f.default for f in train_config_doc()} == dataclasses.asdict(TrainConfig())


def test_the_help_of_train_task_has_the_flags_the_training_parser_takes(monkeypatch, capsys):
    built = []

    def capture(self, args=None, namespace=None):
        built.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(cli._Parser, "parse_args", capture)
    with pytest.raises(SystemExit):
        cli._train(["translate"])
    monkeypatch.undo()
    assert cli._train_help(["translate", "--help"])
    shown = set(re.findall(r"^\s+(--[a-z][a-z-]*)", capsys.readouterr().out, re.M))
    assert shown == set(_option_helps(built[0])) - {"--no-lower", "--no-char-features"}


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["train", "charlm", "--help"],
                                  ["train", "translate", "-h"], ["predict", "--help"], ["generate", "--help"]])
def test_help_imports_no_torch(args):
    code = ("import sys\nfrom rnnkit.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('rnnkit'))\n")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: rnnkit" in result.stdout


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"rnnkit {rnnkit.__version__}"


def test_the_facade_still_gives_every_name_lazily():
    assert rnnkit.LSTM is __import__("rnnkit.layers", fromlist=["LSTM"]).LSTM
    from rnnkit import GRU, Stream, load, viz  # noqa: F401

    assert set(rnnkit.__all__) <= set(dir(rnnkit))
    with pytest.raises(AttributeError):
        rnnkit.nosuch
