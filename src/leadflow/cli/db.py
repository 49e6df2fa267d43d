"""``leadflow db``: create or migrate the schema (SQL) or indexes (MongoDB), and seed the
default rules. Both commands are idempotent: running them twice changes nothing."""

from __future__ import annotations

from typing import Any

import click

from ..rules import default_rules
from ..runtime import LeadFlow
from ._base import LeadflowCommand, LeadflowGroup, fail
from .integrations import log_integrations
from .options import store_options
from .stores import OpenStore, opened, parse_target

__all__ = ["db"]


@click.group("db", cls=LeadflowGroup)
def db() -> None:
    """Create and migrate leadflow's tables (SQL) or indexes (MongoDB)."""


def _check_target(url: str) -> None:
    if parse_target(url).kind == "memory":
        fail(
            "an in-memory store has nothing to create: give a sqlite:///, postgresql+psycopg:// "
            "or mongodb:// URL"
        )


def _report_schema(store: OpenStore, before: str | None) -> None:
    if store.target.kind == "sql":
        from ..stores.sql import current_revision

        after = current_revision(store.handle)
        if before == after:
            click.echo(f"schema: at revision {after} already")
        else:
            click.echo(f"schema: revision {before or '(none)'} -> {after}")
    else:
        click.echo("indexes: created where missing (every index leadflow's queries use)")


def _revision_before(url: str, prefix: str | None, schema: str | None) -> str | None:
    if parse_target(url).kind != "sql":
        return None
    from ..stores.sql import current_revision

    with opened(
        url, create=False, prefix=prefix, schema=schema, check=False, must_exist=False
    ) as store:
        revision: Any = current_revision(store.handle)
        return revision if isinstance(revision, str) else None


@db.command("init", cls=LeadflowCommand)
@store_options(required=True)
@click.option("--no-rules", is_flag=True, help="Do not add the default rules.")
def init(url: str, prefix: str | None, schema: str | None, no_rules: bool) -> None:
    """Create the schema and indexes and add the default rules to an empty rule store.

    Running it again changes nothing: the schema is at the newest revision already, and rules
    are added only when the store holds none (a rule an admin deleted stays deleted).
    """
    _check_target(url)
    before = _revision_before(url, prefix, schema)
    with opened(url, create=True, prefix=prefix, schema=schema) as store:
        _report_schema(store, before)
        if no_rules:
            return
        existing = store.storage.rules.list()
        if existing:
            click.echo(f"rules: the store holds {len(existing)} rule(s); none added")
            return
        flow = LeadFlow(store.storage, log_integrations())
        # Race-safe: another `db init` (or replica) seeding at the same time is no error.
        defaults = default_rules()
        added = flow.rules.ensure_defaults(defaults)
        if len(added) == len(defaults):
            click.echo(f"rules: added the {len(added)} default rules")
        else:
            click.echo(
                f"rules: added {len(added)} of the {len(defaults)} default rules (the others "
                "were added at the same time by another process)"
            )


@db.command("upgrade", cls=LeadflowCommand)
@store_options(required=True)
def upgrade(url: str, prefix: str | None, schema: str | None) -> None:
    """Bring the schema (SQL) or the indexes (MongoDB) to what this version of leadflow uses.

    Safe to run at every deployment, from several processes at once; rules are left alone.
    """
    _check_target(url)
    before = _revision_before(url, prefix, schema)
    with opened(url, create=True, prefix=prefix, schema=schema) as store:
        _report_schema(store, before)
