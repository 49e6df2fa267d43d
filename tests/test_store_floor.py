"""The stores' floor of ``bench_service.py`` (``benchmarks/store_floor.py``): the calls a flow
made to its stores, made again on new stores, give back what they gave the flow; made on
stores that already hold them, they do not (the check can fail); the stores' classes are put
back as they were."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest

from leadflow.stores.memory.fast import (
    FastActivityRepository,
    FastScheduledActionStore,
    fast_memory_storage,
)

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    for name in ("bench_service", "store_floor"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import bench_service

    yield bench_service


def test_the_floor_makes_the_flows_store_calls_again(bench: ModuleType) -> None:
    import store_floor

    classes = (FastScheduledActionStore, FastActivityRepository)
    before = [_methods(cls) for cls in classes]
    calls = bench.record_floor(bench.make_events(400, 50), 50)
    assert [_methods(cls) for cls in classes] == before  # the wrappers are gone
    methods = {(call.store, call.method) for call in calls}
    assert {
        ("scheduled", "schedule"),
        ("activities", "add_plain"),
        ("analytics", "record_arrival"),
        ("scheduled", "claim_due"),
    } <= methods
    # The runtime's hand-over is recorded: the run-now actions it built and stores claimed.
    assert any(call.models for call in calls if call.method == "schedule")

    storage = fast_memory_storage()
    assert store_floor.StoreFloor(storage, calls).run() >= 0
    assert len(storage.scheduled) == sum(
        call.outcome[1] for call in calls if call.method == "schedule"
    )
    # The same calls again on the same stores: the actions are found, not stored.
    with pytest.raises(AssertionError):
        store_floor.StoreFloor(storage, calls).run()


def _methods(cls: type) -> dict[str, object]:
    """The public attributes ``cls`` holds itself."""
    return {name: value for name, value in vars(cls).items() if not name.startswith("_")}


def test_the_floor_is_timed_beside_the_engine(bench: ModuleType) -> None:
    events = bench.make_events(300, 50)
    bench.CPU_TIMES.clear()
    bench.floor_once(events, 50)
    assert len(bench.CPU_TIMES["floor"]) == 1
    assert bench.FLOOR_CALLS[0] > 300
    assert "scheduled.schedule" in bench.FLOOR_CALLS[1]


def test_an_outcome_names_what_came_back(bench: ModuleType) -> None:
    import store_floor

    assert store_floor._outcome(None) is None
    assert store_floor._outcome(KeyError("x")) == ("raised", "KeyError")
    assert store_floor._outcome(["a", True]) == ["a", True]
    clock_moved = bench.T0 + timedelta(seconds=1)
    assert store_floor._outcome(clock_moved) == "datetime"
