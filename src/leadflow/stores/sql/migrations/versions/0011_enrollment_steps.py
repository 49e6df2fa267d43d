"""Sequence steps flat in the history (issue 18): an enrollment's step records as rows of
``enrollment_steps`` (``(enrollment_id, position)``, position 1 for its first record ever)
instead of inside its document, and ``steps`` on the enrollment, the position of its newest
record. Existing enrollments' histories are moved out of their documents into rows (positions
1 .. n, ``steps`` n); downgrading puts them back.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from leadflow.stores.sql.types import Document

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_CHUNK = 500


def _tables(prefix: str, schema: str | None) -> tuple[sa.Table, sa.Table]:
    metadata = sa.MetaData(schema=schema)
    enrollments = sa.Table(
        f"{prefix}enrollments",
        metadata,
        sa.Column("enrollment_id", sa.String(128), primary_key=True),
        sa.Column("document", Document()),
        sa.Column("steps", sa.BigInteger()),
    )
    steps = sa.Table(
        f"{prefix}enrollment_steps",
        metadata,
        sa.Column("enrollment_id", sa.String(128)),
        sa.Column("position", sa.BigInteger()),
        sa.Column("record", Document()),
    )
    return enrollments, steps


def _chunks(connection: sa.Connection, enrollments: sa.Table) -> Any:
    """The enrollments' ids and documents, a chunk at a time, in the order of their ids."""
    c = enrollments.c
    after = ""
    while True:
        rows = connection.execute(
            sa.select(c.enrollment_id, c.document)
            .where(c.enrollment_id > after)
            .order_by(c.enrollment_id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


def upgrade(*, prefix: str, schema: str | None) -> None:
    name = f"{prefix}enrollment_steps"
    op.create_table(
        name,
        sa.Column("enrollment_id", sa.String(128), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("record", Document(), nullable=False),
        sa.PrimaryKeyConstraint("enrollment_id", "position", name=f"{name}_pkey"),
        schema=schema,
    )
    op.add_column(
        f"{prefix}enrollments",
        sa.Column("steps", sa.BigInteger(), nullable=False, server_default="0"),
        schema=schema,
    )
    enrollments, steps = _tables(prefix, schema)
    connection = op.get_bind()
    for rows in _chunks(connection, enrollments):
        records: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for enrollment_id, document in rows:
            history = document.pop("history", None) or []
            records += [
                {"enrollment_id": enrollment_id, "position": n, "record": record}
                for n, record in enumerate(history, start=1)
            ]
            changed.append({"w_id": enrollment_id, "document": document, "steps": len(history)})
        if records:
            connection.execute(steps.insert(), records)
        connection.execute(
            enrollments.update()
            .where(enrollments.c.enrollment_id == sa.bindparam("w_id"))
            .values(document=sa.bindparam("document"), steps=sa.bindparam("steps")),
            changed,
        )


def downgrade(*, prefix: str, schema: str | None) -> None:
    enrollments, steps = _tables(prefix, schema)
    connection = op.get_bind()
    for rows in _chunks(connection, enrollments):
        ids = [enrollment_id for enrollment_id, _ in rows]
        histories: dict[str, list[Any]] = {enrollment_id: [] for enrollment_id in ids}
        for enrollment_id, record in connection.execute(
            sa.select(steps.c.enrollment_id, steps.c.record)
            .where(steps.c.enrollment_id.in_(ids))
            .order_by(steps.c.enrollment_id, steps.c.position)
        ):
            histories[enrollment_id].append(record)
        connection.execute(
            enrollments.update()
            .where(enrollments.c.enrollment_id == sa.bindparam("w_id"))
            .values(document=sa.bindparam("document")),
            [
                {
                    "w_id": enrollment_id,
                    "document": {**document, "history": histories[enrollment_id]},
                }
                for enrollment_id, document in rows
            ],
        )
    with op.batch_alter_table(f"{prefix}enrollments", schema=schema) as batch:
        batch.drop_column("steps")
    op.drop_table(f"{prefix}enrollment_steps", schema=schema)
