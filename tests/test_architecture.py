"""tools/check_architecture.py: each rule fails on a small fake ``rnnkit`` tree, a clean
tree passes, and the real tree obeys the rules.

The checker runs in a subprocess, exactly as ``.ci/run`` runs it.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHECKER = REPO / "tools" / "check_architecture.py"
LINE = re.compile(r"^(?P<path>\S+):(?P<line>\d+): (?P<rule>R\d-[a-z-]+): (?P<message>.+)$")


def write_tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A fake package ``tmp_path/rnnkit`` from {relative path: source}; every directory
    gets an empty ``__init__.py`` unless ``files`` gives one."""
    root = tmp_path / "rnnkit"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            (root / parent / "__init__.py").touch()
        path.write_text(source)
    return root


def check(root: Path) -> tuple[int, list[dict[str, str]], str]:
    """Run the checker on ``root``: (exit code, its violation lines parsed, stdout)."""
    done = subprocess.run([sys.executable, str(CHECKER), str(root)],
                          capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    parsed = [LINE.match(line) for line in lines]
    if done.returncode == 1:
        assert all(parsed), f"every output line is path:line: RULE: message:\n{done.stdout}"
    return done.returncode, [m.groupdict() for m in parsed if m], done.stdout


def rules(violations: list[dict[str, str]]) -> list[str]:
    return sorted(v["rule"] for v in violations)


def fails_with(root: Path, rule: str) -> list[dict[str, str]]:
    """Assert the checker exits 1 reporting only ``rule``; the violations."""
    code, violations, out = check(root)
    assert code == 1, out
    assert violations and set(rules(violations)) == {rule}, out
    return violations


# -- a clean tree ------------------------------------------------------------------------

CLEAN = {
    "__init__.py": "from . import cells\nfrom .cells import Cell\nfrom .layers._impl import _fast\n",
    "__main__.py": "from .cli import main\nmain()\n",
    "checks.py": "def check_int(x):\n    return int(x)\n",
    "cells/base.py": "from ..checks import check_int\n\nclass Cell:\n    pass\n",
    "cells/lstm.py": "from .base import Cell\nfrom ._maths import _gates  # own package: private is fine\n",
    "cells/_maths.py": "def _gates():\n    pass\n",
    "layers/recurrent.py": (
        "from ..cells.base import Cell\n"
        "from ..cells import lstm\n"
        "import rnnkit.cells.base as base\n"
        "from . import _impl\n\n"
        "def run():\n"
        "    from rnnkit.kernels import fast  # lazy, but allowed\n"
        "    return lstm.__name__, base.Cell, _impl._fast, fast\n"),
    "layers/_impl.py": "def _fast():\n    pass\n",
    "kernels/fast.py": "from ..cells.base import Cell\n",
    "training/trainer.py": "from ..data import batches\n",
    "data/batches.py": "from rnnkit.checks import check_int\n",
    "cli.py": "from .training.trainer import *\nfrom rnnkit import layers\n\ndef main():\n    pass\n",
}


def test_a_clean_tree_passes(tmp_path):
    code, violations, out = check(write_tree(tmp_path, CLEAN))
    assert (code, violations) == (0, []), out
    assert re.fullmatch(r"\d+ modules, \d+ imports checked, no violations\n", out), out


def test_a_long_file_with_a_reason_passes(tmp_path):
    source = "# long-file: generated tables, one per cell\n" + "x = 1\n" * 600
    code, _, out = check(write_tree(tmp_path, {"cells/tables.py": source}))
    assert code == 0, out


# -- R1: cycles ----------------------------------------------------------------------------

def test_a_lazy_import_inside_a_function_forms_a_cycle(tmp_path):
    root = write_tree(tmp_path, {
        "models/lm.py": (
            "import torch\n\n\n"
            "def build():\n"
            "    from ..tasks.charlm import Task  # lazy: line 5\n"
            "    return Task\n"),
        "tasks/charlm.py": "from ..models.lm import build\n\nclass Task:\n    pass\n",
    })
    (violation,) = fails_with(root, "R1-cycle")
    message = violation["message"]
    assert "models -> tasks -> models" in message, message
    assert re.search(r"models -> tasks: \S+/models/lm.py:5 `from ..tasks.charlm import Task`", message)
    assert re.search(r"tasks -> models: \S+/tasks/charlm.py:1 `from ..models.lm import build`", message)


@pytest.mark.parametrize("statement", [
    "import rnnkit.tasks.charlm",
    "import rnnkit.tasks.charlm as charlm",
    "from rnnkit.tasks import charlm",
    "from rnnkit import tasks",
    "from ..tasks import charlm",
    "from .. import tasks",
])
def test_every_form_of_import_forms_an_edge(tmp_path, statement):
    root = write_tree(tmp_path, {
        "models/lm.py": f"def build():\n    {statement}\n",
        "tasks/charlm.py": "from ..models import lm\n",
    })
    (violation,) = fails_with(root, "R1-cycle")
    assert "models -> tasks -> models" in violation["message"]


def test_a_top_level_module_is_a_package_and_each_cycle_is_reported_once(tmp_path):
    root = write_tree(tmp_path, {
        "streaming.py": "from .models.lm import build\n",  # streaming <-> models
        "models/lm.py": "def build():\n    from .. import streaming\n    from ..streaming import Stream\n",
        "models/seq.py": "from rnnkit.streaming import Stream\n",
    })
    (violation,) = fails_with(root, "R1-cycle")
    assert "models -> streaming -> models" in violation["message"]


# -- R2: allowed dependencies --------------------------------------------------------------

@pytest.mark.parametrize("importer, statement, imported", [
    ("cells/gru.py", "from ..layers.fused import linear", "layers"),
    ("cells/gru.py", "from rnnkit import layers", "layers"),
    ("checks.py", "from .cells import base", "cells"),
    ("data/datasets/ner.py", "from ...training.metrics import split_tag", "training"),
    ("kernels/cpu.py", "import rnnkit.layers.fused", "layers"),
    ("layers/lstm.py", "from ..models import lm", "models"),
])
def test_a_package_imports_only_what_it_is_allowed(tmp_path, importer, statement, imported):
    root = write_tree(tmp_path, {
        importer: f"def lazy():\n    {statement}\n",
        "cells/base.py": "", "layers/fused.py": "def linear():\n    pass\n",
        "training/metrics.py": "def split_tag():\n    pass\n", "models/lm.py": "",
    })
    (violation,) = fails_with(root, "R2-allowed")
    assert violation["path"].endswith(importer) and violation["line"] == "2"
    assert statement in violation["message"] and f"imports {imported}" in violation["message"]


# -- R3: forbidden dependencies ------------------------------------------------------------

@pytest.mark.parametrize("importer, statement", [
    ("training/run.py", "from ..tasks.base import get_task"),
    ("training/run.py", "from ..models import lm"),
    ("viz/plots.py", "from ..experiments import memory"),
    ("streaming.py", "from .cli import main"),
    ("export/onnx.py", "from ..commands import export"),
    ("export.py", "import rnnkit.runs"),
])
def test_a_library_package_does_not_import_an_application(tmp_path, importer, statement):
    root = write_tree(tmp_path, {
        importer: f"import torch\n{statement}\n",
        "tasks/base.py": "def get_task():\n    pass\n", "models/lm.py": "", "experiments/memory.py": "",
        "cli.py": "def main():\n    pass\n", "commands/export.py": "", "runs.py": "",
    })
    (violation,) = fails_with(root, "R3-forbidden")
    assert violation["path"].endswith(importer) and violation["line"] == "2"
    assert statement in violation["message"]


# -- R4: private names across packages -----------------------------------------------------

@pytest.mark.parametrize("statement, private", [
    ("from ..layers._boundary import split_states", "_boundary"),  # a private module
    ("from ..cells.base import _check_int, check_size", "_check_int"),  # a private name
    ("from ..layers import _cpu_kernels", "_cpu_kernels"),  # a private module, imported by name
    ("import rnnkit.layers._cpu_kernels as kernels", "_cpu_kernels"),
])
def test_a_private_name_of_another_package_is_not_imported(tmp_path, statement, private):
    root = write_tree(tmp_path, {
        "viz/gradients.py": f"{statement}\n",
        "layers/_boundary.py": "def split_states():\n    pass\n",
        "layers/_cpu_kernels.py": "",
        "cells/base.py": "def _check_int():\n    pass\n\ndef check_size():\n    pass\n",
    })
    (violation,) = fails_with(root, "R4-private")
    assert f"imports {private}," in violation["message"], violation["message"]


def test_a_private_attribute_of_a_module_of_another_package_is_not_used(tmp_path):
    root = write_tree(tmp_path, {
        "bench.py": (
            "from .layers import fused\n"
            "import rnnkit.layers.fused\n\n"
            "def time_gemm(x):\n"
            "    print(fused.__name__, fused.linear)  # public and dunder names are fine\n"
            "    return fused._gemm_for(x), rnnkit.layers.fused._gemm_for(x)\n"),
        "layers/fused.py": "def _gemm_for(x):\n    pass\n\ndef linear():\n    pass\n",
    })
    violations = fails_with(root, "R4-private")
    assert [v["line"] for v in violations] == ["6", "6"]
    assert "`fused._gemm_for`" in violations[0]["message"]
    assert "rnnkit.layers.fused._gemm_for" in violations[1]["message"]


def test_a_lazy_import_binds_its_module_in_its_function_only(tmp_path):
    root = write_tree(tmp_path, {
        "bench.py": (
            "def one(x):\n"
            "    from .layers import fused\n"
            "    return fused._gemm_for(x)\n\n"
            "def other(fused):\n"
            "    return fused._gemm_for(1)  # an argument, not the module\n"),
        "layers/fused.py": "def _gemm_for(x):\n    pass\n",
    })
    (violation,) = fails_with(root, "R4-private")
    assert violation["line"] == "3"


def test_a_parameter_or_variable_of_the_same_name_is_not_the_module(tmp_path):
    root = write_tree(tmp_path, {
        "bench.py": (
            "from .layers import fused\n\n"
            "def other(fused):\n"
            "    return fused._gemm_for(1)\n\n"
            "def third():\n"
            "    fused = object()\n"
            "    return fused._gemm_for\n"),
        "layers/fused.py": "def _gemm_for(x):\n    pass\n",
    })
    code, _, out = check(root)
    assert code == 0, out


# -- R5: file size -------------------------------------------------------------------------

@pytest.mark.parametrize("first_line", ["", "# long-file:", "# long-file:   "])
def test_a_long_file_needs_a_reason(tmp_path, first_line):
    root = write_tree(tmp_path, {"layers/fused.py": first_line + "\n" + "x = 1\n" * 500})
    (violation,) = fails_with(root, "R5-file-size")
    assert violation["path"].endswith("layers/fused.py") and "501 lines > 500" in violation["message"]


def test_a_file_of_500_lines_is_not_long(tmp_path):
    code, _, out = check(write_tree(tmp_path, {"layers/fused.py": "x = 1\n" * 500}))
    assert code == 0, out


# -- R6: the facade ------------------------------------------------------------------------

@pytest.mark.parametrize("importer, statement", [
    ("bench.py", "import rnnkit"),
    ("bench.py", "from . import LSTM"),
    ("models/lm.py", "from rnnkit import LSTM"),
    ("models/lm.py", "from .. import LSTM, layers"),  # layers is fine, LSTM is not
])
def test_inside_the_package_names_are_imported_from_their_package_not_the_facade(
        tmp_path, importer, statement):
    root = write_tree(tmp_path, {
        "__init__.py": "from .layers import LSTM\n",
        importer: f"def cases():\n    {statement}\n",
        "layers/__init__.py": "class LSTM:\n    pass\n",
    })
    (violation,) = fails_with(root, "R6-facade")
    assert statement in violation["message"]


def test_the_facade_is_exempt(tmp_path):
    root = write_tree(tmp_path, {
        "__init__.py": "from .tasks import charlm\nfrom .layers._boundary import _split\nimport rnnkit\n",
        "__main__.py": "import rnnkit.cli\nrnnkit.cli._main()\n",
        "cli.py": "def _main():\n    pass\n",
        "tasks/charlm.py": "", "layers/_boundary.py": "def _split():\n    pass\n",
    })
    code, _, out = check(root)
    assert code == 0, out


# -- the real tree -------------------------------------------------------------------------

def test_the_real_tree_has_no_violations():
    code, _, out = check(REPO / "src" / "rnnkit")
    assert code == 0, f"tools/check_architecture.py src/rnnkit:\n{out}"
