"""The package's shape, as docs/architecture.md states it: layers (import-linter's contracts in pyproject.toml),
no import cycles (imports inside functions count; those under `if TYPE_CHECKING:` do not), no module named like a
standard-library module, at most 8 modules at the top of the package, no file over 400 lines."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "textclass"
MAX_LINES = 400
MAX_TOP_LEVEL_MODULES = 8


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_file_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by stage (STYLE.md): {long}"


def test_few_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_module_shadows_the_standard_library():
    shadowing = [str(p.relative_to(PACKAGE)) for p in modules() if p.stem in sys.stdlib_module_names]
    assert not shadowing, shadowing


def test_no_import_cycles():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the test extra)")
    graph = grimp.build_graph("textclass", exclude_type_checking_imports=True)
    names = sorted(graph.modules)
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(graph.find_modules_directly_imported_by(module)):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(names)))
    for module in names:
        if module not in index:
            visit(module)
    assert not cycles, cycles


def test_import_linter_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (the test extra brings it)")
    done = subprocess.run([lint, "--no-cache"], cwd=PACKAGE.parents[1], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
