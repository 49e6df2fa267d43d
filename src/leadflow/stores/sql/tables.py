"""The tables and indexes of the SQL backend, built for one table-name prefix and schema.

Every name the backend creates (tables, indexes, constraints, Alembic's version table) starts
with the prefix (``leadflow_`` by default), so leadflow can share a host's database, and on
PostgreSQL the tables may live in a schema the host chooses. Index names repeat the prefix
because PostgreSQL keeps index names per schema, not per table.

Each index serves named queries (see the comments and ``docs/sql.md`` for the plans). Partial
indexes keep open activities (``completed_date IS NULL``; a cancelled one stays there, the
queries leave it out) and live scheduled actions apart from
the history that grows forever, so the work lists cost what they return.
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
    and_,
)

from ...errors import InvalidInputError
from .columns import id_column as _id
from .completion_days import completion_days
from .fact_tables import arrivals, completions, lead_contacts, status_changes
from .types import ActionTypeOf, Document, UtcDateTime

__all__ = ["DEFAULT_PREFIX", "FINISHED_STATES", "Tables", "build_tables", "checked_prefix"]

FINISHED_STATES: Final = ("done", "cancelled")
"""The states ``purge_finished`` deletes, in the order its query and the partial index it
reads (``<prefix>scheduled_actions_finished``) both name them: SQLite uses a partial index only
for a query that repeats the index's terms."""

DEFAULT_PREFIX: Final = "leadflow_"
_PREFIX = re.compile(r"^(?:[a-z_][a-z0-9_]{0,29})?\Z")
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
    stamps: Table
    job_values: Table
    sequences: Table
    enrollments: Table
    enrollment_steps: Table
    arrivals: Table
    status_changes: Table
    completions: Table
    lead_contacts: Table
    completion_days: Table

    @property
    def version_table(self) -> str:
        """Alembic's version table (prefixed like the others)."""
        return f"{self.prefix}alembic_version"


