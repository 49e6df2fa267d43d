"""The SQL backend (the ``sql`` extra: SQLAlchemy 2 Core, Alembic, psycopg 3): every storage
port on SQLite (the embedded default: a file, or memory for tests) or PostgreSQL.

One line builds them all::

    storage = sql_storage("sqlite:///leadflow.db")
    storage = sql_storage(engine, schema="crm")  # the host's PostgreSQL engine

Importing :mod:`leadflow` never imports SQLAlchemy; only importing this package does. See
``docs/sql.md`` for the tables, their indexes and the query plans, migrations and errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import URL, Engine

from ...ports import Storage
from .activities import SqlActivityRepository
from .analytics import SqlAnalyticsStore
from .database import SqlDatabase, SqlUnitOfWork, engine_from_url
from .errors import sql_errors
from .rules import SqlRuleRepository
from .scheduled import SqlScheduledActionStore
from .schema import current_revision, head_revision, migrate, upgrade
from .sequences import SqlEnrollmentStore, SqlSequenceRepository
from .support import SqlAuditLog, SqlCounterStore, SqlJobStore
from .tables import DEFAULT_PREFIX, Tables, build_tables

__all__ = [
    "DEFAULT_PREFIX",
    "SqlActivityRepository",
    "SqlAnalyticsStore",
    "SqlAuditLog",
    "SqlCounterStore",
    "SqlDatabase",
    "SqlEnrollmentStore",
    "SqlJobStore",
    "SqlRuleRepository",
    "SqlScheduledActionStore",
    "SqlSequenceRepository",
    "SqlStorage",
    "SqlUnitOfWork",
    "Tables",
    "build_tables",
    "current_revision",
    "engine_from_url",
    "head_revision",
    "migrate",
    "sql_errors",
    "sql_storage",
    "upgrade",
]


@dataclass(frozen=True, slots=True)
class SqlStorage(Storage):
    """A :class:`~leadflow.ports.Storage` on one SQL database, which it also carries
    (``database``: its engine and tables). Call :meth:`close` when done with it."""

    database: SqlDatabase

    def close(self) -> None:
        """Dispose the engine if :func:`sql_storage` made it from a URL (a host's engine is
        left alone). The stores must not be used afterwards."""
        self.database.close()


def sql_storage(
    engine_or_url: Engine | str | URL,
    *,
    prefix: str = DEFAULT_PREFIX,
    schema: str | None = None,
    create: bool = True,
) -> SqlStorage:
    """All the SQL stores on one database (the six of every storage, sequences,
    enrollments and analytic facts), as one :class:`~leadflow.ports.Storage`.

    - ``engine_or_url``: the host's SQLAlchemy ``Engine`` (never disposed here), or a URL:
      ``sqlite:///leadflow.db`` (a file, WAL journaling, 30 s busy timeout), ``sqlite://``
      (in memory: one connection shared by every store and thread), or
      ``postgresql+psycopg://user@host/db`` (``postgres://`` and ``postgresql://`` mean the
      same: psycopg 3). An engine made from a URL is disposed by :meth:`SqlStorage.close`.
    - ``prefix`` starts every table and index name (``leadflow_activities``...): at most 30
      lower-case letters, digits or ``_``; ``schema`` (PostgreSQL only) is the schema the
      tables live in, created when missing.
    - ``create`` (default on) brings the schema to the newest revision (:func:`migrate`):
      idempotent, safe to run at every start and from several processes at once. Turn it off
      when a deployment step runs :func:`upgrade` instead.

    Bad arguments are :class:`~leadflow.InvalidInputError`; a database failure while creating
    the schema is a :class:`~leadflow.StorageError` (:class:`~leadflow.UnavailableError` when
    the database cannot be reached).
    """
    database = SqlDatabase(engine_or_url, prefix=prefix, schema=schema)
    try:
        if create:
            migrate(database)
    except BaseException:
        database.close()
        raise
    return SqlStorage(
        activities=SqlActivityRepository(database),
        rules=SqlRuleRepository(database),
        scheduled=SqlScheduledActionStore(database),
        counters=SqlCounterStore(database),
        audit=SqlAuditLog(database),
        jobs=SqlJobStore(database),
        database=database,
        unit_of_work=SqlUnitOfWork(database),
        sequences=SqlSequenceRepository(database),
        enrollments=SqlEnrollmentStore(database),
        analytics=SqlAnalyticsStore(database),
    )
