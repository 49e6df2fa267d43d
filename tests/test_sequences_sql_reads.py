"""The enrollment store's hot reads on SQL (``stores/sql/enrollment_reads.py``): a batch's
heads and an event's active enrollments straight through the driver.

- SQLite's plans: ``active_for`` reads the opportunity's own rows through the index on
  ``(opportunity_id, enrolled_at)`` (not every active enrollment through the index on state,
  whose order is the one asked for); ``get_heads`` finds each id by the primary key.
- What they return is what the whole-record reads say, on both databases, with other
  opportunities' and ended enrollments around, datetimes and nested documents included.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from sqlalchemy import event

from leadflow.sequences import Enrollment, EnrollmentState, StepRecord
from leadflow.stores.sequence_checks import head_of

from .sql_support import (
    fresh_storage,
    sql_file_or_server,  # noqa: F401 (the fixture `sql`)
)

START = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


def _plan(storage: Any, sql: str, parameters: tuple[Any, ...]) -> list[str]:
    with storage.database.engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters).all()
    return [str(row[-1]) for row in plan]


def test_on_sqlite_active_for_reads_the_opportunitys_own_rows(tmp_path: Path) -> None:
    with fresh_storage("sqlite-file", tmp_path) as storage:
        statement = storage.enrollments._active._statement
        details = _plan(storage, statement.sql, statement.parameters({"w_opportunity": "o"}))
        reads = [d for d in details if "leadflow_enrollments " in d + " "]
        assert reads and all("(opportunity_id=?)" in d for d in reads), details
        assert not any("state" in d for d in details), details


def test_on_sqlite_a_batchs_heads_are_found_by_their_key(tmp_path: Path) -> None:
    with fresh_storage("sqlite-file", tmp_path) as storage:
        statement = storage.enrollments._heads._statement
        details = _plan(storage, statement.sql, statement.parameters({"ids": '["a", "b"]'}))
        assert any("leadflow_enrollments" in d and "(enrollment_id=?)" in d for d in details)
        assert not any(d.startswith("SCAN leadflow_enrollments") for d in details), details


def _enrollment(number: int, opportunity: str) -> Enrollment:
    at = START + timedelta(minutes=number)
    return Enrollment(
        enrollment_id=f"enr-{number:03d}",
        sequence_id=f"seq-{number % 3}",
        sequence_version=1,
        opportunity_id=opportunity,
        visit=1,
        step_id="first",
        variants={"split": "b"} if number % 2 else {},
        context={"entry": {"opportunityId": opportunity, "at": at, "nested": [{"n": number}]}},
        entry_event_id=f"ev-{number}",
        enrolled_at=at,
        updated_at=at,
        history=[_record(at, f"record {i} of {number}") for i in range(number % 4)],
    )


def _record(at: datetime, why: str) -> StepRecord:
    return StepRecord(visit=0, step_id="first", kind="wait", at=at, outcome="scheduled", why=why)


def test_the_reads_return_what_the_whole_record_reads_say(sql: Any) -> None:
    store = sql.enrollments
    made = []
    for number in range(30):  # ten opportunities, three sequences each
        stored, created = store.enroll(_enrollment(number, f"opp-{number % 10}"))
        assert created
        made.append(stored)
    for ended in made[::4]:  # some ended: not active any more
        store.update(ended._evolve(state=EnrollmentState.COMPLETED, ended_at=START))
    whole = {e.enrollment_id: store.get(e.enrollment_id) for e in made}
    for opportunity in [f"opp-{n}" for n in range(10)] + ["nobody"]:
        expected = sorted(
            (e for e in whole.values() if e.opportunity_id == opportunity and e.active),
            key=lambda e: (e.enrolled_at, e.enrollment_id),
        )
        assert store.active_for(opportunity) == expected
    ids = [e.enrollment_id for e in made[::3]] + ["enr-missing"]
    heads = store.get_heads(ids)
    assert heads == {i: head_of(whole[i]) for i in ids if i in whole}
    assert heads["enr-003"].context["entry"]["at"] == START + timedelta(minutes=3)


TRICKY: dict[str, Any] = {
    "none": None,
    "text": 'quotes " and \\ backslashes, ünïcödé, \u2028 and a tab\t',
    "numbers": [0, -1, 2**62, 1.5, 1e-7, 12345.678901234567],
    "nested": {"empty": {}, "list": [], "when": START, "flag": False},
}


def test_a_moved_head_is_stored_as_it_was_given(sql: Any) -> None:
    """``move_many`` sends each head's document inside the batch's one JSON array: what a
    read gives back afterwards is the head as moved, whatever its context holds."""
    store = sql.enrollments
    made = [store.enroll(_enrollment(number, f"opp-{number}"))[0] for number in range(3)]
    moves = []
    for number, enrollment in enumerate(made):
        head = head_of(enrollment)._evolve(
            visit=2, step_id="second", context={"entry": TRICKY, "event": {"n": number}},
            variants={"split": "a", "other": "c"}, updated_at=START + timedelta(hours=1),
        )  # fmt: skip
        moves.append((head, [_record(START, f"moved {number}")]))
    written = store.move_many(moves)
    assert all(w is not None for w in written)
    for (head, records), enrollment in zip(moves, made, strict=True):
        again = store.get(head.enrollment_id)
        assert head_of(again) == head._evolve(revision=enrollment.revision + 1)
        assert again.history == [*enrollment.history, *records]
        assert again.context["entry"] == TRICKY


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({"sequence_id": "seq-1", "opportunity_id": "opp-1"}, "opportunity_enrolled"),
        ({"opportunity_id": "opp-1", "state": EnrollmentState.ACTIVE}, "opportunity_enrolled"),
        ({"sequence_id": "seq-1", "state": EnrollmentState.ACTIVE}, "sequence_enrolled"),
        ({"state": EnrollmentState.ACTIVE}, "state_enrolled"),
    ],
)
def test_on_sqlite_a_listing_reads_the_narrowest_index(
    tmp_path: Path, filters: dict[str, Any], index: str
) -> None:
    """``list`` (a sequence that never re-enrolls asks it on every entry: the opportunity's
    enrollments in the sequence) walks the opportunity's index, not the sequence's every
    enrollment; what it returns is what a filter of every enrollment says."""
    with fresh_storage("sqlite-file", tmp_path) as storage:
        store, engine = storage.enrollments, storage.database.engine
        for number in range(30):
            store.enroll(_enrollment(number, f"opp-{number % 10}"))
        seen: list[tuple[str, Any]] = []

        def statement(conn: Any, cursor: Any, text: str, parameters: Any, *args: Any) -> None:
            seen.append((text, parameters))

        event.listen(engine, "before_cursor_execute", statement)
        try:
            found = store.list(**filters)
        finally:
            event.remove(engine, "before_cursor_execute", statement)
        [(text, parameters)] = seen
        details = _plan(storage, text, tuple(parameters))
        assert any(f"leadflow_enrollments_{index}" in d for d in details), details
        everyone = store.list(limit=1000)
        assert found == [
            e for e in everyone
            if all(getattr(e, k) == v for k, v in filters.items())
        ]  # fmt: skip
