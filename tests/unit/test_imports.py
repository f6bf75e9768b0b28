"""Static import rules (design.md, "One method = one plugin"; issue 11, item 3), read from the source with
``ast``: nothing is imported.

- No import circle anywhere in the package (module-level imports: what runs when a module is imported).
- ``hubkit.adapters.<m>`` never imports ``hubkit.pipelines`` at module level.
- Inference (``hubkit.pipelines``) never imports training code (``hubkit.training``,
  ``hubkit.adapters.<m>.train``): not directly, not in a function, and not through what its module-level
  imports load.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from conftest import package_folders

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = package_folders()  # folder -> the import name it ships as


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # the module (or package) whose code must have run
    module_level: bool


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module
    imports: list[Import] = field(default_factory=list)

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]

    @property
    def where(self) -> str:
        return str(self.path.relative_to(ROOT))


def _module_name(folder: Path, prefix: str, file: Path) -> tuple[str, bool]:
    parts = list(file.relative_to(folder).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join([prefix, *parts]), is_package


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_statements(body: list[ast.stmt]):
    """Statements that run when the module is imported: top level, inside ``if`` / ``try`` / ``with`` /
    class bodies; not function bodies, not ``if TYPE_CHECKING:`` blocks (their ``else`` does run)."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_statements(node.body)
            yield from _module_level_statements(node.orelse)
        elif isinstance(node, ast.Try | getattr(ast, "TryStar", ast.Try)):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level_statements(block)
        elif isinstance(node, ast.With | ast.ClassDef | ast.For | ast.While):
            yield from _module_level_statements(node.body)
            yield from _module_level_statements(getattr(node, "orelse", []))


def _in_type_checking(tree: ast.Module) -> set[int]:
    """ids of import nodes under ``if TYPE_CHECKING:`` (never run, at any level)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                skipped.update(id(n) for n in ast.walk(stmt))
    return skipped


@cache
def modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for folder_name, prefix in FOLDERS.items():
        folder = ROOT / folder_name
        for file in sorted(folder.rglob("*.py")):
            if "__pycache__" in file.parts:
                continue
            name, is_package = _module_name(folder, prefix, file)
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
            found[name] = Module(name, file, is_package, tree)
    for module in found.values():
        module.imports = _imports(module, found)
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _source(module: Module, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from ... import`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.package.split(".")
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(module: Module, known: dict[str, Module]) -> list[Import]:
    """Every import of a hubkit module in ``module``, resolved to the modules whose code it runs.

    ``import a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``; ancestors of the importing module itself are left out
    (they are being imported already, that is how Python got here). ``from p import x`` runs ``p.x`` when that
    is a module; when ``x`` is an attribute of ``p`` it needs ``p``'s code to have run, even when ``p`` is
    the importer's own package (a real circle: ``from hubkit import __version__`` in a module that
    ``hubkit/__init__.py`` imports)."""
    top_level = {id(n) for n in _module_level_statements(module.tree.body)}
    skipped = _in_type_checking(module.tree)
    own = {*_ancestors(module.name), module.name}
    found: list[Import] = []

    def add(node: ast.stmt, target: str, needs_package_code: bool = False) -> None:
        if target not in known and not any(target.startswith(k + ".") for k in known):
            return
        level = id(node) in top_level
        chain = [*_ancestors(target), target]
        for name in chain:
            if (
                name in known
                and name != module.name
                and (name not in own or (needs_package_code and name == target))
            ):
                found.append(Import(node.lineno, name, level))

    for node in ast.walk(module.tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node, alias.name)
        elif isinstance(node, ast.ImportFrom):
            source = _source(module, node)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in known:
                    add(node, sub)
                else:
                    add(node, source, needs_package_code=True)
    return found


def _graph() -> dict[str, set[str]]:
    return {
        name: {i.target for i in module.imports if i.module_level and i.target != name}
        for name, module in modules().items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete circle per strongly connected component (Tarjan), each as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # iterative enough for a package this size; recursion depth = import depth
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)

    circles = []
    for component in components:
        start = min(component)
        # Shortest path back to start inside the component (BFS).
        previous: dict[str, str] = {}
        queue, seen, end = [start], {start}, None
        while queue and end is None:
            v = queue.pop(0)
            for w in sorted(graph[v] & component):
                if w == start:
                    end = v
                    break
                if w not in seen:
                    seen.add(w)
                    previous[w] = v
                    queue.append(w)
        path = [end]
        while path[-1] != start:
            path.append(previous[path[-1]])
        circles.append([*reversed(path), start])
    return circles


def _describe(circle: list[str]) -> str:
    steps = []
    for a, b in itertools.pairwise(circle):
        line = next(i.line for i in modules()[a].imports if i.target == b and i.module_level)
        steps.append(f"{modules()[a].where}:{line} imports {b}")
    return " -> ".join(circle) + "\n    " + "\n    ".join(steps)


def test_the_check_sees_the_whole_package():
    names = set(modules())
    for expected in ("hubkit", "hubkit.cli", "hubkit.adapters", "hubkit.pipelines", "hubkit.model_cards"):
        assert expected in names
    methods = [p.name for p in (ROOT / "adapters").iterdir() if (p / "__init__.py").is_file()]
    assert methods and all(f"hubkit.adapters.{m}" in names for m in methods)
    # Resolution, checked on the shape of the code rather than on one file's contents:
    assert any(i.target.startswith("hubkit.") for m in modules().values() for i in m.imports)


def test_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_resolved_like_python_runs_them():
    sources = {
        "pkg": (True, "from pkg.core import VERSION\n"),
        "pkg.core": (False, "VERSION = '1'\n"),
        "pkg.sub": (True, "from . import a\nfrom .a import thing\n"),
        "pkg.sub.a": (
            False,
            "from typing import TYPE_CHECKING\n"
            "import pkg.core\n"
            "from .. import VERSION\n"  # an attribute of pkg: needs pkg's __init__ to have run
            "try:\n    from pkg.sub import b\nexcept ImportError:\n    b = None\n"
            "if TYPE_CHECKING:\n    from pkg.sub.c import C\n"
            "def later():\n    from pkg.sub import c\n",
        ),
        "pkg.sub.b": (False, ""),
        "pkg.sub.c": (False, ""),
    }
    known = {
        name: Module(name, ROOT / f"{name}.py", is_package, ast.parse(code))
        for name, (is_package, code) in sources.items()
    }
    got = _imports(known["pkg.sub.a"], known)
    module_level = {i.target for i in got if i.module_level}
    assert module_level == {"pkg.core", "pkg", "pkg.sub.b"}  # not pkg.sub (already running), not c
    assert {i.target for i in got if not i.module_level} == {"pkg.sub.c"}  # the function's import
    assert {i.target for i in _imports(known["pkg.sub"], known)} == {"pkg.sub.a"}
    graph = {n: {i.target for i in _imports(m, known) if i.module_level} - {n} for n, m in known.items()}
    assert _cycles(graph) == []
    graph["pkg"].add("pkg.sub.a")  # the package's __init__ importing a module that reads its attribute
    assert _cycles(graph) == [["pkg", "pkg.sub.a", "pkg"]]


def test_no_import_circle():
    circles = _cycles(_graph())
    assert not circles, "import circles (module-level imports):\n" + "\n".join(map(_describe, circles))


def _method_of(name: str, family: str) -> str | None:
    parts = name.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["hubkit", family] else None


def test_adapters_never_import_pipelines_at_module_level():
    bad = [
        f"{module.where}:{i.line} imports {i.target}"
        for module in modules().values()
        if module.name.startswith("hubkit.adapters.")
        for i in module.imports
        if i.module_level and (i.target == "hubkit.pipelines" or i.target.startswith("hubkit.pipelines."))
    ]
    assert not bad, "adapters import inference code at module level (import it inside the function):\n" + (
        "\n".join(bad)
    )


def _is_training(name: str) -> bool:
    parts = name.split(".")
    if parts[:2] == ["hubkit", "training"]:
        return True
    return len(parts) >= 4 and parts[:2] == ["hubkit", "adapters"] and parts[3] == "train"


def _reexported_from(package: str, name: str, seen: frozenset[str] = frozenset()) -> str | None:
    """The module a package's ``__init__`` takes ``name`` from (``from .train import remove_lora``)."""
    module = modules().get(package)
    if module is None or not module.is_package or package in seen:
        return None
    for node in module.tree.body:
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            source = _source(module, node)
            original = next(a.name for a in node.names if (a.asname or a.name) == name)
            deeper = _reexported_from(source, original, seen | {package})
            return deeper or source
    return None


