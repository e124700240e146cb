"""The house rules, executable: the floors (training -> baselines -> envs -> agents), no import cycle anywhere,
imports at module top (except guarded optional dependencies), no module over 400 lines.

The package is read from its source files (``ast``), not imported, so a rule broken inside a function body or
behind ``TYPE_CHECKING`` is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ("training", "baselines", "envs", "agents")  # each may import only the floors before it
# Imports allowed inside functions: optional dependencies whose absence must not break the package.
OPTIONAL = {"ray", "fcntl", "resource"}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """``prunegym.<floor>.<sub>...`` -> file, for every module of the four floors."""
    out = {}
    for floor in FLOORS:
        for path in sorted((ROOT / floor).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(["prunegym", *parts])] = path
    return out


MODULES = modules()


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at module top)`` for every import in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    for n in tree.body:  # imports under a module-level ``if``/``try`` count as module top
        if isinstance(n, (ast.If, ast.Try)):
            top |= {id(c) for c in ast.walk(n)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name, path).split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" for a in node.names]
            resolved = [t if t in MODULES else mod for t in targets]
            out += [(r, node.lineno, id(node) in top) for r in dict.fromkeys(resolved)]
    return out


def internal_edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for target, _, _ in imports(name, path):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def test_every_import_respects_the_floors():
    bad = []
    for name, path in MODULES.items():
        floor = FLOORS.index(name.split(".")[1])
        for target, line, _ in imports(name, path):
            if target.startswith("prunegym."):
                t_floor = target.split(".")[1]
                if t_floor in FLOORS and FLOORS.index(t_floor) > floor:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not bad, "imports against the floors (training -> baselines -> envs -> agents):\n" + "\n".join(bad)


def test_no_import_cycle():
    graph = internal_edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    counter = [0]

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    assert not cycles, f"import cycles: {cycles}"


def _room(module: str) -> str:
    """The room of an ``agents`` module: its sub-package (``sb3``, ``evaluation``, ``parallel``) or itself."""
    return module.split(".")[2]


def test_no_subpackage_cycle_in_agents():
    """The rooms of ``agents/`` (its sub-packages and top-level modules) import in one direction only; the
    package's own ``__init__`` (which re-exports) is left out."""
    inside = [m for m in MODULES if m.startswith("prunegym.agents.")]
    graph = internal_edges()
    edges = {(_room(a), _room(b)) for a in inside for b in graph[a] if b in inside and _room(a) != _room(b)}
    loops = sorted((a, b) for a, b in edges if (b, a) in edges)
    assert not loops, f"agents sub-packages import each other both ways: {loops}"


def test_imports_are_at_module_top():
    hidden = []
    for name, path in MODULES.items():
        for target, line, at_top in imports(name, path):
            if not at_top and target.split(".")[0] not in OPTIONAL:
                hidden.append(f"{path.relative_to(ROOT)}:{line} imports {target} inside a function")
    assert not hidden, "function-level imports (only optional dependencies may be imported lazily):\n" + "\n".join(
        hidden
    )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)} has {lines} lines (at most {MAX_LINES})"


def test_package_is_typed():
    for floor in FLOORS:
        assert (ROOT / floor / "py.typed").is_file(), f"{floor}/py.typed is missing"


def test_the_architecture_doc_names_every_module():
    """docs/ARCHITECTURE.md names every module of the four floors (as `file.py`), so a new room is described
    where newcomers look, and a room that moved is not described under its old name."""
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    missing = sorted(
        str(p.relative_to(ROOT)) for p in MODULES.values() if p.name != "__init__.py" and f"`{p.name}`" not in doc
    )
    assert not missing, f"docs/ARCHITECTURE.md does not name {missing}"
    for gone in ("schedule.py", "lr_progress.py", "scheduler.py", "budgets.py"):
        assert f"`{gone}`" not in doc, gone
