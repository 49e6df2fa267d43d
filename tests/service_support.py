"""Builders for runtime tests: a LeadFlow on in-memory, mongomock or SQL stores with recording
integrations and a controlled clock, typed accessors for what the fakes recorded, principals."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from leadflow import (
    FlowSettings,
    FollowUpRule,
    HandlerRegistry,
    LeadFlow,
    ManualClock,
    Operations,
    Principal,
    Role,
    default_rules,
)
from leadflow.adapters import (
    InMemoryOpportunities,
    RecordingEventSink,
    RecordingMessenger,
    RecordingNotifier,
    StaticTeamDirectory,
)
from leadflow.ports import EventSink, Integrations, Notifier, Storage
from leadflow.stores.memory import memory_storage

from .helpers import T0
from .sql_support import NEEDS_SERVER, POSTGRES_URL

ADMIN = Principal("admin-1", Role.ADMIN)
SUPER = Principal("root", Role.SUPER_ADMIN)
DISPATCHER = Principal("disp-1", Role.DISPATCHER)
ALICE = Principal("alice", Role.SALES)
BOB = Principal("bob", Role.SALES)

BACKENDS = ["memory", "mongo"]
REPS = ("alice", "bob", "carol")
OPPORTUNITIES = (("opp-1", "alice"), ("opp-2", "bob"), ("opp-3", "alice"), ("opp-4", "bob"))


SQL_KINDS = ("sqlite-file", "postgres")
EVERY_BACKEND = [
    *BACKENDS,
    "sqlite-file",
    pytest.param("postgres", marks=pytest.mark.skipif(POSTGRES_URL is None, reason=NEEDS_SERVER)),
]
"""A runtime suite's ``backend`` parameters on every backend (close with :func:`close_sql`)."""
"""Backends ``new_storage`` also takes: a fresh SQLite file, a fresh schema on the test
server (``tests/sql_support.py``); :func:`close_sql` closes them (and drops the schemas)."""

_sql = ExitStack()


def close_sql() -> None:
    """Close the SQL storages :func:`new_storage` opened (their files and schemas go)."""
    _sql.close()


def new_storage(backend: str) -> Storage:
    """Fresh, empty stores: in memory, on a new mongomock database (job TTL indexes off:
    the simulated clock is not the server's), or one of :data:`SQL_KINDS`."""
    if backend == "memory":
        return memory_storage()
    if backend in SQL_KINDS:
        from .sql_support import fresh_storage

        directory = Path(tempfile.mkdtemp(prefix="leadflow-service-"))
        _sql.callback(shutil.rmtree, directory, ignore_errors=True)
        return _sql.enter_context(fresh_storage(backend, directory))
    if backend != "mongo":
        raise ValueError(f"unknown backend {backend!r}")
    import mongomock_ng

    from leadflow.stores.mongo import mongo_storage

    return mongo_storage(mongomock_ng.MongoClient(tz_aware=True)["leadflow_test"], job_ttl=False)


def build_flow(
    backend: str = "memory",
    *,
    rules: Iterable[FollowUpRule] | None = None,
    clock: ManualClock | None = None,
    handlers: HandlerRegistry | None = None,
    settings: FlowSettings | None = None,
    storage: Storage | None = None,
    notifier: Notifier | None = None,
    events: EventSink | None = None,
    **parts: Any,
) -> LeadFlow:
    """A flow at ``T0`` (a ManualClock) with the default rules (or ``rules``, stored as given),
    reps alice, bob and carol, and opportunities opp-1..opp-4 owned by alice and bob in turn.
    ``parts`` replace single stores of the bundle (e.g. ``activities=Slow(...)``)."""
    base = storage if storage is not None else new_storage(backend)
    if parts:
        base = dataclasses.replace(base, **parts)
    opportunities = InMemoryOpportunities()
    for opp, owner in OPPORTUNITIES:
        opportunities.add(opp, owner=owner, email=f"{opp}@example.com", phone="+15550100")
    integrations = Integrations(
        notifier=notifier if notifier is not None else RecordingNotifier(),
        messenger=RecordingMessenger(),
        opportunities=opportunities,
        team=StaticTeamDirectory(REPS),
        events=events if events is not None else RecordingEventSink(),
    )
    flow = LeadFlow(
        base, integrations, clock=clock or ManualClock(T0), handlers=handlers, settings=settings
    )
    for rule in default_rules() if rules is None else rules:
        base.rules.create(rule)
    return flow


def restarted(flow: LeadFlow, *, storage: Storage | None = None) -> LeadFlow:
    """Another instance (a restarted process, a second worker) on the same stores, clock and
    integrations, with the same handlers and settings but its own worker id."""
    settings = dataclasses.replace(flow.settings, worker_id=None)
    return LeadFlow(
        storage or flow.storage,
        flow.integrations,
        clock=flow.clock,
        handlers=flow.handlers,
        settings=settings,
    )


def ops(flow: LeadFlow) -> Operations:
    """The role-checked operations on ``flow`` (for scenarios where a person acts)."""
    return Operations(flow)


def clock_of(flow: LeadFlow) -> ManualClock:
    assert isinstance(flow.clock, ManualClock)
    return flow.clock


def sink(flow: LeadFlow) -> RecordingEventSink:
    events = flow.integrations.events
    assert isinstance(events, RecordingEventSink)
    return events


def payloads(flow: LeadFlow, name: str) -> list[dict[str, Any]]:
    """The payloads of every ``name`` event the flow emitted, in order."""
    return [payload for event, payload in sink(flow).events if event == name]


def notifier_of(flow: LeadFlow) -> RecordingNotifier:
    notifier = flow.integrations.notifier
    assert isinstance(notifier, RecordingNotifier)
    return notifier


def messenger_of(flow: LeadFlow) -> RecordingMessenger:
    messenger = flow.integrations.messenger
    assert isinstance(messenger, RecordingMessenger)
    return messenger


def opportunities_of(flow: LeadFlow) -> InMemoryOpportunities:
    gateway = flow.integrations.opportunities
    assert isinstance(gateway, InMemoryOpportunities)
    return gateway


def rule(
    rule_id: str, event_type: str, actions: list[dict[str, Any]], **extra: Any
) -> FollowUpRule:
    """A rule from its camelCase document parts (``conditions=`` and other fields as keywords)."""
    return FollowUpRule.model_validate(
        {
            "ruleId": rule_id,
            "name": rule_id,
            "trigger": {"eventType": event_type, "conditions": extra.pop("conditions", [])},
            "actions": actions,
            **extra,
        }
    )


__all__ = [
    "ADMIN",
    "ALICE",
    "BACKENDS",
    "BOB",
    "DISPATCHER",
    "SUPER",
    "build_flow",
    "clock_of",
    "messenger_of",
    "new_storage",
    "notifier_of",
    "opportunities_of",
    "ops",
    "payloads",
    "restarted",
    "rule",
    "sink",
]
