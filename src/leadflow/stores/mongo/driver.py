"""pymongo's errors in leadflow's tree: the one place that knows the driver's exceptions.

Every public method of every Mongo store runs inside :func:`driver_errors` (through the
:func:`translated` decorator), so a caller only ever sees leadflow's documented errors::

    ConnectionFailure (AutoReconnect, NetworkTimeout,       -> UnavailableError
      ServerSelectionTimeoutError, NotPrimaryError...),
      ExecutionTimeout, a transient server code
    DuplicateKeyError                                       -> DuplicateError (the stores tell an
                                                               open-key collision apart first)
    a server limit (16 MB, 100 nesting levels: codes 15,    -> InvalidInputError naming the
      10334, 17419, 17420, 17280), DocumentTooLarge,           document
      InvalidDocument (NUL in a key...), an integer
      beyond 64 bits (OverflowError), RecursionError
    any other PyMongoError or BSONError                     -> StorageError

The driver's exception is always the ``__cause__``. leadflow's own errors pass through untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, ParamSpec, TypeVar

from bson.errors import BSONError, InvalidDocument, InvalidStringData
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
)

from ...errors import (
    DuplicateError,
    InvalidInputError,
    LeadflowError,
    StorageError,
    UnavailableError,
)

__all__ = ["LIMIT_CODES", "TRANSIENT_CODES", "driver_errors", "duplicate_fields", "translated"]

P = ParamSpec("P")
R = TypeVar("R")

LIMIT_CODES: Final = frozenset({15, 10334, 17280, 17419, 17420})
"""Server codes for input beyond MongoDB's limits: Overflow (more than 100 levels of nesting),
BSONObjectTooLarge (over 16 MB), KeyTooLong (an index key over 1 KB, servers before 4.2), and a
document grown past 16 MB by an update."""

TRANSIENT_CODES: Final = frozenset(
    {6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}
)
"""Server codes that mean "not now" (host unreachable, shutting down, stepped down, no primary,
time limit exceeded): the same operation may succeed later."""

_TRANSIENT_LABELS: Final = ("RetryableWriteError", "TransientTransactionError")


def duplicate_fields(error: DuplicateKeyError) -> frozenset[str]:
    """The fields of the unique index ``error`` collided on (empty when the server did not say).

    Servers since 4.2 (and mongomock-ng) report ``keyPattern``; older ones only name the index in
    the message, which leadflow's index names spell out (``openKey_open_unique``...).
    """
    details: Mapping[str, Any] = error.details or {}
    pattern = details.get("keyPattern")
    if isinstance(pattern, Mapping) and pattern:
        return frozenset(str(key) for key in pattern)
    message = str(details.get("errmsg", error))
    marker = "index: "
    if marker in message:
        name = message.split(marker, 1)[1].split(" ", 1)[0]
        return frozenset({name.split("_", 1)[0]})
    return frozenset()


def _describe(error: BaseException) -> str:
    text = str(error)
    return text if len(text) <= 300 else text[:297] + "..."


@contextmanager
def driver_errors(subject: str) -> Iterator[None]:
    """Translate what pymongo and bson raise inside the block (see the module's table).

    ``subject`` names the caller's input (``activity``, ``rule``...) in an
    :class:`InvalidInputError` for a document MongoDB refuses.
    """
    try:
        yield
    except LeadflowError:
        raise
    except DuplicateKeyError as exc:
        raise DuplicateError(f"{subject}: a unique index refused the write: {exc}") from exc
    except ConnectionFailure as exc:
        raise UnavailableError(f"MongoDB is unavailable: {_describe(exc)}") from exc
    except OperationFailure as exc:
        if exc.code in LIMIT_CODES:
            raise InvalidInputError(
                f"MongoDB refuses the document (over 16 MB or 100 levels of nesting): "
                f"{_describe(exc)}",
                field=subject,
            ) from exc
        if (
            isinstance(exc, ExecutionTimeout)
            or exc.code in TRANSIENT_CODES
            or any(exc.has_error_label(label) for label in _TRANSIENT_LABELS)
        ):
            raise UnavailableError(f"MongoDB is unavailable: {_describe(exc)}") from exc
        raise StorageError(f"MongoDB failed: {_describe(exc)}") from exc
    except PyMongoError as exc:
        raise StorageError(f"MongoDB failed: {_describe(exc)}") from exc
    except (InvalidDocument, InvalidStringData) as exc:  # incl. pymongo's DocumentTooLarge
        raise InvalidInputError(
            f"MongoDB cannot store this document: {_describe(exc)}", field=subject
        ) from exc
    except BSONError as exc:  # InvalidBSON: a stored document the driver cannot decode
        raise StorageError(f"MongoDB returned an unreadable document: {_describe(exc)}") from exc
    except OverflowError as exc:
        raise InvalidInputError(
            f"a value is out of range for MongoDB (integers are at most 64 bits, dates end in "
            f"year 9999): {exc}",
            field=subject,
        ) from exc
    except RecursionError as exc:
        raise InvalidInputError(
            "the document is nested too deeply (MongoDB stores at most 100 levels)",
            field=subject,
        ) from exc


def translated(subject: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a store method so that it runs inside :func:`driver_errors` ``(subject)``."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with driver_errors(subject):
                return method(*args, **kwargs)

        return wrapper

    return decorate
