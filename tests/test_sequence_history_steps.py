"""A sequence step costs the same whatever its enrollment's history (issue 18): a claimed batch
of steps reads its enrollments without their histories and moves them on by appending the step
records (:class:`~leadflow.ports.sequences.EnrollmentSteps`), the store keeping the newest 200
in order. Proven with a store that refuses every call that reads or writes a whole enrollment
while the batch runs (every backend), and on SQL by the statements themselves: none reads the
history's rows, none carries an old record. In memory, on MongoDB (mongomock-ng), on a SQLite
file and on PostgreSQL (when ``LEADFLOW_TEST_POSTGRES_URL`` is set)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from sqlalchemy import event

from leadflow import LeadFlow
from leadflow.ports import EnrollmentStore
from leadflow.ports.sequences import EnrollmentBatches, EnrollmentSendMarks, EnrollmentSteps
from leadflow.sequences import EnrollmentState, StepRecord
from leadflow.sequences.enrollment import HISTORY_LIMIT
from leadflow.stores.sql import SqlStorage

from .test_sequence_batches import OPPORTUNITIES, _entered, _where, storage
from .test_sequences_sql import sent

__all__ = ["storage"]  # the fixture, shared with the batch tests

_OLD = "an old record, never read on a step"


def _long_histories(flow: LeadFlow, count: int) -> None:
    """Every enrollment given ``count`` old step records before its first visit runs."""
    store = flow.storage.enrollments
    assert store is not None
    for opp in OPPORTUNITIES:
        [enrollment] = store.list(opportunity_id=opp)
        old = [
            StepRecord(visit=0, step_id=f"old-{n}", kind="wait", at=enrollment.enrolled_at,
                       outcome="waited", why=_OLD)
            for n in range(count)
        ]  # fmt: skip
        store.update(enrollment._evolve(history=old + enrollment.history))


class _StepsOnly:
    """An enrollment store whose step methods and send mark work, and whose every method that
    reads or writes a whole enrollment (its history) fails, noting the call."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[str] = []
        self.refused: list[str] = []

    def _refuse(self, name: str) -> Any:
        self.refused.append(name)
        raise AssertionError(f"a step read or wrote a whole enrollment: {name}")

    def get(self, *_: Any) -> Any:
        return self._refuse("get")

    def get_many(self, *_: Any) -> Any:
        return self._refuse("get_many")

    def update(self, *_: Any) -> Any:
        return self._refuse("update")

    def update_many(self, *_: Any) -> Any:
        return self._refuse("update_many")

    def enroll(self, *_: Any) -> Any:
        return self._refuse("enroll")

    def active_for(self, *_: Any) -> Any:
        return self._refuse("active_for")

    def list(self, **_: Any) -> Any:
        return self._refuse("list")

    def get_heads(self, enrollment_ids: Sequence[str]) -> Any:
        self.calls.append("get_heads")
        return self._inner.get_heads(enrollment_ids)

    def move_many(self, moves: Sequence[Any]) -> Any:
        self.calls.append("move_many")
        return self._inner.move_many(moves)

    def mark_sending(self, marks: Sequence[tuple[str, int]], *, at: Any) -> Any:
        self.calls.append("mark_sending")
        return self._inner.mark_sending(marks, at=at)


def test_a_batch_of_steps_never_reads_or_writes_a_history(storage: Any) -> None:
    flow, _ = _entered(storage)
    assert flow.sequencer is not None
    _long_histories(flow, HISTORY_LIMIT - 1)  # full: the entry's record made it 200
    before = {opp: flow.sequences.enrollments(opp)[0].history for opp in OPPORTUNITIES}
    steps_only = _StepsOnly(flow.sequencer.enrollments)
    for port in (EnrollmentStore, EnrollmentBatches, EnrollmentSteps, EnrollmentSendMarks):
        assert isinstance(steps_only, port)
    flow.sequencer.enrollments = steps_only  # type: ignore[assignment]
    report = flow.run_due()
    assert (report.claimed, report.succeeded) == (6, 6)
    assert steps_only.calls == ["get_heads", "mark_sending", "move_many"]
    assert steps_only.refused == []
    assert sorted(sent(flow)) == ["first"] * 6
    for opp in OPPORTUNITIES:
        assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)
        [moved] = flow.sequences.enrollments(opp)
        # The step's record appended after the others, the oldest dropped past 200.
        history = moved.history
        assert len(before[opp]) == len(history) == HISTORY_LIMIT
        assert history[:-1] == before[opp][1:]
        assert [(r.visit, r.step_id) for r in history[-2:]] == [(1, "first"), (2, "reply")]


@pytest.mark.parametrize("records", [0, 150])
def test_the_statements_of_a_step_leave_the_history_alone_on_sql(
    storage: Any, records: int
) -> None:
    if not isinstance(storage, SqlStorage):
        pytest.skip("statements are counted on SQL")
    flow, _ = _entered(storage)
    _long_histories(flow, records)
    engine = storage.database.engine
    steps_table = storage.database.tables.enrollment_steps.name
    seen: list[tuple[str, str]] = []

    def statement(_: Any, __: Any, sql: str, parameters: Any, *rest: Any) -> None:
        seen.append((sql, repr(parameters)))

    event.listen(engine, "before_cursor_execute", statement)
    try:
        report = flow.run_due()
    finally:
        event.remove(engine, "before_cursor_execute", statement)
    assert (report.claimed, report.succeeded) == (6, 6)
    assert seen  # the statements were seen
    reads = [sql for sql, _ in seen if sql.lstrip().upper().startswith("SELECT")]
    assert not [sql for sql in reads if steps_table in sql]  # no history read
    assert not [sql for sql, parameters in seen if _OLD in parameters]  # nor written again
    # What a step writes does not grow with the history: the same statements, as long.
    writes = [(sql, len(parameters)) for sql, parameters in seen if sql not in reads]
    assert sum(size for _, size in writes) < 6 * 4_000
    for opp in OPPORTUNITIES:
        assert len(flow.sequences.enrollments(opp)[0].history) == records + 2
