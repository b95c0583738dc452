"""The import graph runs one way: models ← domain (flows steps) ← connectors/sinks ← wiring ← tools (CLIs).

Read from the source (every ``import``, also inside functions and ``TYPE_CHECKING``
blocks), so a new arrow against the flow fails here before it reaches a reviewer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("models", "flows", "connectors", "sinks", "samples", "tools")
WIRING = {"flows.ifd"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def project_imports(path: Path) -> set[str]:
    """Project modules imported anywhere in ``path`` (absolute imports only: the project uses no others)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in ROOMS)
    return found


def layer(module: str) -> str:
    if module.split(".")[0] == "tools":
        return "cli"  # command lines: may import any room
    if module in WIRING:
        return "wiring"
    room = module.split(".")[0]
    return {"models": "models", "flows": "domain", "connectors": "io", "sinks": "io",
            "samples": "samples"}[room]


ALLOWED = {
    "models": {"models"},
    "domain": {"models", "domain"},
    "io": {"models", "domain", "io"},
    "samples": {"models", "domain", "io", "samples"},
    "wiring": {"models", "domain", "io", "samples", "wiring"},
    "cli": {"models", "domain", "io", "samples", "wiring", "cli"},
}


def modules() -> list[Path]:
    return sorted(p for room in ROOMS for p in (ROOT / room).rglob("*.py"))


def test_the_rooms_exist_and_hold_modules():
    assert len(modules()) > 30


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_from_a_room_above_it(path):
    me = module_name(path)
    bad = sorted(m for m in project_imports(path) if layer(m) not in ALLOWED[layer(me)])
    assert not bad, f"{me} ({layer(me)}) imports {bad} from above it"


def test_connectors_never_import_sinks_and_sinks_never_import_connectors():
    for path in modules():
        me = module_name(path)
        for m in project_imports(path):
            pair = (me.split(".")[0], m.split(".")[0])
            assert pair not in {("connectors", "sinks"), ("sinks", "connectors")}, (me, m)


def test_only_the_wiring_imports_bytewax_among_domain_modules():
    for path in (ROOT / "flows").glob("*.py"):
        me = module_name(path)
        if layer(me) != "domain":
            continue
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(n.split(".")[0] == "bytewax" for n in names), me
