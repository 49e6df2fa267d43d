"""What goes through every active enrollment of a sequence goes through all of them, a page
at a time: archiving ends them, resuming releases every hold, publishing with ``move`` or
``end`` moves or ends every one on an older version, and the audit sees each.

Each of these read one listing of the sequence's active enrollments, and a listing holds at
most 10,000: past that, an archived sequence's other enrollments stayed active (their visits
ran their steps), a resume left the other holds held for good, and a new version left the
others where they were. Here a page is 2 enrollments (``PAGE``) and there are 5. Every
backend: the reference and fast memory stores, mongomock, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leadflow import LeadFlow, ManualClock
from leadflow.access import Operations
from leadflow.adapters import InMemoryOpportunities
from leadflow.ports import Storage
from leadflow.runtime import enrollment_pages
from leadflow.sequences import EnrollmentState

from . import test_sequence_old_versions as versions
from .access_support import ADMIN
from .test_sequence_old_versions import MONDAY_10, _event, _flow, _sent, _sequence

storage = versions.storage  # the fixture: every backend
OPPORTUNITIES = ["o1", "o2", "o3", "o4", "o5"]


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enrollment_pages, "PAGE", 2)


def _enrolled(storage: Storage) -> tuple[LeadFlow, ManualClock]:
    flow, clock = _flow(storage)
    gateway = flow.integrations.opportunities
    assert isinstance(gateway, InMemoryOpportunities)
    gateway.add("o5", owner="alice", email="lead@example.com")
    flow.sequences.publish(_sequence())
    for n, opportunity_id in enumerate(OPPORTUNITIES):
        flow.handle(_event("opportunity.created", f"lead-{n}", clock.now(), opportunity_id))
    return flow, clock


def _states(storage: Storage) -> list[tuple[EnrollmentState, int, bool]]:
    store = storage.enrollments
    assert store is not None
    return [(e.state, e.sequence_version, e.held) for e in store.list(sequence_id="nurture")]


def _drain(flow: LeadFlow, clock: ManualClock, hours: int) -> None:
    for _ in range(hours * 4):
        clock.advance(timedelta(minutes=15))
        flow.run_due()


def test_archiving_ends_every_enrollment(storage: Storage) -> None:
    flow, clock = _enrolled(storage)
    operations = Operations(flow)
    operations.sequences.archive(ADMIN, "nurture")
    assert _states(storage) == [(EnrollmentState.ENDED, 1, False)] * 5
    _drain(flow, clock, 30)
    assert _sent(flow) == []
    store = storage.enrollments
    assert store is not None
    audited = operations.audit_trail(ADMIN, "enrollment")
    assert sorted((e.subject_id, e.change) for e in audited) == sorted(
        (e.enrollment_id, "ended") for e in store.list(sequence_id="nurture")
    )


def test_resuming_releases_every_hold(storage: Storage) -> None:
    flow, clock = _enrolled(storage)
    flow.sequences.pause("nurture")
    _drain(flow, clock, 30)
    assert _states(storage) == [(EnrollmentState.ACTIVE, 1, True)] * 5
    flow.sequences.resume("nurture")
    _drain(flow, clock, 1)
    assert _sent(flow) == ["follow-up"] * 5
    assert _states(storage) == [(EnrollmentState.COMPLETED, 1, False)] * 5


@pytest.mark.parametrize("in_flight", ["move", "end"])
def test_a_new_version_moves_or_ends_every_enrollment(storage: Storage, in_flight: str) -> None:
    flow, clock = _enrolled(storage)
    clock.set(MONDAY_10 + timedelta(hours=1))
    operations = Operations(flow)
    operations.sequences.publish(ADMIN, "nurture", None, in_flight=in_flight)
    moved = in_flight == "move"
    expected = (EnrollmentState.ACTIVE, 2, False) if moved else (EnrollmentState.ENDED, 1, False)
    assert _states(storage) == [expected] * 5
    audited = operations.audit_trail(ADMIN, "enrollment")
    assert sorted(e.change for e in audited) == ["moved" if moved else "ended"] * 5


def test_the_report_reads_every_enrollment(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The A/B report read one listing (the oldest 10,000 enrollments); it reads page by page,
    up to ``ENROLLMENT_SCAN_LIMIT``, and says whether it saw them all."""
    from leadflow.runtime import sequence_report

    flow, _ = _enrolled(storage)
    flow.sequences.unenroll(flow.sequences.enrollments("o3")[0].enrollment_id)
    monkeypatch.setattr(sequence_report, "_PAGE", 2)
    sequences, enrollments = storage.sequences, storage.enrollments
    assert sequences is not None and enrollments is not None
    report = sequence_report.report_for(sequences, enrollments, "nurture")
    assert (report.totals.enrolled, report.totals.active, report.totals.unenrolled) == (5, 4, 1)
    assert report.complete
    monkeypatch.setattr(sequence_report, "ENROLLMENT_SCAN_LIMIT", 3)
    capped = sequence_report.report_for(sequences, enrollments, "nurture")
    assert (capped.totals.enrolled, capped.complete) == (3, False)