def _activities(metadata: MetaData, name: str, schema: str | None, sqlite: bool) -> Table:
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
        Column("cancelled_at", UtcDateTime),
        _id("cancelled_by"),
        Column("cancel_reason", Text),
        _id("automation_rule_id"),  # metadata.automationRuleId, for its index
        Column("meta", Document, nullable=False),  # the whole metadata document
        PrimaryKeyConstraint("activity_id", name=f"{name}_pkey"),
        schema=schema,
    )
    c = table.c
    is_open = c.completed_date.is_(None)
    # At most one open activity per open key: the atomic duplicate protection of `add`.
    # Completing or cancelling the holder frees the key.
    holds_key = and_(c.completed_date.is_(None), c.cancelled_at.is_(None))
    # On SQLite only the activities with a key (revision 0017): a NULL never conflicts, and
    # each entry is a page of the WAL at the commit. A read of a key (=, IN) implies it.
    Index(
        f"{name}_open_key",
        c.open_key,
        unique=True,
        postgresql_where=holds_key,
        sqlite_where=and_(c.open_key.is_not(None), holds_key),
    )
    # The seed's compound index: one opportunity's activities by type (statistics). Not on
    # SQLite (revision 0018): the opportunity's range of `_opportunity_created` serves the
    # same reads, an opportunity having a few activities, and each b-tree an activity enters
    # is a page of the WAL at every commit.
    if not sqlite:
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
    # One rep's part of an opportunity. Kept on SQLite too: without it SQLite's planner may
    # take `_assignee_created` for this read (every activity of the rep) rather than the
    # opportunity's range of `_opportunity_created`, depending on the data.
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
    # On SQLite only the automated activities (revision 0018): a read of a rule's (=)
    # implies it, and an activity created by hand enters one b-tree fewer.
    automated = c.automation_rule_id.is_not(None)
    Index(
        f"{name}_rule_created",
        c.automation_rule_id,
        c.created_at,
        c.activity_id,
        sqlite_where=automated,
    )
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
        Column("rule_version", BigInteger),
        Column("action_index", BigInteger, nullable=False),
        _id("opportunity_id"),
        _id("activity_id"),
        _id("enrollment_id"),  # a sequence step's (revision 0007)
        Column("step_id", String(64)),
        Column("partition", Integer, nullable=False, server_default="0"),
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
    # The seed's state/due index: list(state). On PostgreSQL without the claimed actions
    # (revision 0019): the claim's row version of every action entered it for list(claimed)
    # alone, which reads the few claimed actions from `_leases` below and sorts them.
    Index(
        f"{name}_state_due",
        c.state,
        c.due_at,
        c.action_id,
        postgresql_where=c.state != "claimed",
    )
    # claim_due: the pending actions in due order, and within one partition (revision 0002).
    # Partial, so that a claim never steps over finished rows: after ANALYZE has seen a backlog
    # all pending, PostgreSQL would otherwise read the due-order index below and filter on the
    # state, stepping over every row the drain finished so far (each claim slower than the last).
    pending = c.state == "pending"
    Index(
        f"{name}_pending_due",
        c.due_at,
        c.action_id,
        postgresql_where=pending,
        sqlite_where=pending,
    )
    Index(
        f"{name}_partition_pending_due",
        c.partition,
        c.due_at,
        c.action_id,
        postgresql_where=pending,
        sqlite_where=pending,
    )
    # claim_due(action_types=...): each type's pending actions in due order, and the
    # deliveries' (a NULL type), one index range per type (revision 0004).
    Index(
        f"{name}_type_pending_due",
        ActionTypeOf(c.action),
        c.due_at,
        c.action_id,
        postgresql_where=pending,
        sqlite_where=pending,
    )
    # claim_due: expired leases (to reclaim, or to park after the last attempt).
    claimed = c.state == "claimed"
    Index(f"{name}_leases", c.lease_expires_at, postgresql_where=claimed, sqlite_where=claimed)
    # list() of every state merges each state's first actions from `_state_due` (revision
    # 0016 dropped the due-time index over every row: each of an action's writes paid for it).
    # cancel_for_opportunity, cancel_for_rule (pending actions only) and purge_finished (done
    # or cancelled ones): partial (revision 0015), so that the two writes of every action's
    # run (pending -> claimed -> done) add no entry to the first two and the claim none to the
    # third. Each write of a row makes a new version of it, which enters every index whose
    # predicate it meets: before 0015 these three indexes took both versions.
    # ``IS NOT NULL`` keeps the claims, which name no opportunity or rule, off these two: a
    # narrow index of every pending action is a tempting thing for the planner to read whole
    # and sort (tests/test_sql_claim_plan.py).
    for column in (c.opportunity_id, c.rule_id):
        named = and_(pending, column.isnot(None))
        Index(
            f"{name}_{column.name.removesuffix('_id')}_pending",
            column,
            postgresql_where=named,
            sqlite_where=named,
        )
    finished = c.state.in_(FINISHED_STATES)
    Index(
        f"{name}_finished",
        c.state,
        c.finished_at,
        postgresql_where=finished,
        sqlite_where=finished,
    )
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


