"""A pytest plugin of the suite (`tests/conftest.py` loads it): under CI a skip for a
missing tool fails, since CI installs every tool the tests need and a skip there would
hide a test that never ran."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

RUN_SKIPS = ("run it with them", "too close to midnight")
"""Skips that say something about this run (a test run alone without the flows it checks,
a run minutes before the clinic's midnight), not about the machine."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[Any]:
    """Under CI a skip for a missing tool (Chromium, mariadb-dump, rabbitmqctl, …) fails:
    CI installs every one, so a skip there would hide a test that never ran."""
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    if not (os.environ.get("CI") and report.skipped) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    if not any(allowed in reason for allowed in RUN_SKIPS):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where every tool the tests need is here: {reason}"
