"""Rules are reloaded only when they changed (issue 17): the compiled set is kept until the rule
store's change stamp moves, the stamp is read on wall time (never the flow's clock), and a
reload recompiles only the rules that changed. On memory, MongoDB (mongomock-ng), a SQLite file
and, with ``LEADFLOW_TEST_POSTGRES_URL``, PostgreSQL; the second store object on the same data
stands for another process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from leadflow import (
    Event,
    EventTypes,
    FlowSettings,
    FollowUpRule,
    HandlerRegistry,
    ManualClock,
    OperatorRegistry,
    WorkingCalendar,
)
from leadflow.ports import RuleRepository, Storage
from leadflow.runtime.rulebook import RuleBook
from leadflow.stores.sql import sql_storage

from .helpers import T0
from .service_support import build_flow, new_storage, rule
from .sql_support import fresh_storage, on_postgres

KINDS = [
    "memory",
    "mongo",
    "sqlite-file",
    pytest.param("postgres", marks=on_postgres),
]


@contextmanager
def two_views(kind: str, tmp_path: Path) -> Iterator[tuple[Storage, Storage]]:
    """Two storage bundles on the same stored data (one object twice in memory)."""
    if kind == "memory":
        storage = new_storage("memory")
        yield storage, storage
        return
    if kind == "mongo":
        import mongomock_ng

        from leadflow.stores.mongo import mongo_storage

        database = mongomock_ng.MongoClient(tz_aware=True)["leadflow_test"]
        yield (
            mongo_storage(database, job_ttl=False),
            mongo_storage(database, job_ttl=False, ensure_indexes=False),
        )
        return
    with fresh_storage(kind, tmp_path) as storage:
        tables = storage.database.tables
        target: Any = storage.database.engine
        if kind == "sqlite-file":
            target = target.url
        other = sql_storage(target, prefix=tables.prefix, schema=tables.schema, create=False)
        try:
            yield storage, other
        finally:
            other.close()


@pytest.fixture(params=KINDS)
def views(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Storage, Storage]]:
    with two_views(request.param, tmp_path) as pair:
        yield pair


def notify(rule_id: str, template: str | None = None, **extra: Any) -> FollowUpRule:
    return rule(
        rule_id,
        "opportunity.created",
        [{"actionType": "send_notification", "template": template or rule_id}],
        **extra,
    )


def created(n: int, clock: ManualClock) -> Event:
    return Event(
        id=f"e-{n}",
        type="opportunity.created",
        time=clock.now(),
        payload={"opportunityId": f"opp-{n % 4 + 1}"},
    )


class Ticks:
    """A wall clock for :class:`RuleBook` that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def book_on(store: RuleRepository, *, refresh: float = 30.0, **parts: Any) -> RuleBook:
    return RuleBook(
        store,
        clock=ManualClock(T0),
        operators=parts.pop("operators", OperatorRegistry.default()),
        event_types=EventTypes(),
        handlers=parts.pop("handlers", HandlerRegistry.default()),
        calendar=WorkingCalendar(),
        refresh=timedelta(seconds=refresh),
        **parts,
    )


# ------------------------------------------------------------------ business time


@pytest.mark.parametrize("refresh", [timedelta(seconds=30), timedelta(0)], ids=["30s", "0s"])
def test_business_time_jumping_by_days_recompiles_nothing(
    views: tuple[Storage, Storage], refresh: timedelta
) -> None:
    storage, _ = views
    flow = build_flow(
        storage=storage,
        rules=[notify("a"), notify("b")],
        settings=FlowSettings(rules_refresh=refresh),
    )
    clock = flow.clock
    assert isinstance(clock, ManualClock)
    for n in range(12):
        clock.advance(days=3 if n % 2 else 0, seconds=5 + 7 * n)  # replays jump around
        assert flow.handle(created(n, clock)).matched_rules == ["a", "b"]
    book = flow.rulebook
    assert (book.reloads, book.compiled_rules) == (1, 2)
    # With no wait between checks the stamp is read at every event, and nothing reloads.
    assert book.stamp_checks == (12 if refresh == timedelta(0) else 1)


# ------------------------------------------------------------------ changes from elsewhere


def test_a_change_through_another_flow_is_seen_after_the_refresh_of_wall_time(
    views: tuple[Storage, Storage],
) -> None:
    one, other = views
    settings = FlowSettings(rules_refresh=timedelta(milliseconds=20))
    first = build_flow(storage=one, rules=[notify("a")], settings=settings)
    second = build_flow(storage=other, settings=settings, rules=[])
    clock = first.clock
    assert isinstance(clock, ManualClock)
    assert first.handle(created(0, clock)).matched_rules == ["a"]
    second.rules.create(notify("b"))
    # The business clock standing still does not matter: the refresh is wall time.
    deadline = time.monotonic() + 10
    while first.handle(created(1, clock)).matched_rules != ["a", "b"]:
        assert time.monotonic() < deadline, "the change was never seen"
        time.sleep(0.025)
    assert first.rulebook.compiled_rules == 2  # "a" was not compiled again


