"""Bulk enrollment by filter (``flow.sequences.enroll_matching``): the leads leadflow saw
arrive in a period, of given sources and owners, enrolled as a list of their ids would be.
Every backend that keeps lead arrivals: the reference memory stores, mongomock, SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import mongomock_ng
import pytest
from pydantic import ValidationError

from leadflow import LeadFlow, ManualClock
from leadflow.adapters import InMemoryOpportunities
from leadflow.errors import InvalidInputError, InvalidStateError
from leadflow.ports import Storage
from leadflow.runtime import sequence_matching
from leadflow.runtime.sequence_matching import LeadFilter

from .sql_support import fresh_storage, on_postgres
from .test_sequence_old_versions import MONDAY_10, _event, _sequence


@pytest.fixture(
    params=["memory", "mongomock", "sqlite-file", pytest.param("postgres", marks=on_postgres)]
)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    kind = str(request.param)
    if kind == "memory":
        from leadflow.stores.memory import memory_storage

        yield memory_storage()
    elif kind == "mongomock":
        from leadflow.stores.mongo import mongo_storage

        yield mongo_storage(mongomock_ng.MongoClient(tz_aware=True)["matching"])
    else:
        with fresh_storage(kind, tmp_path) as sql:
            yield sql


def _leads(storage: Storage) -> tuple[LeadFlow, ManualClock]:
    """Four leads, an hour apart: o1 and o3 from the website, o2 by phone, o4 from the
    website a day later; the sequence published after they arrived (none entered it)."""
    clock = ManualClock(MONDAY_10)
    flow = LeadFlow.in_memory(clock=clock, storage=storage)
    gateway = flow.integrations.opportunities
    assert isinstance(gateway, InMemoryOpportunities)
    for n, (opportunity_id, source, hours) in enumerate(
        (("o1", "website", 0), ("o2", "phone", 1), ("o3", "website", 2), ("o4", "website", 26))
    ):
        gateway.add(opportunity_id, owner="alice", email="lead@example.com")
        clock.set(MONDAY_10 + timedelta(hours=hours))
        flow.handle(_event("opportunity.created", f"lead-{n}", clock.now(), opportunity_id,
                           leadSource=source))  # fmt: skip
    flow.sequences.publish(_sequence())
    return flow, clock


def _window(**more: object) -> dict[str, object]:
    return {
        "arrivedFrom": MONDAY_10.isoformat(),
        "arrivedBefore": (MONDAY_10 + timedelta(days=1)).isoformat(),
        **more,
    }


def test_the_leads_of_a_period_and_source_enter(storage: Storage) -> None:
    flow, _ = _leads(storage)
    dry = flow.sequences.enroll_matching("nurture", _window(sources=["website"]), dry_run=True)
    assert {o: r.what for o, r in dry.outcomes.items()} == {
        "o1": "would_enroll",
        "o3": "would_enroll",
    }
    assert flow.sequences.enrollments("o1") == []  # a dry run writes nothing
    done = flow.sequences.enroll_matching("nurture", _window(sources=["website"]), actor="root")
    assert {o: r.what for o, r in done.outcomes.items()} == {"o1": "enrolled", "o3": "enrolled"}
    everyone = flow.sequences.enroll_matching("nurture", LeadFilter.model_validate(_window()))
    assert {o: r.what for o, r in everyone.outcomes.items()} == {
        "o1": "already_enrolled",
        "o2": "enrolled",
        "o3": "already_enrolled",
    }
    nobody = flow.sequences.enroll_matching("nurture", _window(owners=["bob"]))
    assert nobody.outcomes == {}


def test_a_filter_is_checked_before_anything_is_written(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, _ = _leads(storage)
    for bad in (
        _window(arrivedBefore=MONDAY_10.isoformat()),  # an empty period
        _window(arrivedFrom="2026-01-05T10:00:00"),  # no time zone
        _window(sources=[]),
        _window(owners=["not an id"]),
        {"arrivedFrom": MONDAY_10.isoformat()},
    ):
        with pytest.raises(ValidationError):
            flow.sequences.enroll_matching("nurture", bad)
    monkeypatch.setattr(sequence_matching, "MAX_MATCHING", 2)
    with pytest.raises(InvalidInputError) as refused:
        flow.sequences.enroll_matching("nurture", _window())
    assert refused.value.field == "arrivedBefore"
    assert all(flow.sequences.enrollments(o) == [] for o in ("o1", "o2", "o3", "o4"))


def test_without_lead_arrivals_the_filter_is_refused() -> None:
    from dataclasses import replace

    from leadflow.stores.memory import memory_storage

    flow, _ = _leads(replace(memory_storage(), analytics=None))
    with pytest.raises(InvalidStateError, match="enroll by ids"):
        flow.sequences.enroll_matching("nurture", _window())
