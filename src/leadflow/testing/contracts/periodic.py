"""The contracts of the periodic ports: :class:`ClockContract` (what time it is) and
:class:`SchedulerContract` (what runs the periodic jobs), as in :mod:`leadflow.ports.periodic`.

Like the integration contracts (:mod:`.integrations`), each is an abstract class with a factory
the host implements and a pytest fixture that calls it; subclass one under a ``Test...`` name.
"""

from __future__ import annotations

import abc
import time
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from ...clock import ManualClock
from ...errors import DuplicateError
from ...ports import Clock, JobStore, Scheduler
from ...ports.periodic import Job, JobContext
from ...stores.memory import InMemoryJobStore
from .data import assert_utc, at, race

__all__ = ["ClockContract", "SchedulerContract"]

THREADS = 8


class ClockContract(abc.ABC):
    """Every test a :class:`~leadflow.ports.Clock` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_clock`. ``follows_wall_clock``
    says which kind of clock it is, and the contract checks it: True (the default) for a
    production clock, whose time is the real time and moves on by itself; False for a test
    clock (:class:`~leadflow.ManualClock`) that moves only when told to.
    """

    follows_wall_clock: ClassVar[bool] = True

    @abc.abstractmethod
    def make_clock(self) -> Clock:
        """A clock (a test clock at any time it likes)."""

    @pytest.fixture
    def clock(self) -> Clock:
        return self.make_clock()

    def test_is_a_clock(self, clock: Clock) -> None:
        assert isinstance(clock, Clock)

    def test_now_is_aware_and_in_utc(self, clock: Clock) -> None:
        # A naive time is refused by every part of the runtime (InvalidInputError).
        now = clock.now()
        assert isinstance(now, datetime), now
        assert now.tzinfo is not None and now.utcoffset() is not None, "naive: " + repr(now)
        assert_utc(now)

    def test_time_never_goes_backwards_between_reads(self, clock: Clock) -> None:
        reads = [clock.now() for _ in range(200)]
        assert reads == sorted(reads)

    def test_time_moves_as_declared(self, clock: Clock) -> None:
        first = clock.now()
        time.sleep(0.02)
        second = clock.now()
        if self.follows_wall_clock:
            assert second > first
            assert abs(second - datetime.now(UTC)) < timedelta(minutes=1)
        else:
            assert second == first

    def test_reads_from_many_threads(self, clock: Clock) -> None:
        def work(_: int) -> list[datetime]:
            return [clock.now() for _ in range(50)]

        for result in race(THREADS, work):
            assert isinstance(result, list), result
            assert result == sorted(result)
            for value in result:
                assert_utc(value)


# --------------------------------------------------------------------------- scheduling


