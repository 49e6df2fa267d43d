"""Periodic jobs as values (what the :class:`~leadflow.ports.Scheduler` port takes): leadflow's
background work on cron schedules in the business's time zone, each scheduled run done once
however many app instances run the scheduler.

From the bottom up:

* :class:`Job`: a name, a cron expression read in a time zone, a function, a grace period. One
  scheduled time of a job is a **slot**, named by its local date-time (``2026-03-09T08:00``), so
  a wall-clock time that a daylight-saving change repeats is still one slot.
* a :class:`~leadflow.ports.JobStore` leases each slot to one worker at a time and
  remembers it finished, so several processes sharing the store run it once.
* :class:`Scheduler` is what jobs are registered with: :class:`JobRunner` (built in:
  :meth:`JobRunner.run_pending` for tests and simulations, a background thread for apps),
  :class:`APSchedulerAdapter` (a host's APScheduler 3), or a host's own scheduler calling
  :meth:`JobRunner.run_job` (Celery beat, Kubernetes CronJobs...).
* the seed's six jobs live in :mod:`leadflow.runtime.jobs` (``LeadflowJobs``, ``JobSettings``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ..errors import InvalidInputError
from ..fields import ensure_utc

__all__ = ["Job", "JobContext", "JobFunc", "JobRun", "JobStatus"]

_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_.-]{0,99}\Z")
_MACROS: Final = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

JobFunc = Callable[["JobContext"], "Mapping[str, int] | None"]
"""A job's body: gets the slot it runs for, returns counts to report (or None)."""


# --------------------------------------------------------------------------- validation


def _zone(value: object, field: str = "timezone") -> ZoneInfo:
    if isinstance(value, ZoneInfo):
        return value
    if isinstance(value, str):
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInputError(
                f"unknown time zone {value!r}: use an IANA name such as 'America/New_York'",
                field=field,
            ) from exc
    raise InvalidInputError("expected an IANA time zone name or a ZoneInfo", field=field)


def _cron(value: object, field: str = "cron") -> str:
    if not isinstance(value, str):
        raise InvalidInputError("expected a cron expression (a string)", field=field)
    text = " ".join(value.split())
    text = _MACROS.get(text.lower(), text)
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise InvalidInputError(
            f"invalid cron expression {value!r}: give five fields, minute hour day-of-month "
            "month day-of-week (e.g. '0 8 * * *'), or @hourly, @daily, @weekly...",
            field=field,
        )
    return text


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EVERY_MINUTES: Final = re.compile(r"(?:\*|\*/([0-9]+)) \* \* \* \*")
_EVERY_HOURS: Final = re.compile(r"0 (?:\*|\*/([0-9]+)) \* \* \*")


def _step(cron: str) -> timedelta | None:
    """The fixed step of ``cron`` (as :func:`_cron` gives it) when its times are the whole
    multiples of one since midnight: ``*/n * * * *`` with ``n`` dividing 60 (``*``: 1),
    ``0 */n * * *`` with ``n`` dividing 24 (``0 *``: 1); else None."""
    for pattern, unit, whole in ((_EVERY_MINUTES, 1, 60), (_EVERY_HOURS, 60, 24)):
        matched = pattern.fullmatch(cron)
        if matched is not None:
            n = int(matched.group(1) or 1)
            return timedelta(minutes=n * unit) if n > 0 and whole % n == 0 else None
    return None


def _duration(value: object, field: str, *, zero: bool = False) -> timedelta:
    if not isinstance(value, timedelta) or value < timedelta(0) or (not zero and not value):
        kind = "non-negative" if zero else "positive"
        raise InvalidInputError(f"must be a {kind} timedelta", field=field)
    return value


