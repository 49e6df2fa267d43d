"""The write statements of the SQL scheduled-action store
(:class:`~leadflow.stores.sql.scheduled.SqlScheduledActionStore`) and an action's row.

Built once per store, run with parameters. ``handle``'s hot statements (an action's
``INSERT``, the acknowledgement) run straight through the driver (:mod:`.direct`); on
PostgreSQL a batch is one ``INSERT ... SELECT * FROM unnest(...)`` (:class:`~.direct.UnnestInsert`),
on SQLite what a batch holds already is read first and the others are inserted with one
``executemany``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    any_,
    bindparam,
    column,
    func,
    literal_column,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from ...models import Action, Event
from ...records import ScheduledAction, ScheduledActionState
from .claim_sql import STATE, state_is, state_unindexed
from .database import SqlDatabase
from .direct import DriverStatement, Encoded, UnnestInsert, ValuesInsert
from .types import UtcDateTime, document_text

__all__ = ["EventDocuments", "WriteStatements", "action_from_row", "action_values"]

_State = ScheduledActionState
_FEW: Final = 8
"""PostgreSQL: rows a ``schedule_many`` inserts with a multi-row ``VALUES`` (more: ``unnest``)."""

_COPIED: Final = (
    "action_id",
    "idempotency_key",
    "rule_id",
    "rule_name",
    "rule_version",
    "action_index",
    "opportunity_id",
    "activity_id",
    "enrollment_id",
    "step_id",
    "partition",
    "planned_at",
    "depth",
    "explanation",
    "due_at",
    "attempts",
    "max_attempts",
    "last_error",
    "lease_owner",
    "lease_expires_at",
    "created_at",
    "updated_at",
    "finished_at",
)


class EventDocuments:
    """The documents of a batch's rows, each made and encoded (:class:`~.direct.Encoded`)
    once: an event's, in turn (an event's actions come together, so the text of the event the
    row before was made for is kept, with the event, and made again only for another event);
    a rule action's, once per rule action in the batch (the rows of every event a rule
    matched hold the same :class:`~leadflow.models.Action` object, the compiled rule's: its
    text is kept by the rule's id and the action's index, with the object, and made again
    for another object)."""

    __slots__ = ("_actions", "_event", "_text")

    def __init__(self) -> None:
        self._event: Event | None = None
        self._text = Encoded()
        self._actions: dict[tuple[str | None, int | None], tuple[Action, Encoded]] = {}

    def of(self, event: Event) -> Encoded:
        if event is not self._event:
            self._event, self._text = event, Encoded(document_text(event.to_document()))
        return self._text

    def action(self, stored: ScheduledAction) -> Encoded | None:
        """The text of ``stored``'s rule action (None: it has none)."""
        action = stored.action
        if action is None:
            return None
        slot = (stored.rule_id, stored.action_index)
        kept = self._actions.get(slot)
        if kept is None or kept[0] is not action:
            kept = self._actions[slot] = (action, Encoded(document_text(action.to_document())))
        return kept[1]


def action_values(action: ScheduledAction, events: EventDocuments | None = None) -> dict[str, Any]:
    """``action``'s row; with ``events`` (a batch's), the rows of one event's actions share
    its document's text, and the rows of one rule action its action's, each made once."""
    # A model keeps its fields in its ``__dict__`` (pydantic): copied whole, in C; an enum's
    # text read as ``_value_`` (``.value`` is a Python-level property, three per row).
    values = dict(action.__dict__)
    values["kind"] = action.kind._value_
    values["duplicates"] = action.duplicates._value_
    values["state"] = action.state._value_
    if events is None:
        values["event"] = action.event.to_document()
        values["action"] = None if action.action is None else action.action.to_document()
    else:
        values["event"] = events.of(action.event)
        values["action"] = events.action(action)
    return values


def action_from_row(row: Mapping[Any, Any]) -> ScheduledAction:
    data = {name: row[name] for name in _COPIED}
    data.update(
        kind=row["kind"],
        duplicates=row["duplicates"],
        state=row["state"],
        event=row["event"],
        action=row["action"],
    )
    return ScheduledAction.model_validate(data)


