"""Holes found from outside (issue 19), each closed: what an attacker (or an unlucky host)
could pass through the public entry points, and the documented answer it now gets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow import (
    Activity,
    DuplicateError,
    Event,
    FollowUpRule,
    InvalidInputError,
    InvalidStateError,
    ManualClock,
    NotFoundError,
    PermissionDeniedError,
    Principal,
    Role,
    RuleEngine,
    StaleWriteError,
)
from leadflow.access import Operations, Policy
from leadflow.fields import ensure_utc
from leadflow.limits import DEFAULT_LIMITS
from leadflow.rules import validate_rule

from .access_support import (
    ADMIN,
    ALICE,
    DISPATCHER,
    SUPER,
    build_world,
    proxied_storage,
    snapshot,
)
from .helpers import T0
from .sql_support import fresh_storage, kind_params

# --------------------------------------------------------------------------- dates at the ends


@st.composite
def _ends(draw: st.DrawFn) -> datetime:
    hours = draw(st.integers(1, 23))
    minutes = draw(st.integers(0, hours * 60 - 1))
    if draw(st.booleans()):
        return datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=hours))) + timedelta(
            minutes=minutes
        )
    zone = timezone(-timedelta(hours=hours))
    return datetime(9999, 12, 31, 23, 59, tzinfo=zone) - timedelta(minutes=minutes)


_ENDS = _ends()
"""Aware datetimes within hours of the calendar's ends, in a zone for which no UTC datetime
exists (converting them overflows)."""


def _rule(operator: str, value: Any) -> dict[str, Any]:
    return {
        "ruleId": "edge",
        "name": "edge",
        "trigger": {
            "eventType": "estimate.created",
            "conditions": [{"field": "sentAt", "operator": operator, "value": value}],
        },
        "actions": [{"actionType": "send_notification", "template": "t"}],
    }


_SHARED_WORLD: list[Any] = []


def _world() -> Any:
    if not _SHARED_WORLD:
        _SHARED_WORLD.append(build_world(parked=False))
    return _SHARED_WORLD[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    when=_ENDS,
    operator=st.sampled_from(
        ["greater_than", "greater_or_equal", "less_than", "less_or_equal", "between"]
    ),
)
def test_rule_dates_at_the_calendar_ends_are_refused_not_overflowing(
    when: datetime, operator: str
) -> None:
    text = when.isoformat()
    value: Any = (
        ([text, "2026-01-01T00:00:00+00:00"] if when.year == 1 else ["2026-01-01T00:00:00Z", text])
        if operator == "between"
        else text
    )
    document = _rule(operator, value)
    rule = FollowUpRule.model_validate(document)
    with pytest.raises(InvalidInputError) as caught:
        validate_rule(rule)
    assert caught.value.field is not None and "conditions[0]" in caught.value.field
    with pytest.raises(InvalidInputError):
        RuleEngine([rule])
    world = _world()
    before = snapshot(world.flow)
    with pytest.raises(InvalidInputError):
        world.ops.create_rule(SUPER, document)
    assert snapshot(world.flow) == before


@settings(max_examples=30, deadline=None)
@given(when=_ENDS)
def test_datetimes_without_a_utc_twin_are_invalid_input(when: datetime) -> None:
    with pytest.raises(InvalidInputError):
        ensure_utc(when, "when")
    with pytest.raises(InvalidInputError):
        ManualClock(when)
    with pytest.raises(InvalidInputError):
        _world().flow.storage.activities.pending(when)


@settings(max_examples=100, deadline=None)
@given(
    when=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()
    )
)
def test_ensure_utc_in_utc_or_not_gives_the_utc_time_within_the_limits(when: datetime) -> None:
    """Its shortcut for a datetime in UTC already answers as the general path does."""
    limits = DEFAULT_LIMITS
    utc = when.astimezone(UTC)
    for value in (when, utc):
        if limits.earliest <= utc <= limits.latest:
            assert ensure_utc(value) == utc and ensure_utc(value).tzinfo is UTC
        else:
            with pytest.raises(InvalidInputError):
                ensure_utc(value)
    for edge in (limits.earliest, limits.latest):
        assert ensure_utc(edge) is edge
    for beyond in (limits.earliest - timedelta(microseconds=1), limits.latest + timedelta(1)):
        with pytest.raises(InvalidInputError):
            ensure_utc(beyond)


# --------------------------------------------------------------------------- str subclasses


class Unhashable(str):
    """A ``str`` that cannot be a dict key or a set member (like ``bson.code.Code``)."""

    __hash__ = None  # type: ignore[assignment]


def _code(text: str) -> str:
    from bson.code import Code

    return Code(text)


_SUBCLASSES = [Unhashable, _code]


def _same_or_documented(call: Any, plain_result: Any = None) -> Any:
    """``call()``'s result, or the documented error it raised; never a ``TypeError``."""
    from leadflow import LeadflowError

    try:
        return call()
    except (LeadflowError, ValidationError) as exc:
        return type(exc)