def _count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError("must be a positive integer", field=field)
    return value


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True, slots=True)
class Job:
    """One periodic job.

    ``cron`` (five fields, or ``@hourly``, ``@daily``...) is read in ``timezone``. ``grace`` is
    how late a slot may still start: a slot missed by more (the process was down) is skipped,
    and of several missed slots only the latest is run. ``lease`` bounds one run: past it,
    another instance may take the slot over, so keep it above the longest expected run.

    Daylight saving (croniter's rules): a local time that does not exist runs at the first
    time after the gap (02:30 on the spring-forward day runs at 03:00). A local time that
    happens twice runs once when the hour field is fixed (``30 1 * * *``), because both
    occurrences are the same slot; a job whose hour field is a wildcard (``0 * * * *``,
    ``*/30 * * * *``) follows elapsed time and runs in both occurrences, as classic cron does.
    """

    name: str
    cron: str
    func: JobFunc
    timezone: ZoneInfo | str = "UTC"
    grace: timedelta = timedelta(minutes=10)
    lease: timedelta = timedelta(minutes=15)
    description: str = ""
    # The parsed expression, kept: parsing it (croniter's constructor) cost more than the
    # rest of a due check. Moved to each lookup's start under the lock (croniter is stateful).
    _iterator: croniter = field(init=False, repr=False, compare=False)
    _iterating: threading.Lock = field(init=False, repr=False, compare=False)
    # A job in UTC every n minutes (dividing an hour) or hours (dividing a day) has its slots
    # at whole multiples of that step since midnight: looked up by arithmetic (_step), what
    # croniter answers (tests/test_periodic_steps.py), at a fraction of its cost.
    _step: timedelta | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise InvalidInputError(
                f"invalid job name {self.name!r}: lower-case letters, digits, '_', '.', '-'",
                field="name",
            )
        if not callable(self.func):
            raise InvalidInputError("must be callable", field="func")
        object.__setattr__(self, "cron", _cron(self.cron))
        object.__setattr__(self, "timezone", _zone(self.timezone))
        _duration(self.grace, "grace", zero=True)
        _duration(self.lease, "lease")
        object.__setattr__(self, "_iterator", croniter(self.cron))
        object.__setattr__(self, "_iterating", threading.Lock())
        object.__setattr__(self, "_step", _step(self.cron) if self.zone.key == "UTC" else None)

    @property
    def zone(self) -> ZoneInfo:
        return cast(ZoneInfo, self.timezone)

    @property
    def follows_elapsed_time(self) -> bool:
        """True when the hour field is a wildcard (``*``, ``*/6``): then a repeated local hour
        is a new slot. Otherwise slots are wall-clock times and a repeated one runs once."""
        return self.cron.split(" ")[1].startswith("*")

    def next_after(self, when: datetime) -> datetime:
        """The first scheduled time strictly after ``when``, in UTC."""
        step = self._step
        if step is not None:
            return _EPOCH + ((ensure_utc(when, "when") - _EPOCH) // step + 1) * step
        local = ensure_utc(when, "when").astimezone(self.zone)
        with self._iterating:
            self._iterator.set_current(local)
            following: datetime = self._iterator.get_next(datetime)
        return following.astimezone(UTC)

    def latest_at_or_before(self, when: datetime) -> datetime:
        """The last scheduled time at or before ``when``, in UTC."""
        step = self._step
        if step is not None:
            return _EPOCH + (ensure_utc(when, "when") - _EPOCH) // step * step
        local = (ensure_utc(when, "when") + timedelta(microseconds=1)).astimezone(self.zone)
        with self._iterating:
            self._iterator.set_current(local)
            previous: datetime = self._iterator.get_prev(datetime)
        return previous.astimezone(UTC)

    def fire_times(self, start: datetime, end: datetime) -> list[datetime]:
        """Scheduled times in ``[start, end)``, in UTC (one per slot occurrence)."""
        end = ensure_utc(end, "end")
        times: list[datetime] = []
        at = self.next_after(ensure_utc(start, "start") - timedelta(microseconds=1))
        while at < end:
            times.append(at)
            at = self.next_after(at)
        return times

    def slot_key(self, scheduled_for: datetime) -> str:
        """The slot a scheduled time belongs to: its local date-time to the minute, with the
        UTC offset only for jobs that follow elapsed time (see :attr:`follows_elapsed_time`)."""
        local = ensure_utc(scheduled_for, "scheduled_for").astimezone(self.zone)
        if self.follows_elapsed_time:
            return local.isoformat(timespec="minutes")
        return local.strftime("%Y-%m-%dT%H:%M")


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job's function gets: the slot it runs for and the time it started."""

    job: Job
    slot: str
    scheduled_for: datetime
    now: datetime
    worker_id: str
    attempt: int = 1

    @property
    def local_time(self) -> datetime:
        """The scheduled time in the job's time zone."""
        return self.scheduled_for.astimezone(self.job.zone)


class JobStatus(StrEnum):
    """How a run ended; a failed run is final for its slot (the next slot runs normally)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobRun:
    """One run of one slot by this process: what a host exports as metrics.

    ``counts`` are what the job reported (e.g. ``{"purged": 12}``); ``duration`` is measured
    with a monotonic clock; ``attempt`` > 1 means the slot was taken over from a worker whose
    lease expired.
    """

    job: str
    slot: str
    scheduled_for: datetime
    started_at: datetime
    duration: timedelta
    status: JobStatus
    counts: Mapping[str, int]
    worker_id: str
    attempt: int = 1
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is JobStatus.SUCCEEDED

    @property
    def lateness(self) -> timedelta:
        """How long after its scheduled time the run started."""
        return self.started_at - self.scheduled_for


# --------------------------------------------------------------------------- running a slot
