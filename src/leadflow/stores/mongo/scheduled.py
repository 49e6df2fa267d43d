"""Scheduled actions in MongoDB: :class:`~leadflow.ports.ScheduledActionStore` on one collection.

Claims are single-document ``find_one_and_update`` calls whose filter re-checks that the action
is still claimable, so two workers (processes or hosts) never claim the same one. Documents are
the typed :class:`~leadflow.records.ScheduledAction` in camelCase (``kind``, ``plannedAt``,
``depth``, ``duplicates``, ``activityId``, ``ruleName``, ``explanation``...); a delivery has no
``ruleId`` and no ``action``.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, cast

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from ...errors import (
    ConflictError,
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
)
from ...records import FINISHED_STATES, ScheduledAction, ScheduledActionState
from ..checks import (
    checked_action_types,
    checked_ids,
    checked_partition,
    checked_version,
    in_order,
    is_handed_over,
)
from .common import (
    Document,
    MongoStore,
    MongoTarget,
    _bson_precision,
    checked_document,
    guard_literal,
    later,
    valid_id,
    valid_limit,
    valid_text,
    when,
)
from .driver import duplicate_fields, translated

__all__ = ["MongoScheduledActionStore"]

_PENDING: Final = ScheduledActionState.PENDING.value
_CLAIMED: Final = ScheduledActionState.CLAIMED.value
_PARKED: Final = ScheduledActionState.PARKED.value
_CANCELLED: Final = ScheduledActionState.CANCELLED.value
_FINISHED: Final = sorted(state.value for state in FINISHED_STATES)
_EXHAUSTED: Final = {"$expr": {"$gte": ["$attempts", "$maxAttempts"]}}
_ATTEMPTS_LEFT: Final = {"$expr": {"$lt": ["$attempts", "$maxAttempts"]}}
_NO_LEASE: Final = {"leaseOwner": "", "leaseExpiresAt": ""}
_PURGE_BATCH: Final = 1000


def _load(document: dict[str, Any]) -> ScheduledAction:
    return ScheduledAction.from_document(document)


class MongoScheduledActionStore(MongoStore):
    """:class:`~leadflow.ports.ScheduledActionStore` on a MongoDB collection."""

    DEFAULT_COLLECTION = "scheduledActions"
    INDEXES = (
        IndexModel([("actionId", ASCENDING)], name="actionId_unique", unique=True),
        IndexModel([("idempotencyKey", ASCENDING)], name="idempotencyKey_unique", unique=True),
        # claim_due and list(state): due actions in a state, oldest due first.
        IndexModel(
            [("state", ASCENDING), ("dueAt", ASCENDING), ("actionId", ASCENDING)],
            name="state_dueAt",
        ),
        # claim_due(partition=p): one partition's due actions (the partition leads, as a
        # shard key must in a sharded collection's claims).
        IndexModel(
            [
                ("partition", ASCENDING),
                ("state", ASCENDING),
                ("dueAt", ASCENDING),
                ("actionId", ASCENDING),
            ],
            name="partition_state_dueAt",
        ),
        IndexModel([("dueAt", ASCENDING), ("actionId", ASCENDING)], name="dueAt"),
        IndexModel(
            [("opportunityId", ASCENDING), ("state", ASCENDING)], name="opportunityId_state"
        ),
        # cancel_for_rule: a rule's pending actions, soonest due first.
        IndexModel(
            [
                ("ruleId", ASCENDING),
                ("state", ASCENDING),
                ("dueAt", ASCENDING),
                ("actionId", ASCENDING),
            ],
            name="ruleId_state_dueAt",
        ),
        # purge_finished: finished actions by the time they finished.
        IndexModel([("state", ASCENDING), ("finishedAt", ASCENDING)], name="state_finishedAt"),
    )
    _ORDER: ClassVar[list[tuple[str, int]]] = [("dueAt", ASCENDING), ("actionId", ASCENDING)]

    def __init__(self, target: MongoTarget, *, collection: str = DEFAULT_COLLECTION) -> None:
        super().__init__(target, collection=collection)

    @translated("action")
    def schedule(self, action: ScheduledAction) -> tuple[ScheduledAction, bool]:
        if is_handed_over(action):  # built and checked by the runtime: its document as is
            document = cast(Document, _bson_precision(action.to_document()))
        else:
            document = checked_document(action, ScheduledAction, "action")
        try:
            self._collection.insert_one(document)
        except DuplicateKeyError as exc:
            key = guard_literal("idempotency_key", document["idempotencyKey"])
            existing = self._collection.find_one({"idempotencyKey": key})
            if existing is not None:
                return _load(existing), False
            fields = duplicate_fields(exc)
            raise DuplicateError(
                f"action id {document['actionId']!r} is taken by an action with another key"
                if not fields or "actionId" in fields
                else f"the action collides on {sorted(fields)}"
            ) from exc
        return _load(document), True

    @translated("action_id")
    def get(self, action_id: str) -> ScheduledAction:
        return _load(self._require(valid_id("action_id", action_id)))

    def _require(self, action_id: str) -> Document:
        document = self._collection.find_one({"actionId": action_id})
        if document is None:
            raise NotFoundError(f"no scheduled action {action_id!r}")
        return document

    @translated("now")
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
        """See the port. With a ``partition``, every filter carries ``partition`` (documents
        stored before the field existed count as partition 0). With ``action_types``, every
        filter also asks for an action without one (``action`` missing: a delivery, a
        sequence's timer visit) or one of those ``action.actionType``s (the server walks the
        due-order index and steps over the due actions of other types)."""
        now = when("now", now)
        worker = valid_text("worker", worker)
        limit = valid_limit(limit)
        until = later("lease", now, lease)
        partition = checked_partition(partition)
        types = checked_action_types(action_types)
        scope: Document = {}
        if partition is not None:
            scope = {"partition": {"$in": [0, None]} if partition == 0 else partition}
        if types is not None:
            scope["$and"] = [
                {
                    "$or": [
                        {"action": None},  # missing (or null): no type
                        {"action.actionType": {"$in": sorted(types)}},
                    ]
                }
            ]
        expired = {**scope, "state": _CLAIMED, "leaseExpiresAt": {"$lte": now}}
        # An action whose worker died on its last attempt is parked, not handed out again.
        self._collection.update_many(
            {**expired, **_EXHAUSTED},
            {"$set": {"state": _PARKED, "updatedAt": now}, "$unset": _NO_LEASE},
        )
        claimable = {
            **scope,
            "$or": [
                {"state": _PENDING, "dueAt": {"$lte": now}},
                {"state": _CLAIMED, "leaseExpiresAt": {"$lte": now}, **_ATTEMPTS_LEFT},
            ],
        }
        claim = {
            "$set": {
                "state": _CLAIMED,
                "leaseOwner": worker,
                "leaseExpiresAt": until,
                "updatedAt": now,
            },
            "$inc": {"attempts": 1},
        }
        claimed: builtins.list[ScheduledAction] = []
        while len(claimed) < limit:
            document = self._collection.find_one_and_update(
                claimable, claim, sort=self._ORDER, return_document=ReturnDocument.AFTER
            )
            if document is None:
                break
            claimed.append(_load(document))
        return claimed

    def _held(self, action_id: str, worker: str) -> Document:
        """The action's document if ``worker`` holds it; :class:`ConflictError` otherwise."""
        document = self._require(action_id)
        if document.get("state") != _CLAIMED or document.get("leaseOwner") != worker:
            raise ConflictError(
                f"worker {worker!r} does not hold action {action_id!r} "
                f"(state {document.get('state')!r}, lease owner {document.get('leaseOwner')!r})"
            )
        return document

    def _finish(
        self, query: Document, update: Document, action_id: str, worker: str
    ) -> ScheduledAction:
        document = self._collection.find_one_and_update(
            query, update, return_document=ReturnDocument.AFTER
        )
        if document is None:
            self._held(action_id, worker)
            raise ConflictError(f"action {action_id!r} changed while being finished")
        return _load(document)

    @translated("action_id")
    def mark_done(self, action_id: str, *, worker: str, now: datetime) -> ScheduledAction:
        action_id = valid_id("action_id", action_id)
        worker = valid_text("worker", worker)
        now = when("now", now)
        done = {"state": ScheduledActionState.DONE.value, "finishedAt": now, "updatedAt": now}
        return self._finish(
            {"actionId": action_id, "state": _CLAIMED, "leaseOwner": worker},
            {"$set": done, "$unset": _NO_LEASE},
            action_id,
            worker,
        )

    @translated("action_ids")
    def mark_done_many(
        self, action_ids: Sequence[str], *, worker: str, now: datetime
    ) -> builtins.list[ScheduledAction]:
        """Two round trips: one ``update_many`` over the held ones, then one ``find`` of what
        it finished (finished at ``now`` by ``worker``: finished states are final, and a
        worker id finishes an action at one time only once)."""
        ids = checked_ids(action_ids, "action_ids")
        worker = valid_text("worker", worker)
        now = when("now", now)
        if not ids:
            return []
        done = {"state": ScheduledActionState.DONE.value, "finishedAt": now, "updatedAt": now}
        self._collection.update_many(
            {"actionId": {"$in": ids}, "state": _CLAIMED, "leaseOwner": worker},
            {"$set": {**done, "leaseOwner": worker}, "$unset": {"leaseExpiresAt": ""}},
        )
        found = self._collection.find({"actionId": {"$in": ids}, **done, "leaseOwner": worker})
        return in_order(map(_load, found), ids)

    @translated("error")
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
        action_id = valid_id("action_id", action_id)
        worker = valid_text("worker", worker)
        now = when("now", now)
        retry_at = when("retry_at", retry_at)
        if not isinstance(error, str):
            raise InvalidInputError("expected a string", field="error")
        current = self._held(action_id, worker)
        attempts = int(current.get("attempts", 0))
        changes: Document = {"lastError": error[:2000], "updatedAt": now}
        if not isinstance(permanent, bool):
            raise InvalidInputError("expected a bool", field="permanent")
        if permanent or attempts >= int(current.get("maxAttempts", 1)):
            changes["state"] = _PARKED
        else:
            changes.update(state=_PENDING, dueAt=retry_at)
        # Matching the attempts read above makes the decision and the write one atomic step.
        return self._finish(
            {"actionId": action_id, "state": _CLAIMED, "leaseOwner": worker, "attempts": attempts},
            {"$set": changes, "$unset": _NO_LEASE},
            action_id,
            worker,
        )

    @translated("action_id")
    def retry(self, action_id: str, *, now: datetime) -> ScheduledAction:
        action_id = valid_id("action_id", action_id)
        now = when("now", now)
        document = self._collection.find_one_and_update(
            {"actionId": action_id, "state": _PARKED},
            {
                "$set": {"state": _PENDING, "dueAt": now, "attempts": 0, "updatedAt": now},
                "$unset": {**_NO_LEASE, "lastError": "", "finishedAt": ""},
            },
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            state = self._require(action_id).get("state")
            raise InvalidStateError(f"action {action_id!r} is {state}, not parked")
        return _load(document)

    @translated("opportunity_id")
    def cancel_for_opportunity(self, opportunity_id: str, *, now: datetime) -> int:
        opportunity_id = valid_id("opportunity_id", opportunity_id)
        now = when("now", now)
        result = self._collection.update_many(
            {"opportunityId": opportunity_id, "state": _PENDING},
            {"$set": {"state": _CANCELLED, "finishedAt": now, "updatedAt": now}},
        )
        return int(result.modified_count)

    @translated("rule_id")
    def cancel_for_rule(
        self, rule_id: str, *, now: datetime, below_version: int | None = None
    ) -> builtins.list[ScheduledAction]:
        """One ``find_one_and_update`` per action, soonest due first: each cancels an action
        that is still pending at that moment, so one a worker claims meanwhile is left to
        finish and never reported as cancelled. Cost: one round trip per cancelled action."""
        rule_id = valid_id("rule_id", rule_id)
        now = when("now", now)
        below = checked_version(below_version, "below_version")
        query: Document = {"ruleId": rule_id, "state": _PENDING}
        if below is not None:  # older versions, or none recorded (null matches a missing field)
            query["$or"] = [{"ruleVersion": {"$lt": below}}, {"ruleVersion": None}]
        cancel = {"$set": {"state": _CANCELLED, "finishedAt": now, "updatedAt": now}}
        cancelled: builtins.list[ScheduledAction] = []
        while True:
            document = self._collection.find_one_and_update(
                query,
                cancel,
                sort=self._ORDER,
                return_document=ReturnDocument.AFTER,
            )
            if document is None:
                return cancelled
            cancelled.append(_load(document))

    @translated("action_ids")
    def cancel_pending(
        self, action_ids: Sequence[str], *, now: datetime
    ) -> builtins.list[ScheduledAction]:
        """One ``find_one_and_update`` per id: each cancels the action if it is still pending
        at that moment. Cost: one round trip per id."""
        ids = checked_ids(action_ids, "action_ids")
        now = when("now", now)
        cancel = {"$set": {"state": _CANCELLED, "finishedAt": now, "updatedAt": now}}
        cancelled: builtins.list[ScheduledAction] = []
        for action_id in ids:
            document = self._collection.find_one_and_update(
                {"actionId": action_id, "state": _PENDING},
                cancel,
                return_document=ReturnDocument.AFTER,
            )
            if document is not None:
                cancelled.append(_load(document))
        return cancelled

    @translated("before")
    def purge_finished(self, before: datetime, *, limit: int = 10_000) -> int:
        """Finds up to ``limit`` finished actions (``state_finishedAt`` index), then deletes them
        by id in batches of 1,000, re-checking the state (finished states are final)."""
        cutoff = when("before", before)
        limit = valid_limit(limit)
        query = {"state": {"$in": _FINISHED}, "finishedAt": {"$lt": cutoff}}
        ids = [
            str(document["actionId"])
            for document in self._collection.find(query, {"actionId": 1, "_id": 0}, limit=limit)
        ]
        deleted = 0
        for start in range(0, len(ids), _PURGE_BATCH):
            batch = ids[start : start + _PURGE_BATCH]
            result = self._collection.delete_many(
                {"actionId": {"$in": batch}, "state": {"$in": _FINISHED}}
            )
            deleted += int(result.deleted_count)
        return deleted

    @translated("partition")
    def next_due(self, *, partition: int | None = None) -> datetime | None:
        """The first pending action in due order (the ``state_dueAt`` index, or the
        partition's)."""
        partition = checked_partition(partition)
        query: Document = {"state": _PENDING}
        if partition is not None:
            query = {"partition": {"$in": [0, None]} if partition == 0 else partition, **query}
        document = self._collection.find_one(query, {"dueAt": 1}, sort=self._ORDER)
        return None if document is None else document["dueAt"].astimezone(UTC)

    @translated("state")
    def list(
        self, state: ScheduledActionState | None = None, *, limit: int = 100
    ) -> builtins.list[ScheduledAction]:
        query: Document = {}
        if state is not None:
            guard_literal("state", state)
            try:
                query["state"] = ScheduledActionState(state).value
            except ValueError as exc:
                raise InvalidInputError(f"unknown state {state!r}", field="state") from exc
        cursor = self._collection.find(query, sort=self._ORDER, limit=valid_limit(limit))
        return [_load(d) for d in cursor]
