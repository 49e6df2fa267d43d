"""Test data shared by the contracts: fixed times, valid records, small assertion helpers.

Every time is a whole second after :data:`BASE_TIME` (never the wall clock), so backends that
keep milliseconds only (MongoDB) pass too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ...models import Activity, ActivityType, FollowUpRule
from ...queries import SortField
from ...records import AuditEntry, ScheduledAction
from ...sequences import Enrollment, SequenceDefinition

__all__ = [
    "BASE_TIME",
    "SORT_FIELDS",
    "TextSubclass",
    "assert_activity_utc",
    "assert_utc",
    "at",
    "enroll_many",
    "ids",
    "make_activity",
    "make_audit_entry",
    "make_delivery",
    "make_enrollment",
    "make_rule",
    "make_scheduled_action",
    "make_sequence",
    "make_step_action",
    "race",
    "with_version",
]

T = TypeVar("T")


class TextSubclass(str):
    """A ``str`` subclass: stores keep only its text (a contract hands one in where a string
    goes and expects plain ``str`` back)."""

    __slots__ = ()


BASE_TIME = datetime(2026, 1, 5, 9, tzinfo=UTC)
"""A Monday morning, UTC: the origin of every time in the contract tests."""

SORT_FIELDS: tuple[SortField, ...] = (
    "created_at",
    "updated_at",
    "due_date",
    "scheduled_date",
    "completed_date",
)


def at(*, days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    """:data:`BASE_TIME` shifted by the given amount."""
    return BASE_TIME + timedelta(days=days, hours=hours, minutes=minutes)


def make_activity(activity_id: str, **fields: Any) -> Activity:
    """A valid activity: opportunity ``opp-1``, a call, created at :data:`BASE_TIME`, unless
    ``fields`` (snake_case) say otherwise."""
    data: dict[str, Any] = {
        "activity_id": activity_id,
        "opportunity_id": "opp-1",
        "activity_type": ActivityType.CALL,
        "subject": f"subject of {activity_id}",
        "created_at": BASE_TIME,
    }
    data.update(fields)
    return Activity.model_validate(data)


def make_rule(rule_id: str, **fields: Any) -> FollowUpRule:
    """A valid rule on ``opportunity.created`` with one notification action."""
    data: dict[str, Any] = {
        "rule_id": rule_id,
        "name": f"rule {rule_id}",
        "trigger": {"event_type": "opportunity.created", "conditions": []},
        "actions": [{"action_type": "send_notification", "template": "welcome"}],
    }
    data.update(fields)
    return FollowUpRule.model_validate(data)


def _event(key: str, opportunity_id: str) -> dict[str, Any]:
    return {
        "id": f"evt-{key}",
        "type": "opportunity.created",
        "time": BASE_TIME,
        "payload": {"opportunityId": opportunity_id, "tags": ["web"]},
    }


def make_scheduled_action(key: str, **fields: Any) -> ScheduledAction:
    """A valid pending rule action with idempotency key ``key`` and id ``sa-<key>``: rule
    ``rule-1``'s first action (a notification), due (and planned) at :data:`BASE_TIME`, for
    opportunity ``opp-1``, unless ``fields`` (snake_case) say otherwise."""
    opportunity_id = fields.get("opportunity_id", "opp-1")
    data: dict[str, Any] = {
        "action_id": f"sa-{key}",
        "idempotency_key": key,
        "kind": "rule",
        "event": _event(key, opportunity_id),
        "rule_id": "rule-1",
        "action_index": 0,
        "action": {"action_type": "send_notification", "template": "welcome"},
        "opportunity_id": opportunity_id,
        "due_at": BASE_TIME,
        "created_at": BASE_TIME,
    }
    data.update(fields)
    return ScheduledAction.model_validate(data)


def make_delivery(key: str, **fields: Any) -> ScheduledAction:
    """A valid pending outbox delivery (kind ``delivery``: no rule, no action) with key ``key``
    and id ``sa-<key>``, for activity ``act-1`` of opportunity ``opp-1``, due at
    :data:`BASE_TIME`, unless ``fields`` say otherwise."""
    opportunity_id = fields.get("opportunity_id", "opp-1")
    data: dict[str, Any] = {
        "action_id": f"sa-{key}",
        "idempotency_key": key,
        "kind": "delivery",
        "event": _event(key, opportunity_id),
        "opportunity_id": opportunity_id,
        "activity_id": "act-1",
        "due_at": BASE_TIME,
        "created_at": BASE_TIME,
    }
    data.update(fields)
    return ScheduledAction.model_validate(data)


def make_step_action(key: str, **fields: Any) -> ScheduledAction:
    """A valid pending sequence step (kind ``step``) with key ``key`` and id ``sa-<key>``:
    visit 1 (``action_index``) of enrollment ``enr-1`` at step ``welcome`` of sequence
    ``seq-1`` version 1, running a notification, for opportunity ``opp-1``, due at
    :data:`BASE_TIME`, unless ``fields`` (snake_case) say otherwise (``action=None``: a
    timer)."""
    opportunity_id = fields.get("opportunity_id", "opp-1")
    data: dict[str, Any] = {
        "action_id": f"sa-{key}",
        "idempotency_key": key,
        "kind": "step",
        "event": _event(key, opportunity_id),
        "rule_id": "seq-1",
        "rule_name": "sequence seq-1",
        "rule_version": 1,
        "action_index": 1,
        "action": {"action_type": "send_notification", "template": "welcome"},
        "opportunity_id": opportunity_id,
        "enrollment_id": "enr-1",
        "step_id": "welcome",
        "due_at": BASE_TIME,
        "created_at": BASE_TIME,
    }
    data.update(fields)
    return ScheduledAction.model_validate(data)


def make_sequence(sequence_id: str, **fields: Any) -> SequenceDefinition:
    """A valid sequence definition ``sequence_id`` (version 1, a draft) of one step, a
    notification, unless ``fields`` (snake_case) say otherwise."""
    data: dict[str, Any] = {
        "sequence_id": sequence_id,
        "name": f"sequence {sequence_id}",
        "steps": [
            {
                "id": "welcome",
                "kind": "action",
                "action": {"action_type": "send_notification", "template": "welcome"},
            }
        ],
    }
    data.update(fields)
    return SequenceDefinition.model_validate(data)


def make_enrollment(enrollment_id: str, **fields: Any) -> Enrollment:
    """A valid new (active, revision 1) enrollment ``enrollment_id`` of opportunity ``opp-1``
    in version 1 of sequence ``seq-1``, enrolled at :data:`BASE_TIME`, unless ``fields``
    (snake_case) say otherwise."""
    data: dict[str, Any] = {
        "enrollment_id": enrollment_id,
        "sequence_id": "seq-1",
        "sequence_version": 1,
        "opportunity_id": "opp-1",
        "enrolled_at": BASE_TIME,
    }
    data.update(fields)
    return Enrollment.model_validate(data)


def enroll_many(store: Any, count: int) -> list[Enrollment]:
    """Enrollments ``e0`` ... of opportunities ``opp-0`` ..., enrolled in ``store``
    (:func:`make_enrollment` otherwise), as stored."""
    return [
        store.enroll(make_enrollment(f"e{n}", opportunity_id=f"opp-{n}"))[0] for n in range(count)
    ]


def make_audit_entry(entry_id: str, **fields: Any) -> AuditEntry:
    """A valid audit entry ``entry_id``: ``admin`` updated rule ``rule-1`` at
    :data:`BASE_TIME`, unless ``fields`` (snake_case) say otherwise."""
    data: dict[str, Any] = {
        "entry_id": entry_id,
        "subject": "rule",
        "subject_id": "rule-1",
        "change": "updated",
        "actor": "admin",
        "at": BASE_TIME,
    }
    data.update(fields)
    return AuditEntry.model_validate(data)


def ids(activities: Iterable[Activity]) -> list[str]:
    """The activities' ids, in order."""
    return [a.activity_id for a in activities]


def with_version(a: Activity, version: int) -> Activity:
    return a.model_copy(update={"version": version})


def assert_utc(value: datetime | None) -> None:
    """``value`` is None or an aware datetime with offset zero."""
    if value is not None:
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0), value


def assert_activity_utc(a: Activity) -> None:
    for name in ("scheduled_date", "due_date", "completed_date", "created_at", "updated_at"):
        assert_utc(getattr(a, name))


def race(calls: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``work(0)`` .. ``work(calls - 1)`` on as many threads released together by a
    barrier; returns each call's result or the exception it raised, in call order."""
    results: list[T | BaseException] = [RuntimeError("did not run")] * calls
    barrier = threading.Barrier(calls)

    def run(n: int) -> None:
        barrier.wait()
        try:
            results[n] = work(n)
        except BaseException as exc:  # reported to the test, which decides
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
