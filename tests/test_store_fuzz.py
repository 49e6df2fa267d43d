"""Arbitrary JSON into every method of every storage port, on every backend (the reference and
fast memory stores, SQLite, mongomock-ng; PostgreSQL when ``LEADFLOW_TEST_POSTGRES_URL`` is
set): hosts call the stores directly too (a backfill, a migration script, a test double).

Each example takes one method, fills its arguments with valid values, replaces one argument
(chosen by the search) with anything (free JSON, values at the edges: naive datetimes, the
years 1 and 9999, integers beyond 64 bits, ``$`` keys) and calls it. Only documented errors may
escape (a :class:`~leadflow.LeadflowError` or pydantic's ``ValidationError``), never a
driver's or Python's own (``OverflowError``, ``TypeError``, a database error), and a refused
call writes nothing. The search found the stores' range holes of this issue: a ``limit`` or an
``expected_version`` of 2**63 overflowed SQLite's driver, a lease past the year 9999
overflowed the memory stores.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import mongomock_ng
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow import LeadflowError, Storage
from leadflow.facts import Completion, LeadArrival, StatusChange
from leadflow.records import ScheduledActionState, SlotState
from leadflow.sequences import EnrollmentState, SequenceStatus
from leadflow.stores.memory import memory_storage
from leadflow.stores.memory.fast import fast_memory_storage
from leadflow.stores.mongo import mongo_storage
from leadflow.stores.sequence_checks import head_of
from leadflow.testing.contracts import (
    BASE_TIME,
    at,
    make_activity,
    make_audit_entry,
    make_enrollment,
    make_rule,
    make_scheduled_action,
    make_sequence,
)

from .sql_support import fresh_storage
from .suite import examples
from .test_access_fuzz import VALUE

_MODELS: dict[str, Callable[[], Any]] = {
    "activity": lambda: make_activity("a9"),
    "rule": lambda: make_rule("rule-9"),
    "action": lambda: make_scheduled_action("k9"),
    "actions": lambda: [make_scheduled_action("k8")],
    "entry": lambda: make_audit_entry("e9"),
    "definition": lambda: make_sequence("s9"),
    "enrollment": lambda: make_enrollment("enr-9", opportunity_id="opp-9"),
    "enrollments": lambda: [make_enrollment("enr-1", opportunity_id="opp-1")],
    "arrival": lambda: LeadArrival(
        event_id="ev-8", opportunity_id="opp-9", arrived_at=BASE_TIME, source="web", owner="u1"
    ),
    "change": lambda: StatusChange(
        event_id="ev-9", opportunity_id="opp-9", changed_at=BASE_TIME, to_status="qualified"
    ),
    "completion": lambda: Completion(
        activity_id="a9",
        opportunity_id="opp-9",
        activity_type="call",
        assigned_to="u1",
        completed_at=BASE_TIME,
    ),
}
"""A valid model for each model argument (what the method stores when nothing else is off)."""

_VALID: dict[str, Any] = {
    **dict.fromkeys(["activity_id", "subject_id"], "a1"),
    "action_id": "sa-k1",
    "action_ids": ["sa-k1"],
    **dict.fromkeys(["opportunity_id"], "opp-1"),
    "opportunity_ids": ["opp-1"],
    "customer_id": "cust-1",
    "rule_id": "rule-1",
    "sequence_id": "s1",
    "enrollment_id": "enr-1",
    "enrollment_ids": ["enr-1"],
    **dict.fromkeys(["completed_by", "assigned_to", "worker"], "u1"),
    **dict.fromkeys(
        ["now", "as_of", "before", "since", "start", "completed_at", "retry_at"], BASE_TIME
    ),
    "slot": "2026-01-05T09:00",
    **dict.fromkeys(["end", "expires_at"], at(days=1)),
    "limit": 10,
    "lease": timedelta(minutes=5),
    "within": timedelta(hours=1),
    "width": timedelta(days=7),
    "day": timedelta(hours=8),
    "stages": ["new", "won"],
    "error": "boom",
    "permanent": False,
    "version": 1,
    "name": "counter",
    **dict.fromkeys(["job", "key", "token"], "job-1"),
    "value": "v",
    "counts": {},
    "outcome": None,
    "filter": None,
    "status": "won",
    "expected": None,
}
"""A valid value for each argument by name; an argument not named here keeps its default."""

_VALID_BY_METHOD: dict[tuple[str, str], dict[str, Any]] = {
    ("sequences", "set_status"): {"status": SequenceStatus.ACTIVE},
    ("analytics", "lead_sums"): {"width": None},  # a width goes with by="bucket"
    ("analytics", "lead_summary"): {"width": None, "groupings": [None, "rep"]},
    ("enrollments", "list"): {"state": EnrollmentState.ACTIVE},
    ("enrollments", "mark_sending"): {"marks": [("enr-1", 1)], "at": BASE_TIME},
    ("enrollments", "move_many"): {
        "moves": [(head_of(make_enrollment("enr-1", opportunity_id="opp-1")), [])]
    },
    ("scheduled", "list"): {"state": ScheduledActionState.PENDING},
    ("jobs", "finish_slot"): {"state": SlotState.SUCCEEDED},
    ("analytics", "completion_groups"): {"by": "assigned_to"},
}

_PORTS = (
    "activities",
    "rules",
    "scheduled",
    "counters",
    "audit",
    "jobs",
    "sequences",
    "enrollments",
    "analytics",
)


def _methods() -> list[tuple[str, str]]:
    """Every public method of every port of the reference storage (each backend has them)."""
    storage = memory_storage()
    found = []
    for port in _PORTS:
        store = getattr(storage, port, None)
        for name in dir(store):
            if name.startswith("_") or not callable(getattr(store, name)):
                continue
            found.append((port, name))
    return found


METHODS = _methods()
BACKENDS = ["memory", "fast", "sqlite", "mongo"] + (
    ["postgres"] if os.environ.get("LEADFLOW_TEST_POSTGRES_URL") else []
)


@pytest.fixture(scope="module", params=BACKENDS)
def storage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Storage]:
    kind = request.param
    if kind == "memory":
        yield memory_storage()
    elif kind == "fast":
        yield fast_memory_storage()
    elif kind == "mongo":
        yield mongo_storage(mongomock_ng.MongoClient(tz_aware=True)["fuzz"])
    else:
        path: Path = tmp_path_factory.mktemp("fuzz")
        with fresh_storage("postgres" if kind == "postgres" else "sqlite-file", path) as sql:
            yield sql


@pytest.fixture(scope="module")
def seeded(storage: Storage) -> Storage:
    storage.activities.add(make_activity("a1", opportunity_id="opp-1", customer_id="cust-1"))
    storage.rules.create(make_rule("rule-1"))
    storage.scheduled.schedule(make_scheduled_action("k1", opportunity_id="opp-1"))
    storage.audit.append(make_audit_entry("e1"))
    if storage.sequences is not None and storage.enrollments is not None:
        storage.sequences.add(make_sequence("s1"))
        storage.enrollments.enroll(make_enrollment("enr-1", opportunity_id="opp-1"))
    return storage


def _snapshot(storage: Storage) -> dict[str, Any]:
    state: dict[str, Any] = {
        "activities": [a.model_dump() for a in storage.activities.list(limit=1000).items],
        "rules": [r.model_dump() for r in storage.rules.list()],
        "scheduled": [a.model_dump() for a in storage.scheduled.list(limit=1000)],
        "audit": [e.model_dump() for e in storage.audit.list()],
    }
    if storage.sequences is not None and storage.enrollments is not None:
        state["sequences"] = [d.model_dump() for d in storage.sequences.list()]
        state["enrollments"] = [e.model_dump() for e in storage.enrollments.list(limit=1000)]
    if storage.analytics is not None:
        state["arrivals"] = storage.analytics.arrivals(at(days=-400), at(days=400), limit=1000)
    return state


def _arguments(port: str, method: Callable[..., Any]) -> dict[str, Any]:
    valid: dict[str, Any] = {}
    special = _VALID_BY_METHOD.get((port, method.__name__), {})
    for name, parameter in inspect.signature(method).parameters.items():
        if name in special:
            valid[name] = special[name]
        elif name in _MODELS:
            valid[name] = _MODELS[name]()
        elif name in _VALID:
            valid[name] = _VALID[name]
        elif parameter.default is inspect.Parameter.empty:
            raise AssertionError(f"no valid value for {port}.{method.__name__}({name})")
    return valid


@pytest.mark.parametrize(("port", "name"), METHODS, ids=[f"{p}.{n}" for p, n in METHODS])
@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_only_documented_errors_and_a_refusal_writes_nothing(
    seeded: Storage, port: str, name: str, data: st.DataObject
) -> None:
    store = getattr(seeded, port, None)
    if store is None:
        pytest.skip(f"this storage has no {port}")
    method = getattr(store, name)
    valid = _arguments(port, method)
    parameters = list(inspect.signature(method).parameters)
    if not parameters:
        return
    fuzzed = data.draw(st.sampled_from(parameters), label="argument")
    arguments = {**valid, fuzzed: data.draw(VALUE, label="value")}
    before = _snapshot(seeded)
    try:
        method(**arguments)
    except (LeadflowError, ValidationError):
        assert _snapshot(seeded) == before, f"{port}.{name} refused {fuzzed} but wrote"
