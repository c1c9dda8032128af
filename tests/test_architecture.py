"""docs/ARCHITECTURE.md stays true: every module is on the map and the import rules hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    p.relative_to(ROOT).as_posix()
    for package in ("codec", "satlink")
    for p in (ROOT / package).rglob("*.py")
)


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_every_module_is_on_the_map() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    missing = [m for m in MODULES if f"`{m}`" not in text]
    assert not missing, f"docs/ARCHITECTURE.md does not list {missing}"


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("codec", ("satlink",)),
        ("satlink/channel", ("codec", "satlink.packets", "satlink.receiver", "satlink.replay")),
        ("satlink/orbit.py", ("codec", "satlink.packets", "satlink.channel")),
        ("satlink/linkbudget.py", ("codec", "satlink.packets", "satlink.channel")),
    ],
)
def test_lower_layers_import_no_higher_one(package: str, forbidden: tuple[str, ...]) -> None:
    target = ROOT / package
    paths = [target] if target.suffix == ".py" else sorted(target.rglob("*.py"))
    for path in paths:
        bad = sorted(n for n in imported(path) if n.startswith(forbidden))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_no_module_is_over_700_lines() -> None:
    long = {m: n for m in MODULES if (n := len((ROOT / m).read_text().splitlines())) > 700}
    assert not long, f"over 700 lines: {long}"


def _module_name(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its text (at the top, inside a
    function or under ``TYPE_CHECKING``): ``from pkg import mod`` names the module ``mod``,
    ``from pkg import name`` the package's face."""
    known = {_module_name(m) for m in MODULES}
    graph: dict[str, set[str]] = {}
    for m in MODULES:
        edges = set()
        for node in ast.walk(ast.parse((ROOT / m).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges.add(sub if sub in known else node.module)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
        graph[_module_name(m)] = {e for e in edges if e in known} - {_module_name(m)}
    return graph


def test_no_modules_import_each_other() -> None:
    """A loop of imports, even one that only type hints or a late import close, means two
    modules each need the other: one concept split in two, or one in the wrong layer."""
    graph = import_graph()
    loops = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                loops.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not loops, "import loops: " + "; ".join(loops)
