"""The import graph of ``src/incidents``: no import cycle runs between its units, and every
import runs down the layers (or stays within one).

A unit is a top-level package or a top-level module of ``incidents`` (``delivery``, ``ingest``,
``api``, ``app``, ...). Only the imports that run count: an import inside a function counts, an
import under ``if TYPE_CHECKING:`` does not (it never runs). ``ARCHITECTURE.md`` describes the
layers of ``LAYERS``.

The web toolkit (``api/toolkit/``) is part of the unit ``api``, in the doors' layer, so no use
case, domain or base unit may import it; inside the doors it sits below the rest: it imports no
door, not even the rest of ``api`` (``TOOLKIT``).
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator, Mapping
from itertools import pairwise
from pathlib import Path

import incidents

PACKAGE = "incidents"
SOURCE = Path(incidents.__file__).parent

# unit -> imported unit -> where the first such import is ("app.py:38")
Graph = dict[str, dict[str, str]]

# The layers from the top down, each with its units. A unit may import the units of its own layer
# and of the layers below; every unit of src/incidents is in exactly one layer.
LAYERS: dict[str, frozenset[str]] = {
    "doors": frozenset({"__main__", "cli", "app", "api", "console", "health", "metrics"}),
    "use cases": frozenset({"usecases"}),
    "domains": frozenset(
        {
            "worker",
            "routing",
            "write_planner",
            "alerts",
            "lifecycle",
            "ingest",
            "retention",
            "stream",
            "delivery",
            "subscriptions",
            "connectors",
            "queries",
            "policy",
            "silences",
            "archive",
        }
    ),
    "base": frozenset(
        {
            "tracing",
            "settings",
            "store",
            "model",
            "cesql",
            "errors",
            "logs",
            "off_loop",
            "gc_freeze",
        }
    ),
}

# The web toolkit: what the doors share, below every door (it imports none of them, nor the rest
# of ``api``, its own package).
TOOLKIT = "api.toolkit"


def is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` test is ``TYPE_CHECKING`` (bare or as ``typing.TYPE_CHECKING``)."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def runtime_imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """The absolute dotted names a module imports when it runs, with their line numbers; for
    ``from a import b`` both ``a`` and ``a.b`` are given (``b`` may be a module)."""
    if isinstance(tree, ast.If) and is_type_checking(tree.test):
        for branch in tree.orelse:
            yield from runtime_imports(branch, module, is_package)
        return
    if isinstance(tree, ast.Import):
        for alias in tree.names:
            yield alias.name, tree.lineno
    elif isinstance(tree, ast.ImportFrom):
        base = tree.module or ""
        if tree.level:
            parts = module.split(".")
            if not is_package:
                parts = parts[:-1]
            parts = parts[: len(parts) - (tree.level - 1)]
            base = ".".join([*parts, *([base] if base else [])])
        yield base, tree.lineno
        for alias in tree.names:
            yield f"{base}.{alias.name}", tree.lineno
    for node in ast.iter_child_nodes(tree):
        yield from runtime_imports(node, module, is_package)


def unit_of(name: str, units: set[str]) -> str | None:
    """The unit a dotted name belongs to, or None if it is outside the units."""
    parts = name.split(".")
    if len(parts) < 2 or parts[0] != PACKAGE or parts[1] not in units:
        return None
    return parts[1]


def import_graph(source: Path) -> Graph:
    """Which unit imports which, read from the source tree at ``source``."""
    units = {p.name for p in source.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    units |= {p.stem for p in source.glob("*.py") if p.stem != "__init__"}
    graph: Graph = {unit: {} for unit in units}
    for path in sorted(source.rglob("*.py")):
        relative = path.relative_to(source)
        is_package = path.name == "__init__.py"
        parts = relative.with_suffix("").parts
        module = ".".join([PACKAGE, *(parts[:-1] if is_package else parts)])
        importer = unit_of(module, units)
        if importer is None:
            continue  # incidents/__init__.py itself
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, line in runtime_imports(tree, module, is_package):
            imported = unit_of(name, units)
            if imported is not None and imported != importer:
                graph[importer].setdefault(imported, f"{relative}:{line}")
    return graph


def strongly_connected(graph: Mapping[str, Mapping[str, str]]) -> list[list[str]]:
    """The groups of units that all reach each other (Tarjan), the groups of one left out."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(unit: str) -> None:
        index[unit] = low[unit] = len(index)
        stack.append(unit)
        on_stack.add(unit)
        for target in sorted(graph[unit]):
            if target not in index:
                visit(target)
                low[unit] = min(low[unit], low[target])
            elif target in on_stack:
                low[unit] = min(low[unit], index[target])
        if low[unit] == index[unit]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == unit:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for unit in sorted(graph):
        if unit not in index:
            visit(unit)
    return sorted(groups)