@pytest.mark.parametrize("wrap", _SUBCLASSES)
def test_str_subclasses_are_plain_text_to_operations(wrap: Any) -> None:
    world = build_world()
    ops, flow = world.ops, world.flow
    w = wrap
    calls = {
        "get_activity": lambda: ops.get_activity(SUPER, w("act-alice")).activity_id,
        "complete_activity": lambda: (
            ops.complete_activity(SUPER, w("act-alice"), w("successful")).activity.outcome
        ),
        "list_activities": lambda: [
            a.activity_id
            for a in ops.list_activities(
                SUPER, {"assignedTo": w("alice")}, sort={"field": w("dueDate")}
            ).items
        ],
        "update_rule": lambda: ops.update_rule(SUPER, w("delayed"), {"name": w("Later")}).rule.name,
        "test_rule": lambda: (
            ops.test_rule(
                SUPER,
                w("delayed"),
                {
                    "type": "estimate.created",
                    "time": T0,
                    "payload": {"opportunityId": w("opp-bob")},
                },
            ).matched
        ),
        "retry_action": lambda: ops.retry_action(SUPER, w(world.parked_id)).state.value,
        "audit_trail": lambda: len(ops.audit_trail(SUPER, w("rule"), w("delayed"))),
        "policy": lambda: sorted(
            Policy().with_overrides(activity__complete=[w("admin")]).table["activity.complete"]
        ),
        "principal": lambda: {Principal(w("alice"), Role.SALES): 1} and "hashable",
        "create_rule": lambda: (
            ops.create_rule(
                SUPER,
                {
                    "ruleId": "subclass",
                    "name": "in",
                    "trigger": {
                        "eventType": "opportunity.created",
                        "conditions": [{"field": "source", "operator": "in", "value": [w("web")]}],
                    },
                    "actions": [{"actionType": "send_notification", "template": "t"}],
                },
            ).rule_id
        ),
        "handle": lambda: (
            flow.handle(
                {
                    "type": "opportunity.created",
                    "time": T0,
                    "payload": {"opportunityId": w("opp-alice"), "source": w("web")},
                }
            ).matched_rules
        ),
        "evaluate": lambda: [
            r.rule_id
            for r in flow.rulebook.engine()
            .evaluate(
                {
                    "type": "opportunity.created",
                    "time": T0,
                    "payload": {"opportunityId": "opp-alice", "source": w("web"), "tags": [w("a")]},
                }
            )
            .matched_rules
        ],
    }
    for name, call in calls.items():
        result = _same_or_documented(call)
        assert not isinstance(result, type) or name == "principal", (name, result)
    assert "subclass" in calls["evaluate"]()
    stored = flow.storage.rules.get("subclass").trigger.conditions[0]
    assert type(stored.value[0]) is str  # type: ignore[union-attr]


