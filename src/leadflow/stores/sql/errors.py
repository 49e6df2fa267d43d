"""Driver errors in leadflow's tree: the one place that knows SQLAlchemy's and the drivers'
exceptions.

Every public method of every SQL store runs inside :func:`sql_errors` (through the
:func:`translated` decorator), so a caller only ever sees leadflow's documented errors::

    a lost or refused connection (the pool marked it      -> UnavailableError
      invalidated, a disconnect), OperationalError on
      PostgreSQL (server shutting down, admin command,
      statement timeout, serialization failure or
      deadlock), SQLite's "database is locked" / I/O
      errors, InterfaceError, a pool checkout timeout
    IntegrityError                                        -> DuplicateError (the stores tell an
                                                             open-key collision apart by the
                                                             constraint, see violated())
    DataError (a value the column cannot hold, a NUL      -> InvalidInputError naming the input
      character in PostgreSQL text)
    any other SQLAlchemy or driver error                  -> StorageError

The driver's exception is always the ``__cause__``. leadflow's own errors pass through untouched.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final, ParamSpec, TypeVar

from sqlalchemy import exc

from ...errors import (
    DuplicateError,
    InvalidInputError,
    LeadflowError,
    StorageError,
    UnavailableError,
)

__all__ = ["describe", "is_unavailable", "sql_errors", "translated", "violated"]

P = ParamSpec("P")
R = TypeVar("R")

_SQLITE_UNAVAILABLE: Final = (
    "database is locked",
    "database table is locked",
    "unable to open database",
    "disk i/o error",
    "database or disk is full",
    "closed database",
)
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)$")


def describe(error: BaseException) -> str:
    """The first line of ``error``'s message, at most 300 characters."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    return first if len(first) <= 300 else first[:297] + "..."


def _sqlite_module(error: exc.DBAPIError) -> bool:
    return type(error.orig).__module__.startswith("sqlite3")


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached now (retry later)."""
    if isinstance(error, exc.TimeoutError):  # the pool had no connection to give
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated or isinstance(error, exc.InterfaceError):
        return True
    if isinstance(error, exc.OperationalError):
        if not _sqlite_module(error):
            return True  # PostgreSQL: connection, shutdown, timeouts, serialization, deadlock
        message = str(error.orig).lower()
        return any(marker in message for marker in _SQLITE_UNAVAILABLE)
    return False


def violated(error: exc.IntegrityError) -> str | None:
    """What a unique constraint ``error`` reports: the constraint's name on PostgreSQL (e.g.
    ``leadflow_activities_open_key``), ``table.column[, ...]`` on SQLite; None if unknown."""
    orig = error.orig
    diag = getattr(orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if isinstance(name, str) and name:
        return name
    found = _SQLITE_UNIQUE.search(str(orig))
    if found:
        return found.group(1).strip()
    return None


@contextmanager
def sql_errors(subject: str) -> Iterator[None]:
    """Translate what SQLAlchemy and the drivers raise inside the block (see the module's
    table). ``subject`` names the caller's input in an :class:`InvalidInputError`."""
    try:
        yield
    except LeadflowError:
        raise
    except exc.IntegrityError as error:
        raise DuplicateError(
            f"{subject}: a unique constraint refused the write ({violated(error)})"
        ) from error
    except exc.DataError as error:
        raise InvalidInputError(
            f"the database cannot store this value: {describe(error)}", field=subject
        ) from error
    except exc.SQLAlchemyError as error:
        if is_unavailable(error):
            raise UnavailableError(f"the database is unavailable: {describe(error)}") from error
        raise StorageError(f"the database failed: {describe(error)}") from error


def translated(subject: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a store method so that it runs inside :func:`sql_errors` ``(subject)``."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with sql_errors(subject):
                return method(*args, **kwargs)

        return wrapper

    return decorate
