"""Enrollment heads built from a SQL store's rows without validation
(``stores/sequence_heads.py``): the same values and the same fields set as
``EnrollmentHead.from_document`` gives, for any head the runtime can build (hypothesis, through
the store's own encoding); whatever is not what the store writes is validated as before (the
same head, or the same refusal); ``get_heads`` on SQLite and PostgreSQL returns what the
validated read says."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from sqlalchemy import text

from leadflow.sequences import Enrollment, EnrollmentHead, EnrollmentState, StepRecord
from leadflow.stores.sequence_checks import head_of
from leadflow.stores.sequence_heads import head_document, head_from_row
from leadflow.stores.sql.types import document_from_text, document_text

from .sql_support import sql_file_or_server  # noqa: F401 (the fixture `sql`)

START = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)

_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:@-]{0,20}\Z")
_times = st.integers(0, 10**8).map(lambda s: START + timedelta(seconds=s, microseconds=s % 997))
_texts = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=8)
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), _texts, _times,
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)  # fmt: skip
_keys = st.text("abcxyz_-é1", min_size=1, max_size=5)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def heads(draw: st.DrawFn) -> EnrollmentHead:
    """A head as the runtime builds them: every optional field present or left out."""
    fields: dict[str, Any] = {
        "enrollment_id": draw(_ids),
        "sequence_id": draw(_ids),
        "sequence_version": draw(st.integers(1, 2**40)),
        "opportunity_id": draw(_ids),
        "enrolled_at": draw(_times),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "state": st.sampled_from(list(EnrollmentState)),
        "visit": st.integers(0, 2**40),
        "step_id": st.none() | st.text("abc-_1", min_size=1, max_size=10),
        "sending": st.booleans(),
        "held": st.booleans(),
        "waiting_for": st.none() | st.sampled_from(["call.completed", "email.replied"]),
        "variants": st.dictionaries(st.text("ab", max_size=3), st.sampled_from(["A", "B"]),
                                    max_size=2),
        "context": st.dictionaries(_keys, _json, max_size=3),
        "entry_event_id": st.none() | _ids,
        "enrolled_by": st.none() | _ids,
        "goal": st.none() | st.text("won lost", min_size=1, max_size=8).map(str.strip),
        "end_reason": st.none() | st.text("re-entered x", min_size=1, max_size=12).map(str.strip),
        "revision": st.integers(1, 2**40),
        "updated_at": st.none() | _times,
        "ended_at": st.none() | _times,
    }  # fmt: skip
    for name, values in optional.items():
        if draw(st.booleans()):
            fields[name] = draw(values)
    return EnrollmentHead.model_validate(fields)


def _row(head: EnrollmentHead, marks: int = 0) -> tuple[dict[str, Any], int, str]:
    """The head's row as the SQL store writes and reads it: the document through the store's
    encoding and back (its own ``revision`` and ``state`` in it, as :func:`head_document`
    writes them), the revision and state as columns; ``marks``: send marks since the document
    was written, each raising the column's revision, not the document's."""
    document = head_document(head)
    return document_from_text(document_text(document)), head.revision + marks, head.state.value


def _validated(document: dict[str, Any], revision: Any, state: Any) -> EnrollmentHead:
    return EnrollmentHead.from_document({**document, "revision": revision, "state": state})


def _same(found: EnrollmentHead, expected: EnrollmentHead) -> None:
    assert type(found) is EnrollmentHead
    assert found == expected
    assert found.__dict__ == expected.__dict__
    assert repr(found.__dict__) == repr(expected.__dict__)  # datetimes' zones included
    assert list(found.__dict__) == list(expected.__dict__)
    assert found.model_fields_set == expected.model_fields_set
    assert found.model_dump(by_alias=True) == expected.model_dump(by_alias=True)
    assert type(found.state) is EnrollmentState


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(heads(), st.integers(0, 3))
def test_a_trusted_head_is_the_validated_one(head: EnrollmentHead, marks: int) -> None:
    document, revision, state = _row(head, marks)
    expected = _validated(document, revision, state)
    found = _trusted_only(*_row(head, marks))
    _same(found, expected)
    if not marks:
        assert found == head  # what was written, read back


def _trusted_only(document: dict[str, Any], revision: Any, state: Any) -> EnrollmentHead:
    """``head_from_row`` where falling back to validation fails the test: the store's own
    rows take the trusted path."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EnrollmentHead, "from_document", _no_validation)
        return head_from_row(document, revision, state)


def _no_validation(*_: Any) -> EnrollmentHead:
    raise AssertionError("validated: a row the store wrote did not take the trusted path")


def _stored_document() -> dict[str, Any]:
    head = EnrollmentHead(
        enrollment_id="enr-1", sequence_id="seq", sequence_version=2, opportunity_id="o-1",
        visit=3, step_id="call", context={"entry": {"n": 1, "at": START}}, enrolled_at=START,
        updated_at=START,
    )  # fmt: skip
    return _row(head)[0]


