"""Argument checks shared by the store backends (the same refusals on every backend): the
public toolkit a backend's stores use, whatever they keep their data in.

``check_*`` functions refuse what they are given or return it unchanged (``check_model`` a
validated copy); ``checked_*`` ones return the value in the form the stores keep. Each names the
field it refuses in its :class:`~leadflow.errors.InvalidInputError`.

**Models the runtime hands over.** A store checks the models it is given (:func:`check_model`)
because a caller may have changed one since it was built. The runtime hands the stores models
it has just built and validated itself (the actions it plans, the activities its handlers
create, the analytic facts of an event) through :func:`handed_over`: for the length of that one
call, :func:`check_model` returns such a model as it is, and a store that checks in its own way
asks :func:`is_handed_over` first. Nothing else is trusted: the same model given to a store
directly, a copy of it, or any other model is checked in full. The hand-over is the identity
of the objects for one call in one thread (a context variable), not a flag a model carries
(a copy would carry it) nor an argument a caller could pass by mistake. A store that keeps a
handed-over model must still not share a mutable document in it with anyone: only the checks
are skipped, not the copies."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from pydantic import BaseModel

from ..clock import ensure_utc
from ..documents import plain
from ..errors import InvalidInputError
from ..limits import DEFAULT_LIMITS
from ..models import _ACTION_TYPE_RE, ID_RE
from ..records import ScheduledAction, SlotState

MAX_KEY: Final = 400
MAX_VALUE: Final = 4000
"""The longest value a job store keeps (``JobStore.set_value``)."""
MAX_BATCH: Final = 1000
"""The most action ids one ``mark_done_many`` call takes."""
MAX_ACTION_TYPES: Final = 200
"""The most action types one ``claim_due(action_types=...)`` filter names."""
_ACTION_TYPE: Final = re.compile(_ACTION_TYPE_RE)


def checked_key(value: object, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_KEY:
        raise InvalidInputError(
            f"expected a non-empty string of at most {MAX_KEY} characters", field=field
        )
    return plain(value)


def checked_value(value: object, field: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_VALUE:
        raise InvalidInputError(f"expected a string of at most {MAX_VALUE} characters", field=field)
    return value


def checked_after(value: object) -> tuple[datetime, str] | None:
    """A ``stale_opportunities`` cursor: None or a (timezone-aware datetime, string) pair;
    the time comes back in UTC."""
    if value is None:
        return None
    if not isinstance(value, tuple) or len(value) != 2 or not isinstance(value[1], str):
        raise InvalidInputError("expected a (datetime, opportunity id) pair", field="after")
    return ensure_utc(value[0], "after"), value[1]


def checked_lease(value: object) -> timedelta:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise InvalidInputError("must be a positive timedelta", field="lease")
    return value


def lease_end(now: datetime, lease: object) -> datetime:
    """``now + lease`` for a positive timedelta ``lease``; :class:`InvalidInputError` naming
    ``lease`` when it is none or the sum passes the year 9999 (the same answer on every
    backend)."""
    try:
        return now + checked_lease(lease)
    except OverflowError as error:
        raise InvalidInputError("now + lease is out of range", field="lease") from error


def checked_partition(value: object) -> int | None:
    """``value`` if it is None (every partition) or an ``int`` partition number within
    :attr:`~leadflow.limits.Limits.partitions`; :class:`InvalidInputError` (``partition``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError("expected an integer or None", field="partition")
    if not 0 <= value < DEFAULT_LIMITS.partitions:
        raise InvalidInputError(f"must be in 0..{DEFAULT_LIMITS.partitions - 1}", field="partition")
    return value


def checked_action_types(value: object) -> frozenset[str] | None:
    """``value`` as a set of action types if it is None (any type) or a list, tuple, set or
    frozenset of at most :data:`MAX_ACTION_TYPES` action type names (lower_snake_case, as
    :class:`~leadflow.models.Action` allows); else :class:`InvalidInputError` naming
    ``action_types``. An empty one is allowed (deliveries only)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple | set | frozenset):
        raise InvalidInputError(
            "expected a list or set of action types, or None", field="action_types"
        )
    if len(value) > MAX_ACTION_TYPES:
        raise InvalidInputError(f"at most {MAX_ACTION_TYPES} action types", field="action_types")
    for item in value:
        if not isinstance(item, str) or not _ACTION_TYPE.fullmatch(item):
            raise InvalidInputError(f"not an action type: {item!r}", field="action_types")
    return frozenset(value)


def checked_version(value: object, field: str) -> int | None:
    """``value`` if it is None or a positive ``int`` (a rule version); else
    :class:`InvalidInputError` naming ``field``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise InvalidInputError("expected a positive integer or None", field=field)
    return value


def check_version(value: object, field: str) -> int:
    """``value`` if it is a version a store can hold (an ``int`` from 1 to 2**63 - 1, the
    64-bit range every backend stores), else :class:`InvalidInputError` naming ``field``: the
    same answer on every backend, before any query (a larger one overflowed SQLite's
    driver)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise InvalidInputError("expected an integer from 1 to 2**63 - 1", field=field)
    return value


def checked_ids(values: object, field: str) -> list[str]:
    """``values`` (a list or tuple of ids, at most :data:`MAX_BATCH`) without repeats, in
    order; else :class:`InvalidInputError` naming ``field``."""
    if not isinstance(values, list | tuple):
        raise InvalidInputError("expected a list of ids", field=field)
    if len(values) > MAX_BATCH:
        raise InvalidInputError(f"at most {MAX_BATCH} ids", field=field)
    for value in values:
        if not isinstance(value, str) or not ID_RE.match(value):
            raise InvalidInputError(f"not a valid id: {value!r}", field=field)
    return list(dict.fromkeys(map(plain, values)))


def in_order(actions: Iterable[ScheduledAction], ids: list[str]) -> list[ScheduledAction]:
    """``actions`` (some of those ``ids`` name) in the order of ``ids``."""
    order = {action_id: n for n, action_id in enumerate(ids)}
    return sorted(actions, key=lambda action: order[action.action_id])


def checked_final(state: object) -> SlotState:
    if state not in (SlotState.SUCCEEDED, SlotState.FAILED):
        raise InvalidInputError("must be 'succeeded' or 'failed'", field="state")
    return SlotState(str(state))


def checked_counts(counts: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(counts, Mapping):
        raise InvalidInputError("expected a mapping of names to integers", field="counts")
    checked = {}
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
            raise InvalidInputError("expected 64-bit integer counts", field="counts")
        checked[checked_key(key, "counts")] = value
    return checked


_T = TypeVar("_T")
_M = TypeVar("_M", bound=BaseModel)


def check_limit(limit: object, maximum: int | None = None) -> int:
    """``limit`` as an int of at least 1 and below 2**63 (what every backend's ``LIMIT`` takes;
    and at most ``maximum``), else :class:`InvalidInputError` naming ``limit``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit < 2**63:
        raise InvalidInputError(
            f"must be an integer from 1 to 2**63 - 1, got {limit!r}", field="limit"
        )
    if maximum is not None and limit > maximum:
        raise InvalidInputError(f"must be at most {maximum}, got {limit}", field="limit")
    return limit


def an_id(value: object, field: str) -> str:
    """``value`` as a plain ``str`` if it is an id (1-128 of ``A-Z a-z 0-9 _ . : @ -``); else
    :class:`InvalidInputError` naming ``field``: what every backend answers for a key that
    cannot name a record (a list, a number beyond 64 bits, ``$where``), before any lookup."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise InvalidInputError(f"not a valid id: {value!r}", field=field)
    return plain(value)


def id_list(values: object, field: str) -> list[str]:
    """``values`` (a list or tuple of ids, any length) as plain ``str`` ids without repeats, in
    order; else :class:`InvalidInputError` naming ``field``."""
    if not isinstance(values, list | tuple):
        raise InvalidInputError("expected a list of ids", field=field)
    return list(dict.fromkeys(an_id(value, field) for value in values))


def check_id(value: object, field: str, *, optional: bool = False) -> None:
    """:class:`InvalidInputError` unless ``value`` is an id (or None when ``optional``)."""
    if value is None and optional:
        return
    if not isinstance(value, str) or not ID_RE.match(value):
        raise InvalidInputError(f"not a valid id: {value!r}", field=field)


def check_type(value: Any, cls: type[_T], field: str, *, optional: bool = False) -> _T | None:
    """``value`` if it is a ``cls`` (or None when ``optional``), else :class:`InvalidInputError`:
    a dict where a filter belongs is refused, not read as one."""
    if value is None and optional:
        return None
    if not isinstance(value, cls):
        raise InvalidInputError(
            f"expected a {cls.__name__}, got {type(value).__name__}", field=field
        )
    return value


def check_model(value: object, cls: type[_M], field: str) -> _M:
    """A validated copy of the model ``value`` (:class:`InvalidInputError` if it is no ``cls``).

    A pydantic model checks its fields when it is built, not when a field is assigned later,
    so a caller may hand over a model it changed since (a naive datetime, a bad id). Dumping and
    validating again refuses that (pydantic's ``ValidationError``) and gives the store a copy
    that shares nothing with the caller's object. A model the runtime handed over for the call
    under way (:func:`handed_over`; exactly a ``cls``, not a subclass) is returned as it is.
    """
    if type(value) is cls and is_handed_over(value):
        return value  # built and validated by the runtime, handed over for this call
    if not isinstance(value, cls):
        raise InvalidInputError(
            f"expected a {cls.__name__}, got {type(value).__name__}", field=field
        )
    return cls.model_validate(value.model_dump())


# ---------------------------------------------------------------------- the runtime's hand-over


class _Several(dict[int, object]):
    """Several models handed over for one call, by their identity hash."""

    __slots__ = ()


_ABSENT: Final = object()
_NOTHING: Final = object()  # handed over when nothing is: private, so no store is given it
_HANDED: Final[ContextVar[object]] = ContextVar("leadflow_handed_over", default=_NOTHING)
"""What is handed over for the store call under way in this context: the one model itself
(most calls hand one over), or several in a :class:`_Several`. Not a cache: it holds the
models themselves, for one call, and a model is handed over only if it *is* one held (a
copy, equal or not, is not)."""

_A = TypeVar("_A")


def handed_over(call: Callable[[_A], _T], value: _A, *models: BaseModel) -> _T:
    """``call(value)`` with ``models`` handed over (``value`` itself when no model is named):
    models the runtime built and validated itself and holds alone, which the store may take
    without checking them again (see the module docstring). For the runtime: a host's code
    that calls a store directly never goes through here, and everything it passes is checked.

    The hand-over ends with the call, whatever it raises."""
    if len(models) > 1:
        held: object = _Several({object.__hash__(model): model for model in models})
    else:
        held = models[0] if models else value
    token = _HANDED.set(held)
    try:
        return call(value)
    finally:
        _HANDED.reset(token)


def is_handed_over(value: object) -> bool:
    """Whether ``value`` is one of the models the runtime handed over for the store call
    under way (:func:`handed_over`); False for anything else, a copy of it included."""
    held = _HANDED.get()
    if type(held) is _Several:
        # A default that nothing passed can be: with ``.get(key)`` alone, None was "handed over".
        return held.get(object.__hash__(value), _ABSENT) is value
    return held is value
