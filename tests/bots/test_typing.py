"""STYLE rule 5 for the bots package: ``mypy --strict`` passes on ``bots/``.

``tests/test_typing.py`` checks ``xmppcore`` only (it names the package on the command line),
so the bots get their own run with the same configuration from pyproject.toml.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_strict_passes_on_bots(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy"), "bots"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
