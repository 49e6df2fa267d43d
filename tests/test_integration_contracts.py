"""The integration contracts on the shipped adapters, and each contract failing on a broken one."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from leadflow import JobRunner, ManualClock, SystemClock
from leadflow.adapters import CallbackEventSink
from leadflow.ports import (
    Clock,
    Contact,
    EventSink,
    JobStore,
    Message,
    Messenger,
    Notification,
    Notifier,
    OpportunityGateway,
    Scheduler,
    TeamDirectory,
)
from leadflow.scheduling import APSchedulerAdapter, Job
from leadflow.testing import (
    InMemoryOpportunities,
    RecordingEventSink,
    RecordingMessenger,
    RecordingNotifier,
    StaticTeamDirectory,
)
from leadflow.testing.contracts import (
    BASE_TIME,
    ClockContract,
    EventSinkContract,
    MessengerContract,
    NotifierContract,
    OpportunityGatewayContract,
    SchedulerContract,
    TeamDirectoryContract,
)

C = TypeVar("C")


def failures(contract: type[C], port: Callable[[C], object]) -> list[str]:
    """Run every test of ``contract`` by hand, each on a fresh case and ``port(case)``; the
    names of those that fail (an assertion, ``pytest.raises`` seeing nothing, any error)."""
    failed = []
    for name in sorted(n for n in dir(contract) if n.startswith("test_")):
        case = contract()
        try:
            getattr(case, name)(port(case))
        except (Exception, pytest.fail.Exception):
            failed.append(name)
    return failed


# --------------------------------------------------------------------------- opportunities


class TestInMemoryOpportunities(OpportunityGatewayContract):
    def make_gateway(self) -> OpportunityGateway:
        return InMemoryOpportunities()

    def add_opportunity(
        self,
        gateway: OpportunityGateway,
        opportunity_id: str,
        *,
        owner: str | None = None,
        status: str = "new",
        email: str | None = None,
        phone: str | None = None,
    ) -> None:
        assert isinstance(gateway, InMemoryOpportunities)
        gateway.add(opportunity_id, owner=owner, status=status, email=email, phone=phone)


class KeyErrorOpportunities(InMemoryOpportunities):
    """Broken: a dict lookup's KeyError leaks out (leadflow retries it instead of parking)."""

    def contact(self, opportunity_id: str) -> Contact:
        return {"opp-1": Contact("a@example.com")}[opportunity_id]


class RacyOpportunities(InMemoryOpportunities):
    """Broken: read, then write, without the lock."""

    def update_status(self, opportunity_id: str, status: str, *, actor: str | None) -> str | None:
        with self._lock:
            owner, previous, *contact = self._row(opportunity_id)
        time.sleep(0.001)
        self._rows[opportunity_id] = (owner, status, *contact)  # type: ignore[assignment]
        return previous


def test_the_gateway_contract_fails_a_broken_gateway() -> None:
    class Broken(TestInMemoryOpportunities):
        def make_gateway(self) -> OpportunityGateway:
            return KeyErrorOpportunities()

    class Racy(TestInMemoryOpportunities):
        def make_gateway(self) -> OpportunityGateway:
            return RacyOpportunities()

    assert failures(TestInMemoryOpportunities, lambda c: c.make_gateway()) == []
    assert failures(Broken, lambda c: c.make_gateway()) == [
        "test_an_unknown_opportunity_is_not_found",
        "test_contact_is_the_stored_email_and_phone",
    ]
    assert failures(Racy, lambda c: c.make_gateway()) == [
        "test_status_changes_are_atomic_under_threads"
    ]


# --------------------------------------------------------------------------- team


class TestStaticTeamDirectory(TeamDirectoryContract):
    def make_directory(self, reps: Sequence[str]) -> TeamDirectory:
        return StaticTeamDirectory(reps)


class SetTeam:
    """Broken: a set has no stable order (and no indexing)."""

    def __init__(self, reps: Sequence[str]) -> None:
        self._reps = set(reps)

    def sales_reps(self) -> Sequence[str]:
        return sorted(self._reps, reverse=True)


def test_the_team_contract_fails_a_broken_directory() -> None:
    class Broken(TeamDirectoryContract):
        def make_directory(self, reps: Sequence[str]) -> TeamDirectory:
            return SetTeam(reps)

    assert failures(Broken, lambda c: c.make_directory(c.REPS)) == [
        "test_an_empty_team_is_an_empty_sequence",
        "test_lists_the_reps_in_a_stable_order",
        "test_reads_from_many_threads",
    ]


# --------------------------------------------------------------------------- notifier / messenger


