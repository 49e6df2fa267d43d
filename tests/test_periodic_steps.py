"""A job in UTC every n minutes or hours (the backtest's stale job) finds its slots by
arithmetic; the answers are croniter's: the same job in ``Etc/UTC`` (the same clock, looked up
through croniter) gives the same next and latest times, at slot boundaries, a microsecond
either side of them, and anywhere between (up to 2250: see ``_TIMES``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from leadflow.ports.periodic import Job

from .suite import examples

_CRONS = [
    *(f"*/{n} * * * *" for n in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)),
    "* * * * *",
    "0 * * * *",
    *(f"0 */{n} * * *" for n in (1, 2, 3, 4, 6, 8, 12)),
]
# croniter computes on float timestamps: past about 2255 (2**53 microseconds after 1970) a
# microsecond is below their precision and its answers at a slot's edge drift by one slot;
# the arithmetic gives the documented answer there, so the two are compared before it.
_TIMES = st.datetimes(datetime(1900, 1, 2), datetime(2250, 12, 30), timezones=st.just(UTC))


def _jobs(cron: str) -> tuple[Job, Job]:
    fast = Job("fast", cron, lambda ctx: None)
    slow = Job("slow", cron, lambda ctx: None, timezone="Etc/UTC")
    assert fast._step is not None and slow._step is None
    return fast, slow


@settings(max_examples=examples(400), deadline=None)
@given(cron=st.sampled_from(_CRONS), when=_TIMES, nudge=st.sampled_from([0, 1, -1, None]))
@example(cron="0 */6 * * *", when=datetime(2026, 3, 29, 6, tzinfo=UTC), nudge=0)
@example(cron="*/15 * * * *", when=datetime(1969, 12, 31, 23, 59, tzinfo=UTC), nudge=-1)
def test_a_step_job_finds_the_slots_croniter_finds(
    cron: str, when: datetime, nudge: int | None
) -> None:
    fast, slow = _jobs(cron)
    if nudge is not None:  # on a slot, or a microsecond either side of one
        when = fast.latest_at_or_before(when) + timedelta(microseconds=nudge)
    assert fast.next_after(when) == slow.next_after(when)
    assert fast.latest_at_or_before(when) == slow.latest_at_or_before(when)
    assert fast.next_after(when).tzinfo is UTC


@pytest.mark.parametrize(
    "cron", ["*/7 * * * *", "0 */5 * * *", "5 */6 * * *", "*/15 8 * * *", "0 0 * * 1"]
)
def test_other_crons_and_zones_go_through_croniter(cron: str) -> None:
    assert Job("j", cron, lambda ctx: None)._step is None
    assert Job("j", "*/15 * * * *", lambda ctx: None, timezone="Europe/Paris")._step is None


def test_fire_times_of_a_step_job() -> None:
    fast, slow = _jobs("*/20 * * * *")
    start = datetime(2026, 10, 25, 0, 50, 0, 1, tzinfo=UTC)
    end = start + timedelta(hours=3)
    assert fast.fire_times(start, end) == slow.fire_times(start, end)
    assert len(fast.fire_times(start, end)) == 9