@pytest.mark.parametrize(
    ("change", "revision", "state"),
    [
        ({"visit": "3"}, 4, "active"),  # a number as text: validation converts it
        ({"sequenceVersion": True}, 4, "active"),
        ({"enrolledAt": "2026-03-29T00:30:00+00:00"}, 4, "active"),
        (
            {"updatedAt": datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=2)))},
            4,
            "active",
        ),
        ({"context": [1, 2]}, 4, "active"),
        ({"surplus": 1}, 4, "active"),
        ({"stepId": 7}, 4, "active"),
        ({"sending": 1}, 4, "active"),
        ({"enrollmentId": None}, 4, "active"),
        ({}, "4", "active"),
        ({}, 0, "active"),
        ({}, 4, "paused"),
        ({"visit": -1}, 4, "active"),
        ({"sequenceVersion": 0}, 4, "active"),
        ({"enrolledAt": datetime(2026, 3, 29)}, 4, "active"),  # naive: refused
        (
            {"enrolledAt": datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=2)))},
            4,
            "active",
        ),
        ({"variants": {"s": 1}}, 4, "active"),
    ],
)
def test_what_the_store_does_not_write_is_validated_as_before(
    change: dict[str, Any], revision: Any, state: Any
) -> None:
    document = {**_stored_document(), **change}
    try:
        expected = _validated(dict(document), revision, state)
    except ValidationError as refused:
        with pytest.raises(ValidationError) as again:
            head_from_row(document, revision, state)
        assert again.value.errors() == refused.errors()
        return
    _same(head_from_row(document, revision, state), expected)


def test_a_missing_required_key_is_refused_as_before() -> None:
    document = _stored_document()
    del document["enrolledAt"]
    with pytest.raises(ValidationError, match="enrolledAt"):
        head_from_row(document, 1, "active")


def test_get_heads_returns_the_validated_heads(sql: Any) -> None:
    store = sql.enrollments
    stored = []
    for number in range(4):
        enrollment = Enrollment(
            enrollment_id=f"enr-{number}", sequence_id="seq", sequence_version=1,
            opportunity_id=f"o-{number}", visit=number, step_id="s" if number else None,
            context={"entry": {"n": number, "at": START, "nested": [None, {"x": 1.5}]}},
            variants={"split": "B"} if number % 2 else {}, enrolled_at=START,
            updated_at=START + timedelta(minutes=number),
        )  # fmt: skip
        stored.append(store.enroll(enrollment)[0])
    ended = store.update(stored[3]._evolve(state=EnrollmentState.ENDED, ended_at=START))
    stored[3] = ended
    ids = [e.enrollment_id for e in stored]
    heads = store.get_heads(ids)
    with store._db.read() as connection:
        rows = store._heads.run(connection, json.dumps(ids))
    assert len(rows) == len(stored)
    for document, revision, state, enrollment_id in rows:
        _same(heads[enrollment_id], _validated(document, revision, state))
    for enrollment in stored:
        assert heads[enrollment.enrollment_id] == head_of(enrollment)
    # The rows the store wrote (entered, updated, marked, moved) take the trusted path.
    store.mark_sending([(stored[1].enrollment_id, stored[1].revision)], at=START)
    moved = heads[ids[2]]._evolve(visit=3, step_id="t", updated_at=START)
    assert store.move_many([(moved, [])])[0] is not None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EnrollmentHead, "from_document", _no_validation)
        again = store.get_heads(ids)
    assert again[ids[1]].sending and again[ids[1]].revision == stored[1].revision + 1
    assert again[ids[2]].visit == 3 and again[ids[2]].revision == stored[2].revision + 1
    assert again[ids[0]] == heads[ids[0]] and again[ids[3]] == heads[ids[3]]


def test_get_heads_validates_a_row_another_writer_changed(sql: Any) -> None:
    store = sql.enrollments
    enrollment = Enrollment(
        enrollment_id="enr-x", sequence_id="seq", sequence_version=1, opportunity_id="o",
        enrolled_at=START,
    )  # fmt: skip
    store.enroll(enrollment)
    table = sql.database.tables.enrollments
    with sql.database.engine.begin() as connection:
        connection.execute(table.update().values(document=text('\'{"enrollmentId": "enr-x"}\'')))
    with pytest.raises(Exception, match="sequenceId"):
        store.get_heads(["enr-x"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(heads(), st.booleans())
def test_a_heads_document_is_what_pydantic_dumps(head: EnrollmentHead, whole: bool) -> None:
    """``head_document``: the same keys in the same order and the same values as the model's
    dump without its history (an enrollment's history left out), and the same stored text."""
    record = StepRecord(visit=1, step_id="s", kind="wait", at=START, outcome="done")
    model: EnrollmentHead = (
        Enrollment.model_validate({**head.model_dump(), "history": [record]}) if whole else head
    )
    expected = model.model_dump(by_alias=True, exclude_none=True, exclude={"history"})
    found = head_document(model)
    assert found == expected and list(found) == list(expected)
    assert document_text(found) == document_text(expected)
    assert all(type(found[k]) is type(expected[k]) for k in expected)
