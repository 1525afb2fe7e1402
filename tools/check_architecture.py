#!/usr/bin/env python3
"""Check rnnkit's package dependency rules; run by ``.ci/run`` before the tests.

    python tools/check_architecture.py [SRC_ROOT]      # default: src/rnnkit

Prints one line per violation, ``path:line: RULE: message``, and exits 1 if there is any;
otherwise prints ``N modules, M imports checked, no violations`` and exits 0.

A *package* is a direct child of SRC_ROOT: a subpackage ``foo/`` or a top-level module
``foo.py`` — both are package ``foo``, so a module may become a package without changing
the rules. ``SRC_ROOT/__init__.py`` and ``SRC_ROOT/__main__.py`` are the public *facade*:
they are exempt from rules R1–R4 and R6.

Every import counts: module level and inside functions (a lazy import "because of a cycle"
is still a dependency), under ``if TYPE_CHECKING:`` too, relative (``from ..layers import
x``) and absolute (``from rnnkit.layers import x``, ``import rnnkit.layers.native``), and
``importlib.import_module("rnnkit.x")`` with a literal string. Names looked up at run time
(``import_module(name)``) are not seen.

The rules:

R1-cycle      No cycles between packages. Each elementary cycle of the package graph is
              reported once, with one import (file:line) that forms each of its edges.
R2-allowed    A package listed in ALLOWED below imports only the packages listed for it.
R3-forbidden  A package listed in FORBIDDEN below never imports the packages listed for it.
R4-private    No private names across packages: no ``from ..layers._boundary import x``,
              ``from ..cells.base import _check_int``, ``from ..layers import _cpu_kernels``,
              and no ``mod._name`` where ``mod`` is bound by an import of a module of another
              package (``from ..layers import fused`` then ``fused._gemm_for(...)``). A
              private name starts with one underscore (dunders are public); a private module
              (``_foo.py``) of another package is a private name.
R5-file-size  No ``.py`` file over MAX_LINES lines, unless one of its first 5 lines is the
              marker comment, with a non-empty reason:
                  # long-file: <reason>
R6-facade     Inside SRC_ROOT, import from the package a name belongs to, not the facade:
              ``import rnnkit`` and ``from rnnkit import LSTM`` are violations;
              ``from rnnkit import cells`` is an import of package ``cells`` (rules R1–R3).

Standard library only, so CI can run it before anything is installed.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# R2: package -> the only rnnkit packages it may import (its own package is always allowed).
ALLOWED: dict[str, set[str]] = {
    "checks": set(),  # argument validation: the bottom of the stack, imports nothing of rnnkit
    "cells": {"checks"},  # one time step: the maths, validated arguments
    "data": {"checks"},  # data sets and batching know nothing about models
    "kernels": {"cells", "checks"},  # fast paths derived from the cells' reference steps
    "layers": {"cells", "kernels", "checks"},  # the loop over time around a cell
}

# R3: package -> rnnkit packages it must never import (the rest is allowed).
_APPLICATIONS = {"tasks", "cli", "commands", "experiments", "runs", "serve"}
FORBIDDEN: dict[str, set[str]] = {
    "training": _APPLICATIONS | {"models"},  # the trainer is model- and task-agnostic
    "viz": set(_APPLICATIONS),  # plots and reports take tensors and runs' outputs
    "streaming": set(_APPLICATIONS),  # live inference is a library, not an application
    "export": set(_APPLICATIONS),  # export takes a model, not a task or a command
}

MAX_CYCLES = 50  # R1: list at most this many cycles (a dense graph has very many)
MAX_LINES = 500  # R5
LONG_FILE_MARKER = re.compile(r"^\s*#\s*long-file:(.*)$")  # R5, in one of the first 5 lines
FACADE_FILES = {"__init__.py", "__main__.py"}  # at SRC_ROOT: exempt from R1–R4, R6
FACADE = "<facade>"  # the package name given to the facade's modules and to `import rnnkit`


def is_private(name: str) -> bool:
    """``_x`` is private; ``__x__`` (and ``x``) are not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclass
class Import:
    """What one import statement takes from one rnnkit package (or from the facade)."""

    path: Path  # the importing file
    line: int
    text: str  # the statement as written, for messages: `from ..layers import fused`
    package: str  # the package imported from, or FACADE
    targets: list[str]  # dotted modules or names: rnnkit.layers.fused, rnnkit.LSTM
    private: list[str]  # the private names among them (a private module counts), in order


