"""Claimed actions built from the SQL store's own rows without validating them again
(``stores/sql/claimed.py``): the same values, fields set included, as the validating loader
gives for rule actions, deliveries and sequence steps; one rule action's document validated
once per claimed batch but never taken on trust from its key; a row another writer corrupted
refused as before. SQLite in memory and in a file, PostgreSQL when a server is set."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, select, update

from leadflow.stores.sql import SqlStorage, sql_storage
from leadflow.stores.sql.scheduled_sql import action_from_row as _load
from leadflow.testing.contracts import at, make_delivery, make_scheduled_action

from .sql_support import POSTGRES_URL, fresh_storage, kind_params, on_postgres

LEASE = timedelta(hours=1)


@pytest.fixture(params=kind_params())
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStorage]:
    with fresh_storage(request.param, tmp_path) as built:
        yield built


def _validated(storage: SqlStorage) -> dict[str, object]:
    """Each stored action as the validating loader builds it from its row, by id."""
    store = storage.scheduled
    with store._db.read() as connection:
        rows = connection.execute(select(store._t)).mappings().all()
    return {row["action_id"]: _load(row) for row in rows}


def test_claimed_actions_equal_the_validated_rows(storage: SqlStorage) -> None:
    store = storage.scheduled
    store.schedule(make_scheduled_action("rule-a"))
    store.schedule(
        make_scheduled_action(
            "rule-b",
            rule_version=3,
            explanation="because",
            event={
                "eventId": "ev-b",
                "eventType": "opportunity.created",
                "occurredAt": at(),
                "payload": {"opportunityId": "opp-1", "when": at(hours=1), "n": [1, {"x": None}]},
                "actor": "user-7",
            },
        )
    )
    store.schedule(make_scheduled_action("delivery", kind="delivery", rule_id=None, action=None))
    store.schedule(
        make_scheduled_action(
            "step", kind="step", enrollment_id="enr-1", step_id="call", rule_id="seq-1"
        )
    )
    claimed = store.claim_due(at(), worker="w", limit=10, lease=LEASE)
    assert len(claimed) == 4
    expected = _validated(storage)
    for action in claimed:
        again = expected[action.action_id]
        assert action == again
        assert action.model_fields_set == again.model_fields_set
        assert action.event.model_fields_set == again.event.model_fields_set
        assert action.model_dump(by_alias=True) == again.model_dump(by_alias=True)
    by_key = {action.idempotency_key: action for action in claimed}
    assert by_key["rule-b"].event.payload["when"] == at(hours=1)
    assert by_key["rule-b"].event.actor == "user-7"


def test_one_rule_action_document_is_shared_only_while_equal(storage: SqlStorage) -> None:
    """Two actions of the same rule action (same rule, version and index) share one parsed
    action when their documents are equal; a different document under the same key is its
    own (a key is never trusted for the document)."""
    store = storage.scheduled
    for key in ("s1", "s2"):
        store.schedule(make_scheduled_action(key))
    store.schedule(
        make_scheduled_action("other", action={"action_type": "send_email", "template": "t"})
    )
    claimed = {a.idempotency_key: a for a in store.claim_due(at(), worker="w", lease=LEASE)}
    assert claimed["s1"].action is claimed["s2"].action
    other = claimed["other"].action
    assert other is not None and other.action_type == "send_email"
    assert other.template == "t"


def test_a_corrupted_row_is_refused_as_before(storage: SqlStorage) -> None:
    """An event document another writer changed into something else is not taken on trust:
    the validating loader refuses it (pydantic's error, as ``get`` would raise)."""
    store = storage.scheduled
    store.schedule(make_scheduled_action("bad"))
    broken = {
        "eventId": "ev",
        "eventType": "opportunity.created",
        "occurredAt": "soon",
        "payload": [],
    }
    with store._db.write() as connection:
        connection.execute(update(store._t).values(event=broken))
    with pytest.raises(ValidationError):
        store.get("sa-bad")
    with pytest.raises(ValidationError):
        store.claim_due(at(), worker="w", lease=LEASE)


def test_claims_of_every_shape_decode_rows_as_the_validating_loader(
    storage: SqlStorage,
) -> None:
    """A claim runs through the driver and decodes its rows itself (``DirectClaim``): for
    every shape (all types, a type filter, pinned to a partition) the claimed actions equal
    what the validating loader builds from the rows, documents with datetimes at any depth,
    big and negative numbers, text beyond ASCII and empty containers included."""
    store = storage.scheduled
    payload = {
        "opportunityId": "opp-1",
        "when": at(hours=2),
        "deep": [{"at": [at(minutes=3), {"x": at(days=-400)}]}, [], {}],
        "n": -(2**63),
        "big": 2**63 - 1,
        "f": -0.0,
        "tiny": 5e-324,
        "text": 'é ✓ \U0001f600 "quoted" back\\slash',
        "none": None,
    }
    event = {"eventId": "ev-x", "eventType": "opportunity.created", "occurredAt": at(),
             "payload": payload}  # fmt: skip
    email = {"action_type": "send_email", "template": "t"}
    store.schedule(make_scheduled_action("a1", event=event, partition=0))
    store.schedule(make_scheduled_action("a2", event=event, action=email, partition=1))
    store.schedule(make_delivery("d1", event=event, partition=1))
    typed = store.claim_due(at(), worker="w", lease=LEASE, action_types=["send_email"])
    assert {a.idempotency_key for a in typed} == {"a2", "d1"}
    pinned = store.claim_due(at(), worker="w", lease=LEASE, partition=0)
    assert [a.idempotency_key for a in pinned] == ["a1"]
    assert store.claim_due(at(), worker="w", lease=LEASE) == []
    expected = _validated(storage)
    for action in [*typed, *pinned]:
        again = expected[action.action_id]
        assert action == again
        assert action.model_fields_set == again.model_fields_set
        assert action.event.model_fields_set == again.event.model_fields_set
        assert action.event.payload == payload


@on_postgres
def test_claimed_times_are_utc_whatever_the_session_time_zone() -> None:
    """PostgreSQL hands ``timestamptz`` values back in the session's time zone; a claimed
    action's times are UTC all the same (as every model's), not a +05:30 offset."""
    assert POSTGRES_URL is not None
    engine = create_engine(POSTGRES_URL, connect_args={"options": "-c timezone=Asia/Kolkata"})
    schema = f"lf_tz_{uuid.uuid4().hex[:8]}"
    try:
        store = sql_storage(engine, schema=schema).scheduled
        store.schedule(make_scheduled_action("tz"))
        [claimed] = store.claim_due(at(), worker="w", lease=LEASE)
        times = [claimed.due_at, claimed.planned_at, claimed.created_at, claimed.updated_at,
                 claimed.lease_expires_at, claimed.event.time]  # fmt: skip
        assert all(t is not None and t.tzinfo is UTC for t in times), times
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()
