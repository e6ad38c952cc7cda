"""The dependency rule of the design, checked on the source: gui may use everything,
calibration uses bci and control, world knows only control, bci imports nothing of the project,
and nothing imports gui."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bci", "control", "calibration", "world", "gui")
ALLOWED = {
    "bci": set(),
    # control may use bci's data types (StreamInfo, RingBuffer) for the online decoder.
    "control": {"bci"},
    "calibration": {"bci", "control"},
    "world": {"control"},
    "gui": {"bci", "control", "calibration", "world"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package):
    bad = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        wrong = _imports(path) - ALLOWED[package] - {package}
        if wrong:
            bad[str(path.relative_to(ROOT))] = sorted(wrong)
    assert not bad, f"{package} imports what the layering forbids: {bad}"
