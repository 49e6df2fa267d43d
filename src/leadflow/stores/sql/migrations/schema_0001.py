"""The schema as revision 0001 creates it: a frozen copy of :mod:`..tables` at that revision.

Never edit this module. When the schema changes, change :mod:`leadflow.stores.sql.tables` and
add a revision that takes a database from the previous shape to the new one (the test that
compares a migrated database with the current tables keeps both in step).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ....errors import InvalidInputError
from ..types import Document, UtcDateTime

__all__ = ["DEFAULT_PREFIX", "Tables", "build_tables", "checked_prefix"]

DEFAULT_PREFIX: Final = "leadflow_"
_PREFIX = re.compile(r"^(?:[a-z_][a-z0-9_]{0,29})?\Z")
_ID = 128
_KEY = 400


def checked_prefix(prefix: object) -> str:
    """``prefix`` if it is at most 30 lower-case letters, digits and ``_`` (not starting with a
    digit; empty is allowed), else :class:`InvalidInputError`: names stay unquoted and within
    PostgreSQL's 63 characters."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise InvalidInputError(
            "expected at most 30 lower-case letters, digits or '_', not starting with a digit",
            field="prefix",
        )
    return prefix


@dataclass(frozen=True, slots=True)
class Tables:
    """The backend's tables for one prefix and schema, and the metadata holding them."""

    metadata: MetaData
    prefix: str
    schema: str | None
    activities: Table
    rules: Table
    scheduled: Table
    counters: Table
    audit: Table
    job_slots: Table
    job_marks: Table

    @property
    def version_table(self) -> str:
        """Alembic's version table (prefixed like the others)."""
        return f"{self.prefix}alembic_version"


def _id(name: str, *, nullable: bool = True) -> Column[str]:
    return Column(name, String(_ID), nullable=nullable)


def _activities(metadata: MetaData, name: str, schema: str | None) -> Table:
    table = Table(
        name,
        metadata,
        _id("activity_id", nullable=False),
        _id("opportunity_id", nullable=False),
        _id("customer_id"),
        Column("activity_type", String(32), nullable=False),
        Column("subject", Text, nullable=False),
        Column("description", Text, nullable=False),
        Column("scheduled_date", UtcDateTime),
        Column("due_date", UtcDateTime),
        Column("completed_date", UtcDateTime),
        _id("assigned_to"),
        _id("completed_by"),
        Column("outcome", String(32)),
        Column("open_key", String(_KEY)),
        _id("created_by"),
        _id("updated_by"),
        Column("created_at", UtcDateTime),
        Column("updated_at", UtcDateTime),
        Column("version", BigInteger, nullable=False),
        _id("automation_rule_id"),  # metadata.automationRuleId, for its index
        Column("meta", Document, nullable=False),  # the whole metadata document
        PrimaryKeyConstraint("activity_id", name=f"{name}_pkey"),
        schema=schema,
    )
    c = table.c
    is_open = c.completed_date.is_(None)
    # At most one open activity per open key: the atomic duplicate protection of `add`.
    Index(
        f"{name}_open_key",
        c.open_key,
        unique=True,
        postgresql_where=is_open,
        sqlite_where=is_open,
    )
    # The seed's compound index: one opportunity's activities by type (statistics).
    Index(f"{name}_opportunity_type", c.opportunity_id, c.activity_type)
    # for_opportunity / timeline / list(opportunity_id); completed_date makes it cover
    # last_activity_times and stale_opportunities.
    Index(
        f"{name}_opportunity_created",
        c.opportunity_id,
        c.created_at,
        c.activity_id,
        c.completed_date,
    )
    Index(
        f"{name}_opportunity_assignee",
        c.opportunity_id,
        c.assigned_to,
        c.created_at,
        c.activity_id,
    )
    Index(f"{name}_customer_created", c.customer_id, c.created_at, c.activity_id)
    Index(f"{name}_customer_assignee", c.customer_id, c.assigned_to, c.created_at, c.activity_id)
    # The seed's partial index: open activities by due date (overdue, pending, upcoming).
    Index(
        f"{name}_open_due",
        c.due_date,
        c.activity_id,
        postgresql_where=is_open,
        sqlite_where=is_open,
    )
    # The seed's assignee/due index, on open activities: one rep's overdue and pending lists.
    Index(
        f"{name}_assignee_open_due",
        c.assigned_to,
        c.due_date,
        c.activity_id,
        postgresql_where=is_open,
        sqlite_where=is_open,
    )
    # list(assigned_to=...) and list(automation_rule_id=...) in creation order.
    Index(f"{name}_assignee_created", c.assigned_to, c.created_at, c.activity_id)
    Index(f"{name}_rule_created", c.automation_rule_id, c.created_at, c.activity_id)
    # list() sorted by each date. SQLite's planner knows no index sizes (until ANALYZE) and
    # prefers an equality to a range: were `completed_date IS NULL` an equality on a full index,
    # or the due-date index as good an order as the partial one above, it would read those
    # for the open-activity queries instead of the (much smaller) partial indexes.
    for column in ("created_at", "updated_at", "scheduled_date"):
        Index(f"{name}_{column}", c[column], c.activity_id)
    Index(f"{name}_due_date", c.due_date)
    # Completed activities by completion (ranges, list order, purge_completed); open ones by
    # id (the undated part of a list sorted by completion).
    is_done = c.completed_date.is_not(None)
    Index(
        f"{name}_completed_date",
        c.completed_date,
        c.activity_id,
        postgresql_where=is_done,
        sqlite_where=is_done,
    )
    Index(f"{name}_open", c.activity_id, postgresql_where=is_open, sqlite_where=is_open)
    return table