def test_the_stamp_is_read_only_once_per_refresh(views: tuple[Storage, Storage]) -> None:
    one, other = views
    one.rules.create(notify("a"))
    ticks = Ticks()
    book = book_on(one.rules, refresh=30, monotonic=ticks)
    assert [r.rule_id for r in book.engine().rules] == ["a"]
    other.rules.create(notify("b"))
    ticks.now += 29.9
    assert [r.rule_id for r in book.engine().rules] == ["a"]  # not checked yet
    assert book.stamp_checks == 1
    ticks.now += 0.2
    assert [r.rule_id for r in book.engine().rules] == ["a", "b"]
    assert (book.stamp_checks, book.reloads, book.compiled_rules) == (2, 2, 2)
    ticks.now += 30
    book.engine()
    assert (book.stamp_checks, book.reloads) == (3, 2)  # unchanged: no reload
    book.invalidate()  # a change through this instance: checked at once
    book.engine()
    assert book.reloads == 3 and book.compiled_rules == 2


# ------------------------------------------------------------------ what a reload compiles


def test_a_reload_recompiles_only_the_rules_that_changed(views: tuple[Storage, Storage]) -> None:
    one, other = views
    for n in range(5):
        one.rules.create(notify(f"r{n}", priority=n))
    ticks = Ticks()
    book = book_on(one.rules, monotonic=ticks)
    first = book.engine()
    assert book.compiled_rules == 5

    def reloaded() -> list[str]:
        ticks.now += 31
        return [r.rule_id for r in book.engine().rules]

    stored = other.rules.get("r2")
    other.rules.update(stored.model_copy(update={"priority": 10}))
    assert reloaded() == ["r2", "r4", "r3", "r1", "r0"]
    assert book.compiled_rules == 6
    assert book.engine().compiled["r0"] is first.compiled["r0"]  # reused as it was

    other.rules.delete("r3")
    assert reloaded() == ["r2", "r4", "r1", "r0"]
    assert book.compiled_rules == 6

    other.rules.create(notify("r5", priority=-1))
    stored = other.rules.get("r4")
    other.rules.update(stored.model_copy(update={"is_active": False}))
    assert reloaded() == ["r2", "r1", "r0", "r5"]
    assert book.compiled_rules == 7

    # Deleted and created again between two checks: the same id and version, new content.
    other.rules.delete("r0")
    other.rules.create(notify("r0", "changed", priority=0))
    assert reloaded() == ["r2", "r1", "r0", "r5"]
    assert book.compiled_rules == 8
    [action] = book.engine().compiled["r0"].rule.actions
    assert action.template == "changed"
    assert book.reloads == 5


def test_a_rule_for_another_workers_handler_loads_and_recompiles_when_it_registers(
    views: tuple[Storage, Storage],
) -> None:
    """A stored rule whose action type has no handler here still loads (its actions are
    planned for a worker that runs them); registering the handler here recompiles it."""
    one, _ = views
    one.rules.create(notify("a"))
    one.rules.create(rule("b", "opportunity.created", [{"actionType": "ping"}]))
    ticks = Ticks()
    handlers = HandlerRegistry.default()
    book = book_on(one.rules, monotonic=ticks, handlers=handlers)
    assert [r.rule_id for r in book.engine().rules] == ["a", "b"]
    compiled = book.compiled_rules
    handlers.register("ping", lambda context: None)
    ticks.now += 31
    assert [r.rule_id for r in book.engine().rules] == ["a", "b"]  # no rule changed, yet
    assert book.compiled_rules > compiled  # the registry changed: compiled again


def test_a_store_without_a_stamp_is_reloaded_at_every_check() -> None:
    class Unstamped:
        def __init__(self, inner: RuleRepository) -> None:
            self._inner = inner

        def list_active(self) -> list[FollowUpRule]:
            result: list[FollowUpRule] = self._inner.list_active()
            return result

    store = new_storage("memory").rules
    store.create(notify("a"))
    ticks = Ticks()
    book = book_on(Unstamped(store), monotonic=ticks)  # type: ignore[arg-type]
    book.engine()
    book.engine()
    assert book.reloads == 1
    ticks.now += 31
    book.engine()
    assert (book.reloads, book.compiled_rules, book.stamp_checks) == (2, 1, 0)