def _storage(backend: str) -> Any:
    if backend == "memory":
        from leadflow.stores.memory import memory_storage

        return memory_storage()
    if backend == "mongo":
        import mongomock_ng

        from leadflow.stores.mongo import mongo_storage

        return mongo_storage(mongomock_ng.MongoClient(tz_aware=True)["subclass"])
    from leadflow.stores.sql import sql_storage

    return sql_storage("sqlite://")


@pytest.mark.parametrize("backend", ["memory", "mongo", "sqlite"])
@pytest.mark.parametrize("wrap", _SUBCLASSES)
def test_str_subclasses_are_plain_text_to_stores(wrap: Any, backend: str) -> None:
    w = wrap
    storage = _storage(backend)
    calls = {
        "activities.get": lambda: storage.activities.get(w("a")),
        "activities.last_activity_times": lambda: storage.activities.last_activity_times([w("a")]),
        "rules.get": lambda: storage.rules.get(w("a")),
        "rules.delete": lambda: storage.rules.delete(w("a")),
        "scheduled.get": lambda: storage.scheduled.get(w("a")),
        "scheduled.retry": lambda: storage.scheduled.retry(w("a"), now=T0),
        "scheduled.mark_done": lambda: storage.scheduled.mark_done(w("a"), worker=w("w"), now=T0),
        "scheduled.mark_done_many": lambda: storage.scheduled.mark_done_many(
            [w("a")], worker=w("w"), now=T0
        ),
        "scheduled.cancel_for_opportunity": lambda: storage.scheduled.cancel_for_opportunity(
            w("a"), now=T0
        ),
        "scheduled.cancel_for_rule": lambda: storage.scheduled.cancel_for_rule(w("a"), now=T0),
        "counters.next": lambda: storage.counters.next(w("a")),
        "jobs.get_slot": lambda: storage.jobs.get_slot(w("j"), w("s")),
    }
    for name, call in calls.items():
        try:
            _same_or_documented(call)
        except TypeError as exc:
            pytest.fail(f"{backend} {name}: {exc!r}")
    assert storage.counters.next("a") == 2


# --------------------------------------------------------------------------- refusals write nothing


@contextmanager
def _world_on(backend: str, tmp_path: Path) -> Iterator[Any]:
    if backend in ("memory", "mongo"):
        yield build_world(backend, parked=False)
        return
    with fresh_storage(backend, tmp_path) as storage:
        yield build_world(storage=storage, parked=False)


_REFUSING_BACKENDS = ["memory", "mongo", *kind_params()]


@pytest.mark.parametrize("backend", _REFUSING_BACKENDS)
def test_refused_writes_leave_no_outbox_entry(backend: str, tmp_path: Path) -> None:
    with _world_on(backend, tmp_path) as world:
        ops, flow = world.ops, world.flow
        before = snapshot(flow)
        taken = {
            "activityId": "act-alice",
            "opportunityId": "opp-alice",
            "activityType": "call",
            "subject": "logged call",
            "assignedTo": "alice",
            "dueDate": T0,
            "completedDate": T0,
        }
        with pytest.raises(DuplicateError):
            ops.create_activity(ADMIN, taken)
        assert snapshot(flow) == before
        with pytest.raises(DuplicateError):
            flow.record_activity(Activity.model_validate(taken))
        assert snapshot(flow) == before
        with pytest.raises(StaleWriteError):
            flow.complete_activity(
                "act-alice", outcome=None, completed_by="alice", expected_version=7
            )
        with pytest.raises(InvalidInputError):
            flow.complete_activity(
                "act-alice", outcome=None, completed_by="alice", expected_version="1"
            )
        assert snapshot(flow) == before
        flow.complete_activity("act-alice", outcome=None, completed_by="alice")
        done = snapshot(flow)
        with pytest.raises(InvalidStateError):
            flow.complete_activity("act-alice", outcome=None, completed_by="alice")
        assert snapshot(flow) == done


# --------------------------------------------------------------------------- reserved ids

