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
