"""Arbitrary JSON into the arguments issue 12 added (``claim_due(partition=)``,
``mark_done_many(action_ids)``, ``cancel_for_rule(below_version=)``, ``LeadFlow.run_due(
partition=)``, the Celery tasks' ``due_queue`` / ``kick``) and issue 19's claim filter
(``claim_due(action_types=)``, ``LeadFlow.run_due(action_types=)``): only documented errors,
naming the field, and nothing written. The stores hold pending actions in several partitions,
none due at the time the calls use, so even a valid call changes nothing and returns
nothing."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import mongomock_ng
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow import FlowSettings, InvalidInputError, LeadFlow
from leadflow.limits import DEFAULT_LIMITS
from leadflow.ports import ScheduledActionStore, Storage
from leadflow.stores.memory import memory_storage
from leadflow.stores.mongo import mongo_storage
from leadflow.stores.sql import sql_storage
from leadflow.testing.contracts import at, make_scheduled_action

from .suite import examples
from .test_access_fuzz import VALUE

EARLY = at(days=-1)  # before every stored action is due
FUZZ = settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _sqlite() -> Storage:
    return sql_storage("sqlite://")


BACKENDS: dict[str, Callable[[], Storage]] = {
    "memory": memory_storage,
    "sqlite": _sqlite,
    "mongomock": lambda: mongo_storage(mongomock_ng.MongoClient()["fuzz"]),  # type: ignore[arg-type]
}


@pytest.fixture(params=sorted(BACKENDS))
def storage(request: pytest.FixtureRequest) -> Iterator[Storage]:
    built = BACKENDS[request.param]()
    for n in range(12):
        built.scheduled.schedule(
            make_scheduled_action(
                f"k{n}", partition=n % 4, rule_version=1 + n % 3, due_at=at(minutes=n)
            )
        )
    yield built
    close = getattr(built, "close", None)
    if close is not None:
        close()


def snapshot(store: ScheduledActionStore) -> list[dict[str, Any]]:
    return [a.model_dump() for a in store.list(limit=1000)]


def valid_partition(value: object) -> bool:
    return value is None or (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value < DEFAULT_LIMITS.partitions
    )


@FUZZ
@given(partition=VALUE | st.integers(min_value=-3, max_value=DEFAULT_LIMITS.partitions + 3))
def test_claim_due_partition(storage: Storage, partition: Any) -> None:
    before = snapshot(storage.scheduled)
    try:
        claimed = storage.scheduled.claim_due(EARLY, worker="w", partition=partition)
    except InvalidInputError as error:
        assert error.field == "partition" and not valid_partition(partition)
    else:
        assert valid_partition(partition) and claimed == []
    assert snapshot(storage.scheduled) == before


def valid_action_types(value: object) -> bool:
    return value is None or (
        isinstance(value, list)
        and len(value) <= 200
        and all(isinstance(v, str) and re.fullmatch(r"[a-z][a-z0-9_]{0,63}", v) for v in value)
    )


ACTION_TYPES = VALUE | st.lists(
    st.sampled_from(["send_email", "crm_sync", "", "Send", "a\n", "$in", "x" * 70, 3, None]),
    max_size=4,
)


@FUZZ
@given(action_types=ACTION_TYPES)
def test_claim_due_action_types(storage: Storage, action_types: Any) -> None:
    before = snapshot(storage.scheduled)
    try:
        claimed = storage.scheduled.claim_due(EARLY, worker="w", action_types=action_types)
    except InvalidInputError as error:
        assert error.field == "action_types" and not valid_action_types(action_types)
    else:
        assert valid_action_types(action_types) and claimed == []
    assert snapshot(storage.scheduled) == before


@FUZZ
@given(action_types=ACTION_TYPES)
def test_run_due_action_types(action_types: Any) -> None:
    storage = memory_storage()
    flow = LeadFlow.in_memory(storage=storage)
    for n in range(4):
        storage.scheduled.schedule(make_scheduled_action(f"k{n}"))
    before = snapshot(storage.scheduled)
    try:
        report = flow.run_due(action_types=action_types, now=EARLY)
    except InvalidInputError as error:
        assert error.field == "action_types"
        assert not valid_action_types(action_types) or not set(action_types) <= set(flow.handlers)
    else:
        assert action_types is None or set(action_types) <= set(flow.handlers)
        assert report.claimed == 0
    assert snapshot(storage.scheduled) == before


@FUZZ
@given(
    ids=VALUE | st.lists(st.sampled_from(["sa-k1", "sa-k2", "ghost", "", "$in", 3]), max_size=5),
    worker=st.sampled_from(["w", ""]) | VALUE,
)
def test_mark_done_many(storage: Storage, ids: Any, worker: Any) -> None:
    before = snapshot(storage.scheduled)
    try:
        done = storage.scheduled.mark_done_many(ids, worker=worker, now=at())
    except InvalidInputError as error:
        assert error.field in ("action_ids", "worker")
    else:
        assert done == []  # nothing is claimed: nothing to finish
    assert snapshot(storage.scheduled) == before


@FUZZ
@given(below=VALUE | st.integers(min_value=-2, max_value=5))
def test_cancel_for_rule_below_version(storage: Storage, below: Any) -> None:
    before = snapshot(storage.scheduled)
    try:
        cancelled = storage.scheduled.cancel_for_rule("rule-none", now=at(), below_version=below)
    except InvalidInputError as error:
        assert error.field == "below_version"
        assert below is not None
    else:
        assert cancelled == []
    assert snapshot(storage.scheduled) == before


@FUZZ
@given(partition=VALUE | st.integers(min_value=-2, max_value=6))
def test_run_due_partition(partition: Any) -> None:
    storage = memory_storage()
    flow = LeadFlow.in_memory(storage=storage, settings=FlowSettings(partitions=4))
    for n in range(8):
        storage.scheduled.schedule(make_scheduled_action(f"k{n}", partition=n % 4))
    before = snapshot(storage.scheduled)
    try:
        report = flow.run_due(partition=partition, now=EARLY)
    except InvalidInputError as error:
        assert error.field in ("partition", "now")
        assert not (valid_partition(partition) and partition in (None, 0, 1, 2, 3))
    else:
        assert partition is None or partition in range(4)
        assert report.claimed == 0
    assert snapshot(storage.scheduled) == before


@FUZZ
@given(partition=VALUE | st.integers(min_value=-2, max_value=6))
def test_celery_due_queue_and_kick(partition: Any) -> None:
    celery = pytest.importorskip("celery", reason="needs the celery extra")
    from leadflow.contrib.celery import install

    app = celery.Celery("fuzz", broker="memory://")
    sent: list[Any] = []
    tasks = install(
        app, lambda: LeadFlow.in_memory(settings=FlowSettings(partitions=4)), partitions=4
    )
    tasks.run_due.apply_async = lambda *a, **k: sent.append(k)  # no broker here
    ok = partition is None or (
        isinstance(partition, int) and not isinstance(partition, bool) and 0 <= partition < 4
    )
    try:
        queue = tasks.due_queue(partition)
        tasks.kick(partition)
    except InvalidInputError as error:
        assert error.field == "partition" and not ok
        assert sent == []
    else:
        assert ok
        assert queue == ("leadflow" if partition is None else f"leadflow.due.{partition}")
        assert len(sent) == (4 if partition is None else 1)


def test_the_early_time_is_before_every_action() -> None:
    assert at() - timedelta(hours=1) > EARLY
