"""The claim statements of the SQL scheduled-action store
(:meth:`~leadflow.stores.sql.scheduled.SqlScheduledActionStore.claim_due`).

``claim_due`` is one transaction of two statements
(on PostgreSQL after a third that turns bitmap scans off for the transaction: see
:data:`INDEX_WALK`): the first parks expired leases of actions that used their last attempt, the
second claims a batch, ``UPDATE ... WHERE action_id IN (SELECT ... ORDER BY due_at, action_id
LIMIT n FOR UPDATE SKIP LOCKED) RETURNING ...``. On PostgreSQL ``SKIP LOCKED`` lets
concurrent workers take disjoint batches without waiting for each other; on SQLite the write
transaction (``BEGIN IMMEDIATE``) serializes claimers. Both read the partial index of live actions
(pending or claimed) in due order, so a claim costs about the batch it takes. A claim filtered
on action types reads one range per type (and one for deliveries) of the pending actions'
type index (revision 0004) instead, so other types' backlog costs it nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    Integer,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import Update

from ...records import ScheduledActionState
from .direct import DriverStatement
from .types import ActionTypeOf, Document, UtcDateTime, document_from_text, from_micros

__all__ = [
    "INDEX_WALK",
    "SETTING",
    "STATE",
    "ClaimStatements",
    "DirectClaim",
    "state_is",
    "state_unindexed",
]

_State = ScheduledActionState
_SHAPES: Final = 64  # claim statements kept per store (see ClaimStatements.shaped)
STATE: Final[dict[_State, ColumnElement[str]]] = {
    state: literal_column(f"'{state.value}'") for state in _State
}
"""States as SQL literals: a partial index applies only when the query repeats its terms."""
INDEX_WALK: Final = text(
    "SELECT current_setting('enable_bitmapscan'), set_config('enable_bitmapscan', 'off', true)"
)
"""Run before a claim on PostgreSQL, in the claim's transaction (``SET LOCAL``): the claim's
plan must not depend on fresh statistics. Without them (a backlog that grew since the last
``ANALYZE``: the planner then counts a handful of pending rows), PostgreSQL reads every due
pending action through a bitmap of the pending index and sorts them all to keep the first
100: 15-40 ms per claim at 20,000 pending, growing with the backlog. Without bitmap scans the
cheapest plan for ``ORDER BY due_at, action_id LIMIT n`` is a walk of that index in its order,
stopped after ``n`` rows, whatever the statistics say (``tests/test_sql_claim_plan.py``)."""
SETTING: Final = text("SELECT set_config('enable_bitmapscan', :value, true)")
"""Puts the setting :data:`INDEX_WALK` changed back, when the claim's transaction goes on (a
unit of work the claim joined)."""


def state_is(table: Table, state: ScheduledActionState) -> ColumnElement[bool]:
    """``state = '<state>'`` with the literal the partial indexes repeat."""
    return table.c.state == STATE[state]


def state_unindexed(table: Table, state: ScheduledActionState) -> ColumnElement[bool]:
    """``state || '' = '<state>'`` (PostgreSQL): the same test as :func:`state_is`, which no
    partial index's predicate matches, for a statement that finds its rows by their ids. The
    acknowledgement (``action_id = ANY(:ids) AND state = 'claimed' AND lease_owner = ...``)
    was planned as a bitmap scan of the claimed actions' partial index (``_leases``), whose
    entries the planner guesses few, filtered on the ids: but every claimed row version of
    every action drained since the last vacuum leaves an entry there, so each
    acknowledgement read them all (30,100 entries and 6,016 buffers for a batch of 100 after
    30,000 actions, 25 ms; 100 rows through the primary key: 400 buffers, 2.4 ms).
    ``tests/test_sql_ack_plan.py`` holds the plan."""
    return table.c.state.op("||")(literal_column("''")) == STATE[state]


class ClaimStatements:
    """A store's claim statements, built once per shape (pinned to a partition or not, the
    type filter) and kept: building them costs more than running them."""

    def __init__(self, table: Table, dialect: Dialect) -> None:
        self._t = table
        self._dialect = dialect
        self._claims: dict[tuple[bool, frozenset[str] | None], tuple[Executable, DirectClaim]] = {}

    def _is(self, state: ScheduledActionState) -> ColumnElement[bool]:
        return state_is(self._t, state)

    def shaped(self, pinned: bool, types: frozenset[str] | None) -> tuple[Executable, DirectClaim]:
        """The two statements of a claim (see the module's docstring; the second run through
        the driver, :class:`DirectClaim`), with the parameters
        ``claim_now``, ``claim_until``, ``claim_worker``, ``claim_limit`` and
        ``claim_partition`` (no column's name, which an ``UPDATE`` would take for a value to
        set): built once per shape
        (pinned to a partition or not, the type filter) and kept, since building them costs
        more than running them (about 4 ms, against a claim of 100 in 3)."""
        key = (pinned, types)
        built = self._claims.get(key)
        if built is not None:
            return built
        t, c = self._t, self._t.c
        now = bindparam("claim_now", type_=UtcDateTime())
        scope = c.partition == bindparam("claim_partition", type_=Integer()) if pinned else true()
        limit = bindparam("claim_limit", type_=Integer())
        claimed = self._is(_State.CLAIMED)
        expired = and_(scope, claimed, c.lease_expires_at <= now)
        if types is not None:
            expired = and_(expired, self.of_types(types))
        # An action whose worker died on its last attempt is parked, not handed out again.
        exhausted = (
            select(c.action_id)
            .where(expired, c.attempts >= c.max_attempts)
            .with_for_update(skip_locked=True)
        )
        park = (
            update(t)
            .where(c.action_id.in_(exhausted.scalar_subquery()))
            .values(
                state=_State.PARKED.value,
                last_error=literal("lease of '") + c.lease_owner + "' ran out on the last attempt",
                lease_expires_at=None,
                updated_at=now,
            )
        )
        # The oldest due pending actions and the oldest expired leases (each arm an index
        # range in order, locked with SKIP LOCKED on PostgreSQL), then the oldest of all. With
        # a type filter, the pending actions are one arm per type and one for the deliveries
        # (a NULL type), each a range of the type index.
        pending = and_(scope, self._is(_State.PENDING), c.due_at <= now)
        if types is None:
            pending_arms = [pending]
        else:
            action_type = ActionTypeOf(c.action)
            pending_arms = [
                and_(pending, action_type.is_(None)),
                *(and_(pending, action_type == name) for name in sorted(types)),
            ]
        arms = [
            select(c.action_id, c.due_at)
            .where(condition)
            .order_by(c.due_at, c.action_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .subquery()
            for condition in (*pending_arms, and_(expired, c.attempts < c.max_attempts))
        ]
        both = union_all(*(select(arm.c.action_id, arm.c.due_at) for arm in arms)).subquery()
        due = select(both.c.action_id).order_by(both.c.due_at, both.c.action_id).limit(limit)
        claim = (
            update(t)
            .where(c.action_id.in_(due.scalar_subquery()))
            .values(
                state=_State.CLAIMED.value,
                lease_owner=bindparam("claim_worker"),
                lease_expires_at=bindparam("claim_until", type_=UtcDateTime()),
                attempts=c.attempts + 1,
                updated_at=now,
            )
        )
        if len(self._claims) >= _SHAPES:  # type filters are the caller's: keep a few
            self._claims.clear()
        built = self._claims[key] = park, DirectClaim(self._dialect, t, claim)
        return built

    def of_types(self, types: frozenset[str]) -> ColumnElement[bool]:
        """A delivery (no action type), or a rule action whose type is one of ``types``."""
        action_type = ActionTypeOf(self._t.c.action)  # one term per type: no expanding list,
        # whose text changes with its length (the claim is compiled once per shape)
        return or_(action_type.is_(None), *(action_type == name for name in sorted(types)))


Decoder = Callable[[Any], Any]


def _utc(value: Any) -> Any:
    return value.astimezone(UTC)


def _from_micros(value: Any) -> Any:
    return from_micros(int(value))


class DirectClaim:
    """The claim's ``UPDATE ... RETURNING`` (every column) run through the driver
    (:class:`~.direct.DriverStatement`: compiled once, no SQLAlchemy result), its rows decoded
    here column by column into what the column types give through SQLAlchemy: aware UTC
    datetimes (PostgreSQL's as they come, moved to UTC; SQLite's integer microseconds), and
    documents from their JSON text in one pass (:func:`~.types.document_from_text`; on
    PostgreSQL the statement returns each ``jsonb`` column as ``text``, which psycopg hands
    over without parsing it). Through SQLAlchemy a claimed row's values went through a
    processor per column, and each document was parsed by the driver and then walked again
    for its datetimes: most of the client's work per claimed action after the handler."""

    __slots__ = ("_decoders", "_statement", "columns")

    def __init__(self, dialect: Dialect, table: Table, claim: Update) -> None:
        postgres = dialect.name == "postgresql"
        returned = [
            cast(column, Text).label(column.name)
            if postgres and isinstance(column.type, Document)
            else column
            for column in table.c
        ]
        self._statement = DriverStatement(dialect, claim.returning(*returned))
        self.columns: tuple[str, ...] = tuple(column.name for column in table.c)
        decoders: list[tuple[int, Decoder]] = []
        for position, column in enumerate(table.c):
            type_ = column.type
            decode: Decoder | None
            if isinstance(type_, Document):
                decode = document_from_text
            elif isinstance(type_, UtcDateTime):
                decode = _utc if postgres else _from_micros
            else:
                decode = type_.dialect_impl(dialect).result_processor(dialect, None)
            if decode is not None:
                decoders.append((position, decode))
        self._decoders: tuple[tuple[int, Decoder], ...] = tuple(decoders)

    def run(self, connection: Connection, values: Mapping[str, Any]) -> list[list[Any]]:
        """The claimed rows, decoded, in :attr:`columns` order."""
        rows = self._statement.run(connection, values)
        decoders = self._decoders
        decoded: list[list[Any]] = []
        for row in rows:
            items = list(row)
            for position, decode in decoders:
                value = items[position]
                if value is not None:
                    items[position] = decode(value)
            decoded.append(items)
        return decoded