@dataclass
class Module:
    path: Path
    name: str  # dotted: rnnkit.layers.fused
    package: str  # layers, or FACADE for SRC_ROOT/__init__.py and __main__.py
    is_init: bool


@dataclass
class Violation:
    path: Path
    line: int
    rule: str
    message: str

    def format(self) -> str:
        return f"{display(self.path)}:{self.line}: {self.rule}: {self.message}"


def display(path: Path) -> str:
    """The path relative to the working directory when it is below it (as CI prints)."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


class Tree:
    """The modules under SRC_ROOT and how dotted names map onto them."""

    def __init__(self, root: Path):
        self.root = root
        self.top = root.name  # "rnnkit"
        self.files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
        self.modules: set[str] = set()  # every dotted module and package name
        for path in self.files:
            parts = self.parts(path)
            for i in range(1, len(parts) + 1):  # a package for every directory above
                self.modules.add(".".join(parts[:i]))

    def parts(self, path: Path) -> list[str]:
        rel = path.relative_to(self.root).with_suffix("").parts
        if rel[-1] == "__init__":
            rel = rel[:-1]
        return [self.top, *rel]

    def package_of(self, dotted: str) -> str:
        parts = dotted.split(".")
        return parts[1] if len(parts) > 1 else FACADE

    def module(self, path: Path) -> Module:
        rel = path.relative_to(self.root)
        facade = len(rel.parts) == 1 and rel.name in FACADE_FILES
        name = ".".join(self.parts(path))
        return Module(path, name, FACADE if facade else self.package_of(name), rel.name == "__init__.py")


def first_private(dotted: str) -> str | None:
    """The first private part of rnnkit.pkg.a._b.c after ``rnnkit`` (``_b``), or None."""
    return next((p for p in dotted.split(".")[1:] if is_private(p)), None)


class ScopedVisitor(ast.NodeVisitor):
    """Walks a module keeping ``self.scopes``: the module, then each enclosing function or
    lambda (class bodies are not scopes of their methods, and are folded into the outer one)."""

    def __init__(self) -> None:
        self.scopes: list[ast.AST] = []

    def visit_Module(self, node: ast.Module) -> None:
        self._in_scope(node, node.body)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for child in [*node.decorator_list, node.args, *filter(None, [node.returns])]:
            self.visit(child)  # decorators, defaults and annotations: the enclosing scope
        self._in_scope(node, node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.args)
        self._in_scope(node, [node.body])

    def _in_scope(self, node: ast.AST, body: list[ast.AST]) -> None:
        self.scopes.append(node)
        self.enter(node)
        for child in body:
            self.visit(child)
        self.scopes.pop()

    def enter(self, node: ast.AST) -> None:
        """Called on entering the scope ``node``, before its body."""


class ImportCollector(ScopedVisitor):
    """Every import in a module that lands in rnnkit, and for each scope the names its
    imports bind to rnnkit modules (for the ``mod._name`` check of R4)."""

    def __init__(self, tree: Tree, module: Module, source: str):
        super().__init__()
        self.tree, self.module, self.source = tree, module, source
        self.imports: list[Import] = []
        # scope -> name -> the dotted module an import binds it to; None: a local of that
        # scope that is not an import (a parameter, an assignment) and hides outer bindings
        self.bindings: dict[ast.AST, dict[str, str | None]] = {}
        self._last_node: ast.AST | None = None  # the statement self.imports[-1] came from

    def enter(self, node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, [a.vararg, a.kwarg])]:
                self.bindings.setdefault(node, {}).setdefault(arg.arg, None)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):  # an import of the same scope wins
            self.bindings.setdefault(self.scopes[-1], {}).setdefault(node.id, None)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top != self.tree.top:
                continue
            self._add(node, alias.name)
            if alias.asname:  # import rnnkit.layers.native as native
                self._bind(alias.asname, alias.name)
            else:  # import rnnkit.layers.native binds `rnnkit`
                self._bind(top, top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._base(node)
        if base is None:
            return
        for alias in node.names:
            if alias.name == "*":
                self._add(node, base)
                continue
            candidate = f"{base}.{alias.name}"
            if candidate in self.tree.modules:  # a submodule: from ..layers import fused
                self._add(node, candidate)
                self._bind(alias.asname or alias.name, candidate)
            elif base == self.tree.top:
                # from rnnkit import LSTM: a name of the facade (R6), not package LSTM
                self._add(node, base, shown=candidate)
            else:  # a name defined in module `base`: from ..cells.base import _check_int
                self._add(node, candidate)

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("rnnkit.x") / import_module("rnnkit.x") with a literal
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if (name == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value.split(".")[0] == self.tree.top):
            self._add(node, node.args[0].value)
        self.generic_visit(node)

    def _base(self, node: ast.ImportFrom) -> str | None:
        """The absolute dotted module of ``from <base> import ...``, if inside rnnkit."""
        if node.level == 0:
            mod = node.module or ""
            return mod if mod.split(".")[0] == self.tree.top else None
        package = self.module.name.split(".")
        if not self.module.is_init:
            package = package[:-1]
        if node.level - 1 >= len(package):
            return None  # beyond the top: Python raises ImportError; nothing to check here
        package = package[: len(package) - (node.level - 1)]
        return ".".join([*package, *([node.module] if node.module else [])])

    def _add(self, node: ast.AST, target: str, shown: str | None = None) -> None:
        """Record ``target`` (shown as ``shown``), merged with what the same statement
        takes from the same package: one violation per statement and rule."""
        shown = shown or target
        package = self.tree.package_of(target)
        last = self.imports[-1] if self.imports else None
        if not (last and self._last_node is node and last.package == package):
            text = " ".join((ast.get_source_segment(self.source, node) or "").split())
            text = text if len(text) <= 100 else text[:97] + "..."
            last = Import(self.module.path, node.lineno, text, package, [], [])
            self.imports.append(last)
            self._last_node = node
        last.targets.append(shown)
        private = first_private(shown)
        if private and private not in last.private:
            last.private.append(private)

    def _bind(self, name: str, dotted: str) -> None:
        self.bindings.setdefault(self.scopes[-1], {})[name] = dotted


class AttributeChecker(ScopedVisitor):
    """R4's second half: ``mod._name`` where ``mod`` is bound to a module of another package
    by an import in the same scope or an enclosing one."""

    def __init__(self, tree: Tree, module: Module, bindings: dict[ast.AST, dict[str, str | None]]):
        super().__init__()
        self.tree, self.module, self.bindings = tree, module, bindings
        self.found: list[Violation] = []

    def resolve(self, node: ast.AST) -> str | None:
        """The dotted name an expression like ``rnnkit.layers.fused`` stands for, if bound."""
        if isinstance(node, ast.Name):
            bound = (self.bindings.get(scope, {}) for scope in reversed(self.scopes))
            return next((names[node.id] for names in bound if node.id in names), None)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        base = self.resolve(node.value)
        if (base and base in self.tree.modules and is_private(node.attr)
                and self.tree.package_of(base) != self.module.package):
            self.found.append(Violation(
                self.module.path, node.lineno, "R4-private",
                f"`{ast.unparse(node)}`: {self.module.package} uses {node.attr}, private to "
                f"module {base} of package {self.tree.package_of(base)}; make it public API there"))
        self.generic_visit(node)


def check_file_size(path: Path, lines: list[str]) -> Violation | None:
    """R5."""
    if len(lines) <= MAX_LINES:
        return None
    marks = [m for m in map(LONG_FILE_MARKER.match, lines[:5]) if m]
    if marks and marks[0].group(1).strip():
        return None
    hint = ("its '# long-file:' marker has no reason" if marks
            else "split it, or give a reason in its first 5 lines: # long-file: <reason>")
    return Violation(path, 1, "R5-file-size", f"{len(lines)} lines > {MAX_LINES}; {hint}")


def find_cycles(edges: dict[str, dict[str, Import]], limit: int) -> list[list[str]]:
    """The elementary cycles of the package graph, once each, starting at its smallest
    package (a DFS from each start that only visits larger packages); at most ``limit + 1``,
    since a dense graph has very many."""
    cycles: list[list[str]] = []
    nodes = sorted(set(edges) | {b for targets in edges.values() for b in targets})

    def walk(start: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(path[-1], {})):
            if len(cycles) > limit:
                return
            if nxt == start:
                cycles.append(list(path))
            elif nxt > start and nxt not in path:
                walk(start, [*path, nxt])

    for start in nodes:
        walk(start, [start])
    return cycles


def check(root: Path) -> tuple[list[Violation], int, int]:
    """All violations under ``root``, the number of modules and of rnnkit imports checked."""
    tree = Tree(root)
    violations: list[Violation] = []
    edges: dict[str, dict[str, Import]] = {}  # package -> package -> first import forming it
    n_imports = 0
    for path in tree.files:
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        size = check_file_size(path, lines)
        if size:
            violations.append(size)
        try:
            syntax = ast.parse(text, filename=str(path))
        except SyntaxError as e:
            violations.append(Violation(path, e.lineno or 1, "R0-syntax", f"cannot parse: {e.msg}"))
            continue
        module = tree.module(path)
        collector = ImportCollector(tree, module, text)
        collector.visit(syntax)
        n_imports += len(collector.imports)
        if module.package == FACADE:
            continue  # the facade re-exports everything: exempt from R1–R4 and R6
        attributes = AttributeChecker(tree, module, collector.bindings)
        attributes.visit(syntax)
        violations += attributes.found
        for imp in collector.imports:
            violations += check_import(module, imp)
            if imp.package not in (FACADE, module.package):
                edges.setdefault(module.package, {}).setdefault(imp.package, imp)

    cycles = find_cycles(edges, MAX_CYCLES)
    for cycle in cycles[:MAX_CYCLES]:
        ring = [*cycle, cycle[0]]
        hops = [edges[a][b] for a, b in zip(ring, ring[1:])]
        how = "; ".join(f"{a} -> {b}: {display(i.path)}:{i.line} `{i.text}`"
                        for (a, b), i in zip(zip(ring, ring[1:]), hops))
        violations.append(Violation(hops[0].path, hops[0].line, "R1-cycle",
                                    f"package cycle {' -> '.join(ring)} ({how})"))
    if len(cycles) > MAX_CYCLES:
        first = violations[-1]
        violations.append(Violation(first.path, first.line, "R1-cycle",
                                    f"... and more package cycles: only {MAX_CYCLES} are listed"))
    violations.sort(key=lambda v: (v.rule, str(v.path), v.line))
    return violations, len(tree.files), n_imports


def check_import(module: Module, imp: Import) -> list[Violation]:
    """R2, R3, R4 (imported names) and R6 for one import statement of a non-facade module."""
    own, target = module.package, imp.package
    found = []

    def add(rule: str, message: str) -> None:
        found.append(Violation(imp.path, imp.line, rule, f"`{imp.text}`: {message}"))

    if target == FACADE:
        names = [t.split(".", 1)[1] for t in imp.targets if "." in t]
        what = f"imports {', '.join(names)} from" if names else "imports"
        add("R6-facade", f"{what} the facade {module.name.split('.')[0]}; inside the package, "
                         "import from the package each name belongs to")
        return found
    if target == own:
        return found
    if own in ALLOWED and target not in ALLOWED[own]:
        allowed = ", ".join(sorted(ALLOWED[own])) or "nothing in rnnkit"
        add("R2-allowed", f"{own} imports {target}; {own} may import only {allowed}")
    if target in FORBIDDEN.get(own, ()):
        add("R3-forbidden", f"{own} imports {target}; {own} must not import "
                            f"{', '.join(sorted(FORBIDDEN[own]))}")
    if imp.private:
        add("R4-private", f"{own} imports {', '.join(imp.private)}, private to package {target}; "
                          "make it public API there")
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src_root", nargs="?", type=Path, metavar="SRC_ROOT",
                        help="the package to check (default: src/rnnkit)")
    args = parser.parse_args(argv)
    root = args.src_root
    if root is None:  # src/rnnkit below the working directory, else in this script's repository
        root = Path("src/rnnkit")
        if not root.is_dir():
            root = Path(__file__).resolve().parent.parent / "src" / "rnnkit"
    if not root.is_dir():
        parser.error(f"{root} is not a directory")
    violations, n_modules, n_imports = check(root)
    for v in violations:
        print(v.format())
    if violations:
        n = len(violations)
        print(f"{n} violation{'s' * (n != 1)} in {n_modules} modules", file=sys.stderr)
        return 1
    print(f"{n_modules} modules, {n_imports} imports checked, no violations")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