def shortest_cycle(graph: Mapping[str, Mapping[str, str]], start: str) -> list[str]:
    """The shortest path of imports from ``start`` back to itself, as a list of units."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        unit = queue.popleft()
        for target in sorted(graph[unit]):
            if target == start:
                path = [unit]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if target not in came_from:
                came_from[target] = unit
                queue.append(target)
    return []


def rotated(loop: list[str]) -> tuple[str, ...]:
    """A loop (first unit repeated last) started at its smallest unit, so that one loop found
    from two of its units reads the same."""
    ring = loop[:-1]
    first = ring.index(min(ring))
    ring = ring[first:] + ring[:first]
    return (*ring, ring[0])


def describe_cycles(graph: Mapping[str, Mapping[str, str]]) -> list[str]:
    """One paragraph per group of units in a cycle: its members, one shortest loop through each
    member (with the import that makes each step), and every import inside the group."""
    described = []
    for group in strongly_connected(graph):
        members = set(group)
        lines = [f"import cycle between {len(group)} units: {', '.join(group)}"]
        loops = {rotated(shortest_cycle(graph, unit)) for unit in group}
        for loop in sorted(loops, key=lambda loop: (len(loop), loop)):
            steps = [f"{a} -> {b} ({graph[a][b]})" for a, b in pairwise(loop)]
            lines.append("  loop: " + ", ".join(steps))
        lines.append("  imports inside the group:")
        for unit in group:
            for target, site in sorted(graph[unit].items()):
                if target in members:
                    lines.append(f"    {unit} -> {target} ({site})")
        described.append("\n".join(lines))
    return described


def layer_problems(
    graph: Mapping[str, Mapping[str, str]], layers: Mapping[str, frozenset[str]]
) -> list[str]:
    """One line per unit the layers leave out or name twice, per layer naming a unit that does not
    exist, and per import that goes up from a lower layer into a higher one (with its site)."""
    problems = []
    depth: dict[str, int] = {}
    for level, (layer, units) in enumerate(layers.items()):
        for unit in sorted(units):
            if unit in depth:
                problems.append(f"{unit} is in two layers: {list(layers)[depth[unit]]}, {layer}")
            elif unit not in graph:
                problems.append(f"{unit} is in the layer {layer} but no such unit exists")
            depth.setdefault(unit, level)
    names = list(layers)
    for unit in sorted(graph):
        if unit not in depth:
            problems.append(f"{unit} is in no layer: add it to LAYERS (and ARCHITECTURE.md)")
    for unit in sorted(graph):
        for target, site in sorted(graph[unit].items()):
            if unit in depth and target in depth and depth[target] < depth[unit]:
                problems.append(
                    f"{unit} ({names[depth[unit]]}) imports {target} ({names[depth[target]]}), "
                    f"a higher layer, at {site}"
                )
    return problems


def folder_imports(source: Path, folder: str) -> list[tuple[str, str]]:
    """The runtime imports of every module under ``folder`` (dotted, inside ``source``), as
    (imported dotted name, site), in file order."""
    found = []
    base = source.joinpath(*folder.split("."))
    for path in sorted(base.rglob("*.py")):
        relative = path.relative_to(source)
        is_package = path.name == "__init__.py"
        parts = relative.with_suffix("").parts
        module = ".".join([PACKAGE, *(parts[:-1] if is_package else parts)])
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, line in runtime_imports(tree, module, is_package):
            found.append((name, f"{relative}:{line}"))
    return found


def toolkit_problems(
    imports: list[tuple[str, str]], doors: frozenset[str], toolkit: str = TOOLKIT
) -> list[str]:
    """One line per import of the web toolkit that reaches a door outside the toolkit itself
    (another part of its own package, the console, the app, ...), with its site."""
    own = f"{PACKAGE}.{toolkit}"
    problems = []
    for name, site in imports:
        parts = name.split(".")
        if len(parts) < 2 or parts[0] != PACKAGE or parts[1] not in doors:
            continue
        if name == own or name.startswith(own + "."):
            continue
        if name == f"{PACKAGE}.{toolkit.split('.')[0]}":
            continue  # the package holding the toolkit, which any import of it loads
        problems.append(f"the web toolkit imports {name}, a door, at {site}")
    return problems


def test_the_web_toolkit_imports_no_door() -> None:
    """No module of api/toolkit/ imports a door: the rest of api, the console, the app, the CLI,
    health or metrics (no use case or domain imports the toolkit: it is in the doors' layer)."""
    imports = folder_imports(SOURCE, TOOLKIT)
    assert any(name.endswith(".responses") for name, _ in imports)  # the walk saw the toolkit
    problems = toolkit_problems(imports, LAYERS["doors"])
    assert not problems, "\n".join(problems)


def test_the_toolkit_rule_finds_imports_of_doors() -> None:
    """An import by the toolkit of the rest of its package or of another door is named with its
    site; imports inside the toolkit and of the layers below pass."""
    imports = [
        ("incidents.api.toolkit.responses", "api/toolkit/a.py:1"),
        ("incidents.api", "api/toolkit/a.py:1"),
        ("incidents.api.ingest_routes", "api/toolkit/a.py:2"),
        ("incidents.console.rendering", "api/toolkit/b.py:3"),
        ("incidents.store.keys", "api/toolkit/b.py:4"),
        ("starlette.requests", "api/toolkit/b.py:5"),
    ]
    doors = frozenset({"api", "console"})
    assert toolkit_problems(imports, doors) == [
        "the web toolkit imports incidents.api.ingest_routes, a door, at api/toolkit/a.py:2",
        "the web toolkit imports incidents.console.rendering, a door, at api/toolkit/b.py:3",
    ]


def test_imports_run_down_the_layers() -> None:
    """Every unit of src/incidents is in one layer, and none imports a unit of a higher layer."""
    problems = layer_problems(import_graph(SOURCE), LAYERS)
    assert not problems, "\n".join(problems)


def test_the_layer_rule_finds_upward_imports_and_units_left_out() -> None:
    """An import up a layer is named with its site, as is a unit no layer holds and a layer's unit
    that does not exist; imports within a layer and down the layers pass."""
    graph = {
        "door": {"domain": "door.py:1"},
        "domain": {"other_domain": "domain/a.py:2", "base": "domain/a.py:3"},
        "other_domain": {"domain": "other_domain.py:4"},
        "base": {"domain": "base/b.py:5"},
        "new": {},
    }
    layers = {
        "doors": frozenset({"door"}),
        "domains": frozenset({"domain", "other_domain"}),
        "base": frozenset({"base", "gone"}),
    }
    assert layer_problems(graph, layers) == [
        "gone is in the layer base but no such unit exists",
        "new is in no layer: add it to LAYERS (and ARCHITECTURE.md)",
        "base (base) imports domain (domains), a higher layer, at base/b.py:5",
    ]
    assert layer_problems({"a": {"b": "a.py:1"}, "b": {}}, {"x": frozenset({"a", "b"})}) == []
    twice = {"x": frozenset({"a"}), "y": frozenset({"a", "b"})}
    assert layer_problems({"a": {}, "b": {}}, twice) == ["a is in two layers: x, y"]


def test_no_import_cycle_between_units() -> None:
    """No unit of src/incidents imports, through any chain of runtime imports, itself."""
    graph = import_graph(SOURCE)
    assert {"delivery", "ingest", "api", "app", "store"} <= set(graph)  # the walk saw them
    cycles = describe_cycles(graph)
    assert not cycles, "\n\n".join(cycles)


def test_the_walk_counts_runtime_imports_only(tmp_path: Path) -> None:
    """Imports inside functions and relative imports count; imports under TYPE_CHECKING do not,
    while its else branch does."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "__init__.py").write_text("")
    (tmp_path / "a" / "one.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from incidents.b import x\n"
        "else:\n"
        "    from incidents import c\n"
        "def f() -> None:\n"
        "    from ..d import y\n"
    )
    for name in ("b", "c", "d"):
        (tmp_path / f"{name}.py").write_text("import incidents.a.one\n" if name == "d" else "")
    graph = import_graph(tmp_path)
    assert graph["a"] == {"c": "a/one.py:5", "d": "a/one.py:7"}
    assert describe_cycles(graph) == [
        "import cycle between 2 units: a, d\n"
        "  loop: a -> d (a/one.py:7), d -> a (d.py:1)\n"
        "  imports inside the group:\n"
        "    a -> d (a/one.py:7)\n"
        "    d -> a (d.py:1)"
    ]
