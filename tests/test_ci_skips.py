"""Under CI a test skipped for a missing tool fails (CI installs every tool), while the
skips that say something about the run itself stay skips (`tests/ci_skips.py`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = """
import pytest

def test_a_tool_is_missing():
    pytest.skip("no Chromium at /usr/bin/chromium")

@pytest.mark.skipif(True, reason="mysqldump / mariadb-dump is not installed")
def test_a_marker_for_a_missing_tool():
    pass

def test_run_alone():
    pytest.skip("checks the browsers the flows above used: run it with them")
"""


def _run(tmp_path: Path, ci: bool) -> str:
    (tmp_path / "test_demo.py").write_text(DEMO)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.conftest",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_demo.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip().splitlines()[-1]


def test_a_skip_for_a_missing_tool_fails_under_ci(tmp_path: Path) -> None:
    assert _run(tmp_path, ci=True).startswith("1 failed, 1 skipped, 1 error")


def test_outside_ci_every_skip_stays_a_skip(tmp_path: Path) -> None:
    assert _run(tmp_path, ci=False).startswith("3 skipped")
