"""Scheduled actions in SQL: :class:`~leadflow.ports.ScheduledActionStore` on one table.

The lifecycle fields (state, due time, attempts, lease, error, times) are columns that single
statements change; what never changes after scheduling (the event and the rule's action) is
kept as JSON documents.

**Claims** are two statements in one transaction, built in :mod:`.claim_sql`.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    delete,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)

from ...clock import ensure_utc
from ...errors import (
    ConflictError,
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
)
from ...records import ScheduledAction, ScheduledActionState
from ..checks import (
    an_id,
    check_limit,
    check_model,
    check_type,
    checked_action_types,
    checked_ids,
    checked_partition,
    checked_version,
    in_order,
    lease_end,
)
from . import acknowledged as ahead
from .claim_sql import INDEX_WALK, SETTING, STATE, ClaimStatements, state_is
from .claimed import claimed_actions
from .database import SqlDatabase
from .errors import translated
from .scheduled_sql import EventDocuments, WriteStatements, action_from_row, action_values
from .tables import FINISHED_STATES
from .types import UtcDateTime

__all__ = ["SqlScheduledActionStore"]

_State = ScheduledActionState
_MAX_ERROR: Final = 2000
_MAX_BATCH: Final = 1000
_ONE_BY_ONE: Final = 8
"""SQLite: a ``schedule_many`` of at most this many rows runs the one-row ``INSERT`` per row
(no round trip to save; cheaper than building a multi-row statement)."""


def _check_worker(worker: object) -> str:
    if not isinstance(worker, str) or not worker:
        raise InvalidInputError("must be a non-empty string", field="worker")
    return worker


class SqlScheduledActionStore:
    """:class:`~leadflow.ports.ScheduledActionStore` on the ``<prefix>scheduled_actions``
    table of ``database``."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._t = database.tables.scheduled
        self._claims = ClaimStatements(self._t, database.engine.dialect)
        self._w = WriteStatements(database)

    def _state_is(self, state: _State) -> ColumnElement[bool]:
        return state_is(self._t, state)

    @translated("action")
    def schedule(self, action: ScheduledAction) -> tuple[ScheduledAction, bool]:
        """One ``INSERT ... ON CONFLICT DO NOTHING`` (any unique constraint: the key, or the id
        derived from it, which two instances racing on one key both carry); the stored action
        is read only when nothing was inserted."""
        checked = check_model(action, ScheduledAction, "action")
        few = self._w.add_few
        values = action_values(checked)
        if few is not None and self._db.defer(few.waiting([values], "action_id"), ahead=True):
            # A deferred unit (handle's, PostgreSQL): answered as new; the unit's statement
            # checks that it went in, else nothing of the unit is written.
            return checked, True
        c = self._t.c
        taken = None
        with self._db.write(atomic=False) as connection:
            if self._w.add_direct.run(connection, values):
                return checked, True  # an immutable value: what is stored
            existing = (
                connection.execute(
                    select(self._t).where(c.idempotency_key == checked.idempotency_key)
                )
                .mappings()
                .first()
            )
            if existing is None:
                taken = connection.execute(
                    select(c.idempotency_key).where(c.action_id == checked.action_id)
                ).first()
        if existing is not None:
            return action_from_row(existing), False
        if taken is not None:  # the id is held by an action with another key
            raise DuplicateError(
                f"action {checked.action_id!r} already exists with another idempotency key"
            )
        return self.schedule(checked)  # purged between the two statements: schedule it anew

    @translated("actions")
    def schedule_many(self, actions: Sequence[ScheduledAction]) -> builtins.list[bool]:
        """:class:`~leadflow.ports.BatchScheduling`: one ``INSERT ... ON CONFLICT DO NOTHING
        RETURNING idempotency_key`` of every row (on PostgreSQL a multi-row ``VALUES`` for up to
        8 rows, :class:`~.direct.ValuesInsert`, else ``SELECT * FROM unnest(...)``, one array
        per column: see :class:`~.direct.UnnestInsert`; on SQLite the one-row
        statement per row for a few, else what is held read first and the others inserted
        with one ``executemany``, :meth:`~.scheduled_sql.WriteStatements.add_unheld`), in one
        transaction (the unit of work's inside one)."""
        return self._schedule_rows(actions, None)

    @translated("actions")
    def schedule_done(
        self, actions: Sequence[ScheduledAction], *, now: datetime
    ) -> builtins.list[bool] | None:
        """:class:`~leadflow.ports.AcknowledgedScheduling`: on PostgreSQL, inside a unit of
        work, :meth:`schedule_many`'s statement with each new claimed action stored as
        :meth:`mark_done_ids` by its lease owner at ``now`` would leave it (no ``UPDATE``
        later: see :mod:`.acknowledged`); until the unit ends :meth:`mark_failed` by that
        worker finds it as claimed. Elsewhere (SQLite, whose held rows go in done already;
        outside a unit) nothing is done: None."""
        if self._db.is_sqlite or not self._db.in_unit:
            return None
        return self._schedule_rows(actions, ensure_utc(now, "now"))

    def _schedule_rows(
        self, actions: Sequence[ScheduledAction], done_at: datetime | None
    ) -> builtins.list[bool]:
        if isinstance(actions, str | Mapping) or not isinstance(actions, Sequence):
            raise InvalidInputError("expected a list of scheduled actions", field="actions")
        if len(actions) > _MAX_BATCH:
            raise InvalidInputError(f"at most {_MAX_BATCH:,} actions at once", field="actions")
        rows: builtins.list[dict[str, Any]] = []
        keys: set[str] = set()
        ids: set[str] = set()
        first: builtins.list[bool] = []
        events = EventDocuments()
        for action in actions:
            checked = check_model(action, ScheduledAction, "actions")
            fresh = checked.idempotency_key not in keys and checked.action_id not in ids
            first.append(fresh)
            if fresh:
                keys.add(checked.idempotency_key)
                ids.add(checked.action_id)
                rows.append(action_values(checked, events))
        if not rows:
            return first
        acknowledged: dict[str, str] = {}
        if done_at is not None:
            claimed = _State.CLAIMED.value
            for row in rows:
                if row["state"] == claimed:
                    acknowledged[row["action_id"]] = row["lease_owner"]
                    row.update(
                        state=_State.DONE.value,
                        finished_at=done_at,
                        updated_at=done_at,
                        lease_expires_at=None,
                    )
        few = self._w.add_few
        if (
            done_at is None
            and few is not None
            and len(rows) <= few.limit
            and self._db.defer(few.waiting(rows, "action_id"), ahead=True)
        ):
            # A deferred unit (handle's, PostgreSQL): answered as new; the unit's statement
            # checks that every row went in, else nothing of the unit is written.
            return first
        # SQLite, many rows or inside a unit of work (handle's): the rows this unit holds are
        # not sent first (add_unheld counts them), so a chunk's second call keeps the first
        # call's rows held as well, and an event's actions go in as its unit leaves them
        # (acknowledged: done, no UPDATE).
        held = self._db.is_sqlite and (len(rows) > _ONE_BY_ONE or self._db.in_unit)
        with self._db.write(beside=held) as connection:
            if few is not None and len(rows) <= few.limit:  # PostgreSQL, a few rows
                inserted = {row[0] for row in few.run(connection, rows)}
                created = {row["idempotency_key"] for row in rows if row["action_id"] in inserted}
            elif self._w.add_rows is not None:
                created = {row[0] for row in self._w.add_rows.run(connection, rows)}
            elif not held:  # SQLite, a few rows on their own: the one-row statement
                created = {
                    row["idempotency_key"]
                    for row in rows
                    if self._w.add_direct.run(connection, row)
                }
            else:
                created = self._w.add_unheld(self._db, connection, rows)
            if acknowledged:
                ahead.note(
                    connection,
                    {
                        row["action_id"]: acknowledged[row["action_id"]]
                        for row in rows
                        if row["action_id"] in acknowledged and row["idempotency_key"] in created
                    },
                )
        return [
            fresh and action.idempotency_key in created
            for fresh, action in zip(first, actions, strict=True)
        ]

    def _one(self, connection: Connection, action_id: str) -> Mapping[Any, Any]:
        row = (
            connection.execute(select(self._t).where(self._t.c.action_id == action_id))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFoundError(f"no scheduled action {action_id!r}")
        return row

    @translated("action_id")
    def get(self, action_id: str) -> ScheduledAction:
        action_id = an_id(action_id, "action_id")
        with self._db.read() as connection:
            return action_from_row(self._one(connection, action_id))

    @translated("now")
    def claim_due(
        self,
        now: datetime,
        *,
        worker: str,
        limit: int = 100,
        lease: timedelta = timedelta(minutes=5),
        partition: int | None = None,
        action_types: Collection[str] | None = None,
    ) -> builtins.list[ScheduledAction]:
        """See the port. With a ``partition`` every statement filters on the ``partition``
        column (the distribution column of a sharded table, so each one stays on its shard).
        With ``action_types`` the pending actions are claimed by type (the type read from the
        ``action`` document; deliveries, which have none, always pass): one range of the
        type index per type, so actions of other types cost nothing; a claim pinned to a
        partition as well steps over the other partitions' actions of its types."""
        now = ensure_utc(now, "now")
        check_limit(limit)
        _check_worker(worker)
        partition = checked_partition(partition)
        types = checked_action_types(action_types)
        until = lease_end(now, lease)
        park, claim = self._claims.shaped(partition is not None, types)
        parameters = {
            "claim_now": now,
            "claim_until": until,
            "claim_worker": worker,
            "claim_limit": limit,
            "claim_partition": partition,
        }
        postgres = not self._db.is_sqlite
        with self._db.write() as connection:  # one transaction
            if postgres:  # see INDEX_WALK; in a transaction, whose end undoes it
                before = connection.execute(INDEX_WALK).scalar_one()
            connection.execute(park, parameters)
            rows = claim.run(connection, parameters)  # through the driver, rows decoded
            if postgres and self._db.in_unit:  # the unit goes on: put the setting back
                connection.execute(SETTING, {"value": before})
        # The store's own rows: trusted (see .claimed).
        actions = claimed_actions(claim.columns, rows, action_from_row)
        actions.sort(key=lambda a: (a.due_at, a.action_id))
        return actions

    def _finish(self, action_id: str, worker: str, changes: Mapping[str, Any]) -> ScheduledAction:
        """Apply ``changes`` if ``worker`` holds the action; :class:`ConflictError` if not.
        An action this unit of work stored acknowledged (:meth:`schedule_done`) for
        ``worker`` is held as if still claimed: its mark changes it from claimed, not from
        done (``finished_at`` as ``changes`` say, else empty again)."""
        action_id = an_id(action_id, "action_id")
        c = self._t.c
        with self._db.write(atomic=False) as connection:
            state = _State.CLAIMED
            if self._db.in_unit and ahead.owner(connection, action_id) == worker:
                state, changes = _State.DONE, {"finished_at": None, **changes}
                ahead.forget(connection, action_id)
            statement = (
                update(self._t)
                .where(c.action_id == action_id, self._state_is(state), c.lease_owner == worker)
                .values(changes)
                .returning(*self._t.c)
            )
            row = connection.execute(statement).mappings().first()
            if row is None:
                current = self._one(connection, action_id)
                raise ConflictError(
                    f"worker {worker!r} does not hold action {action_id!r} "
                    f"(state {current['state']}, lease owner {current['lease_owner']!r})"
                )
        return action_from_row(row)

    @translated("action_id")
    def mark_done(self, action_id: str, *, worker: str, now: datetime) -> ScheduledAction:
        now = ensure_utc(now, "now")
        _check_worker(worker)
        changes = {
            "state": _State.DONE.value,
            "finished_at": now,
            "updated_at": now,
            "lease_expires_at": None,
        }
        return self._finish(action_id, worker, changes)

    @translated("action_ids")
    def mark_done_many(
        self, action_ids: Sequence[str], *, worker: str, now: datetime
    ) -> builtins.list[ScheduledAction]:
        """One ``UPDATE ... WHERE action_id IN (...) AND state = 'claimed' AND lease_owner = ...
        RETURNING``: one transaction for a whole batch."""
        ids = checked_ids(action_ids, "action_ids")
        _check_worker(worker)
        now = ensure_utc(now, "now")
        if not ids:
            return []
        with self._db.write(atomic=False) as connection:
            parameters = {"ids": ids, "worker": worker, "now": now}
            rows = connection.execute(self._w.done_many, parameters).mappings().all()
        return in_order(map(action_from_row, rows), ids)

    @translated("action_ids")
    def mark_done_ids(
        self, action_ids: Sequence[str], *, worker: str, now: datetime
    ) -> builtins.list[str]:
        """:class:`~leadflow.ports.BatchAcknowledgement`: the statement of
        :meth:`mark_done_many`, ``RETURNING action_id`` only (what ``run_due`` reads: no row
        decoded, no action validated)."""
        ids = checked_ids(action_ids, "action_ids")
        _check_worker(worker)
        now = ensure_utc(now, "now")
        if not ids:
            return []
        if self._done_waiting(ids, worker, now) or self._done_ahead(ids, worker):
            return list(ids)
        # ``carry``: in a unit of work on PostgreSQL the facts kept for later (``handle``'s
        # arrival) go in the same statement (a table this one does not read).
        with self._db.write(atomic=False, carry=True) as connection:
            parameters = {
                "ids": ids if self._db.dialect == "postgresql" else json.dumps(ids),
                "worker": worker,
                "now": now,
            }
            done_ids = self._w.done_ids_direct.run(connection, parameters, carry=True)
            done = {row[0] for row in done_ids}
        return [action_id for action_id in ids if action_id in done]

    def _done_ahead(self, ids: Sequence[str], worker: str) -> bool:
        """Whether every one of ``ids`` is an action this unit of work stored acknowledged
        for ``worker`` (:meth:`schedule_done`): done already, nothing to send."""
        if self._db.is_sqlite or not self._db.in_unit:
            return False
        with self._db.write(atomic=False, carry=True) as connection:
            return ahead.held_by(connection, ids, worker)

    def _done_waiting(self, ids: Sequence[str], worker: str, now: datetime) -> bool:
        """In a deferred unit (PostgreSQL) or a unit holding rows (SQLite): when every one of
        ``ids`` is an action this unit inserted claimed by ``worker`` and whose ``INSERT``
        still waits (:mod:`.later`, :mod:`.held`), mark them done in that ``INSERT``'s rows
        (no other worker can see them, so no lease can have been lost): True. Else nothing
        is changed: False."""
        found: dict[str, dict[str, Any]] = {}
        for waiting in self._db.waiting():
            if waiting.rows is not None:
                found.update(waiting.rows)
        if not found:
            return False
        claimed = _State.CLAIMED.value
        rows = [found.get(action_id) for action_id in ids]
        if not all(
            row is not None and row["state"] == claimed and row["lease_owner"] == worker
            for row in rows
        ):
            return False
        for row in rows:
            assert row is not None
            row.update(
                state=_State.DONE.value, finished_at=now, updated_at=now, lease_expires_at=None
            )
        return True

    @translated("error")
    def mark_failed(
        self,
        action_id: str,
        *,
        worker: str,
        now: datetime,
        error: str,
        retry_at: datetime,
        permanent: bool = False,
    ) -> ScheduledAction:
        """See the port; ``error`` is kept to its first 2,000 characters. One statement: the
        choice between retrying and parking is a ``CASE`` on the stored attempts."""
        now = ensure_utc(now, "now")
        retry_at = ensure_utc(retry_at, "retry_at")
        _check_worker(worker)
        message = check_type(error, str, "error")
        assert message is not None
        if not isinstance(permanent, bool):
            raise InvalidInputError("expected a bool", field="permanent")
        c = self._t.c
        parks = literal(True) if permanent else c.attempts >= c.max_attempts
        changes = {
            "last_error": message[:_MAX_ERROR],
            "updated_at": now,
            "lease_expires_at": None,
            "state": case((parks, _State.PARKED.value), else_=_State.PENDING.value),
            "due_at": case((parks, c.due_at), else_=literal(retry_at, UtcDateTime())),
            "lease_owner": case((parks, c.lease_owner), else_=None),
        }
        return self._finish(action_id, worker, changes)

    @translated("action_id")
    def retry(self, action_id: str, *, now: datetime) -> ScheduledAction:
        now, action_id = ensure_utc(now, "now"), an_id(action_id, "action_id")
        c = self._t.c
        statement = (
            update(self._t)
            .where(c.action_id == action_id, self._state_is(_State.PARKED))
            .values(
                state=_State.PENDING.value,
                due_at=now,
                attempts=0,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
                finished_at=None,
                last_error=None,
            )
            .returning(*self._t.c)
        )
        with self._db.write(atomic=False) as connection:
            row = connection.execute(statement).mappings().first()
            if row is None:
                state = self._one(connection, action_id)["state"]
                raise InvalidStateError(
                    f"action {action_id!r} is {state}; only parked ones are retried"
                )
        return action_from_row(row)

    def _cancel(self, owner: ColumnElement[bool], now: datetime) -> Any:
        return (
            update(self._t)
            .where(owner, self._state_is(_State.PENDING))
            .values(state=_State.CANCELLED.value, finished_at=now, updated_at=now)
        )

    @translated("opportunity_id")
    def cancel_for_opportunity(self, opportunity_id: str, *, now: datetime) -> int:
        now = ensure_utc(now, "now")
        opportunity_id = an_id(opportunity_id, "opportunity_id")
        statement = self._cancel(self._t.c.opportunity_id == opportunity_id, now)
        with self._db.write(atomic=False) as connection:
            return int(connection.execute(statement).rowcount)

    @translated("rule_id")
    def cancel_for_rule(
        self, rule_id: str, *, now: datetime, below_version: int | None = None
    ) -> builtins.list[ScheduledAction]:
        """One ``UPDATE ... RETURNING``: an action a worker claims meanwhile is left to finish
        and never reported as cancelled."""
        now = ensure_utc(now, "now")
        below = checked_version(below_version, "below_version")
        rule_id = an_id(rule_id, "rule_id")
        c = self._t.c
        owner = c.rule_id == rule_id
        if below is not None:
            owner = and_(owner, or_(c.rule_version.is_(None), c.rule_version < below))
        statement = self._cancel(owner, now).returning(*self._t.c)
        with self._db.write(atomic=False) as connection:
            rows = connection.execute(statement).mappings().all()
        cancelled = [action_from_row(row) for row in rows]
        cancelled.sort(key=lambda a: (a.due_at, a.action_id))
        return cancelled

    @translated("action_ids")
    def cancel_pending(
        self, action_ids: Sequence[str], *, now: datetime
    ) -> builtins.list[ScheduledAction]:
        """One ``UPDATE ... RETURNING`` over the pending ones."""
        ids = checked_ids(action_ids, "action_ids")
        now = ensure_utc(now, "now")
        if not ids:
            return []
        statement = self._cancel(self._t.c.action_id.in_(ids), now).returning(*self._t.c)
        with self._db.write(atomic=False) as connection:
            rows = connection.execute(statement).mappings().all()
        return in_order([action_from_row(row) for row in rows], ids)

    @translated("before")
    def purge_finished(self, before: datetime, *, limit: int = 10_000) -> int:
        cutoff = ensure_utc(before, "before")
        check_limit(limit)
        c = self._t.c
        # the partial index's own terms, in its order (tables.FINISHED_STATES)
        finished = c.state.in_([STATE[_State(state)] for state in FINISHED_STATES])
        doomed = select(c.action_id).where(finished, c.finished_at < cutoff).limit(limit)
        statement = delete(self._t).where(c.action_id.in_(doomed.scalar_subquery()))
        with self._db.write(atomic=False) as connection:
            return int(connection.execute(statement).rowcount)

    @translated("state")
    @translated("partition")
    def next_due(self, *, partition: int | None = None) -> datetime | None:
        """The first row of the pending actions' due-order index (its partition's)."""
        partition = checked_partition(partition)
        c = self._t.c
        scope = true() if partition is None else c.partition == partition
        statement = (
            select(c.due_at)
            .where(scope, self._state_is(_State.PENDING))
            .order_by(c.due_at, c.action_id)
            .limit(1)
        )
        with self._db.read() as connection:
            due: datetime | None = connection.execute(statement).scalar()
        return due

    def list(
        self, state: ScheduledActionState | None = None, *, limit: int = 100
    ) -> builtins.list[ScheduledAction]:
        """The first ``limit`` actions by due time (then id), of one state or of every state
        (:meth:`_list_statement`)."""
        check_limit(limit)
        if state is not None:
            try:
                state = _State(state)
            except ValueError as error:
                raise InvalidInputError(f"unknown state {state!r}", field="state") from error
        with self._db.read() as connection:
            rows = connection.execute(self._list_statement(state, limit)).mappings().all()
        return [action_from_row(row) for row in rows]

    def _list_statement(self, state: _State | None, limit: int) -> Select[Any]:
        """Every state reads the ``(state, due_at, action_id)`` index: the first ``limit``
        actions of all of them are the first ``limit`` of each state, merged (revision 0016
        dropped the due-time index over every row, which each of an action's writes paid for
        this read alone)."""
        c = self._t.c

        def first(one: _State) -> Select[Any]:
            return (
                select(self._t)
                .where(self._state_is(one))
                .order_by(c.due_at, c.action_id)
                .limit(limit)
            )

        if state is not None:
            return first(state)
        merged = union_all(*(select(first(one).subquery()) for one in _State)).subquery()
        return select(merged).order_by(merged.c.due_at, merged.c.action_id).limit(limit)
