"""The package type-checks (mypy, settings in pyproject.toml) and lints clean (ruff)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_reports_no_errors_on_the_package():
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True,
                          check=False)  # files and options: [tool.mypy] in pyproject.toml
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_reports_no_findings():
    rooms = ["connectors", "flows", "models", "sinks", "samples", "tools", "tests", "benchmarks"]
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", *rooms], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
