"""Creating and versioning the schema: Alembic migrations shipped in the package.

:func:`upgrade` (what ``leadflow db upgrade`` will call) brings a database to the newest
revision; running it again changes nothing. :func:`migrate` does the same for a
:class:`~.database.SqlDatabase` and is what ``sql_storage(create=True)`` runs. The revisions
live in :mod:`leadflow.stores.sql.migrations` (``versions/``); Alembic's version table is
``<prefix>alembic_version``, next to the tables.

Concurrent upgrades are serialized, and the migration runs once: on PostgreSQL the migration
transaction first takes a transaction-scoped advisory lock (``pg_advisory_xact_lock``) named
after the schema and prefix (DDL is transactional there, so a failed upgrade leaves nothing
half done); on SQLite it runs inside ``BEGIN IMMEDIATE``, the database's write lock, which the
others wait for (the busy timeout). Under the lock the revision is read again: a process that
waited while another migrated finds the newest revision and changes nothing. The process that
migrates logs ``schema migrated from <revision> to <revision>`` (INFO, ``leadflow.sql``).
"""

from __future__ import annotations

import functools
import logging
import zlib
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, text

from .database import SqlDatabase
from .errors import sql_errors
from .tables import DEFAULT_PREFIX

__all__ = ["MIGRATIONS", "current_revision", "head_revision", "migrate", "upgrade"]

MIGRATIONS: Final = Path(__file__).with_name("migrations")

log = logging.getLogger("leadflow.sql")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision the package ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection, database: SqlDatabase) -> str | None:
    context = MigrationContext.configure(
        connection,
        opts={
            "version_table": database.tables.version_table,
            "version_table_schema": database.tables.schema,
        },
    )
    return context.get_current_revision()


def current_revision(database: SqlDatabase) -> str | None:
    """The revision the database is at (None before the first migration)."""
    with sql_errors("schema"), database.read() as connection:
        return _current(connection, database)


def migrate(database: SqlDatabase, revision: str = "head") -> str:
    """Bring ``database``'s tables (its prefix and schema) to ``revision`` (default: the newest
    one; an older one only upgrades, for staged roll-outs and tests); returns it.

    Idempotent: at that revision already, only the version is read. On PostgreSQL the
    schema is created when missing. Driver failures are :class:`~leadflow.StorageError` (or
    :class:`~leadflow.UnavailableError`)."""
    head = head_revision() if revision == "head" else revision
    if current_revision(database) == head:
        return head
    tables = database.tables
    with sql_errors("schema"), database.write() as connection:
        if database.dialect == "postgresql":
            key = zlib.crc32(f"leadflow:{tables.schema}:{tables.prefix}".encode())
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            if tables.schema is not None:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{tables.schema}"'))
        # Under the lock: another process may have migrated while this one waited for it.
        current = _current(connection, database)
        if current == head:
            return head
        config = _config()
        config.attributes["connection"] = connection
        config.attributes["tables"] = tables
        command.upgrade(config, head)
    log.info(
        "schema migrated from %s to %s",
        current or "(none)",
        head,
        extra={"schema": tables.schema, "prefix": tables.prefix},
    )
    return head


def upgrade(
    engine_or_url: Engine | str | URL,
    *,
    prefix: str = DEFAULT_PREFIX,
    schema: str | None = None,
) -> str:
    """Bring the leadflow tables with ``prefix`` (in ``schema``, PostgreSQL only) of the
    database at ``engine_or_url`` to the newest revision and return it. Running it twice
    changes nothing. An engine passed in is not disposed; one made from a URL is."""
    database = SqlDatabase(engine_or_url, prefix=prefix, schema=schema)
    try:
        return migrate(database)
    finally:
        database.close()
