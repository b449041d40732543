"""The real entry points, as a user runs them: ``python -m curation ...`` and ``git``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = ROOT, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``curation ARGS`` in a fresh interpreter (200 columns wide); its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "curation", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def git(cwd: Path, *args: str) -> str:
    """``git ARGS`` in ``cwd``; its standard output (a failure raises)."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout
