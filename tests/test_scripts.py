"""Every script in benchmarks/ and python/ starts: ``--help`` exits 0 and prints its usage.

Scripts are found by globbing, so a new one is covered without editing this file; modules with
no ``if __name__ == "__main__":`` (benchmarks/common.py, python/report.py) are imported by the
scripts, not run, and are left out.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def entry_points() -> list[Path]:
    return sorted(path for folder in ("benchmarks", "python") for path in (ROOT / folder).glob("*.py")
                  if 'if __name__ == "__main__":' in path.read_text())


def test_the_glob_finds_the_scripts() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in entry_points()}
    assert {"benchmarks/depth.py", "benchmarks/kernels.py", "python/digits_recipe.py"} <= names
    assert not names & {"benchmarks/common.py", "python/report.py"}


@pytest.mark.parametrize("script", entry_points(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_help_prints_usage(script: Path) -> None:
    result = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"usage: {script.name}"), result.stdout[:500]