class SchedulerContract(abc.ABC):
    """Every test a :class:`~leadflow.ports.Scheduler` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_scheduler` and :meth:`trigger`
    (make the scheduler do what it does when its time comes). The contract registers jobs of
    its own and moves a :class:`~leadflow.ManualClock` (from 09:30 UTC on
    :data:`~leadflow.testing.BASE_TIME`'s day) to each time it triggers; the jobs take their
    slots in :meth:`make_job_store` (in memory unless overridden).

    The ``scheduler`` fixture calls :meth:`fresh_scheduler`, which also sets ``self.clock``
    and ``self.job_store`` for the test.
    """

    clock: ManualClock
    job_store: JobStore

    @abc.abstractmethod
    def make_scheduler(self, store: JobStore, clock: Clock) -> Scheduler:
        """A scheduler whose jobs take their slots in ``store`` and read the time from
        ``clock`` (hand both to the :class:`~leadflow.JobRunner` whose ``run_job`` it calls)."""

    @abc.abstractmethod
    def trigger(self, scheduler: Scheduler, now: datetime) -> None:
        """Do what ``scheduler`` does when its time reaches ``now`` (``self.clock`` reads
        ``now`` already): run the jobs whose scheduled times came since the previous trigger
        (or since they were added). Called with increasing times."""

    def make_job_store(self) -> JobStore:
        """The job store the test's schedulers share."""
        return InMemoryJobStore()

    def fresh_scheduler(self) -> Scheduler:
        """A new clock at 09:30 UTC, a new job store, and a scheduler on both."""
        self.clock = ManualClock(at(minutes=30))
        self.job_store = self.make_job_store()
        return self.make_scheduler(self.job_store, self.clock)

    @pytest.fixture
    def scheduler(self) -> Scheduler:
        return self.fresh_scheduler()

    # -- helpers

    def _at(self, when: datetime, *schedulers: Scheduler) -> None:
        self.clock.set(when)
        for scheduler in schedulers:
            self.trigger(scheduler, when)

    @staticmethod
    def _job(name: str, runs: list[JobContext], cron: str = "0 * * * *", **options: Any) -> Job:
        def record(ctx: JobContext) -> dict[str, int]:
            runs.append(ctx)
            return {"runs": len(runs)}

        options.setdefault("grace", timedelta(minutes=5))
        return Job(name, cron, record, **options)

    # -- tests

    def test_is_a_scheduler(self, scheduler: Scheduler) -> None:
        assert isinstance(scheduler, Scheduler)

    def test_a_job_runs_once_at_each_of_its_times(self, scheduler: Scheduler) -> None:
        runs: list[JobContext] = []
        job = self._job("hourly", runs)
        scheduler.add_job(job)
        self._at(at(minutes=45), scheduler)
        assert runs == []  # 09:00 came before the job was added, beyond its grace
        self._at(at(hours=1), scheduler)
        self._at(at(hours=1, minutes=1), scheduler)
        assert [(r.job.name, r.scheduled_for, r.now) for r in runs] == [
            (job.name, at(hours=1), at(hours=1))
        ]
        assert runs[0].slot == job.slot_key(at(hours=1))
        self._at(at(hours=2), scheduler)
        assert [r.scheduled_for for r in runs] == [at(hours=1), at(hours=2)]

    def test_a_second_job_with_the_same_name_is_a_duplicate(self, scheduler: Scheduler) -> None:
        first: list[JobContext] = []
        second: list[JobContext] = []
        scheduler.add_job(self._job("hourly", first))
        with pytest.raises(DuplicateError):
            scheduler.add_job(self._job("hourly", second, cron="*/5 * * * *"))
        self._at(at(minutes=35), scheduler)
        self._at(at(hours=1), scheduler)
        assert ([r.scheduled_for for r in first], second) == ([at(hours=1)], [])

    def test_the_cron_is_read_in_the_jobs_time_zone(self, scheduler: Scheduler) -> None:
        runs: list[JobContext] = []
        scheduler.add_job(self._job("morning", runs, cron="0 8 * * *", timezone="America/New_York"))
        for hours in range(1, 5):  # 10:00 .. 13:00 UTC; 08:00 in New York is 13:00 UTC
            self._at(at(hours=hours), scheduler)
        assert [(r.scheduled_for, r.local_time.hour) for r in runs] == [(at(hours=4), 8)]

    def test_every_slot_runs_once_across_instances(self, scheduler: Scheduler) -> None:
        # Two app instances on one job store: the slot is leased, so it runs once in total.
        other = self.make_scheduler(self.job_store, self.clock)
        runs: list[JobContext] = []
        scheduler.add_job(self._job("hourly", runs))
        other.add_job(self._job("hourly", runs))
        self._at(at(hours=1), scheduler, other)
        self._at(at(hours=2), other, scheduler)
        assert [r.scheduled_for for r in runs] == [at(hours=1), at(hours=2)]

    def test_a_slot_missed_beyond_its_grace_is_skipped(self, scheduler: Scheduler) -> None:
        runs: list[JobContext] = []
        scheduler.add_job(self._job("hourly", runs, grace=timedelta(minutes=5)))
        self._at(at(hours=1, minutes=30), scheduler)  # the 10:00 slot, 30 minutes late
        assert runs == []
        self._at(at(hours=2, minutes=2), scheduler)  # the 11:00 slot, 2 minutes late
        assert [(r.scheduled_for, r.now) for r in runs] == [(at(hours=2), at(hours=2, minutes=2))]

    def test_a_failing_job_does_not_stop_the_others(self, scheduler: Scheduler) -> None:
        attempts: list[datetime] = []
        runs: list[JobContext] = []

        def fail(ctx: JobContext) -> None:
            attempts.append(ctx.scheduled_for)
            raise RuntimeError("the job failed")

        scheduler.add_job(Job("failing", "0 * * * *", fail, grace=timedelta(minutes=5)))
        scheduler.add_job(self._job("hourly", runs))
        self._at(at(hours=1), scheduler)
        self._at(at(hours=2), scheduler)  # a failed slot is final; the next one runs
        assert attempts == [at(hours=1), at(hours=2)]
        assert [r.scheduled_for for r in runs] == [at(hours=1), at(hours=2)]