class TestRecordingNotifier(NotifierContract):
    deduplicates = False  # it records every call: tests count them

    def make_notifier(self) -> Notifier:
        return RecordingNotifier()

    def delivered(self, notifier: Notifier) -> Sequence[Notification]:
        assert isinstance(notifier, RecordingNotifier)
        return notifier.sent


class DedupingNotifier(RecordingNotifier):
    def notify(self, notification: Notification) -> None:
        with self._lock:
            if all(n.key != notification.key for n in self.sent):
                self.sent.append(notification)


class TestDedupingNotifier(TestRecordingNotifier):
    deduplicates = True

    def make_notifier(self) -> Notifier:
        return DedupingNotifier()


class ContentDedupingNotifier(RecordingNotifier):
    """Broken: drops a notification equal in content to one sent before, and pops the data's
    key on the way (mutating what the event sink gets next)."""

    def notify(self, notification: Notification) -> None:
        notification.data.pop("idempotencyKey", None)
        seen = {(n.template, n.recipients, str(n.data)) for n in self.sent}
        if (notification.template, notification.recipients, str(notification.data)) not in seen:
            self.sent.append(notification)


def test_the_notifier_contract_fails_a_broken_notifier() -> None:
    class Broken(TestDedupingNotifier):
        def make_notifier(self) -> Notifier:
            return ContentDedupingNotifier()

    assert failures(TestDedupingNotifier, lambda c: c.make_notifier()) == []
    assert failures(Broken, lambda c: c.make_notifier()) == [
        "test_distinct_keys_are_distinct_notifications",
        "test_notify_from_many_threads",
        "test_the_notification_is_left_unchanged",
    ]
    # A recorder declared as deduplicating fails the repeated-key test, and the reverse.
    assert failures(TestDedupingNotifier, lambda c: RecordingNotifier()) == [
        "test_a_repeated_key_is_delivered_as_declared"
    ]
    assert failures(TestRecordingNotifier, lambda c: DedupingNotifier()) == [
        "test_a_repeated_key_is_delivered_as_declared"
    ]


class TestRecordingMessenger(MessengerContract):
    deduplicates = False

    def make_messenger(self) -> Messenger:
        return RecordingMessenger()

    def delivered(self, messenger: Messenger) -> Sequence[Message]:
        assert isinstance(messenger, RecordingMessenger)
        return messenger.sent


class UnlockedMessenger(RecordingMessenger):
    """Broken: checks for the key and appends without the lock (and then sleeps between)."""

    def send(self, message: Message) -> None:
        if all(m.key != message.key for m in self.sent):
            sent = list(self.sent)
            time.sleep(0.0005)
            self.sent[:] = [*sent, message]


def test_the_messenger_contract_fails_a_broken_messenger() -> None:
    class Broken(TestRecordingMessenger):
        deduplicates = True

        def make_messenger(self) -> Messenger:
            return UnlockedMessenger()

    assert failures(Broken, lambda c: c.make_messenger()) == ["test_send_from_many_threads"]


# --------------------------------------------------------------------------- event sink


class TestRecordingEventSink(EventSinkContract):
    def make_sink(self) -> EventSink:
        return RecordingEventSink()

    def received(self, sink: EventSink) -> Sequence[tuple[str, dict[str, Any]]]:
        assert isinstance(sink, RecordingEventSink)
        return sink.events


class TestCallbackEventSink(EventSinkContract):
    """A sink forwarding to a callback (blinker's send, pyee's emit...), here a locked list."""

    def make_sink(self) -> EventSink:
        got: list[tuple[str, dict[str, Any]]] = []
        lock = threading.Lock()

        def listener(name: str, payload: dict[str, Any]) -> None:
            with lock:
                got.append((name, payload))

        sink = CallbackEventSink(listener)
        self._got = got
        return sink

    def received(self, sink: EventSink) -> Sequence[tuple[str, dict[str, Any]]]:
        return self._got


def test_the_event_sink_contract_fails_a_broken_sink() -> None:
    class Stamping(RecordingEventSink):
        """Broken: stamps the payload in place, and keeps only the last event of a name."""

        def emit(self, name: str, payload: dict[str, Any]) -> None:
            payload["receivedAt"] = BASE_TIME
            with self._lock:
                self.events = [e for e in self.events if e[0] != name]
                self.events.append((name, payload))

    class Broken(TestRecordingEventSink):
        def make_sink(self) -> EventSink:
            return Stamping()

    assert failures(TestCallbackEventSink, lambda c: c.make_sink()) == []
    assert failures(Broken, lambda c: c.make_sink()) == [
        "test_emit_from_many_threads",
        "test_every_event_arrives_in_order_with_its_payload",
        "test_the_payload_is_left_unchanged",
    ]


