"""The completions' indexes of revision 0014, in the order the completions' figures read them:
each assignee's completions by time to complete (the exact median per rep seeks its middle
instead of sorting the period), each automation's by opportunity (its distinct opportunities
counted in a walk, not a sort), each opportunity's completions by time with their automation
and id (a won opportunity's touches, and its last one before the win, from the index alone).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Index, Table, type_coerce

__all__ = ["completion_orders", "spent"]


def spent(table: Table, dialect: str | None = None) -> Any:
    """The time to complete as the ``assignee_spent`` index holds it: ``completed_at -
    created_at`` (SQLite: integer microseconds, typed so for ``dialect`` ``"sqlite"``;
    PostgreSQL: an interval); NULL without a creation time."""
    c = table.c
    if dialect == "sqlite":
        return type_coerce(c.completed_at, BigInteger()) - type_coerce(c.created_at, BigInteger())
    return c.completed_at - c.created_at


def completion_orders(table: Table) -> None:
    """Add revision 0014's indexes to the completions' ``table``."""
    name, c = table.name, table.c
    Index(f"{name}_assignee_spent", c.assigned_to, spent(table), c.completed_at, c.created_at)
    Index(f"{name}_rule_opportunities", c.rule_id, c.opportunity_id, c.completed_at)
    Index(f"{name}_opportunity_touches", c.opportunity_id, c.completed_at, c.rule_id, c.activity_id)
