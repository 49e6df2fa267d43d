"""Pure decisions of the runtime, shared by any facade (sync today, async later): ids and keys,
the stored form of a planned action, and what a failure means. No I/O, no clock."""

from __future__ import annotations

import hashlib
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import ValidationError

from .. import limits as _limits
from ..errors import InvalidInputError, NotFoundError, PermanentError
from ..fields import ID_RE
from ..models import Activity, Event
from ..records import ActionKind, DuplicatePolicy, ScheduledAction, ScheduledActionState
from ..rules.engine import PlannedAction

__all__ = [
    "AUTOMATION_PREFIX",
    "action_id_for",
    "activity_id_for",
    "change_event",
    "completed_event",
    "delivery_action",
    "is_permanent",
    "open_key_for",
    "partition_for",
    "rule_action",
    "rule_actions",
]

_KEYS: Final = uuid.UUID("0c5b8f36-61a4-4e0a-b3f2-6f0c0ffee000").bytes
_ACTIVITY_IDS: Final = uuid.UUID("5d3c1f0e-7a51-4d1b-9b8e-1eadf1000000")
_ACTIVITY_NAMESPACE: Final = _ACTIVITY_IDS.bytes
_UUID_KEEP: Final = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_UUID_SET: Final = (0x8000 << 48) | (5 << 76)

AUTOMATION_PREFIX: Final = "auto-"
"""Ids leadflow derives start with this; ids chosen by callers may not, so the two never meet."""


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16, key=_KEYS).hexdigest()


def action_id_for(key: str) -> str:
    """The stored action's id for an idempotency key (the same key always gives the same id)."""
    return _digest(key)


def activity_id_for(idempotency_key: str) -> str:
    """The id of the activity an action creates: derived from its key, so a rerun finds it; in
    the automation namespace, so no caller-chosen id can pre-empt it."""
    # uuid.uuid5(_ACTIVITY_IDS, idempotency_key), written out: the SHA-1 of the namespace and
    # the name, with the version (5) and variant bits set, as text (the same ids, a third of
    # the cost: no UUID object is built).
    digest = hashlib.sha1(_ACTIVITY_NAMESPACE + idempotency_key.encode()).digest()
    value = (int.from_bytes(digest[:16]) & _UUID_KEEP) | _UUID_SET
    text = f"{value:032x}"
    return f"{AUTOMATION_PREFIX}{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def open_key_for(opportunity_id: str, rule_id: str) -> str:
    """The open key of a rule's automated activity on an opportunity: the store keeps at most
    one open activity per key. Ids cannot hold '/', so the pair is unambiguous."""
    return f"rule/{opportunity_id}/{rule_id}"


def partition_for(key: str, partitions: int) -> int:
    """The partition (``0 .. partitions - 1``) of the scheduled actions keyed by ``key`` (an
    opportunity id, or an event id for an event without one): CRC-32 of its UTF-8 bytes modulo
    ``partitions``. Stable across processes, hosts and Python versions (unlike ``hash()``), so
    every instance puts an opportunity's actions in the same partition; changing ``partitions``
    moves keys between partitions (see ``FlowSettings.partitions``)."""
    if partitions == 1:
        return 0
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions


def completed_event_id(activity_id: str) -> str:
    """One ``activity.completed`` event per activity (an activity completes once)."""
    return _digest(f"activity.completed/{activity_id}")


def completed_event(activity: Activity, payload: dict[str, object]) -> Event:
    """The ``activity.completed`` event of a completed activity."""
    assert activity.completed_date is not None
    return Event(
        id=completed_event_id(activity.activity_id),
        type="activity.completed",
        time=activity.completed_date,
        payload=payload,
        actor=activity.completed_by,
    )


def change_event(
    event_type: str,
    activity: Activity,
    *,
    previous: dict[str, object],
    actor: str | None,
    time: datetime,
    reason: str | None = None,
) -> Event:
    """The event of a change a person made to an activity (``activity.rescheduled``,
    ``activity.reassigned``, ``activity.updated``, ``activity.cancelled``): its payload is the
    changed activity's document (``version`` the one the change wrote), ``previous`` the
    changed fields' values before, ``changedBy`` and, when given, ``reason``. Its id is derived
    from the type, the activity and the version written: one event per change."""
    payload: dict[str, object] = {
        **activity.to_document(),
        "previous": previous,
        "changedBy": actor,
    }
    if reason is not None:
        payload["reason"] = reason
    return Event(
        id=_digest(f"{event_type}/{activity.activity_id}/{activity.version}"),
        type=event_type,
        time=time,
        payload=payload,
        actor=actor,
    )


