"""The runtime's hand-over of the models it built to the stores
(:func:`leadflow.stores.checks.handed_over`): a handed-over model is taken without the store's
checks; the same model given by a host directly, or a copy of it, is checked in full, on every
backend; a host's own event with a payload changed since it was built is refused where it
comes in; and a memory store still shares no document with the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mongomock_ng
import pytest
from pydantic import ValidationError

from leadflow import Event, FollowUpRule, LeadFlow, ManualClock
from leadflow.errors import ConflictError, InvalidInputError, NotFoundError
from leadflow.facts import LeadArrival
from leadflow.models import Action, Activity
from leadflow.ports import Storage
from leadflow.records import ScheduledAction, ScheduledActionState
from leadflow.runtime.acknowledgement import mark_done
from leadflow.sequences import Enrollment, SequenceDefinition
from leadflow.stores.checks import check_model, handed_over, is_handed_over
from leadflow.stores.memory import memory_storage
from leadflow.stores.memory.fast import fast_memory_storage
from leadflow.stores.mongo import mongo_storage

from .sql_support import fresh_storage, on_postgres

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("fast", id="fast"),
    pytest.param("sqlite-memory", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=on_postgres),
    pytest.param("mongomock", id="mongomock"),
]
REFUSED = (InvalidInputError, ValidationError)


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    with _storage(request.param, tmp_path) as storage:
        yield storage


@contextmanager
def _storage(kind: str, tmp_path: Path) -> Iterator[Storage]:
    if kind == "memory":
        yield memory_storage()
    elif kind == "fast":
        yield fast_memory_storage()
    elif kind == "mongomock":
        yield mongo_storage(mongomock_ng.MongoClient()["handed"])
    else:
        with fresh_storage(kind, tmp_path) as sql:
            yield sql


def _deep(levels: int) -> dict[str, Any]:
    """A document nested ``levels`` deep: beyond the document limits (32), storable anyway."""
    document: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        document = {"a": document}
    return document


def _action(key: str, payload: dict[str, Any]) -> ScheduledAction:
    event = Event(id=f"ev-{key}", type="test.event", time=T0, payload=payload)
    return ScheduledAction(
        idempotency_key=key,
        event=event,
        rule_id="r1",
        action=Action.model_validate({"actionType": "send_notification", "template": "t"}),
        opportunity_id="o1",
        due_at=T0 + timedelta(hours=1),
        created_at=T0,
    )


def _activity(activity_id: str) -> Activity:
    return Activity.model_validate(
        {
            "activityId": activity_id,
            "opportunityId": "o1",
            "activityType": "call",
            "subject": "Call",
            "metadata": {"note": {}},
            "createdBy": "u1",
            "updatedBy": "u1",
            "createdAt": T0,
            "updatedAt": T0,
        }
    )


# ---------------------------------------------------------------------- every backend


def test_a_changed_action_from_a_host_is_refused_handed_over_or_not(storage: Storage) -> None:
    """What a host gives a store itself is checked, even an action equal to one the runtime
    handed over before, and a copy of a model is never handed over with it."""
    fine = _action("k1", {"note": {}})
    assert handed_over(storage.scheduled.schedule, fine)[1]
    action = _action("k2", {"note": {}})
    action.event.payload["note"] = _deep(40)  # changed after it was validated
    with pytest.raises(REFUSED):
        storage.scheduled.schedule(action)
    with pytest.raises(REFUSED):  # a copy of a handed-over model is checked
        handed_over(lambda copy: storage.scheduled.schedule(copy), action.model_copy(), fine)
    activity = _activity("a1")
    extra = activity.metadata.model_extra
    assert extra is not None
    extra["note"] = _deep(40)
    with pytest.raises(REFUSED):
        storage.activities.add(activity)
    assert [a.idempotency_key for a in storage.scheduled.list(limit=10)] == ["k1"]
    assert storage.activities.for_opportunity("o1") == []


@pytest.mark.parametrize(
    "kind", ["fast", "sqlite-memory", pytest.param("postgres", marks=on_postgres)]
)
def test_a_handed_over_model_is_taken_without_the_checks(kind: str, tmp_path: Path) -> None:
    """The proof that the checks are skipped: a model that fails them is taken when handed
    over (the runtime never hands over such a model; a host's is refused, above). The
    reference memory store builds every copy through pydantic, and MongoDB's stores read what
    they insert back through the model: they are counted instead (below)."""
    with _storage(kind, tmp_path) as storage:
        action = _action("k1", {"note": {}})
        action.event.payload["note"] = _deep(40)
        stored, created = handed_over(storage.scheduled.schedule, action)
        assert created and stored.idempotency_key == "k1"
        activity = _activity("a1")
        extra = activity.metadata.model_extra
        assert extra is not None
        extra["note"] = _deep(40)
        assert handed_over(storage.activities.add, activity).activity_id == "a1"
        # The hand-over ended with the call: the same object given again is checked again.
        with pytest.raises(REFUSED):
            storage.scheduled.schedule(action.model_copy(update={"idempotency_key": "k2"}))


def test_the_reference_memory_store_skips_its_document_checks_for_a_hand_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from leadflow.stores.memory import activities, scheduled

    checked: list[str] = []
    for module in (activities, scheduled):
        original = module.check_document

        def counting(value: Any, field: str, *, _original: Any = original, **kw: Any) -> int:
            checked.append(field)
            return int(_original(value, field, **kw))

        monkeypatch.setattr(module, "check_document", counting)
    storage = memory_storage()
    handed_over(storage.scheduled.schedule, _action("k1", {"note": {}}))
    handed_over(storage.activities.add, _activity("a1"))
    assert checked == []
    storage.scheduled.schedule(_action("k2", {"note": {}}))
    storage.activities.add(_activity("a2"))
    assert checked == ["event.payload", "action.params", "metadata"]


def test_on_mongo_a_handed_over_model_is_validated_once_not_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = mongo_storage(mongomock_ng.MongoClient()["handed"])
    counts: dict[str, int] = {}
    for cls in (ScheduledAction, Activity):
        _counting(monkeypatch, cls, counts)
    actions, activities = [_action("k1", {}), _action("k2", {})], [_activity("a1"), _activity("a2")]
    counts.clear()
    handed_over(storage.scheduled.schedule, actions[0])
    handed_over(storage.activities.add, activities[0])
    assert counts == {"ScheduledAction": 1, "Activity": 1}  # read back from the document
    storage.scheduled.schedule(actions[1])
    storage.activities.add(activities[1])
    assert counts == {"ScheduledAction": 3, "Activity": 3}  # checked, then read back


# ---------------------------------------------------------------------- the mechanism


def test_nothing_is_handed_over_outside_a_hand_over_not_even_none(storage: Storage) -> None:
    # The store-level fuzz found it: a lookup without a default answered None for None.
    assert not is_handed_over(None)
    for call in (lambda: storage.activities.add(None), lambda: storage.scheduled.schedule(None)):
        with pytest.raises(InvalidInputError):
            call()  # type: ignore[arg-type]


def test_check_model_trusts_only_the_objects_handed_over_for_the_call() -> None:
    good = LeadArrival(event_id="e1", opportunity_id="o1", arrived_at=T0)
    bad = LeadArrival(event_id="e2", opportunity_id="o2", arrived_at=T0)
    object.__setattr__(bad, "opportunity_id", "not an id!")  # what a frozen model still allows
    seen: list[bool] = []

    def store(value: LeadArrival) -> LeadArrival:
        seen.append(is_handed_over(value))
        return check_model(value, LeadArrival, "arrival")

    assert handed_over(store, bad) is bad  # taken as it is: no dump, no validation
    with pytest.raises(ValidationError):
        store(bad)
    copy = check_model(good, LeadArrival, "arrival")
    assert copy == good and copy is not good  # the full check hands back a copy
    # Only the named models are handed over; a list passes as the call's one argument.
    assert handed_over(lambda items: [is_handed_over(i) for i in items], [good, bad], good) == [
        True,
        False,
    ]
    assert seen == [True, False] and not is_handed_over(bad)
    with pytest.raises(ValueError):  # the hand-over ends when the call raises, too
        handed_over(_raise, good)
    assert not is_handed_over(good)


def test_one_or_several_models_are_handed_over_by_identity_alone() -> None:
    first = LeadArrival(event_id="e1", opportunity_id="o1", arrived_at=T0)
    second = LeadArrival(event_id="e2", opportunity_id="o2", arrived_at=T0)
    twin = first.model_copy()  # equal to ``first``, another object
    assert twin == first and twin is not first

    def seen(items: list[object]) -> list[bool]:
        return [is_handed_over(item) for item in items]

    items: list[object] = [first, second, twin, None]
    # one model named, several named, the value itself: only those objects, no copy of them
    assert handed_over(seen, items, first) == [True, False, False, False]
    assert handed_over(seen, items, first, second) == [True, True, False, False]
    assert handed_over(lambda v: [is_handed_over(v), *seen(items)], first) == [
        True, True, False, False, False,
    ]  # fmt: skip
    # a hand-over inside another (a store calling another store) is its own; the outer is back
    outer = handed_over(
        lambda _: (handed_over(seen, items, second), seen(items)), items, first, twin
    )
    assert outer == ([False, True, False, False], [True, False, True, False])
    assert seen(items) == [False, False, False, False]


def _raise(value: object) -> None:
    raise ValueError("the store failed")


# ---------------------------------------------------------------------- the runtime's path


def _rule() -> FollowUpRule:
    return FollowUpRule.model_validate(
        {
            "ruleId": "r1",
            "name": "call and remind",
            "trigger": {"eventType": "opportunity.created", "conditions": []},
            "actions": [
                {"actionType": "create_activity", "subject": "Call", "activityType": "call"},
                {"actionType": "send_notification", "template": "later", "delay": 2},
            ],
        }
    )


def _flow(storage: Storage) -> LeadFlow:
    flow = LeadFlow.in_memory(clock=ManualClock(T0), rules=[_rule()], reps=["al"], storage=storage)
    gateway: Any = flow.integrations.opportunities
    gateway.add("o1", owner="al")
    return flow


def _counting(monkeypatch: pytest.MonkeyPatch, cls: type[Any], counts: dict[str, int]) -> None:
    original: Callable[..., Any] = cls.model_validate

    def model_validate(*args: Any, **kwargs: Any) -> Any:
        counts[cls.__name__] = counts.get(cls.__name__, 0) + 1
        return original(*args, **kwargs)

    monkeypatch.setattr(cls, "model_validate", model_validate)


@pytest.mark.parametrize(
    "kind", [pytest.param("sqlite-memory"), pytest.param("postgres", marks=on_postgres)]
)
def test_on_sql_the_runtime_hands_its_models_over_unchecked(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime's own action, activity and fact are not validated again by the stores; a
    host storing them itself pays one validation each."""
    with fresh_storage(kind, tmp_path) as storage:
        flow = _flow(storage)
        flow.engine()
        counts: dict[str, int] = {}
        for cls in (ScheduledAction, Activity, LeadArrival):
            _counting(monkeypatch, cls, counts)
        event = {"eventId": "e1", "eventType": "opportunity.created", "occurredAt": T0}
        result = flow.handle({**event, "payload": {"opportunityId": "o1"}})
        assert [run.ok for run in result.executed] == [True] and len(result.scheduled) == 1
        assert counts == {}, counts
        action, activity = _action("host", {}), _activity("host-activity")
        arrival = LeadArrival(event_id="e9", opportunity_id="o9", arrived_at=T0)
        counts.clear()
        storage.scheduled.schedule(action)
        storage.activities.add(activity)
        assert storage.analytics is not None
        storage.analytics.record_arrival(arrival)
        assert counts == {"ScheduledAction": 1, "Activity": 1, "LeadArrival": 1}


@pytest.mark.parametrize("make", [memory_storage, fast_memory_storage])
def test_a_host_event_changed_after_it_was_built_is_refused_where_it_comes_in(
    make: Callable[[], Storage],
) -> None:
    flow = _flow(make())
    event = Event(id="e1", type="opportunity.created", time=T0, payload={"opportunityId": "o1"})
    event.payload["extra"] = _deep(40)
    with pytest.raises(InvalidInputError) as refused:
        flow.handle(event)
    assert refused.value.field is not None and refused.value.field.startswith("payload")
    [slot] = flow.handle_many([event])
    assert isinstance(slot, InvalidInputError)
    assert flow.storage.scheduled.list(limit=10) == []
    assert flow.storage.activities.for_opportunity("o1") == []


@pytest.mark.parametrize("make", [memory_storage, fast_memory_storage])
def test_a_memory_store_shares_no_document_with_the_host_after_a_hand_over(
    make: Callable[[], Storage],
) -> None:
    flow = _flow(make())
    payload: dict[str, Any] = {"opportunityId": "o1", "tags": ["a"]}
    result = flow.handle({"eventId": "e1", "eventType": "opportunity.created", "payload": payload})
    payload["tags"].append("changed")  # the host's own document, changed afterwards
    payload["new"] = 1
    result.scheduled[0].event.payload["more"] = 2  # and what the result hands back
    [pending] = flow.storage.scheduled.list(state=ScheduledActionState.PENDING, limit=10)
    assert pending.event.payload == {"opportunityId": "o1", "tags": ["a"]}
    [done] = flow.storage.scheduled.list(state=ScheduledActionState.DONE, limit=10)
    assert done.event.payload == {"opportunityId": "o1", "tags": ["a"]}


def _claimed(key: str) -> ScheduledAction:
    """A run-now action as the planner hands it over: stored already claimed by ``w1``."""
    action = _action(key, {"tags": ["a"], "nested": {"n": 1}})
    planned = action.action
    assert planned is not None
    return action._evolve(
        action=planned._evolve(params={"template": "t", "extra": {"x": [1]}}),
        state=ScheduledActionState.CLAIMED,
        attempts=1,
        lease_owner="w1",
        lease_expires_at=T0 + timedelta(minutes=5),
    )


def _change_documents(action: ScheduledAction) -> None:
    """What a handler could do to the runtime's own objects while the action runs."""
    action.event.payload["tags"].append("changed")
    action.event.payload["new"] = 1
    assert action.action is not None
    action.action.params["extra"]["x"].append(2)


_AS_STORED = ({"tags": ["a"], "nested": {"n": 1}}, {"template": "t", "extra": {"x": [1]}})


def _documents(action: ScheduledAction) -> tuple[dict[str, Any], dict[str, Any]]:
    assert action.action is not None
    return action.event.payload, action.action.params


@pytest.mark.parametrize("make", [memory_storage, fast_memory_storage])
@pytest.mark.parametrize("then", ["done", "done_many", "done_ids", "failed", "read", "expired"])
def test_a_claimed_action_handed_over_keeps_its_documents_as_stored(
    make: Callable[[], Storage], then: str
) -> None:
    """The fast store keeps a run-now action as the runtime's object beside a snapshot of its
    documents: whatever happens to it next (done, failed and retried, read while claimed,
    taken over after its lease ran out), the store shows the documents as they were stored,
    as the reference store does with its copy."""
    store = make().scheduled
    action = _claimed("k1")
    assert handed_over(store.schedule, action) == (action, True)  # the runtime's own object
    _change_documents(action)
    if then == "done":
        store.mark_done(action.action_id, worker="w1", now=T0)
    elif then == "done_many":
        assert len(store.mark_done_many([action.action_id], worker="w1", now=T0)) == 1
    elif then == "done_ids":  # the fast store's mark_done_ids, mark_done_many elsewhere
        ids = [action.action_id]
        assert mark_done(store, ids, worker="w1", now=T0) == ids
    elif then == "failed":
        store.mark_failed(action.action_id, worker="w1", now=T0, error="x", retry_at=T0)
        [again] = store.claim_due(T0, worker="w2")
        assert _documents(again) == _AS_STORED
        _documents(again)[0]["tags"].append("w2's change")  # a claimed copy is the caller's
    elif then == "read":
        assert _documents(store.get(action.action_id)) == _AS_STORED
        assert [_documents(a) for a in store.list(limit=5)] == [_AS_STORED]
        store.mark_done(action.action_id, worker="w1", now=T0)
    else:
        [again] = store.claim_due(T0 + timedelta(minutes=6), worker="w2")
        assert _documents(again) == _AS_STORED
        store.mark_done(action.action_id, worker="w2", now=T0 + timedelta(minutes=7))
    assert _documents(store.get(action.action_id)) == _AS_STORED
    assert [_documents(a) for a in store.list(limit=5)] == [_AS_STORED]


@pytest.mark.parametrize("make", [memory_storage, fast_memory_storage])
def test_a_claimed_action_handed_over_is_taken_over_once_its_lease_runs_out(
    make: Callable[[], Storage],
) -> None:
    """Kept out of the lease index by the fast store while it runs, a run-now action left
    unfinished is still found by ``claim_due`` once its lease ran out, and only then, in its
    own partition and for its own type; on its last attempt it is parked instead."""
    store = make().scheduled
    action = _claimed("k1")._evolve(partition=2)
    last = _claimed("k2")._evolve(attempts=3, max_attempts=3)
    for claimed in (action, last):
        assert handed_over(store.schedule, claimed)[1]
    expired = T0 + timedelta(minutes=5)
    assert store.claim_due(expired - timedelta(microseconds=1), worker="w2") == []
    assert store.claim_due(expired, worker="w2", partition=1) == []
    assert store.claim_due(expired, worker="w2", action_types=["create_activity"]) == []
    assert store.get(last.action_id).state is ScheduledActionState.CLAIMED
    assert store.claim_due(expired, worker="w2", partition=0) == []  # on its last attempt
    assert store.get(last.action_id).state is ScheduledActionState.PARKED
    [again] = store.claim_due(expired, worker="w2", partition=2)
    assert (again.action_id, again.lease_owner, again.attempts) == (action.action_id, "w2", 2)
    assert _documents(again) == _AS_STORED
    with pytest.raises(ConflictError):
        store.mark_done(action.action_id, worker="w1", now=expired)
    store.mark_done(action.action_id, worker="w2", now=expired)
    assert store.claim_due(expired + timedelta(hours=1), worker="w3") == []


@pytest.mark.parametrize("ending", ["\n", " ", "\t\n"])
def test_an_id_with_trailing_space_or_newline_is_read_as_the_models_read_it(
    storage: Storage, ending: str
) -> None:
    """The runtime's own checks of what it hands over (an opportunity id from the payload)
    agree with the models': ``$`` in Python's ``re`` also matches before a final newline, so
    ``"o1\\n"`` once passed for an id where the models strip it to ``"o1"``. The stored
    action then kept the raw id and cancelling the opportunity's follow-ups missed it."""
    flow = _flow(storage)
    result = flow.handle(
        {"id": "e1", "type": "opportunity.created", "payload": {"opportunityId": "o1" + ending}}
    )
    assert not result.errors
    (later,) = result.scheduled
    assert later.opportunity_id == "o1"
    (activity,) = storage.activities.for_opportunity("o1")
    assert storage.scheduled.get(later.action_id).opportunity_id == activity.opportunity_id
    assert storage.scheduled.cancel_for_opportunity("o1", now=T0) == 1


# ---------------------------------------------------------------------- a sequence's entry


def _new_enrollment(enrollment_id: str, opportunity_id: str) -> Enrollment:
    return Enrollment(
        enrollment_id=enrollment_id, sequence_id="s1", sequence_version=1,
        opportunity_id=opportunity_id, enrolled_at=T0,
    )  # fmt: skip


@pytest.mark.parametrize(
    "kind", ["memory", "fast", "sqlite-memory", pytest.param("postgres", marks=on_postgres)]
)
def test_a_handed_over_new_enrollment_is_taken_without_the_checks(
    kind: str, tmp_path: Path
) -> None:
    """The enrollment the sequencer builds at entry is handed over to ``enroll``: one that
    fails the checks is taken when handed over (the runtime never builds such a one); the same
    object given again after the call, or a host's, is refused and nothing is written."""
    with _storage(kind, tmp_path) as storage:
        store = storage.enrollments
        assert store is not None
        handed = _new_enrollment("e1", "o1")
        handed.context["bad"] = {"$where": "1"}
        stored, created = handed_over(store.enroll, handed)
        assert created and stored.revision == 1 and stored.context == {"bad": {"$where": "1"}}
        hosts = _new_enrollment("e2", "o2")
        hosts.context["bad"] = {"$where": "1"}
        for given in (hosts, handed):
            with pytest.raises(InvalidInputError):
                store.enroll(given)
        with pytest.raises(NotFoundError):
            store.get("e2")


def test_the_sequencer_hands_its_new_enrollment_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entering a sequence does not check again the enrollment the sequencer just built (a
    host's enroll call still does)."""
    from leadflow.stores import sequence_checks

    checked: list[str] = []
    original = sequence_checks._check_head

    def counting(head: Any, field: str) -> None:
        checked.append(head.enrollment_id)
        original(head, field)

    monkeypatch.setattr(sequence_checks, "_check_head", counting)
    flow = LeadFlow.in_memory(clock=ManualClock(T0))
    gateway: Any = flow.integrations.opportunities
    gateway.add("o1", owner="al")
    definition = SequenceDefinition.model_validate(
        {"sequenceId": "s1", "name": "s1", "entry": {"eventType": "opportunity.created"},
         "steps": [{"id": "hour", "kind": "wait", "delay": 1}]}
    )  # fmt: skip
    flow.sequences.publish(definition)
    result = flow.handle(
        {"id": "e1", "type": "opportunity.created", "payload": {"opportunityId": "o1"}}
    )
    assert [o.what for o in result.sequences] == ["enrolled"]
    assert checked == []
    storage = flow.storage
    assert storage.enrollments is not None
    storage.enrollments.enroll(_new_enrollment("e2", "o2"))
    assert checked == ["e2"]
