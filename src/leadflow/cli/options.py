"""Options shared by the commands that open a store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["store_options"]

F = TypeVar("F", bound=Callable[..., Any])


def store_options(*, required: bool) -> Callable[[F], F]:
    """``--url`` (or ``$LEADFLOW_URL``), ``--prefix`` and ``--schema``."""

    def decorate(func: F) -> F:
        func = click.option(
            "--schema",
            default=None,
            help="PostgreSQL schema of the tables (created when missing).",
        )(func)
        func = click.option(
            "--prefix",
            default=None,
            help="Start of every table / collection name (default: leadflow_ for SQL, none "
            "for MongoDB).",
        )(func)
        return click.option(
            "--url",
            envvar="LEADFLOW_URL",
            required=required,
            help="The store: sqlite:///FILE, postgresql+psycopg://USER@HOST/DB, "
            "mongodb://HOST/DB (default: $LEADFLOW_URL).",
        )(func)

    return decorate