_SPACE = st.text(
    st.sampled_from(
        [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\u3000", "\u00a0", "\u2003", "\u2028"]
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(
    before=_SPACE,
    after=st.one_of(st.just(""), _SPACE),
    prefix=st.sampled_from(["auto-", "AUTO-", "Auto-"]),
    who=st.sampled_from([ADMIN, DISPATCHER]),
)
def test_staff_cannot_claim_automation_ids_behind_whitespace(
    before: str, after: str, prefix: str, who: Principal
) -> None:
    world = _world()
    snap = snapshot(world.flow)
    document = {
        "activityId": f"{before}{prefix}x1{after}",
        "opportunityId": "opp-alice",
        "activityType": "note",
        "subject": "s",
        "assignedTo": "alice",
    }
    with pytest.raises((InvalidInputError, ValidationError)) as caught:
        world.ops.create_activity(who, document)
    if isinstance(caught.value, InvalidInputError):
        assert caught.value.field == "activityId"
    assert snapshot(world.flow) == snap


# --------------------------------------------------------------------------- the same work


def test_a_colleagues_activity_and_a_missing_one_cost_the_same_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not wall time (noisy): the store calls made and the activities built on each path."""
    storage, proxies = proxied_storage(activities="activities")
    world = build_world(storage=storage, parked=False)
    built: list[str] = []
    validate = Activity.model_validate.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(cls.__name__)
        return validate(cls, *args, **kwargs)

    monkeypatch.setattr(Activity, "model_validate", classmethod(counting))
    work: dict[str, tuple[Any, ...]] = {}
    for name, activity_id in (("colleague", "act-bob"), ("missing", "act-nobody")):
        proxies["activities"].calls.clear()
        built.clear()
        with pytest.raises(NotFoundError) as caught:
            world.ops.get_activity(ALICE, activity_id)
        calls = [(n, len(a), sorted(k)) for n, a, k in proxies["activities"].calls]
        work[name] = (calls, list(built), str(caught.value).replace(activity_id, "ID"))
    assert work["colleague"] == work["missing"]
    assert work["colleague"][0] == [("get", 1, [])] and work["colleague"][1] == ["Activity"]


# --------------------------------------------------------------------------- NUL characters


@settings(max_examples=40, deadline=None)
@given(
    where=st.sampled_from(["subject", "description", "metadata", "metadata-list"]),
    text=st.text(max_size=5).map(lambda t: t[:2] + "\x00" + t[2:]),
)
def test_nul_in_any_text_is_refused_by_the_model_on_every_backend(where: str, text: str) -> None:
    document: dict[str, Any] = {
        "opportunityId": "opp-alice",
        "activityType": "note",
        "subject": "s",
        "assignedTo": "alice",
    }
    if where == "metadata":
        document["metadata"] = {"note": text}
    elif where == "metadata-list":
        document["metadata"] = {"notes": [{"deep": [text]}]}
    else:
        document[where] = text
    world = _world()
    before = snapshot(world.flow)
    with pytest.raises((ValidationError, InvalidInputError)):
        world.ops.create_activity(ADMIN, document)
    assert snapshot(world.flow) == before
    with pytest.raises((ValidationError, InvalidInputError)):
        Event.model_validate({"type": "x.y", "time": T0, "payload": {"k": [text]}})
    with pytest.raises((ValidationError, InvalidInputError)):
        FollowUpRule.model_validate({**_rule("equals", text), "name": "n"})
    with pytest.raises((ValidationError, InvalidInputError)):
        FollowUpRule.model_validate({**_rule("exists", None), "description": text})


# --------------------------------------------------------------------------- due after latest


@settings(max_examples=40, deadline=None)
@given(
    hours_before=st.integers(1, 400),  # within a lease of the end the runtime cannot run any
    delay=st.sampled_from([0, 1, 24, 48, 240, {"amount": 3, "unit": "days"}]),
)
def test_one_outcome_for_a_due_date_after_the_limits(hours_before: int, delay: Any) -> None:
    from leadflow import LeadFlow
    from leadflow.limits import DEFAULT_LIMITS

    latest = DEFAULT_LIMITS.latest
    when = latest - timedelta(hours=hours_before)
    document = {
        "ruleId": "late",
        "name": "late",
        "trigger": {"eventType": "estimate.created"},
        "actions": [{"actionType": "send_notification", "template": "t", "delay": delay}],
    }
    rule = FollowUpRule.model_validate(document)
    past = when + rule.actions[0].delay.as_timedelta() > latest
    event = {"type": "estimate.created", "time": when, "payload": {"opportunityId": "o"}}
    flow = LeadFlow.in_memory(clock=ManualClock(when), rules=[rule])
    ops = Operations(flow)
    if past:
        with pytest.raises(InvalidInputError):
            RuleEngine([rule]).evaluate(event)
        with pytest.raises(InvalidInputError):
            ops.test_rule(SUPER, "late", event)
        result = flow.handle(event)
        assert [e for e in result.errors if "after limits.latest" in str(e)]
        assert not result.scheduled and not result.executed
        assert flow.storage.scheduled.list() == []
    else:
        [planned] = RuleEngine([rule]).evaluate(event).planned
        assert ops.test_rule(SUPER, "late", event).planned[0].due_at == planned.due_at
        result = flow.handle(event)  # planned (sending may fail: there is no opportunity "o")
        assert result.matched_rules == ["late"]
        assert not [e for e in result.errors if "could not be planned" in str(e)]


# ------------------------------------------------------------- recorded completions: who, when

LOGGED_CALL = {
    "opportunityId": "opp-alice",
    "activityType": "call",
    "subject": "logged call",
    "outcome": "callback_requested",
}


def test_recording_a_completed_activity_takes_the_permission_to_complete() -> None:
    """A dispatcher may record activities but not complete them: recording one already
    completed (which sets off follow-ups for the rep) is refused the same way, and writes
    nothing; an admin may (they may complete anyone's)."""
    world = build_world(parked=False)
    before = snapshot(world.flow)
    logged = {**LOGGED_CALL, "assignedTo": "alice", "completedDate": T0}
    with pytest.raises(PermissionDeniedError):
        world.ops.create_activity(DISPATCHER, logged)
    assert snapshot(world.flow) == before
    planned = {k: v for k, v in LOGGED_CALL.items() if k != "outcome"}
    world.ops.create_activity(DISPATCHER, {**planned, "assignedTo": "alice"})  # open: fine
    created = world.ops.create_activity(ADMIN, logged)
    assert created.completed_by == "admin-1"


@pytest.mark.parametrize(
    ("offset", "allowed"),
    [
        (timedelta(hours=-23), True),
        (timedelta(days=-30), False),
        (timedelta(days=-1, seconds=-1), False),
        (timedelta(minutes=4), True),
        (timedelta(hours=1), False),
    ],
)
def test_a_recorded_completion_is_dated_within_the_policy_bound(
    offset: timedelta, allowed: bool
) -> None:
    world = build_world(parked=False)
    before = snapshot(world.flow)
    logged = {**LOGGED_CALL, "completedDate": world.flow.now() + offset}
    if allowed:
        assert world.ops.create_activity(ALICE, logged).completed_by == "alice"
        return
    with pytest.raises(InvalidInputError) as caught:
        world.ops.create_activity(ALICE, logged)
    assert caught.value.field == "completedDate"
    assert snapshot(world.flow) == before


def test_the_backdating_bound_is_a_policy_setting() -> None:
    lenient = Policy(max_backdate=timedelta(days=40))
    assert lenient.with_overrides(audit__read=["admin"]).max_backdate == timedelta(days=40)
    world = build_world(parked=False, policy=lenient)
    logged = {**LOGGED_CALL, "completedDate": world.flow.now() - timedelta(days=30)}
    assert world.ops.create_activity(ALICE, logged).completed_date is not None
    for bad in (timedelta(days=-1), "P1D", 86400):
        with pytest.raises(InvalidInputError) as caught:
            Policy(max_backdate=bad)  # type: ignore[arg-type]
        assert caught.value.field == "max_backdate"
