"""Data flows one way: no stage package imports a later one."""

import ast
from pathlib import Path

import pytest

ORDER = ["env", "data", "evaluation", "behaviour", "offline", "diffusion", "pipeline"]
SRC = Path(__file__).resolve().parents[1] / "src" / "eaq"


def imported_stages(path: Path) -> set[str]:
    stages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "eaq" and len(parts) > 1:
                stages.add(parts[1])
    return stages


@pytest.mark.parametrize("stage", ORDER)
def test_no_stage_imports_a_later_one(stage):
    later = set(ORDER[ORDER.index(stage) + 1 :]) | {"cli"}
    for f in (SRC / stage).rglob("*.py"):
        bad = imported_stages(f) & later
        assert not bad, f"{f.relative_to(SRC)} imports later stage(s) {sorted(bad)}"
