"""The benchmark scripts still import: they reach into the package (a store's row function, a
workload's builders), and nothing else runs them in CI. A name moved inside ``leadflow`` broke
``bench_sql.py``, ``bench_celery.py`` and ``celery_support.py`` without a test noticing."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(path.stem for path in BENCHMARKS.glob("*.py"))


def test_there_are_scripts() -> None:
    assert {"bench_service", "bench_sql", "bench_sequences", "bench_analytics"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_imports(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import each other by name
    for module in [m for m in sys.modules if m in SCRIPTS]:
        monkeypatch.delitem(sys.modules, module)  # imported afresh, as a run does
    before = dict(os.environ)
    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]
    levels = [(logger, logger.level) for logger in loggers]
    try:
        module = importlib.import_module(name)
    finally:  # a script may set up its process: the queue's schema for its children
        os.environ.clear()  # (bench_sql), a logger's level (bench_rules_reload)
        os.environ.update(before)
        for logger, level in levels:
            logger.setLevel(level)
    assert module.__doc__, f"{name}.py says what it measures"
