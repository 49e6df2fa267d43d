"""A batch's rows on the driver path (``handle_many``'s): :meth:`DriverStatement.parameters_many`
gives what :meth:`DriverStatement.parameters` gives row by row, whatever objects the rows share
(the encodings it keeps from one row to the next are for the same object only), and the
documents a batch's rows carry made once (:class:`EventDocuments`: an event's, a rule action's)
are the texts each row's own documents encode to. No database: the statements are compiled
for SQLite's and PostgreSQL's dialects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from leadflow import InvalidInputError
from leadflow.facts import LeadArrival, StatusChange
from leadflow.models import Action, Activity
from leadflow.records import ScheduledAction
from leadflow.stores.sql.activity_sql import activity_values
from leadflow.stores.sql.direct import DriverStatement, Encoded
from leadflow.stores.sql.scheduled_sql import EventDocuments, action_values
from leadflow.stores.sql.tables import build_tables
from leadflow.testing.contracts import at, make_activity, make_delivery, make_scheduled_action

_TABLE = build_tables().scheduled
_DIALECTS = [sqlite.dialect(), postgresql.psycopg.dialect()]  # type: ignore[attr-defined]
_IDS = ["sqlite", "postgresql"]


def _statements(dialect: sa.Dialect) -> list[DriverStatement]:
    """Every column named (the batch's ``INSERT``); a few named among fixed values (an
    acknowledgement's ``UPDATE``); a single named value."""
    c = _TABLE.c
    return [
        DriverStatement(dialect, sa.insert(_TABLE)),
        DriverStatement(
            dialect,
            sa.update(_TABLE)
            .where(c.action_id == sa.bindparam("action_id"))
            .values(
                state="done",
                lease_expires_at=None,
                finished_at=sa.bindparam("finished_at"),
                event=sa.bindparam("event"),
            ),
        ),
        DriverStatement(dialect, sa.delete(_TABLE).where(c.action_id == sa.bindparam("id"))),
    ]


_east = timezone(timedelta(hours=-5))
_times = [
    at(),
    at(minutes=1),
    datetime(2026, 3, 1, 7, tzinfo=_east),  # not UTC: converted
    datetime(2026, 3, 1, 12, tzinfo=UTC),  # equal to the one above, another object
    None,
]
_documents: list[Any] = [
    {"a": 1},
    {"a": 1},  # equal to the one above, another object
    {"when": at(), "n": [1, None]},
    Encoded('{"made": "once"}'),
    None,
]


@st.composite
def _rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Rows of the scheduled table whose datetimes and documents are drawn from a few
    objects, so that neighbouring rows share some (the same object) and not others."""
    base = action_values(make_scheduled_action("k"))
    count = draw(st.integers(0, 12))
    rows = []
    for n in range(count):
        row = dict(base, action_id=f"a{n}", idempotency_key=f"k{n}", id=f"a{n}")
        for name in ("due_at", "planned_at", "created_at", "lease_expires_at", "finished_at"):
            row[name] = draw(st.sampled_from(_times))
        row["created_at"] = row["created_at"] or at()  # the table requires these
        row["due_at"] = row["due_at"] or at()
        row["event"] = draw(st.sampled_from(_documents[:4]))
        row["action"] = draw(st.sampled_from(_documents))
        rows.append(row)
    return rows


@pytest.mark.parametrize("dialect", _DIALECTS, ids=_IDS)
@settings(max_examples=200, deadline=None)
@given(rows=_rows())
def test_parameters_many_is_parameters_row_by_row(
    dialect: sa.Dialect, rows: list[dict[str, Any]]
) -> None:
    for statement in _statements(dialect):
        assert statement.parameters_many(rows) == [statement.parameters(row) for row in rows]


@pytest.mark.parametrize("dialect", _DIALECTS, ids=_IDS)
def test_a_naive_datetime_in_a_batch_is_refused(dialect: sa.Dialect) -> None:
    row = action_values(make_scheduled_action("k"))
    statement = _statements(dialect)[0]
    naive = dict(row, due_at=datetime(2026, 3, 1))
    with pytest.raises(InvalidInputError, match="naive datetime rejected"):
        statement.parameters_many([row, naive])


def _batch() -> list[ScheduledAction]:
    """Two events, each with two rule actions (the same :class:`Action` objects for both
    events, as a compiled rule's), then the first rule action changed (another object under
    the same rule id and index: a rule reloaded), a delivery without one, and an event
    repeated after another."""
    first = make_scheduled_action("e1-0", action_index=0)
    event_1, event_2 = first.event, make_scheduled_action("e2").event
    notify = first.action
    assert notify is not None
    task = Action.model_validate({"action_type": "create_activity", "subject": "Call"})
    changed = notify.model_copy(update={"template": "other", "params": {"x": [1, at()]}})

    def of(key: str, event: Any, index: int, action: Action) -> ScheduledAction:
        made = first.model_copy(
            update={
                "action_id": f"sa-{key}",
                "idempotency_key": key,
                "event": event,
                "action_index": index,
                "action": action,
            }
        )
        assert made.event is event and made.action is action
        return made

    return [
        of("e1-0", event_1, 0, notify),
        of("e1-1", event_1, 1, task),
        of("e2-0", event_2, 0, notify),
        of("e2-1", event_2, 1, task),
        of("e2-0b", event_2, 0, changed),
        make_delivery("d"),
        of("e1-0b", event_1, 0, changed),
        of("e1-0c", event_1, 0, notify),
    ]


@pytest.mark.parametrize("dialect", _DIALECTS, ids=_IDS)
def test_a_batchs_documents_made_once_are_each_rows_own(dialect: sa.Dialect) -> None:
    actions = _batch()
    events = EventDocuments()
    batched = [action_values(action, events) for action in actions]
    plain = [action_values(action) for action in actions]
    statement = _statements(dialect)[0]
    assert statement.parameters_many(batched) == [statement.parameters(row) for row in plain]
    # Made once: the rows of one rule action (and of one event in a run) share one text.
    assert batched[0]["action"] is batched[2]["action"] is not batched[4]["action"]
    assert batched[4]["action"] is batched[6]["action"]
    assert batched[0]["event"] is batched[1]["event"]
    assert all(isinstance(row["event"], Encoded) for row in batched)


def test_an_actions_row_holds_each_field_as_the_model_reads() -> None:
    """:func:`action_values` copies the model's fields whole: every column's value is the
    model's attribute (an enum's text, a document as the model dumps it), nothing else."""
    for action in [*_batch(), make_scheduled_action("c", state="claimed", lease_owner="w")]:
        row = action_values(action)
        expected = {
            name: getattr(action, name)
            for name in ScheduledAction.model_fields
            if name not in ("kind", "duplicates", "state", "event", "action")
        }
        expected.update(
            kind=action.kind.value,
            duplicates=action.duplicates.value,
            state=action.state.value,
            event=action.event.to_document(),
            action=None if action.action is None else action.action.to_document(),
        )
        assert row == expected
        assert {type(row[name]) for name in ("kind", "duplicates", "state")} == {str}
        assert set(row) == {column.name for column in _TABLE.c}


def test_an_activitys_row_holds_each_field_as_the_model_reads() -> None:
    """:func:`activity_values` copies the model's fields whole: every column's value is the
    model's attribute (an enum's text, the metadata as it dumps), nothing else."""
    activities = [
        make_activity("a"),
        make_activity(
            "b",
            outcome="successful",
            completed_by="alice",
            completed_date=at(hours=1),
            open_key="rule/opp-1/r",
            metadata={"automationRuleId": "r", "extra": None, "when": at()},
        ),
    ]
    table = build_tables().activities
    for activity in activities:
        row = activity_values(activity, version=3)
        expected = {
            name: getattr(activity, name) for name in Activity.model_fields if name != "metadata"
        }
        expected.update(
            activity_type=activity.activity_type.value,
            outcome=None if activity.outcome is None else activity.outcome.value,
            version=3,
            automation_rule_id=activity.metadata.automation_rule_id,
            meta=activity.metadata.to_document(),
        )
        assert row == expected
        assert type(row["activity_type"]) is str
        assert set(row) == {column.name for column in table.c}


def test_a_facts_row_is_its_dump() -> None:
    """``record_many`` sends a fact's ``__dict__`` as its row: what ``model_dump`` gives,
    every column of its table."""
    tables = build_tables()
    arrival = LeadArrival(event_id="e", opportunity_id="o", arrived_at=at(), source="web")
    change = StatusChange(event_id="e", opportunity_id="o", changed_at=at(), to_status="won")
    for fact, table in ((arrival, tables.arrivals), (change, tables.status_changes)):
        assert dict(fact.__dict__) == fact.model_dump()
        assert set(fact.__dict__) == {column.name for column in table.c}
