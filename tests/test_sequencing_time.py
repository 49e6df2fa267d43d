"""The interpreter's clock arithmetic (pure): "09:00 the next business morning" in the
recipient's zone and send windows, across daylight-saving changes in both hemispheres,
weekends and the calendar's holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from leadflow.rules import Vocabulary, WorkingCalendar
from leadflow.rules.sequencing import SequenceProgram
from leadflow.sequences import SequenceDefinition

NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")


def program(
    *steps: dict[str, Any], holidays: tuple[date, ...] = (), **extra: Any
) -> SequenceProgram:
    definition = SequenceDefinition.model_validate(
        {"sequenceId": "t", "name": "t", "steps": list(steps), **extra}
    )
    calendar = WorkingCalendar("UTC", holidays=holidays)
    return SequenceProgram(definition, Vocabulary.default().replace(calendar=calendar))


MORNING = {"id": "morning", "kind": "wait", "until": {"at": "09:00", "nextDay": True}}
SEND = {"id": "send", "kind": "action", "action": {"actionType": "send_email", "template": "t"}}


def first_due(p: SequenceProgram, now: datetime, zone: ZoneInfo) -> datetime:
    stop = p.start(enrollment_id="e1", now=now, context={}, zone=zone)
    assert stop.due_at is not None
    return stop.due_at


@pytest.mark.parametrize(
    ("now", "zone", "expected"),
    [
        # New York springs forward on Sunday 2026-03-08: Friday 6 March 17:00 EST -> Monday
        # 9 March 09:00 EDT (13:00 UTC, no longer 14:00).
        (datetime(2026, 3, 6, 22, tzinfo=UTC), NEW_YORK, datetime(2026, 3, 9, 13, tzinfo=UTC)),
        # ... and falls back on Sunday 2026-11-01: Friday 09:00 EDT -> Monday 09:00 EST (14:00).
        (datetime(2026, 10, 30, 20, tzinfo=UTC), NEW_YORK, datetime(2026, 11, 2, 14, tzinfo=UTC)),
        # Sydney leaves daylight time on Sunday 2026-04-05 (AEDT +11 -> AEST +10): Friday 3 April
        # -> Monday 6 April 09:00 AEST = Sunday 23:00 UTC.
        (datetime(2026, 4, 3, 5, tzinfo=UTC), SYDNEY, datetime(2026, 4, 5, 23, tzinfo=UTC)),
        # ... and enters it on Sunday 2026-10-04: Friday 2 October -> Monday 5 October 09:00 AEDT
        # = Sunday 22:00 UTC.
        (datetime(2026, 10, 2, 5, tzinfo=UTC), SYDNEY, datetime(2026, 10, 4, 22, tzinfo=UTC)),
    ],
)
def test_the_next_business_morning_across_daylight_saving_changes(
    now: datetime, zone: ZoneInfo, expected: datetime
) -> None:
    assert first_due(program(MORNING, SEND), now, zone) == expected


def test_the_next_business_morning_skips_the_calendars_holidays() -> None:
    holiday = program(MORNING, SEND, holidays=(date(2026, 1, 6),))
    monday = datetime(2026, 1, 5, 12, tzinfo=UTC)
    assert first_due(holiday, monday, ZoneInfo("Europe/Paris")) == datetime(
        2026, 1, 7, 8, tzinfo=UTC
    )


def test_a_send_window_opens_in_the_recipients_zone_across_a_change() -> None:
    windowed = program(SEND, window={"days": ["mon", "tue", "wed", "thu", "fri"],
                                     "start": "09:00", "end": "17:00"})  # fmt: skip
    # Saturday 7 March in New York -> Monday 9 March 09:00 EDT, after the spring change.
    saturday = datetime(2026, 3, 7, 15, tzinfo=UTC)
    assert first_due(windowed, saturday, NEW_YORK) == datetime(2026, 3, 9, 13, tzinfo=UTC)
    # Inside the window: at once.
    tuesday = datetime(2026, 3, 10, 15, tzinfo=UTC)  # 11:00 EDT
    assert first_due(windowed, tuesday, NEW_YORK) == tuesday
    # The same instant is outside Sydney's window (02:00 Wednesday): 09:00 there.
    assert first_due(windowed, tuesday, SYDNEY) == datetime(2026, 3, 10, 22, tzinfo=UTC)


def test_a_window_that_never_opens_is_refused() -> None:
    with pytest.raises(ValueError, match="never opens"):
        program(SEND, window={"start": "17:00", "end": "09:00"})
    with pytest.raises(ValueError, match="days"):
        program(SEND, window={"days": []})