def test_inference_never_imports_training_code():
    """Anywhere in a pipelines module (function-level imports too), also names re-exported by a package
    ``__init__`` from a training module."""
    bad = []
    for module in modules().values():
        if not module.name.startswith("hubkit.pipelines"):
            continue
        for i in module.imports:
            if _is_training(i.target):
                bad.append(f"{module.where}:{i.line} imports {i.target}")
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    origin = _reexported_from(node.module, alias.name)
                    if origin and _is_training(origin):
                        bad.append(f"{module.where}:{node.lineno} imports {alias.name} (from {origin})")
    assert not bad, "inference imports training code:\n" + "\n".join(bad)


def _loaded_by(name: str) -> dict[str, list[str]]:
    """Every hubkit module that importing ``name`` runs, with the chain of imports that gets there."""
    graph = _graph()
    chains = {name: [name]}
    queue = [name]
    while queue:
        v = queue.pop(0)
        for w in [*_ancestors(v), *sorted(graph.get(v, ()))]:
            if w in modules() and w not in chains:
                chains[w] = [*chains[v], w]
                queue.append(w)
    return chains


@pytest.mark.parametrize(
    "pipeline", sorted(n for n in modules() if n.startswith("hubkit.pipelines.") and modules()[n].is_package)
)
def test_importing_inference_loads_no_training_code(pipeline):
    """``import hubkit.pipelines.<m>`` (what a user of an artifact does) must not run training code, also not
    through a package ``__init__`` or a config module on the way."""
    loaded = _loaded_by(pipeline)
    bad = [" -> ".join(chain) for name, chain in sorted(loaded.items()) if _is_training(name)]
    assert not bad, f"importing {pipeline} runs training code:\n" + "\n".join(bad)