class WriteStatements:
    """The scheduled-action table's insert and acknowledgement statements for ``database``."""

    def __init__(self, database: SqlDatabase) -> None:
        table = database.tables.scheduled
        insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
        c = table.c
        # Built once, run with parameters: SQLAlchemy caches their compiled form.
        add = insert(table).on_conflict_do_nothing().returning(c.action_id)
        # On PostgreSQL the ids are one array parameter (``= ANY(...)``): one statement text
        # whatever the batch's size, which psycopg converts once (an expanded ``IN`` of 100
        # ids is 100 parameters, beyond psycopg's cache: converted again on every call).
        of_ids = (
            c.action_id == any_(bindparam("ids", type_=postgresql.ARRAY(c.action_id.type)))
            if database.dialect == "postgresql"
            else c.action_id.in_(bindparam("ids", expanding=True))
        )

        def done_where(*terms: ColumnElement[bool]) -> Any:
            return (
                update(table)
                .where(*terms, c.lease_owner == bindparam("worker"))
                .values(
                    state=_State.DONE.value,
                    finished_at=bindparam("now", type_=UtcDateTime()),
                    updated_at=bindparam("now", type_=UtcDateTime()),
                    lease_expires_at=None,
                )
            )

        # Through the primary key on PostgreSQL: the claimed actions' partial index holds an
        # entry for every claimed version since the last vacuum (see state_unindexed).
        claimed = (
            state_unindexed(table, _State.CLAIMED)
            if database.dialect == "postgresql"
            else state_is(table, _State.CLAIMED)
        )
        done_many = done_where(of_ids, claimed)
        self.done_many = done_many.returning(*table.c)
        done_ids = done_many.returning(c.action_id)
        # The two statements every ``handle`` runs, through the driver (see .direct). On
        # SQLite the ids are one JSON array (``IN (SELECT value FROM json_each(?))``): a fixed
        # statement text, where an expanded ``IN`` is rendered again for each batch size.
        dialect = database.engine.dialect
        self.add_direct = DriverStatement(dialect, add)
        self.add_rows = (
            UnnestInsert(dialect, table, ["idempotency_key"])
            if database.dialect == "postgresql"
            else None
        )
        # A few rows (one event's actions, in ``handle``): one multi-row ``VALUES``, whose
        # plan is as cheap as the one-row statement's (an ``unnest`` of two rows took about
        # as long as three one-row statements).
        self.add_few = (
            ValuesInsert(self.add_direct, _FEW) if database.dialect == "postgresql" else None
        )
        self.held_direct: DriverStatement | None = None
        self.add_plain: DriverStatement | None = None
        if database.dialect == "postgresql":
            self.done_ids_direct = DriverStatement(dialect, done_ids)
        else:

            def json_list(name: str) -> Any:
                return select(column("value")).select_from(
                    func.json_each(bindparam(name, type_=String()))
                )

            in_json = c.action_id.in_(json_list("ids"))
            # A batch (schedule_many): the keys and ids already held, then one executemany.
            self.held_direct = DriverStatement(
                dialect,
                union_all(
                    select(c.idempotency_key, c.action_id).where(
                        c.idempotency_key.in_(json_list("keys"))
                    ),
                    select(c.idempotency_key, c.action_id).where(in_json),
                ),
            )
            self.add_plain = DriverStatement(dialect, insert(table))
            # ``+state``: SQLite then looks each id up by the primary key (an index on state
            # would read every claimed action and probe the list).
            unindexed = literal_column(f"+{c.state.name}") == STATE[_State.CLAIMED]
            self.done_ids_direct = DriverStatement(
                dialect, done_where(in_json, unindexed).returning(c.action_id)
            )

    def add_unheld(
        self, database: SqlDatabase, connection: Connection, rows: Sequence[dict[str, Any]]
    ) -> set[str]:
        """SQLite, in the write transaction (its lock held: nothing else writes in between):
        the keys and ids of ``rows`` (distinct) already stored, read in one statement, or held
        by this unit to be inserted (:mod:`.held`), then the other rows inserted with one
        ``executemany`` of the one-row ``INSERT`` (no ``ON CONFLICT``: a conflict now would
        be a bug, and fails the transaction); the keys inserted. In a unit of work the rows
        are held: they go in before anything reads them, in the state the unit leaves them
        in (a run-now action acknowledged: done)."""
        assert self.held_direct is not None and self.add_plain is not None
        held = self.held_direct.run(
            connection,
            {
                "keys": json.dumps([row["idempotency_key"] for row in rows]),
                "ids": json.dumps([row["action_id"] for row in rows]),
            },
        )
        keys, ids = {key for key, _ in held}, {action_id for _, action_id in held}
        for waiting in database.waiting():  # rows this unit holds, not in the table yet
            if waiting.sql == self.add_plain.sql and waiting.rows is not None:
                ids.update(waiting.rows)
                keys.update(row["idempotency_key"] for row in waiting.rows.values())
        new = [r for r in rows if r["idempotency_key"] not in keys and r["action_id"] not in ids]
        if new and not database.hold(self.add_plain, new, "action_id"):
            self.add_plain.run_many(connection, new)
        return {row["idempotency_key"] for row in new}
