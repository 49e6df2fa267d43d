"""One event envelope everywhere (issue 19): ``handle``, ``handle_many`` and the HTTP routes take
the same event, an unknown type or an opportunity event without its opportunity is refused at
intake (nothing written), and a missing time is now on the flow's clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from leadflow import (
    Event,
    FlowSettings,
    InvalidInputError,
    LeadFlow,
    ManualClock,
    default_rules,
)

from .access_support import ADMIN
from .helpers import T0
from .test_contrib_fastapi import Api, make_api


def _flow(**settings: Any) -> LeadFlow:
    return LeadFlow.in_memory(
        clock=ManualClock(T0), rules=default_rules(), settings=FlowSettings(**settings)
    )


def _written(flow: LeadFlow) -> tuple[int, int]:
    return len(
        flow.storage.scheduled.list(limit=1000)
    ), flow.storage.activities.list().items.__len__()


def test_an_unknown_event_type_is_refused_with_the_closest_known_name() -> None:
    flow = _flow()
    event = {"type": "opportunity.craeted", "payload": {"opportunityId": "o1"}}
    with pytest.raises(InvalidInputError) as caught:
        flow.handle(event)
    assert caught.value.field == "type"
    assert "did you mean 'opportunity.created'" in str(caught.value)
    assert _written(flow) == (0, 0)
    [refused] = flow.handle_many([event])
    assert isinstance(refused, InvalidInputError) and refused.field == "type"


def test_a_host_may_pass_unknown_types_through() -> None:
    flow = _flow(unknown_event_types="accept")
    result = flow.handle({"type": "crm.note_added", "payload": {}})
    assert result.matched_rules == [] and _written(flow) == (0, 0)
    with pytest.raises(InvalidInputError) as caught:
        FlowSettings(unknown_event_types="ignore")  # type: ignore[arg-type]
    assert caught.value.field == "unknown_event_types"


@pytest.mark.parametrize("payload", [{}, {"opportunityId": 42}, {"opportunityId": None}])
def test_an_opportunity_event_without_its_opportunity_is_refused(payload: dict[str, Any]) -> None:
    flow = _flow()
    event = {"type": "opportunity.created", "payload": {"leadSource": "website", **payload}}
    with pytest.raises(InvalidInputError) as caught:
        flow.handle(event)
    assert caught.value.field == "payload.opportunityId"
    assert _written(flow) == (0, 0)
    [refused] = flow.handle_many([event])
    assert isinstance(refused, InvalidInputError)


def test_a_missing_time_is_now_on_the_flows_clock_on_every_path() -> None:
    flow = _flow()
    event = {"type": "opportunity.created", "payload": {"opportunityId": "o1"}}
    assert flow.handle(event).event.time == T0
    flow.clock.advance(minutes=5)  # type: ignore[attr-defined]
    [result] = flow.handle_many([{**event, "id": "e-2"}])
    assert not isinstance(result, Exception)
    assert result.event.time == T0 + timedelta(minutes=5)
    typed = Event(type="opportunity.created", time=T0, payload={"opportunityId": "o2"})
    assert flow.handle(typed).event.time == T0


@pytest.fixture
def api() -> Api:
    return make_api()


def test_http_takes_the_same_envelope(api: Api) -> None:
    envelope = {"type": "opportunity.created", "payload": {"opportunityId": "opp-alice"}}
    sent = api.call("POST", "/api/events", ADMIN, json=envelope)
    assert sent.status_code in (200, 201), sent.text
    trial = api.call(
        "POST",
        "/api/follow-up-rules/default-website-lead-follow-up/test",
        ADMIN,
        json={"type": "opportunity.created", "payload": {"leadSource": "website"}},
    )
    assert trial.status_code == 200, trial.text
    assert trial.json()["matched"] is True
    unknown = api.call("POST", "/api/events", ADMIN, json={**envelope, "type": "nope.never"})
    assert unknown.status_code == 422 and "unknown event type" in unknown.text
