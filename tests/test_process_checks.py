"""The real-process tests' exactly-once checker can fail: two runs of one claim while its first
holder is alive are caught; a rerun after the holder died (its transaction never committed) is
allowed."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("leadflow.stores.sql")

from .process_support import shared_claims


def _run(t: float, worker: str, key: str = "k", attempt: int = 1) -> dict[str, Any]:
    return {"t": t, "ev": "run", "worker": worker, "key": key, "attempt": attempt}


def _line(t: float, worker: str) -> dict[str, Any]:
    return {"t": t, "ev": "batch", "worker": worker}


def test_a_rerun_after_the_holder_died_is_allowed() -> None:
    logs = [_line(0.0, "w0"), _run(1.0, "w0"), _line(1.5, "w0"), _run(9.0, "w2")]
    assert shared_claims(logs) == {}


def test_two_runs_while_the_holder_lives_are_caught() -> None:
    overlapping = [_run(1.0, "w0"), _run(1.2, "w2"), _line(3.0, "w0")]
    assert shared_claims(overlapping) == {"k": [(1, "w0"), (1, "w2")]}
    same_worker_twice = [_run(1.0, "w0"), _run(2.0, "w0")]
    assert "k" in shared_claims(same_worker_twice)


def test_distinct_attempts_are_not_shared() -> None:
    logs = [_run(1.0, "w0"), _line(2.0, "w0"), _run(3.0, "w1", attempt=2)]
    assert shared_claims(logs) == {}
