"""Marking a batch of successes done: the one store call ``run_due`` and ``handle_many`` make
per batch, reading back only which actions it finished."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from ..ports import BatchAcknowledgement, ScheduledActionStore

__all__ = ["mark_done"]


def mark_done(
    store: ScheduledActionStore, action_ids: Sequence[str], *, worker: str, now: datetime
) -> list[str]:
    """Mark ``action_ids`` done in one store call; the ids of those it finished (the others'
    leases were lost meanwhile), in the order given. A store with
    :class:`~leadflow.ports.BatchAcknowledgement` returns the ids alone; from another, the
    actions :meth:`~leadflow.ports.ScheduledActionStore.mark_done_many` returns are read for
    their ids. Only a ``mark_done_ids`` that the store's class defines counts: a wrapper that
    overrides ``mark_done_many`` (metrics, logs) and passes the rest on through
    ``__getattr__`` keeps seeing every acknowledgement."""
    if callable(getattr(type(store), "mark_done_ids", None)):
        return cast(BatchAcknowledgement, store).mark_done_ids(action_ids, worker=worker, now=now)
    return [action.action_id for action in store.mark_done_many(action_ids, worker=worker, now=now)]
