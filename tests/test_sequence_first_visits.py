"""A new enrollment stored with its first visit (``enroll_at_first``,
:class:`~leadflow.ports.sequences.EnrollmentFirstVisits`) on SQL: on PostgreSQL the visit's
``INSERT`` is one more ``WITH`` query of the enrollment's statement, fed by the enrollment's
row; on SQLite its row follows the enrollment's in the same transaction. Both go in or
neither: an id or a pair already held stores no visit; a visit whose key is held is left as it
was, the enrollment going in all the same; a visit that is not the enrollment's own step is
refused with nothing written. SQLite in memory and in a file, PostgreSQL when a server is
set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from leadflow.errors import InvalidInputError, NotFoundError
from leadflow.ports.sequences import EnrollmentFirstVisits
from leadflow.records import ScheduledAction
from leadflow.sequences import Enrollment, EnrollmentState, StepRecord
from leadflow.stores.sql import SqlStorage
from leadflow.testing.contracts import at, make_scheduled_action

from .sql_support import fresh_storage, kind_params


@pytest.fixture(params=kind_params())
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStorage]:
    with fresh_storage(request.param, tmp_path) as built:
        yield built


def _enrollment(enrollment_id: str, opportunity: str = "opp-1") -> Enrollment:
    return Enrollment(
        enrollment_id=enrollment_id, sequence_id="seq-1", sequence_version=1,
        opportunity_id=opportunity, visit=1, step_id="call", context={"entry": {"n": 1}},
        enrolled_at=at(), updated_at=at(),
        history=[StepRecord(visit=0, step_id="call", kind="action", at=at(),
                            outcome="scheduled", why="first")],
    )  # fmt: skip


def _visit(enrollment_id: str, **fields: Any) -> ScheduledAction:
    key = f"seq:{enrollment_id}:1"
    values: dict[str, Any] = {
        "action_id": f"sa-{enrollment_id}", "kind": "step", "rule_id": "seq-1",
        "enrollment_id": enrollment_id, "step_id": "call", "action_index": 1,
        "due_at": at(hours=1), "explanation": "its first stop",
    }  # fmt: skip
    values.update(fields)
    return make_scheduled_action(key, **values)


def _actions(storage: SqlStorage) -> dict[str, ScheduledAction]:
    return {a.action_id: a for a in storage.scheduled.list(limit=100)}


def test_the_enrollment_and_its_visit_go_in_together(storage: SqlStorage) -> None:
    store = storage.enrollments
    assert isinstance(store, EnrollmentFirstVisits)
    visit = _visit("enr-1")
    stored, created = store.enroll_at_first(_enrollment("enr-1"), visit)
    assert created and stored.revision == 1
    assert store.get("enr-1") == stored
    assert [r.why for r in store.get("enr-1").history] == ["first"]
    assert _actions(storage) == {visit.action_id: visit}
    assert storage.scheduled.get(visit.action_id) == visit


def test_an_id_already_held_stores_no_visit(storage: SqlStorage) -> None:
    store = storage.enrollments
    first, created = store.enroll(_enrollment("enr-1"))
    assert created
    again, created = store.enroll_at_first(_enrollment("enr-1"), _visit("enr-1"))
    assert not created and again == first
    assert _actions(storage) == {}


def test_a_pair_already_active_stores_no_visit(storage: SqlStorage) -> None:
    store = storage.enrollments
    holder, _ = store.enroll(_enrollment("enr-1"))
    found, created = store.enroll_at_first(_enrollment("enr-2"), _visit("enr-2"))
    assert not created and found == holder
    assert _actions(storage) == {}
    with pytest.raises(NotFoundError):
        store.get("enr-2")
    # Once the holder has ended, the pair is free: the new one goes in with its visit.
    store.update(holder._evolve(state=EnrollmentState.ENDED, ended_at=at(), updated_at=at()))
    visit = _visit("enr-2")
    _, created = store.enroll_at_first(_enrollment("enr-2"), visit)
    assert created and _actions(storage) == {visit.action_id: visit}


def test_a_visit_whose_key_is_held_is_left_as_it_was(storage: SqlStorage) -> None:
    store = storage.enrollments
    earlier = _visit("enr-1", explanation="stored before")
    storage.scheduled.schedule(earlier)
    _, created = store.enroll_at_first(_enrollment("enr-1"), _visit("enr-1"))
    assert created
    assert _actions(storage) == {earlier.action_id: earlier}


@pytest.mark.parametrize(
    "visit",
    [
        make_scheduled_action("seq:enr-1:1"),  # a rule's action
        _visit("enr-2"),  # another enrollment's
    ],
)
def test_a_visit_that_is_not_the_enrollments_own_is_refused(
    storage: SqlStorage, visit: ScheduledAction
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        storage.enrollments.enroll_at_first(_enrollment("enr-1"), visit)
    assert refused.value.field == "visit"
    assert storage.enrollments.list(limit=10) == [] and _actions(storage) == {}


def test_an_enrollment_refused_writes_no_visit(storage: SqlStorage) -> None:
    ended = _enrollment("enr-1")._evolve(state=EnrollmentState.ENDED, ended_at=at())
    with pytest.raises(InvalidInputError):
        storage.enrollments.enroll_at_first(ended, _visit("enr-1"))
    assert storage.enrollments.list(limit=10) == [] and _actions(storage) == {}
