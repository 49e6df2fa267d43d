"""Many rows back as the driver gives them: the analytics' per-lead and per-change reads.

A figure that reads one small row per lead or per status change of a period (a year's
dashboard: 100,000 leads and 300,000 changes at issue 20's scale) paid as much again for
SQLAlchemy's rows as for the driver's fetch (a ``Row`` made per row, a result processor per
value where the column has one). :func:`plain_rows` runs the statement through SQLAlchemy (its
compilation, parameters, events and error wrapping unchanged) and fetches the driver cursor's
tuples: no ``Row`` is made and no result processor runs, so the statement must select values
the caller takes as the driver gives them (integers, strings, NULLs: the times as integer
microseconds, as :meth:`~.analytics_leads.SqlLeads._micros` makes them).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, CursorResult
from sqlalchemy.sql import Executable

__all__ = ["plain_rows"]


def plain_rows(connection: Connection, statement: Executable) -> list[tuple[Any, ...]]:
    """The rows of ``statement`` as the driver's tuples (see the module's docstring)."""
    result = cast(CursorResult[Any], connection.execute(statement))
    try:
        rows: list[tuple[Any, ...]] = list(result.cursor.fetchall())
    finally:
        result.close()
    return rows