def rule_action(
    planned: PlannedAction,
    event: Event,
    *,
    depth: int,
    explanation: str | None,
    run_now: bool,
    now: datetime,
    worker: str,
    lease: timedelta,
    max_attempts: int,
    partitions: int = 1,
) -> ScheduledAction:
    """The stored form of a planned action. One that runs now is stored already claimed by
    ``worker``, so a crash before it is done leaves a lease that expires, not a gap. Its
    partition comes from the event's opportunity (or the event itself)."""
    rule = planned.rule
    key = planned.idempotency_key
    fields: dict[str, Any] = dict(
        action_id=action_id_for(key),
        idempotency_key=key,
        kind=ActionKind.RULE,
        event=event,
        rule_id=rule.rule_id,
        rule_name=rule.name,
        rule_version=rule.version,
        action_index=planned.action_index,
        action=planned.action,
        opportunity_id=event.opportunity_id,
        partition=partition_for(event.opportunity_id or event.id, partitions),
        planned_at=planned.due_at,
        depth=depth,
        duplicates=DuplicatePolicy.ALLOW if rule.allow_duplicates else DuplicatePolicy.SKIP,
        explanation=explanation,
        due_at=now if run_now else planned.due_at,
        state=ScheduledActionState.CLAIMED if run_now else ScheduledActionState.PENDING,
        attempts=1 if run_now else 0,
        max_attempts=max_attempts,
        lease_owner=worker if run_now else None,
        lease_expires_at=now + lease if run_now else None,
        created_at=now,
        updated_at=now,
    )
    if _trusted(fields):
        return ScheduledAction._trusted(**fields)
    return ScheduledAction.model_validate(fields)  # refused (ValidationError), naming the field


_TIMES: Final = ("planned_at", "due_at", "lease_expires_at", "created_at")


def _trusted(fields: dict[str, Any]) -> bool:
    """Whether the fields of a rule action the runtime just built (from a validated event, a
    validated rule and its own clock) are known to pass :class:`ScheduledAction`'s checks
    without running them: its times within the datetime limits in UTC, its texts within their
    lengths, the event's opportunity an id. Anything else (a due time beyond the limits, a long
    explanation) goes through the validating constructor, which refuses it as any input."""
    limits = _limits.DEFAULT_LIMITS
    for name in _TIMES:
        value = fields[name]
        if value is None:
            continue
        if not isinstance(value, datetime) or value.tzinfo is not UTC:
            return False
        if not limits.earliest <= value <= limits.latest:
            return False
    key, name, explanation = fields["idempotency_key"], fields["rule_name"], fields["explanation"]
    depth, attempts, opportunity = fields["depth"], fields["max_attempts"], fields["opportunity_id"]
    return (
        (opportunity is None or (isinstance(opportunity, str) and bool(ID_RE.match(opportunity))))
        and isinstance(key, str)
        and 0 < len(key) <= 400
        and (name is None or (isinstance(name, str) and len(name) <= 200))
        and (explanation is None or (isinstance(explanation, str) and len(explanation) <= 20_000))
        and isinstance(depth, int)
        and 0 <= depth <= 100
        and isinstance(attempts, int)
        and 1 <= attempts <= 100
    )


