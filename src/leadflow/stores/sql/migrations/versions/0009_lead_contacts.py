"""Analytics at scale (issue 20): ``lead_contacts``, each opportunity's first contact (its
earliest completion of a call, email or meeting, by ``(completed_at, activity_id)``), kept as
completions are recorded so that the lead figures join a period's arrivals to it by the
primary key instead of ranking the completions; filled here from the completions already
recorded.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.stores.sql.types import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = 128


def _name(table: str, schema: str | None) -> str:
    quote = op.get_context().dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(table)}" if schema else quote(table)


def upgrade(*, prefix: str, schema: str | None) -> None:
    contacts = f"{prefix}lead_contacts"
    op.create_table(
        contacts,
        sa.Column("opportunity_id", sa.String(_ID), nullable=False),
        sa.Column("contacted_at", UtcDateTime(), nullable=False),
        sa.Column("activity_id", sa.String(_ID), nullable=False),
        sa.Column("assigned_to", sa.String(_ID)),
        sa.Column("rule_id", sa.String(_ID)),
        sa.PrimaryKeyConstraint("opportunity_id", name=f"{contacts}_pkey"),
        schema=schema,
    )
    completions = _name(f"{prefix}completions", schema)
    op.execute(
        f"INSERT INTO {_name(contacts, schema)} "
        "(opportunity_id, contacted_at, activity_id, assigned_to, rule_id) "
        "SELECT opportunity_id, completed_at, activity_id, assigned_to, rule_id FROM ("
        "SELECT opportunity_id, completed_at, activity_id, assigned_to, rule_id, "
        "row_number() OVER (PARTITION BY opportunity_id ORDER BY completed_at, activity_id) "
        f"AS n FROM {completions} WHERE activity_type IN ('call', 'email', 'meeting')"
        ") AS ranked WHERE n = 1"
    )


def downgrade(*, prefix: str, schema: str | None) -> None:
    op.drop_table(f"{prefix}lead_contacts", schema=schema)