def _rules(metadata: MetaData, name: str, schema: str | None) -> Table:
    table = Table(
        name,
        metadata,
        _id("rule_id", nullable=False),
        Column("is_active", Boolean, nullable=False),
        Column("priority", Integer, nullable=False),
        Column("version", BigInteger, nullable=False),
        Column("document", Document, nullable=False),
        PrimaryKeyConstraint("rule_id", name=f"{name}_pkey"),
        schema=schema,
    )
    c = table.c
    # list_active: the seed's active + priority index, in application order.
    Index(f"{name}_active_priority", c.is_active, c.priority.desc(), c.rule_id)
    Index(f"{name}_priority", c.priority.desc(), c.rule_id)
    return table


def _scheduled(metadata: MetaData, name: str, schema: str | None) -> Table:
    table = Table(
        name,
        metadata,
        _id("action_id", nullable=False),
        Column("idempotency_key", String(_KEY), nullable=False),
        Column("kind", String(16), nullable=False),
        _id("rule_id"),
        Column("rule_name", String(200)),
        Column("action_index", BigInteger, nullable=False),
        _id("opportunity_id"),
        _id("activity_id"),
        Column("planned_at", UtcDateTime, nullable=False),
        Column("depth", Integer, nullable=False),
        Column("duplicates", String(16), nullable=False),
        Column("explanation", Text),
        Column("event", Document, nullable=False),
        Column("action", Document),
        Column("due_at", UtcDateTime, nullable=False),
        Column("state", String(16), nullable=False),
        Column("attempts", BigInteger, nullable=False),
        Column("max_attempts", Integer, nullable=False),
        Column("last_error", Text),
        Column("lease_owner", Text),
        Column("lease_expires_at", UtcDateTime),
        Column("created_at", UtcDateTime, nullable=False),
        Column("updated_at", UtcDateTime),
        Column("finished_at", UtcDateTime),
        PrimaryKeyConstraint("action_id", name=f"{name}_pkey"),
        UniqueConstraint("idempotency_key", name=f"{name}_idempotency_key"),
        schema=schema,
    )
    c = table.c
    # The seed's state/due index: claim_due (pending and due, oldest first) and list(state).
    Index(f"{name}_state_due", c.state, c.due_at, c.action_id)
    # claim_due: expired leases (to reclaim, or to park after the last attempt).
    claimed = c.state == "claimed"
    Index(f"{name}_leases", c.lease_expires_at, postgresql_where=claimed, sqlite_where=claimed)
    Index(f"{name}_due", c.due_at, c.action_id)  # list()
    Index(f"{name}_opportunity_state", c.opportunity_id, c.state)  # cancel_for_opportunity
    Index(f"{name}_rule_state_due", c.rule_id, c.state, c.due_at, c.action_id)  # cancel_for_rule
    Index(f"{name}_state_finished", c.state, c.finished_at)  # purge_finished
    return table