def _stamps(metadata: MetaData, name: str, schema: str | None) -> Table:
    # Change stamps (revision 0003): one row per stamped set, ``rules`` bumped in the same
    # transaction as every rule write, ``sequences`` (revision 0007) with every sequence
    # write; read by primary key.
    return Table(
        name,
        metadata,
        Column("name", String(64), nullable=False),
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


def _job_values(metadata: MetaData, name: str, schema: str | None) -> Table:
    # A job's small durable values (revision 0005), e.g. the stale job's cursor; read and
    # compare-and-set by primary key.
    return Table(
        name,
        metadata,
        Column("key", String(_KEY), nullable=False),
        Column("value", Text, nullable=False),
        PrimaryKeyConstraint("key", name=f"{name}_pkey"),
        schema=schema,
    )


def _sequences(metadata: MetaData, name: str, schema: str | None) -> Table:
    # Sequence definitions (revision 0007): every version of each, the definition as its
    # document; the primary key serves get (one version, or the highest), versions and list.
    return Table(
        name,
        metadata,
        _id("sequence_id", nullable=False),
        Column("version", BigInteger, nullable=False),
        Column("status", String(16), nullable=False),
        Column("definition", Document, nullable=False),
        Column("created_at", UtcDateTime),
        PrimaryKeyConstraint("sequence_id", "version", name=f"{name}_pkey"),
        schema=schema,
    )


def _enrollments(metadata: MetaData, name: str, schema: str | None) -> Table:
    # Enrollments (revision 0007): the record as its document beside the columns the
    # queries and the checked writes use (revision: compare-and-set).
    table = Table(
        name,
        metadata,
        _id("enrollment_id", nullable=False),
        _id("sequence_id", nullable=False),
        Column("sequence_version", BigInteger, nullable=False),
        _id("opportunity_id", nullable=False),
        Column("state", String(16), nullable=False),
        Column("revision", BigInteger, nullable=False),
        Column("enrolled_at", UtcDateTime, nullable=False),
        Column("updated_at", UtcDateTime),
        Column("ended_at", UtcDateTime),
        Column("document", Document, nullable=False),
        # The step records ever appended (revision 0011): the position of the newest in
        # <prefix>enrollment_steps, which keeps the newest 200 (the document has no history).
        Column("steps", BigInteger, nullable=False, server_default="0"),
        PrimaryKeyConstraint("enrollment_id", name=f"{name}_pkey"),
        schema=schema,
    )
    c = table.c
    active = c.state == "active"
    # At most one active enrollment per sequence and opportunity: the atomic check of enroll.
    Index(
        f"{name}_one_active",
        c.sequence_id,
        c.opportunity_id,
        unique=True,
        postgresql_where=active,
        sqlite_where=active,
    )
    # active_for and list(opportunity_id=...), oldest first.
    Index(f"{name}_opportunity_enrolled", c.opportunity_id, c.enrolled_at, c.enrollment_id)
    Index(f"{name}_sequence_enrolled", c.sequence_id, c.enrolled_at, c.enrollment_id)
    Index(f"{name}_state_enrolled", c.state, c.enrolled_at, c.enrollment_id)
    Index(f"{name}_enrolled", c.enrolled_at, c.enrollment_id)  # list()
    return table


def _enrollment_steps(metadata: MetaData, name: str, schema: str | None) -> Table:
    # An enrollment's step records (revision 0011), one row each at its position (1 for its
    # first record ever): a step appends its records and deletes those 200 or more behind the
    # newest, whatever the history's length; a read of the history reads the enrollment's range
    # of the primary key.
    return Table(
        name,
        metadata,
        _id("enrollment_id", nullable=False),
        Column("position", BigInteger, nullable=False),
        Column("record", Document, nullable=False),
        PrimaryKeyConstraint("enrollment_id", "position", name=f"{name}_pkey"),
        schema=schema,
    )


def build_tables(
    prefix: str = DEFAULT_PREFIX, schema: str | None = None, *, dialect: str | None = None
) -> Tables:
    """The backend's tables named ``<prefix>activities``, ``<prefix>rules``,
    ``<prefix>scheduled_actions``, ``<prefix>counters``, ``<prefix>audit``,
    ``<prefix>job_slots``, ``<prefix>job_marks``, ``<prefix>stamps``, ``<prefix>job_values``,
    ``<prefix>sequences``, ``<prefix>enrollments``, ``<prefix>enrollment_steps``, and the
    analytic facts ``<prefix>lead_arrivals``, ``<prefix>status_changes``,
    ``<prefix>completions``, ``<prefix>lead_contacts`` and ``<prefix>completion_days`` (in
    ``schema`` when given). ``dialect`` (``"sqlite"``): the indexes of that database only
    (revision 0018 dropped two of the activities' on SQLite); by default PostgreSQL's."""
    prefix = checked_prefix(prefix)
    metadata = MetaData(schema=schema)
    return Tables(
        metadata=metadata,
        prefix=prefix,
        schema=schema,
        activities=_activities(metadata, f"{prefix}activities", schema, dialect == "sqlite"),
        rules=_rules(metadata, f"{prefix}rules", schema),
        scheduled=_scheduled(metadata, f"{prefix}scheduled_actions", schema),
        counters=_counters(metadata, f"{prefix}counters", schema),
        audit=_audit(metadata, f"{prefix}audit", schema),
        job_slots=_job_slots(metadata, f"{prefix}job_slots", schema),
        job_marks=_job_marks(metadata, f"{prefix}job_marks", schema),
        stamps=_stamps(metadata, f"{prefix}stamps", schema),
        job_values=_job_values(metadata, f"{prefix}job_values", schema),
        sequences=_sequences(metadata, f"{prefix}sequences", schema),
        enrollments=_enrollments(metadata, f"{prefix}enrollments", schema),
        enrollment_steps=_enrollment_steps(metadata, f"{prefix}enrollment_steps", schema),
        arrivals=arrivals(metadata, f"{prefix}lead_arrivals", schema),
        status_changes=status_changes(metadata, f"{prefix}status_changes", schema),
        completions=completions(metadata, f"{prefix}completions", schema),
        lead_contacts=lead_contacts(metadata, f"{prefix}lead_contacts", schema),
        completion_days=completion_days(metadata, f"{prefix}completion_days", schema),
    )
