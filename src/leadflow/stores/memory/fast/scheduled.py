"""The fast variant's :class:`~leadflow.ports.ScheduledActionStore`.

Actions that may still run (pending, claimed, parked) are kept as private
:class:`~leadflow.records.ScheduledAction` copies and changed by storing a new copy (made
unchecked, with values this module made), never in place. One exception: an action the runtime
hands over already claimed (it runs it at once, then marks it done) is kept as the runtime's
own object beside a snapshot of its two documents (pickled, as a finished row keeps them):
finishing it then copies nothing, and the first read or change that keeps it live replaces it
with a copy made from the snapshot, so the store never shows a document changed after it was
stored; while it runs it is in no lease index (:meth:`FastScheduledActionStore.claim_due` looks
at those few apart). Finished ones (done, cancelled) are kept only as rows of atomic values
(:mod:`.finished`: their two documents pickled, the store's own values, never bytes from
outside), next to their due and finished times: the runtime finishes an action for nearly
every handled event, and the collector stops walking such rows.
:meth:`FastScheduledActionStore.purge_finished` bounds them.

One lock guards everything; every method is atomic, and returned actions are new objects.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from heapq import merge, nsmallest
from itertools import islice, takewhile
from typing import Any

from sortedcontainers import SortedList

from ....clock import ensure_utc
from ....documents import check_document, copy_document
from ....errors import (
    ConflictError,
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
)
from ....records import FINISHED_STATES, ScheduledAction, ScheduledActionState
from ...checks import (
    an_id,
    check_limit,
    check_type,
    checked_action_types,
    checked_ids,
    checked_partition,
    checked_version,
    is_handed_over,
    lease_end,
)
from .chunks import ChunkedIndex
from .finished import (
    DUE_AT,
    KEY,
    STATE,
    Documents,
    Row,
    documents,
    documents_of,
    freeze,
    freeze_done,
    thaw,
)
from .slots import SlotRows

__all__ = ["FastScheduledActionStore"]

_State = ScheduledActionState
_MAX_ERROR = 2000  # ScheduledAction.last_error's limit


_Key = tuple[datetime, str]
"""An index key: (time, action id)."""

_Finished = Row
"""A finished action as a row of atomic values (:mod:`.finished`), which the garbage collector
stops tracking; its due time, state and idempotency key are read from the row."""


def _copy(action: ScheduledAction, *, check: bool = False) -> ScheduledAction:
    """An action equal to ``action`` sharing nothing mutable with it. Actions, their events and
    actions are immutable and were validated when built; what may still change under them is
    the free-form documents (the event's payload, the action's params), which are copied (and,
    with ``check``, for an action from outside, checked again first: a caller may have changed
    them since)."""
    event, planned = action.event, action.action
    payload = event.payload
    if check:
        check_document(payload, "event.payload")
    update: dict[str, Any] = {"event": event._evolve(payload=copy_document(payload))}
    if planned is not None:
        params = planned.params
        if check:
            check_document(params, "action.params")
        update["action"] = planned._evolve(params=copy_document(params))
    return action._evolve(**update)


def _checked(action: object) -> ScheduledAction:
    """The store's own copy of an action from outside (:class:`InvalidInputError` if it is no
    ``ScheduledAction``). One the runtime handed over (built and checked by it) is copied
    without checking its documents again: its event's payload may still be a dict its caller
    holds, so it is copied all the same."""
    if not isinstance(action, ScheduledAction):
        raise InvalidInputError(
            f"expected a ScheduledAction, got {type(action).__name__}", field="action"
        )
    return _copy(action, check=not is_handed_over(action))


def _of_types(
    actions: Iterable[ScheduledAction], types: frozenset[str] | None
) -> Iterator[ScheduledAction]:
    """The ``actions`` a claim filtered on ``types`` may take, lazily, in the given order: all
    of them without a filter; else the rule actions of those types and every delivery."""
    if types is None:
        return iter(actions)
    return (
        action for action in actions if action.action is None or action.action.action_type in types
    )


def _check_worker(worker: object) -> str:
    if not isinstance(worker, str) or not worker:
        raise InvalidInputError("must be a non-empty string", field="worker")
    return worker


class FastScheduledActionStore:
    """A :class:`~leadflow.ports.ScheduledActionStore` held in process memory.

    Indexes: ``_pending`` (due_at, id) and ``_leases`` (lease_expires_at, id; not the run-now
    claims kept as handed over, ``_taken``) as
    ``SortedList``s (they hold live actions only, models the collector walks anyway), one of
    each per partition, so :meth:`claim_due` looks only at actions it
    can take (in the partition it was asked for; across all of them, merged in order, when it
    was asked for none); the pending action
    ids of each opportunity and of each rule (what the cancel methods touch); ``_by_finish``
    (finished_at, id) for :meth:`purge_finished`; the idempotency keys of every stored action.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, ScheduledAction] = {}
        # Live actions kept as the runtime handed them over (claimed, run now): their
        # documents as they were taken when stored (see schedule and _own).
        self._taken: dict[str, Documents] = {}
        self._finished: SlotRows[_Finished] = SlotRows()  # by id, a row's first value
        self._by_key: dict[str, str] = {}
        self._pending: dict[int, SortedList[_Key]] = {}
        self._leases: dict[int, SortedList[_Key]] = {}
        self._by_finish: ChunkedIndex[tuple[datetime, str]] = ChunkedIndex()
        self._pending_by_opportunity: dict[str, set[str]] = {}
        self._pending_by_rule: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._live) + len(self._finished)

    # ------------------------------------------------------------------ port

    def schedule(self, action: ScheduledAction) -> tuple[ScheduledAction, bool]:
        taken: Documents | None = None
        if is_handed_over(action) and action.state is _State.CLAIMED:
            # The runtime's own action, run now: kept as it is, its documents taken as they
            # are (the snapshot a copy would be; see _own), so that finishing it copies nothing.
            checked, taken = action, documents(action)
        else:
            checked = _checked(action)
        with self._lock:
            existing = self._by_key.get(checked.idempotency_key)
            if existing is not None:
                return self._get(existing), False
            if checked.action_id in self._live or checked.action_id in self._finished:
                raise DuplicateError(
                    f"action {checked.action_id!r} already exists with another idempotency key"
                )
            self._by_key[checked.idempotency_key] = checked.action_id
            if taken is not None:
                self._taken[checked.action_id] = taken
            self._put(checked)
        if is_handed_over(action):
            # The store keeps its own copy; the runtime's object, equal to it, is its own.
            return action, True
        return _copy(checked), True

    def get(self, action_id: str) -> ScheduledAction:
        with self._lock:
            return self._get(an_id(action_id, "action_id"))

    def claim_due(
        self,
        now: datetime,
        *,
        worker: str,
        limit: int = 100,
        lease: timedelta = timedelta(minutes=5),
        partition: int | None = None,
        action_types: Collection[str] | None = None,
    ) -> builtins.list[ScheduledAction]:
        """See the port. With ``action_types`` the due-order walk steps over the actions of
        other types (their count is what it costs)."""
        now = ensure_utc(now, "now")
        check_limit(limit)
        _check_worker(worker)
        expires = lease_end(now, lease)
        partition = checked_partition(partition)
        types = checked_action_types(action_types)
        with self._lock:
            candidates: list[ScheduledAction] = []
            leases = takewhile(lambda key: key[0] <= now, self._ordered(self._leases, partition))
            expired = [*_of_types((self._live[action_id] for _, action_id in leases), types)]
            expired += _of_types(self._run_now_expired(now, partition), types)
            for action in expired:
                if action.attempts >= action.max_attempts:
                    self._change(
                        action,
                        state=_State.PARKED,
                        last_error=f"lease of {action.lease_owner!r} ran out on the last attempt",
                        lease_expires_at=None,
                        updated_at=now,
                    )
                else:
                    candidates.append(action)
            due = takewhile(lambda key: key[0] <= now, self._ordered(self._pending, partition))
            pending = _of_types((self._live[action_id] for _, action_id in due), types)
            candidates += islice(pending, limit)
            chosen = nsmallest(limit, candidates, key=lambda a: (a.due_at, a.action_id))
            claimed = [
                self._change(
                    action,
                    state=_State.CLAIMED,
                    lease_owner=worker,
                    lease_expires_at=expires,
                    attempts=action.attempts + 1,
                    updated_at=now,
                )
                for action in chosen
            ]
        return [_copy(action) for action in claimed]

    def mark_done(self, action_id: str, *, worker: str, now: datetime) -> ScheduledAction:
        now = ensure_utc(now, "now")
        with self._lock:
            action = self._held(action_id, worker)
            done = self._change(
                action, state=_State.DONE, lease_expires_at=None, updated_at=now, finished_at=now
            )
        # A finished action is kept only as bytes: nothing in the store refers to ``done`` (or
        # to the live copy it was made from), so it is the caller's own object already.
        return done

    def mark_done_ids(
        self, action_ids: Sequence[str], *, worker: str, now: datetime
    ) -> builtins.list[str]:
        """:class:`~leadflow.ports.BatchAcknowledgement`: :meth:`mark_done_many` returning
        the ids alone, so that no done action is built (each is frozen into its row from the
        live one with the done changes put in: :func:`.finished.freeze_done`)."""
        ids = checked_ids(action_ids, "action_ids")
        _check_worker(worker)
        now = ensure_utc(now, "now")
        done: list[str] = []
        with self._lock:
            for action in self._claimed_by(ids, worker):
                action_id = action.action_id
                self._drop(action)  # one kept as handed over: in no index (see _put)
                taken = self._taken.pop(action_id, None)
                self._finished.put(freeze_done(action, now, taken))
                self._by_finish.add((now, action_id))
                done.append(action_id)
        return done

    def mark_done_many(
        self, action_ids: Sequence[str], *, worker: str, now: datetime
    ) -> builtins.list[ScheduledAction]:
        ids = checked_ids(action_ids, "action_ids")
        _check_worker(worker)
        now = ensure_utc(now, "now")
        done: list[ScheduledAction] = []
        with self._lock:
            for action in self._claimed_by(ids, worker):
                done.append(
                    self._change(
                        action,
                        state=_State.DONE,
                        lease_expires_at=None,
                        updated_at=now,
                        finished_at=now,
                    )
                )
        return done

    def _claimed_by(self, action_ids: Sequence[str], worker: str) -> Iterator[ScheduledAction]:
        """The live actions of ``action_ids`` that ``worker`` holds claimed (under the lock;
        a caller may drop each one as it comes)."""
        for action_id in action_ids:
            action = self._live.get(action_id)
            if action is None or action.lease_owner != worker:
                continue
            if action.state is _State.CLAIMED:
                yield action

    def mark_failed(
        self,
        action_id: str,
        *,
        worker: str,
        now: datetime,
        error: str,
        retry_at: datetime,
        permanent: bool = False,
    ) -> ScheduledAction:
        """See the port; ``error`` is kept to its first 2,000 characters."""
        now = ensure_utc(now, "now")
        retry_at = ensure_utc(retry_at, "retry_at")
        message = check_type(error, str, "error")
        assert message is not None
        changes: dict[str, Any] = {
            "last_error": message[:_MAX_ERROR],
            "lease_expires_at": None,
            "updated_at": now,
        }
        with self._lock:
            action = self._held(action_id, worker)
            if permanent or action.attempts >= action.max_attempts:
                changes.update(state=_State.PARKED)
            else:
                changes.update(state=_State.PENDING, due_at=retry_at, lease_owner=None)
            failed = self._change(action, **changes)
        return _copy(failed)

    def retry(self, action_id: str, *, now: datetime) -> ScheduledAction:
        now, action_id = ensure_utc(now, "now"), an_id(action_id, "action_id")
        with self._lock:
            action = self._live.get(action_id)
            if action is None or action.state is not _State.PARKED:
                if action is None and action_id not in self._finished:
                    raise NotFoundError(f"no scheduled action {action_id!r}")
                state = action.state if action is not None else self._finished[action_id][STATE]
                raise InvalidStateError(
                    f"action {action_id!r} is {state}; only parked ones are retried"
                )
            retried = self._change(
                action,
                state=_State.PENDING,
                due_at=now,
                attempts=0,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
                finished_at=None,
                last_error=None,
            )
        return _copy(retried)

    def cancel_for_opportunity(self, opportunity_id: str, *, now: datetime) -> int:
        now = ensure_utc(now, "now")
        with self._lock:
            ids = builtins.list(
                self._pending_by_opportunity.get(an_id(opportunity_id, "opportunity_id"), ())
            )
            for action_id in ids:
                self._cancel(self._live[action_id], now)
        return len(ids)

    def cancel_for_rule(
        self, rule_id: str, *, now: datetime, below_version: int | None = None
    ) -> builtins.list[ScheduledAction]:
        now = ensure_utc(now, "now")
        below = checked_version(below_version, "below_version")
        rule_id = an_id(rule_id, "rule_id")
        with self._lock:
            pending = [
                action
                for action in (self._live[i] for i in self._pending_by_rule.get(rule_id, ()))
                if below is None or action.rule_version is None or action.rule_version < below
            ]
            pending.sort(key=lambda a: (a.due_at, a.action_id))
            cancelled = [self._cancel(action, now) for action in pending]
        return [_copy(action) for action in cancelled]

    def cancel_pending(
        self, action_ids: Sequence[str], *, now: datetime
    ) -> builtins.list[ScheduledAction]:
        ids = checked_ids(action_ids, "action_ids")
        now = ensure_utc(now, "now")
        with self._lock:
            pending = [
                action
                for action in (self._live.get(i) for i in ids)
                if action is not None and action.state is _State.PENDING
            ]
            cancelled = [self._cancel(action, now) for action in pending]
        return [_copy(action) for action in cancelled]

    def purge_finished(self, before: datetime, *, limit: int = 10_000) -> int:
        before = ensure_utc(before, "before")
        check_limit(limit)
        with self._lock:
            old = takewhile(lambda key: key[0] < before, self._by_finish)
            doomed = builtins.list(islice(old, limit))
            for finished_at, action_id in doomed:
                self._by_finish.remove((finished_at, action_id))
                del self._by_key[self._finished.pop(action_id)[KEY]]
        return len(doomed)

    def list(
        self, state: ScheduledActionState | None = None, *, limit: int = 100
    ) -> builtins.list[ScheduledAction]:
        check_limit(limit)
        if state is not None:
            try:
                state = _State(state)
            except ValueError as exc:
                raise InvalidInputError(f"unknown state {state!r}", field="state") from exc
        with self._lock:
            if state is _State.PENDING:
                ids = [i for _, i in islice(self._ordered(self._pending, None), limit)]
                return [_copy(self._live[i]) for i in ids]
            keys: list[tuple[datetime, str]] = []
            if state is None or state not in FINISHED_STATES:
                keys += [
                    (a.due_at, i)
                    for i, a in self._live.items()
                    if state is None or a.state is state
                ]
            if state is None or state in FINISHED_STATES:
                keys += [
                    (row[DUE_AT], i)
                    for i, row in self._finished.items()
                    if state is None or row[STATE] == state
                ]
            return [self._get(i) for _, i in nsmallest(limit, keys)]

    def next_due(self, *, partition: int | None = None) -> datetime | None:
        partition = checked_partition(partition)
        with self._lock:
            pending = self._pending
            indexes = pending.values() if partition is None else [pending.get(partition)]
            return min((index[0][0] for index in indexes if index), default=None)

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _ordered(indexes: dict[int, SortedList[_Key]], partition: int | None) -> Iterator[_Key]:
        """The keys of one partition's index, or of all of them merged, in order."""
        if partition is not None:
            return iter(indexes.get(partition, ()))
        return merge(*indexes.values())

    @staticmethod
    def _index(indexes: dict[int, SortedList[_Key]], partition: int) -> SortedList[_Key]:
        index = indexes.get(partition)
        if index is None:
            index = indexes[partition] = SortedList()
        return index

    def _get(self, action_id: str) -> ScheduledAction:
        live = self._live.get(action_id)
        if live is not None:
            return _copy(self._own(live))
        finished = self._finished.get(action_id)
        if finished is None:
            raise NotFoundError(f"no scheduled action {action_id!r}")
        return thaw(finished)

    def _held(self, action_id: str, worker: str) -> ScheduledAction:
        action_id = an_id(action_id, "action_id")
        action = self._live.get(action_id)
        if action is None:
            if action_id not in self._finished:
                raise NotFoundError(f"no scheduled action {action_id!r}")
            state = self._finished[action_id][STATE]
            raise ConflictError(f"worker {worker!r} does not hold action {action_id!r} ({state})")
        if action.state is not _State.CLAIMED or action.lease_owner != worker:
            raise ConflictError(
                f"worker {worker!r} does not hold action {action_id!r} "
                f"(state {action.state.value}, lease owner {action.lease_owner!r})"
            )
        return action

    def _cancel(self, action: ScheduledAction, now: datetime) -> ScheduledAction:
        return self._change(action, state=_State.CANCELLED, updated_at=now, finished_at=now)

    def _change(self, action: ScheduledAction, **changes: Any) -> ScheduledAction:
        """Store a changed copy of the live ``action``, keeping the indexes in step. The
        changes are values this module made (checked times, states, counters). A finished
        action kept as handed over is frozen with its documents as taken; one that stays live
        becomes the store's own copy first."""
        if changes.get("state") not in FINISHED_STATES:
            action = self._own(action)
        self._drop(action)  # one kept as handed over: in no index (see _put)
        taken = self._taken.pop(action.action_id, None)
        changed = action._evolve(**changes)
        self._put(changed, taken)
        return changed

    def _run_now_expired(
        self, now: datetime, partition: int | None
    ) -> builtins.list[ScheduledAction]:
        """The actions kept as handed over (claimed, run now: in no lease index) whose lease
        ran out by ``now``, in ``partition`` (any without one): a worker that claimed one
        never finished it. Few: only those a ``handle`` is running, or left unfinished."""
        live = self._live
        return [
            action
            for action in (live[action_id] for action_id in self._taken)
            if action.lease_expires_at is not None
            and action.lease_expires_at <= now
            and (partition is None or action.partition == partition)
        ]

    def _own(self, action: ScheduledAction) -> ScheduledAction:
        """The live ``action`` as the store's own copy: one kept as the runtime handed it over
        (see :meth:`schedule`) is replaced by a copy with its documents as they were taken
        (what the runtime's object holds now may have changed since)."""
        taken = self._taken.pop(action.action_id, None)
        if taken is None:
            return action
        payload, params = documents_of(taken)
        update: dict[str, Any] = {"event": action.event._evolve(payload=payload)}
        if action.action is not None:
            update["action"] = action.action._evolve(params=params)
        own = self._live[action.action_id] = action._evolve(**update)
        self._index_lease(own)  # an ordinary claim from now on
        return own

    def _put(self, action: ScheduledAction, taken: Documents | None = None) -> None:
        action_id = action.action_id
        if action.state in FINISHED_STATES:
            self._finished.put(freeze(action, taken))
            finished_at = action.finished_at or action.updated_at or action.created_at
            self._by_finish.add((finished_at, action_id))
            return
        self._live[action_id] = action
        if action.state is _State.PENDING:
            self._index(self._pending, action.partition).add((action.due_at, action_id))
            for index, owner in (
                (self._pending_by_opportunity, action.opportunity_id),
                (self._pending_by_rule, action.rule_id),
            ):
                if owner is not None:
                    index.setdefault(owner, set()).add(action_id)
        elif action.state is _State.CLAIMED and action_id not in self._taken:
            # One kept as handed over (run now, finished before long) stays out of the lease
            # index: _run_now_expired finds it if it is left unfinished.
            self._index_lease(action)

    def _index_lease(self, action: ScheduledAction) -> None:
        assert action.state is _State.CLAIMED and action.lease_expires_at is not None
        key = (action.lease_expires_at, action.action_id)
        self._index(self._leases, action.partition).add(key)

    def _drop(self, action: ScheduledAction) -> None:
        """Take the live ``action`` out of every index (it is about to be replaced)."""
        action_id = action.action_id
        del self._live[action_id]
        if action.state is _State.PENDING:
            self._pending[action.partition].remove((action.due_at, action_id))
            for index, owner in (
                (self._pending_by_opportunity, action.opportunity_id),
                (self._pending_by_rule, action.rule_id),
            ):
                if owner is not None:
                    index[owner].discard(action_id)
                    if not index[owner]:
                        del index[owner]
        elif action.state is _State.CLAIMED and action_id not in self._taken:
            assert action.lease_expires_at is not None
            self._leases[action.partition].remove((action.lease_expires_at, action_id))
