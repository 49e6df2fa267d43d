"""Claimed actions built from the SQL store's own rows without validating them again
(``stores/sql/claimed.py``): the same values, fields set included, as the validating loader
gives for rule actions, deliveries and sequence steps; one rule action's document validated
once per claimed batch but never taken on trust from its key; a row another writer corrupted
refused as before. SQLite in memory and in a file, PostgreSQL when a server is set."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update

from leadflow.stores.sql import SqlStorage
from leadflow.stores.sql.scheduled_sql import action_from_row as _load
from leadflow.testing.contracts import at, make_scheduled_action

from .sql_support import fresh_storage, kind_params

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
