"""Suite-wide settings: the Hypothesis profile (tests/suite.py) and the figures the real-process
tests report (tests/process_support.py's ``report``), printed at the end of the run by the process
that runs pytest (with ``-n``, the test processes' own output is not shown)."""

from __future__ import annotations

import pytest

from .suite import FIGURES, load_profile

load_profile()  # Hypothesis' header line names it


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    found = sorted(
        (report.nodeid, value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(report, pytest.TestReport) and report.when == "call"
        for name, value in report.user_properties
        if name == FIGURES
    )
    if found:
        terminalreporter.section("figures of the real-process tests")
        for _, line in found:
            terminalreporter.write_line(line)
