"""PostgreSQL: the actions a unit of work stored already acknowledged.

A ``handle_many`` chunk inserts its run-now actions claimed, runs them, then marks the
successes done: on PostgreSQL an ``UPDATE`` of the rows just inserted, a new version of each
(``state`` is indexed, so no HOT update: every index entry written again). Inside the chunk's
unit of work no other transaction sees the rows before the commit, and the commit comes after
the acknowledgement; so when nothing in the unit reads them in between (the runtime asks it
only of chunks whose run-now handlers read no stored action), they can go in done at once
(:meth:`~.scheduled.SqlScheduledActionStore.schedule_done`) and the ``UPDATE`` is not needed.
A run that fails is then a failure recorded on a row that says done: the store remembers which
rows the unit stored so (:func:`note`), and the failure's mark finds them as it would have
found them claimed (:meth:`~.scheduled.SqlScheduledActionStore.mark_failed`).

What is remembered belongs to the unit's transaction (SQLAlchemy's transaction object, kept
with the set on the connection): a later unit on the same pooled connection, or the one-by-one
redo after a rollback, never sees it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import Connection

__all__ = ["KEY", "forget", "held_by", "note", "owner"]

KEY: Final = "leadflow_acknowledged_ahead"


def _ours(connection: Connection) -> dict[str, str] | None:
    """The ids (and their workers) the unit's current transaction stored done, if any."""
    kept: tuple[Any, dict[str, str]] | None = connection.connection.info.get(KEY)
    if kept is None or kept[0] is not connection.get_transaction():
        return None
    return kept[1]


def note(connection: Connection, stored: Mapping[str, str]) -> None:
    """Remember that the unit on ``connection`` stored ``stored`` (action id -> the worker
    holding it) already acknowledged."""
    found = _ours(connection)
    if found is None:
        found = {}
        connection.connection.info[KEY] = (connection.get_transaction(), found)
    found.update(stored)


def owner(connection: Connection, action_id: str) -> str | None:
    """The worker of ``action_id`` if the unit on ``connection`` stored it acknowledged (and
    no mark has changed it since), else None."""
    found = _ours(connection)
    return None if found is None else found.get(action_id)


def held_by(connection: Connection, action_ids: Sequence[str], worker: str) -> bool:
    """Whether every one of ``action_ids`` is an action the unit on ``connection`` stored
    acknowledged for ``worker``."""
    found = _ours(connection)
    return found is not None and all(found.get(a) == worker for a in action_ids)


def forget(connection: Connection, action_id: str) -> None:
    """``action_id``'s row was marked again (failed): an ordinary row from now on."""
    found = _ours(connection)
    if found is not None:
        found.pop(action_id, None)
