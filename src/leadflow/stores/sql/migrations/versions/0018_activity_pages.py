"""SQLite: fewer b-trees an event's rows enter (issue 17: a SQLite file's ``handle``).

A commit writes every page it changed to the WAL, one 4 KiB frame each, at least one per table
and index a row enters: ``handle`` wrote about 36-40 an event, 16 b-trees for its activity. On
SQLite (PostgreSQL is unchanged: an index entry there is not a page of the WAL):

- ``<prefix>activities_opportunity_type`` (opportunity, type) is dropped. Its read
  (statistics of one opportunity) reads the opportunity's range of
  ``<prefix>activities_opportunity_created`` instead, checking the type on each row: an
  opportunity has a few activities. (``_opportunity_assignee`` is kept: without it SQLite's
  planner may read a rep's every activity through ``_assignee_created`` for one rep's part of
  an opportunity, depending on the data.)
- ``<prefix>activities_rule_created`` takes only the automated activities
  (``automation_rule_id IS NOT NULL``; a read of a rule's activities, by equality, implies
  it): an activity created by hand no longer enters it;
- ``<prefix>lead_arrivals_source_arrived`` and ``_owner_arrived`` take only the arrivals with a
  source, and with an owner (the reads of those, ``IN``, imply it): an arrival whose event
  names neither enters two b-trees fewer.

With the benchmark's rule (an automated activity and an arrival without source or owner per
event) about 5 frames fewer an event (docs/benchmarks.md).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_DROPPED = {
    "opportunity_type": ["opportunity_id", "activity_type"],
}
_RULE = ["automation_rule_id", "created_at", "activity_id"]
_ARRIVALS = {"source_arrived": "source", "owner_arrived": "owner"}


def _index(table: str, name: str, columns: list[str], where: str | None) -> None:
    """``<table>_<name>`` made again over ``columns`` (partial when ``where``)."""
    index = f"{table}_{name}"
    op.drop_index(index, table_name=table)
    op.create_index(index, table, columns, sqlite_where=text(where) if where is not None else None)


def upgrade(*, prefix: str, schema: str | None) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    activities, arrivals = f"{prefix}activities", f"{prefix}lead_arrivals"
    for name in _DROPPED:
        op.drop_index(f"{activities}_{name}", table_name=activities)
    _index(activities, "rule_created", _RULE, "automation_rule_id IS NOT NULL")
    for name, column in _ARRIVALS.items():
        _index(arrivals, name, [column, "arrived_at"], f"{column} IS NOT NULL")


def downgrade(*, prefix: str, schema: str | None) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    activities, arrivals = f"{prefix}activities", f"{prefix}lead_arrivals"
    for name, columns in _DROPPED.items():
        op.create_index(f"{activities}_{name}", activities, columns)
    _index(activities, "rule_created", _RULE, None)
    for name, column in _ARRIVALS.items():
        _index(arrivals, name, [column, "arrived_at"], None)
