"""Alembic's environment for leadflow's SQL schema, configured by the caller, never by a file.

:func:`leadflow.stores.sql.schema.migrate` runs the migrations on a connection it already holds
in a transaction (``config.attributes["connection"]``) for the tables of one prefix and schema
(``config.attributes["tables"]``); the version table is ``<prefix>alembic_version`` in the same
schema. The revisions receive ``prefix`` and ``schema`` as keyword arguments.
"""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]
tables = config.attributes["tables"]

context.configure(
    connection=connection,
    target_metadata=tables.metadata,
    version_table=tables.version_table,
    version_table_schema=tables.schema,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations(prefix=tables.prefix, schema=tables.schema)
