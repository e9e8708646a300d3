"""The house's shape: layers that only import down (import-linter's contract in pyproject.toml),
no import cycle, and a command line that loads nothing heavy before a trial or a renderer needs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "pufferlib", "numba", "matplotlib", "ray", "scipy", "numpy", "tabulate")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lint-imports"
    cmd = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(cwd)})


def test_the_layers_contract_holds():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 kept, 0 broken" in r.stdout


@pytest.mark.slow
def test_an_import_up_the_layers_breaks_the_contract(tmp_path):
    """The contract can fail: a copy of the package where a record imports the engine."""
    shutil.copytree(ROOT / "perfkit", tmp_path / "perfkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    store = tmp_path / "perfkit" / "records" / "store.py"
    store.write_text(store.read_text() + "\nfrom perfkit.engine import local  # noqa\n")
    r = lint_imports(tmp_path)
    assert r.returncode == 1
    assert "perfkit.records is not allowed to import perfkit.engine:" in r.stdout
    assert "perfkit.records.store -> perfkit.engine.local" in r.stdout


def test_no_import_cycle_even_inside_functions():
    grimp = pytest.importorskip("grimp")  # import-linter's own graph builder
    graph = grimp.build_graph("perfkit", include_external_packages=False)
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            assert not graph.chain_exists(importer=imported, imported=module), \
                f"{module} and {imported} import each other (through {graph.find_shortest_chain(imported, module)})"


@pytest.mark.parametrize("argv", [["--help"], ["variants"], ["compare", "--vary", "nosuch=1,2"],
                                  ["compare", "--precision", "nan"], ["explain", "--help"]])
def test_help_and_usage_errors_import_nothing_heavy(argv):
    """`perfkit --help` took 1.8 s when the axis table pulled in pufferlib and torch: imports are
    listed by `python -X importtime`, not timed, so this holds on a loaded machine."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "perfkit", *argv], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode in (0, 2), r.stderr[-2000:]
    loaded = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in r.stderr.splitlines()
              if line.startswith("import time:")}
    heavy = set(HEAVY) - ({"tabulate"} if argv == ["variants"] else set())  # variants prints its table
    assert not loaded & heavy, sorted(loaded & heavy)