def _audit(metadata: MetaData, name: str, schema: str | None) -> Table:
    table = Table(
        name,
        metadata,
        # Insertion order among entries with one time; INTEGER PRIMARY KEY is SQLite's rowid.
        Column(
            "seq",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        _id("entry_id", nullable=False),
        Column("subject", String(16), nullable=False),
        _id("subject_id", nullable=False),
        Column("change", String(40), nullable=False),
        _id("actor", nullable=False),
        Column("at", UtcDateTime, nullable=False),
        Column("before", Document),
        Column("after", Document),
        Column("note", Text),
        schema=schema,
    )
    c = table.c
    Index(f"{name}_subject_at", c.subject, c.at, c.seq)
    Index(f"{name}_subject_id_at", c.subject_id, c.at, c.seq)
    Index(f"{name}_at", c.at, c.seq)
    return table


def _counters(metadata: MetaData, name: str, schema: str | None) -> Table:
    return Table(
        name,
        metadata,
        Column("name", String(_KEY), nullable=False),
        Column("value", BigInteger, nullable=False),
        PrimaryKeyConstraint("name", name=f"{name}_pkey"),
        schema=schema,
    )


def _job_slots(metadata: MetaData, name: str, schema: str | None) -> Table:
    table = Table(
        name,
        metadata,
        Column("job", String(_KEY), nullable=False),
        Column("slot", String(_KEY), nullable=False),
        Column("state", String(16), nullable=False),
        Column("owner", String(_KEY), nullable=False),
        Column("token", String(64), nullable=False),
        Column("claimed_at", UtcDateTime, nullable=False),
        Column("lease_until", UtcDateTime, nullable=False),
        Column("expires_at", UtcDateTime, nullable=False),
        Column("attempts", BigInteger, nullable=False),
        Column("finished_at", UtcDateTime),
        Column("counts", Document),
        Column("error", Text),
        PrimaryKeyConstraint("job", "slot", name=f"{name}_pkey"),
        schema=schema,
    )
    Index(f"{name}_expires", table.c.expires_at)  # purge_expired
    return table


def _job_marks(metadata: MetaData, name: str, schema: str | None) -> Table:
    table = Table(
        name,
        metadata,
        Column("key", String(_KEY), nullable=False),
        Column("expires_at", UtcDateTime, nullable=False),
        Column("marked_at", UtcDateTime, nullable=False),
        PrimaryKeyConstraint("key", name=f"{name}_pkey"),
        schema=schema,
    )
    Index(f"{name}_expires", table.c.expires_at)  # purge_expired
    return table


def build_tables(prefix: str = DEFAULT_PREFIX, schema: str | None = None) -> Tables:
    """The backend's tables named ``<prefix>activities``, ``<prefix>rules``,
    ``<prefix>scheduled_actions``, ``<prefix>counters``, ``<prefix>audit``,
    ``<prefix>job_slots`` and ``<prefix>job_marks`` (in ``schema`` when given)."""
    prefix = checked_prefix(prefix)
    metadata = MetaData(schema=schema)
    return Tables(
        metadata=metadata,
        prefix=prefix,
        schema=schema,
        activities=_activities(metadata, f"{prefix}activities", schema),
        rules=_rules(metadata, f"{prefix}rules", schema),
        scheduled=_scheduled(metadata, f"{prefix}scheduled_actions", schema),
        counters=_counters(metadata, f"{prefix}counters", schema),
        audit=_audit(metadata, f"{prefix}audit", schema),
        job_slots=_job_slots(metadata, f"{prefix}job_slots", schema),
        job_marks=_job_marks(metadata, f"{prefix}job_marks", schema),
    )
