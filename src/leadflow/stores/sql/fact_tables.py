"""The analytic facts' tables (revisions 0008 to 0010, 0013, 0014; on SQLite also 0017 and
0018): lead arrivals, status changes, completed activities and each opportunity's first
contact, with the indexes the analytics read them through (:mod:`.analytics` and its
modules). Part of :func:`~.tables.build_tables`."""

from __future__ import annotations

from sqlalchemy import Column, Index, MetaData, PrimaryKeyConstraint, String, Table

from .columns import id_column as _id
from .completion_orders import completion_orders
from .types import UtcDateTime

__all__ = ["arrivals", "completions", "lead_contacts", "status_changes"]

_LABEL = 128  # a lead source or a status


def arrivals(metadata: MetaData, name: str, schema: str | None) -> Table:
    # Lead arrivals (revision 0008): one per opportunity (the primary key: the first recorded
    # wins); every period query starts from an arrived_at index.
    table = Table(
        name,
        metadata,
        _id("opportunity_id", nullable=False),
        _id("event_id", nullable=False),
        Column("arrived_at", UtcDateTime, nullable=False),
        Column("source", String(_LABEL)),
        _id("owner"),
        PrimaryKeyConstraint("opportunity_id", name=f"{name}_pkey"),
        schema=schema,
        # Revision 0017: small rows read by their key, in its b-tree (a row enters one b-tree
        # instead of a table and its key's index: one page fewer written per arrival).
        sqlite_with_rowid=False,
    )
    c = table.c
    # Revision 0013: with the source and owner, a period's arrivals are its range of the index.
    Index(f"{name}_arrived", c.arrived_at, c.opportunity_id, c.source, c.owner)
    # A source's or an owner's arrivals (``arrivals(sources=..., owners=...)``: IN, which
    # implies IS NOT NULL). On SQLite only the arrivals that have one (revision 0018): one
    # without (an event naming neither) enters two b-trees fewer, a page of the WAL each.
    for column in (c.source, c.owner):
        Index(
            f"{name}_{column.name}_arrived",
            column,
            c.arrived_at,
            sqlite_where=column.is_not(None),
        )
    return table


def status_changes(metadata: MetaData, name: str, schema: str | None) -> Table:
    # Status changes (revision 0008), keyed by event id: the period index for the funnel,
    # and (opportunity, status, time) for the first time an arrival reached a status.
    table = Table(
        name,
        metadata,
        _id("event_id", nullable=False),
        _id("opportunity_id", nullable=False),
        Column("changed_at", UtcDateTime, nullable=False),
        Column("from_status", String(_LABEL)),
        Column("to_status", String(_LABEL), nullable=False),
        PrimaryKeyConstraint("event_id", name=f"{name}_pkey"),
        schema=schema,
    )
    c = table.c
    Index(f"{name}_changed", c.changed_at, c.event_id)
    Index(f"{name}_opportunity_status", c.opportunity_id, c.to_status, c.changed_at)
    # Revision 0010: the funnel reads the period's changes from an index alone.
    Index(f"{name}_changed_paths", c.changed_at, c.opportunity_id, c.to_status, c.event_id)
    return table


def completions(metadata: MetaData, name: str, schema: str | None) -> Table:
    # Completed activities (revision 0008), keyed by activity id: the period index, the
    # assignee's, and (opportunity, type, time) for an arrival's first contact.
    table = Table(
        name,
        metadata,
        _id("activity_id", nullable=False),
        _id("opportunity_id", nullable=False),
        Column("activity_type", String(32), nullable=False),
        Column("completed_at", UtcDateTime, nullable=False),
        _id("assigned_to"),
        Column("created_at", UtcDateTime),
        Column("due_at", UtcDateTime),
        Column("outcome", String(32)),
        _id("rule_id"),
        PrimaryKeyConstraint("activity_id", name=f"{name}_pkey"),
        schema=schema,
    )
    c = table.c
    Index(f"{name}_completed", c.completed_at, c.activity_id)
    Index(f"{name}_opportunity_type", c.opportunity_id, c.activity_type, c.completed_at)
    # Revision 0010: the period's sums read from an index alone (every summed column), and
    # each assignee's / automation's range of the period with its creation times (medians).
    Index(
        f"{name}_completed_sums",
        c.completed_at,
        c.assigned_to,
        c.rule_id,
        c.created_at,
        c.due_at,
        c.outcome,
        c.opportunity_id,
    )
    for key in ("assigned_to", "rule_id"):
        Index(
            f"{name}_{'assignee' if key == 'assigned_to' else 'rule'}_times",
            c[key],
            c.completed_at,
            c.created_at,
            c.due_at,
            c.outcome,
            c.opportunity_id,
        )
    completion_orders(table)  # revision 0014
    return table


def lead_contacts(metadata: MetaData, name: str, schema: str | None) -> Table:
    # Each opportunity's first contact (revision 0009): the earliest, by (completed_at,
    # activity_id), of its completions of a contact type, kept as they are recorded; the lead
    # figures join a period's arrivals to it by the primary key.
    return Table(
        name,
        metadata,
        _id("opportunity_id", nullable=False),
        Column("contacted_at", UtcDateTime, nullable=False),
        _id("activity_id", nullable=False),
        _id("assigned_to"),
        _id("rule_id"),
        PrimaryKeyConstraint("opportunity_id", name=f"{name}_pkey"),
        schema=schema,
    )
