"""Builders for the access tests: a flow with role-checked operations on in-memory (or
mongomock) stores, a principal for every role with an opportunity and an activity of their own,
a parked action, a snapshot of everything a call could write, and store proxies that record the
arguments a store receives or hold two threads at the same point."""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from leadflow import (
    HandlerRegistry,
    LeadFlow,
    ManualClock,
    PermanentError,
    Principal,
    Role,
    ScheduledActionState,
    default_rules,
)
from leadflow.access import DEFAULT_POLICY, Operations, Policy
from leadflow.adapters import InMemoryOpportunities, RecordingEventSink
from leadflow.ports import Storage
from leadflow.stores.memory import memory_storage

from .helpers import T0

SUPER = Principal("root", Role.SUPER_ADMIN)
ADMIN = Principal("admin-1", Role.ADMIN)
DISPATCHER = Principal("disp-1", Role.DISPATCHER)
ALICE = Principal("alice", Role.SALES)
BOB = Principal("bob", Role.SALES)

BY_ROLE: dict[Role, Principal] = {
    Role.SUPER_ADMIN: SUPER,
    Role.ADMIN: ADMIN,
    Role.DISPATCHER: DISPATCHER,
    Role.SALES: ALICE,
}
"""One principal per role; each owns ``opp-<user>`` and is assigned ``act-<user>``."""

EVERYONE = (SUPER, ADMIN, DISPATCHER, ALICE, BOB)

PARKING_RULE = {
    "ruleId": "parking",
    "name": "Push to a CRM that refuses everything",
    "trigger": {"eventType": "estimate.created"},
    "actions": [{"actionType": "refused_sync"}],
}
DELAYED_RULE = {
    "ruleId": "delayed",
    "name": "Remind two days after a quote",
    "trigger": {"eventType": "estimate.created"},
    "actions": [{"actionType": "send_notification", "template": "quote_reminder", "delay": 48}],
}


def _refused_sync(ctx: Any) -> str:
    raise PermanentError("the CRM refuses this opportunity")


@dataclass
class World:
    """A flow, its operations (under ``policy``), its clock, and the parked action's id."""

    flow: LeadFlow
    ops: Operations
    clock: ManualClock
    parked_id: str

    @property
    def opportunities(self) -> InMemoryOpportunities:
        gateway = self.flow.integrations.opportunities
        assert isinstance(gateway, InMemoryOpportunities)
        return gateway

    @property
    def events(self) -> RecordingEventSink:
        sink = self.flow.integrations.events
        assert isinstance(sink, RecordingEventSink)
        return sink


def mongo_test_storage() -> Storage:
    import mongomock_ng

    from leadflow.stores.mongo import mongo_storage

    return mongo_storage(mongomock_ng.MongoClient(tz_aware=True)["leadflow_access"])


def build_world(
    backend: str = "memory",
    *,
    policy: Policy = DEFAULT_POLICY,
    storage: Storage | None = None,
    rules: Any = None,
    parked: bool = True,
) -> World:
    """A flow with the seed's default rules plus :data:`PARKING_RULE` and :data:`DELAYED_RULE`;
    opportunities ``opp-<user>`` owned by each principal, ``opp-shared`` owned by nobody;
    activities ``act-<user>`` (open, on ``opp-<user>``, customer ``cust-1``) assigned to each; and,
    with ``parked``, one parked action (the parking rule's, for an ``estimate.created`` on
    ``opp-root``)."""
    clock = ManualClock(T0)
    handlers = HandlerRegistry.default()
    handlers.register("refused_sync", _refused_sync)
    if storage is None:
        storage = memory_storage() if backend == "memory" else mongo_test_storage()
    flow = LeadFlow.in_memory(
        clock=clock,
        rules=default_rules() if rules is None else rules,
        reps=["alice", "bob", "carol"],
        handlers=handlers,
        storage=storage,
    )
    setup = Operations(flow)  # the default policy, whatever the world's: set-up is an admin's
    for doc in (PARKING_RULE, DELAYED_RULE):
        setup.create_rule(SUPER, doc)
    world = World(flow, Operations(flow, policy), clock, "")
    world.opportunities.add("opp-shared", owner=None)
    for principal in EVERYONE:
        user = principal.user_id
        world.opportunities.add(f"opp-{user}", owner=user, email=f"{user}@example.com")
        setup.create_activity(
            SUPER,
            {
                "activityId": f"act-{user}",
                "opportunityId": f"opp-{user}",
                "customerId": "cust-1",
                "activityType": "call",
                "subject": f"call for {user}",
                "assignedTo": user,
                "dueDate": T0 + timedelta(hours=1),
            },
        )
    if parked:
        result = flow.handle(
            {
                "id": "evt-parking",
                "type": "estimate.created",
                "time": T0,
                "payload": {"opportunityId": "opp-root"},
            }
        )
        [action] = flow.storage.scheduled.list(ScheduledActionState.PARKED)
        assert action.rule_id == "parking", result
        world.parked_id = action.action_id
    return world


