"""The in-memory :class:`~leadflow.ports.ScheduledActionStore`: the reference implementation.

Every action, whatever its state, is one :class:`~leadflow.records.ScheduledAction` in a dict by
id. Records are immutable, so a state change stores a new record (``model_copy(update=...)``,
validated like a new one) in place of the old. What may still change under a record is a
free-form document inside it (the event's ``payload``, the action's ``params``, plain dicts the
caller may still hold): the store checks and copies those on the way in and copies them on the
way out, so a caller never shares a dict with the store.

Ordered indexes are ``sortedcontainers.SortedList``s of ``(time, action id)`` keys: pending
actions by due time and claimed ones by lease expiry, one list of each per partition, and
finished ones by finish time (for :meth:`~InMemoryScheduledActionStore.purge_finished`). The
pending action ids of each opportunity and each rule are sets (what the cancel methods touch).

One lock guards everything; every method is atomic and, on error, writes nothing.
:mod:`leadflow.stores.memory.fast` has a variant built for very large stores.
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

from ...clock import ensure_utc
from ...documents import check_document, copy_document
from ...errors import (
    ConflictError,
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
)
from ...records import FINISHED_STATES, ScheduledAction, ScheduledActionState
from ..checks import (
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

__all__ = ["InMemoryScheduledActionStore", "copied_action"]

_State = ScheduledActionState
_MAX_ERROR = 2000  # ScheduledAction.last_error's limit

_Key = tuple[datetime, str]
"""An index key: (time, action id)."""


def copied_action(action: ScheduledAction, *, check: bool = False) -> ScheduledAction:
    """An action equal to ``action`` that shares no dict with it: the event's payload and the
    action's params copied (and, with ``check``, checked again first, for an action from
    outside: its caller may have changed them since it was validated)."""
    event, planned = action.event, action.action
    if check:
        check_document(event.payload, "event.payload")
    update: dict[str, Any] = {
        "event": event.model_copy(update={"payload": copy_document(event.payload)})
    }
    if planned is not None:
        if check:
            check_document(planned.params, "action.params")
        update["action"] = planned.model_copy(update={"params": copy_document(planned.params)})
    return action.model_copy(update=update)


def _checked(action: object) -> ScheduledAction:
    """The store's own copy of an action from outside (:class:`InvalidInputError` if it is no
    ``ScheduledAction``). One the runtime handed over (it built and checked it) is not checked
    or validated again: its documents are copied all the same (its event's payload may be a
    dict its caller still holds)."""
    if not isinstance(action, ScheduledAction):
        raise InvalidInputError(
            f"expected a ScheduledAction, got {type(action).__name__}", field="action"
        )
    if is_handed_over(action):
        return _handed_copy(action)
    return copied_action(action, check=True)


def _handed_copy(action: ScheduledAction) -> ScheduledAction:
    """What :func:`copied_action` returns, for an action the runtime handed over: changed
    copies (``_evolve``) instead of validated ones."""
    event, planned = action.event, action.action
    update: dict[str, Any] = {"event": event._evolve(payload=copy_document(event.payload))}
    if planned is not None:
        update["action"] = planned._evolve(params=copy_document(planned.params))
    return action._evolve(**update)


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


class InMemoryScheduledActionStore:
    """A :class:`~leadflow.ports.ScheduledActionStore` held in process memory (see the module
    docstring for what it keeps)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: dict[str, ScheduledAction] = {}
        self._by_key: dict[str, str] = {}
        self._pending: dict[int, SortedList[_Key]] = {}
        self._leases: dict[int, SortedList[_Key]] = {}
        self._by_finish: SortedList[_Key] = SortedList()
        self._pending_by_opportunity: dict[str, set[str]] = {}
        self._pending_by_rule: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._actions)

    # ------------------------------------------------------------------ port

    def schedule(self, action: ScheduledAction) -> tuple[ScheduledAction, bool]:
        checked = _checked(action)
        with self._lock:
            existing = self._by_key.get(checked.idempotency_key)
            if existing is not None:
                return copied_action(self._actions[existing]), False
            if checked.action_id in self._actions:
                raise DuplicateError(
                    f"action {checked.action_id!r} already exists with another idempotency key"
                )
            self._by_key[checked.idempotency_key] = checked.action_id
            self._put(checked)
        if is_handed_over(action):
            # The store keeps its own copy; the runtime's object, equal to it, is its own.
            return action, True
        return copied_action(checked), True

    def get(self, action_id: str) -> ScheduledAction:
        with self._lock:
            return copied_action(self._find(an_id(action_id, "action_id")))

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
            expired = [*_of_types((self._actions[action_id] for _, action_id in leases), types)]
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
            pending = _of_types((self._actions[action_id] for _, action_id in due), types)
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
        return [copied_action(action) for action in claimed]

    def mark_done(self, action_id: str, *, worker: str, now: datetime) -> ScheduledAction:
        now = ensure_utc(now, "now")
        with self._lock:
            action = self._held(action_id, worker)
            done = self._change(
                action, state=_State.DONE, lease_expires_at=None, updated_at=now, finished_at=now
            )
        return copied_action(done)

    def mark_done_many(
        self, action_ids: Sequence[str], *, worker: str, now: datetime
    ) -> builtins.list[ScheduledAction]:
        ids = checked_ids(action_ids, "action_ids")
        _check_worker(worker)
        now = ensure_utc(now, "now")
        done: list[ScheduledAction] = []
        with self._lock:
            for action_id in ids:
                action = self._actions.get(action_id)
                if (
                    action is None
                    or action.state is not _State.CLAIMED
                    or action.lease_owner != worker
                ):
                    continue
                done.append(
                    self._change(
                        action,
                        state=_State.DONE,
                        lease_expires_at=None,
                        updated_at=now,
                        finished_at=now,
                    )
                )
        return [copied_action(action) for action in done]

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
        return copied_action(failed)

    def retry(self, action_id: str, *, now: datetime) -> ScheduledAction:
        now = ensure_utc(now, "now")
        with self._lock:
            action = self._find(an_id(action_id, "action_id"))
            if action.state is not _State.PARKED:
                raise InvalidStateError(
                    f"action {action.action_id!r} is {action.state}; only parked ones are retried"
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
        return copied_action(retried)

    def cancel_for_opportunity(self, opportunity_id: str, *, now: datetime) -> int:
        now = ensure_utc(now, "now")
        with self._lock:
            ids = builtins.list(
                self._pending_by_opportunity.get(an_id(opportunity_id, "opportunity_id"), ())
            )
            for action_id in ids:
                self._cancel(self._actions[action_id], now)
        return len(ids)

    def cancel_for_rule(
        self, rule_id: str, *, now: datetime, below_version: int | None = None
    ) -> builtins.list[ScheduledAction]:
        now = ensure_utc(now, "now")
        below = checked_version(below_version, "below_version")
        with self._lock:
            ids = self._pending_by_rule.get(an_id(rule_id, "rule_id"), ())
            pending = [
                action
                for action in (self._actions[i] for i in ids)
                if below is None or action.rule_version is None or action.rule_version < below
            ]
            pending.sort(key=lambda a: (a.due_at, a.action_id))
            cancelled = [self._cancel(action, now) for action in pending]
        return [copied_action(action) for action in cancelled]

    def cancel_pending(
        self, action_ids: Sequence[str], *, now: datetime
    ) -> builtins.list[ScheduledAction]:
        ids = checked_ids(action_ids, "action_ids")
        now = ensure_utc(now, "now")
        with self._lock:
            pending = [
                action
                for action in (self._actions.get(i) for i in ids)
                if action is not None and action.state is _State.PENDING
            ]
            cancelled = [self._cancel(action, now) for action in pending]
        return [copied_action(action) for action in cancelled]

    def purge_finished(self, before: datetime, *, limit: int = 10_000) -> int:
        before = ensure_utc(before, "before")
        check_limit(limit)
        with self._lock:
            old = takewhile(lambda key: key[0] < before, self._by_finish)
            doomed = builtins.list(islice(old, limit))
            for key in doomed:
                self._by_finish.remove(key)
                action = self._actions.pop(key[1])
                del self._by_key[action.idempotency_key]
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
                keys = builtins.list(islice(self._ordered(self._pending, None), limit))
            else:
                keys = nsmallest(
                    limit,
                    (
                        (a.due_at, i)
                        for i, a in self._actions.items()
                        if state is None or a.state is state
                    ),
                )
            return [copied_action(self._actions[i]) for _, i in keys]

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

    def _find(self, action_id: str) -> ScheduledAction:
        action = self._actions.get(action_id)
        if action is None:
            raise NotFoundError(f"no scheduled action {action_id!r}")
        return action

    def _held(self, action_id: str, worker: str) -> ScheduledAction:
        action = self._find(an_id(action_id, "action_id"))
        if action.state is not _State.CLAIMED or action.lease_owner != worker:
            raise ConflictError(
                f"worker {worker!r} does not hold action {action.action_id!r} "
                f"(state {action.state.value}, lease owner {action.lease_owner!r})"
            )
        return action

    def _cancel(self, action: ScheduledAction, now: datetime) -> ScheduledAction:
        return self._change(action, state=_State.CANCELLED, updated_at=now, finished_at=now)

    def _change(self, action: ScheduledAction, **changes: Any) -> ScheduledAction:
        """Store a changed copy of ``action`` in its place, keeping the indexes in step."""
        self._drop(action)
        changed = action.model_copy(update=changes)
        self._put(changed)
        return changed

    def _put(self, action: ScheduledAction) -> None:
        action_id = action.action_id
        self._actions[action_id] = action
        if action.state in FINISHED_STATES:
            finished_at = action.finished_at or action.updated_at or action.created_at
            self._by_finish.add((finished_at, action_id))
        elif action.state is _State.PENDING:
            self._pending.setdefault(action.partition, SortedList()).add((action.due_at, action_id))
            for index, owner in (
                (self._pending_by_opportunity, action.opportunity_id),
                (self._pending_by_rule, action.rule_id),
            ):
                if owner is not None:
                    index.setdefault(owner, set()).add(action_id)
        elif action.state is _State.CLAIMED:
            assert action.lease_expires_at is not None
            self._leases.setdefault(action.partition, SortedList()).add(
                (action.lease_expires_at, action_id)
            )

    def _drop(self, action: ScheduledAction) -> None:
        """Take ``action`` out of every index (it is about to be replaced)."""
        action_id = action.action_id
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
        elif action.state is _State.CLAIMED:
            assert action.lease_expires_at is not None
            self._leases[action.partition].remove((action.lease_expires_at, action_id))