class rule_actions:
    """:func:`rule_action` for the actions planned for one ``event``: ``rule_actions(event,
    ...)(planned, explanation=..., run_now=...)`` is ``rule_action(planned, event,
    explanation=..., run_now=..., ...)`` with the same other arguments, the same model (values,
    fields set, field order) or the same refusal. What is the same for every action of the
    event (its opportunity and partition, the times and lease a run-now claim takes, the
    checks of those values) is worked out once, when it is made; anything the checks do not
    pass goes through :func:`rule_action` itself (``tests/test_rule_actions.py`` holds the two
    together on random input)."""

    __slots__ = ("_args", "_claimed", "_event", "_pending", "_trusted")

    def __init__(
        self,
        event: Event,
        *,
        depth: int,
        now: datetime,
        worker: str,
        lease: timedelta,
        max_attempts: int,
        partitions: int = 1,
    ) -> None:
        self._event = event
        self._args: dict[str, Any] = dict(
            depth=depth, now=now, worker=worker, lease=lease, max_attempts=max_attempts,
            partitions=partitions,
        )  # fmt: skip
        opportunity = event.opportunity_id
        try:
            expires: datetime | None = now + lease
        except OverflowError:  # rule_action raises it for a run-now action, as before
            expires = None
        shared = {
            "kind": ActionKind.RULE,
            "event": event,
            "opportunity_id": opportunity,
            "partition": partition_for(opportunity or event.id, partitions),
            "depth": depth,
            "max_attempts": max_attempts,
            "created_at": now,
            "updated_at": now,
        }
        self._claimed = {
            **shared,
            "due_at": now,
            "state": ScheduledActionState.CLAIMED,
            "attempts": 1,
            "lease_owner": worker,
            "lease_expires_at": expires,
        }
        self._pending = {
            **shared,
            "state": ScheduledActionState.PENDING,
            "attempts": 0,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        self._trusted = (
            _trusted_time(now)
            and _trusted_time(expires)
            and (opportunity is None or bool(ID_RE.match(opportunity)))
            and type(depth) is int
            and 0 <= depth <= 100
            and type(max_attempts) is int
            and 1 <= max_attempts <= 100
        )

    def __call__(
        self, planned: PlannedAction, *, explanation: str | None, run_now: bool
    ) -> ScheduledAction:
        rule = planned.rule
        key = planned.idempotency_key
        name = rule.name
        due = planned.due_at
        if not (
            self._trusted
            and _trusted_time(due)
            and len(key) <= 400
            and (name is None or len(name) <= 200)
            and (explanation is None or len(explanation) <= 20_000)
        ):
            return rule_action(
                planned, self._event, explanation=explanation, run_now=run_now, **self._args
            )
        fields = self._claimed.copy() if run_now else self._pending.copy()
        if not run_now:
            fields["due_at"] = due
        fields["action_id"] = action_id_for(key)
        fields["idempotency_key"] = key
        fields["rule_id"] = rule.rule_id
        fields["rule_name"] = name
        fields["rule_version"] = rule.version
        fields["action_index"] = planned.action_index
        fields["action"] = planned.action
        fields["planned_at"] = due
        fields["duplicates"] = (
            DuplicatePolicy.ALLOW if rule.allow_duplicates else DuplicatePolicy.SKIP
        )
        fields["explanation"] = explanation
        return ScheduledAction._trusted(**fields)


def _trusted_time(value: object) -> bool:
    """A UTC datetime within the datetime limits (what :func:`_trusted` asks of a time)."""
    limits = _limits.DEFAULT_LIMITS
    return (
        isinstance(value, datetime)
        and value.tzinfo is UTC
        and limits.earliest <= value <= limits.latest
    )


def delivery_action(
    event: Event,
    activity: Activity,
    *,
    attempt: str,
    now: datetime,
    worker: str,
    lease: timedelta,
    max_attempts: int,
    partitions: int = 1,
) -> ScheduledAction:
    """An outbox entry stored (claimed by ``worker``) before the write that causes ``event``.

    Each attempt has its own key: an attempt that fails retires only its own entry, so it can
    never swallow the delivery of a later successful attempt; two deliveries of one event are
    harmless because the event id is derived from the activity and the rules' actions are keyed
    on it.
    """
    key = f"deliver/{activity.activity_id}/{attempt}"
    return ScheduledAction(
        action_id=action_id_for(key),
        idempotency_key=key,
        kind=ActionKind.DELIVERY,
        event=event,
        opportunity_id=activity.opportunity_id,
        activity_id=activity.activity_id,
        partition=partition_for(activity.opportunity_id, partitions),
        planned_at=now,
        due_at=now,
        state=ScheduledActionState.CLAIMED,
        attempts=1,
        max_attempts=max_attempts,
        lease_owner=worker,
        lease_expires_at=now + lease,
        created_at=now,
        updated_at=now,
    )


def is_permanent(error: BaseException) -> bool:
    """Whether retrying cannot help: a :class:`PermanentError`, bad input (invalid params, no
    opportunity on the event) or something that does not exist (an unknown opportunity)."""
    return isinstance(error, PermanentError | InvalidInputError | NotFoundError | ValidationError)