# --------------------------------------------------------------------------- snapshots


def _all_activities(storage: Storage) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = storage.activities.list(limit=1000, cursor=cursor)
        found.extend(a.to_document() for a in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return found


def snapshot(flow: LeadFlow) -> dict[str, Any]:
    """Everything a call could have written: every store's contents, the events, notifications
    and messages sent, the opportunities' owners and statuses."""
    storage = flow.storage
    integrations = flow.integrations
    state: dict[str, Any] = {
        "activities": _all_activities(storage),
        "rules": [r.to_document() for r in storage.rules.list()],
        "scheduled": [a.model_dump() for a in storage.scheduled.list(limit=1000)],
        "audit": [e.model_dump() for e in storage.audit.list()],
    }
    counters = getattr(storage.counters, "_values", None)
    state["counters"] = dict(counters) if counters is not None else None
    for name, port in (
        ("events", integrations.events),
        ("notifications", integrations.notifier),
        ("messages", integrations.messenger),
    ):
        state[name] = copy.deepcopy(getattr(port, "events", getattr(port, "sent", None)))
    rows = getattr(integrations.opportunities, "_rows", {})
    state["opportunities"] = {k: r[:2] for k, r in rows.items()}  # (owner, status)
    return state


# --------------------------------------------------------------------------- store proxies


class Proxy:
    """Forwards every attribute to ``inner``; records each method call as (name, args, kwargs)
    and runs ``before[name]`` (if any) before the call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.before: dict[str, Callable[..., None]] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls.append((name, args, kwargs))
            hook = self.before.get(name)
            if hook is not None:
                hook(*args, **kwargs)
            return attr(*args, **kwargs)

        return call

    def called(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        with self._lock:
            return [(a, k) for n, a, k in self.calls if n == name]


def proxied_storage(**parts: str) -> tuple[Storage, dict[str, Proxy]]:
    """In-memory storage whose named parts (``activities="activities"``...) are wrapped in a
    :class:`Proxy`; returns the storage and the proxies by name."""
    storage = memory_storage()
    proxies = {name: Proxy(getattr(storage, name)) for name in parts}
    return dataclasses.replace(storage, **proxies), proxies


def rendezvous(parties: int, *, calls: int) -> Callable[..., None]:
    """A hook that holds each of the first ``calls`` callers until ``parties`` of them arrived
    (so the threads of a race all pass their check before any of them writes); later callers
    pass at once. The barrier's timeout only guards against a hung test."""
    barrier = threading.Barrier(parties)
    lock = threading.Lock()
    seen = [0]

    def hook(*args: Any, **kwargs: Any) -> None:
        with lock:
            seen[0] += 1
            wait = seen[0] <= calls
        if wait:
            barrier.wait(timeout=10)

    return hook


def run_threads(*targets: Callable[[], Any]) -> list[Any]:
    """Run each target in its own thread; return each one's result or the exception it raised."""
    results: list[Any] = [None] * len(targets)

    def runner(i: int, target: Callable[[], Any]) -> None:
        try:
            results[i] = target()
        except BaseException as exc:  # reported to the test
            results[i] = exc

    threads = [threading.Thread(target=runner, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results