# --------------------------------------------------------------------------- clocks


class TestSystemClock(ClockContract):
    def make_clock(self) -> Clock:
        return SystemClock()


class TestManualClock(ClockContract):
    follows_wall_clock = False

    def make_clock(self) -> Clock:
        return ManualClock(BASE_TIME)


def test_the_clock_contract_fails_a_broken_clock() -> None:
    class NaiveClock:
        def now(self) -> datetime:
            return datetime.now()  # naive: the classic mistake (utcnow() is naive too)

    class LocalClock:
        def now(self) -> datetime:
            return datetime.now(timezone(timedelta(hours=2)))  # aware, but not UTC

    class Naive(ClockContract):
        def make_clock(self) -> Clock:
            return NaiveClock()

    class Local(ClockContract):
        def make_clock(self) -> Clock:
            return LocalClock()

    class Frozen(ClockContract):  # declared a production clock, but never moves
        def make_clock(self) -> Clock:
            return ManualClock(datetime.now(UTC))

    class Moving(TestManualClock):  # declared a test clock, but moves by itself
        def make_clock(self) -> Clock:
            return SystemClock()

    assert failures(Naive, lambda c: c.make_clock()) == [
        "test_now_is_aware_and_in_utc",
        "test_reads_from_many_threads",
        "test_time_moves_as_declared",  # a naive time cannot be compared with an aware one
    ]
    assert failures(Frozen, lambda c: c.make_clock()) == ["test_time_moves_as_declared"]
    assert failures(Moving, lambda c: c.make_clock()) == ["test_time_moves_as_declared"]
    assert failures(Local, lambda c: c.make_clock()) == [
        "test_now_is_aware_and_in_utc",
        "test_reads_from_many_threads",
    ]


# --------------------------------------------------------------------------- schedulers


class TestJobRunner(SchedulerContract):
    def make_scheduler(self, store: JobStore, clock: Clock) -> Scheduler:
        return JobRunner(store, clock=clock)

    def trigger(self, scheduler: Scheduler, now: datetime) -> None:
        assert isinstance(scheduler, JobRunner)
        scheduler.run_pending(now)


class TestAPSchedulerAdapter(SchedulerContract):
    """APScheduler is not started: trigger does what it would (coalesce, misfire grace)."""

    def make_scheduler(self, store: JobStore, clock: Clock) -> Scheduler:
        pytest.importorskip("apscheduler")
        from apscheduler.schedulers.background import BackgroundScheduler

        adapter = APSchedulerAdapter(BackgroundScheduler(timezone="UTC"), store, clock=clock)
        self._since = getattr(self, "_since", {})
        self._since[id(adapter)] = clock.now()
        return adapter

    def trigger(self, scheduler: Scheduler, now: datetime) -> None:
        assert isinstance(scheduler, APSchedulerAdapter)
        since: datetime = self._since[id(scheduler)]
        for aps_job in scheduler.scheduler.get_jobs():
            latest = None
            fire = aps_job.trigger.get_next_fire_time(None, since + timedelta(microseconds=1))
            while fire is not None and fire <= now:
                latest = fire
                fire = aps_job.trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
            grace = timedelta(seconds=aps_job.misfire_grace_time)
            if latest is not None and now - latest <= grace:
                aps_job.func(*aps_job.args)
        self._since[id(scheduler)] = now


class DirectScheduler:
    """Broken: calls the job's function itself at its times, without the slot lease."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.jobs: dict[str, Job] = {}
        self.since = clock.now()

    def add_job(self, job: Job) -> None:
        self.jobs[job.name] = job  # and silently replaces a job of the same name

    def tick(self, now: datetime) -> None:
        from leadflow.ports.periodic import JobContext

        for job in self.jobs.values():
            fire = job.latest_at_or_before(now)
            if fire > self.since:
                with contextlib.suppress(Exception):
                    job.func(JobContext(job, job.slot_key(fire), fire, now, "direct"))
        self.since = now


def test_the_scheduler_contract_fails_a_broken_scheduler() -> None:
    class Broken(SchedulerContract):
        def make_scheduler(self, store: JobStore, clock: Clock) -> Scheduler:
            return DirectScheduler(clock)

        def trigger(self, scheduler: Scheduler, now: datetime) -> None:
            assert isinstance(scheduler, DirectScheduler)
            scheduler.tick(now)

    assert failures(Broken, lambda c: c.fresh_scheduler()) == [
        "test_a_second_job_with_the_same_name_is_a_duplicate",
        "test_a_slot_missed_beyond_its_grace_is_skipped",
        "test_every_slot_runs_once_across_instances",
    ]
