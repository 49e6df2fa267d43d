"""The seed's eight default rules, each shown firing on the seed's workflow examples."""

from __future__ import annotations

from datetime import timedelta

from leadflow import ActivityType, Event, RuleEngine, default_rules

from .helpers import T0

ENGINE = RuleEngine(default_rules())


def plan(type_: str, payload: dict[str, object]) -> list[tuple[str, str, str | None, timedelta]]:
    result = ENGINE.evaluate(Event(type=type_, time=T0, payload=payload))
    return [
        (
            p.rule_id,
            p.action.action_type,
            p.action.template or (p.action.activity_type.value if p.action.activity_type else None),
            p.due_at - T0,
        )
        for p in result.planned
    ]


def test_eight_rules_ship_as_data_and_load():
    rules = default_rules()
    assert len(rules) == 8
    assert len({r.rule_id for r in rules}) == 8
    assert all(r.is_active for r in rules)
    assert default_rules() == rules
    assert default_rules()[0] is not rules[0], "fresh copies each call"


def test_example_1_website_lead_call_in_one_hour():
    assert plan("opportunity.created", {"leadSource": "website", "opportunityId": "o1"}) == [
        ("default-website-lead-follow-up", "create_activity", "call", timedelta(hours=1))
    ]
    # the seed's other spelling of the event
    assert (
        plan("opportunity_created", {"leadSource": "website"})[0][0]
        == "default-website-lead-follow-up"
    )


def test_example_1_step_7_callback_requested_next_day():
    assert plan("activity.completed", {"outcome": "callback_requested"}) == [
        ("default-callback-requested", "create_activity", "call", timedelta(hours=24))
    ]
    assert plan("activity.completed", {"outcome": "successful"}) == []


def test_example_2_quote_follow_up_after_48_hours():
    assert plan("estimate.created", {"opportunityId": "o2"}) == [
        ("default-quote-follow-up", "create_activity", "call", timedelta(hours=48))
    ]
    assert plan("quote_sent", {})[0][3] == timedelta(hours=48)


def test_example_3_lost_re_engagement_after_30_days():
    assert plan("opportunity.status_changed", {"newStatus": "lost"}) == [
        ("default-lost-re-engagement", "create_activity", "call", timedelta(hours=720))
    ]


def test_won_opportunity_kickoff_and_notification():
    assert plan("status_changed", {"newStatus": "won"}) == [
        ("default-won-opportunity", "create_activity", "meeting", timedelta(0)),
        ("default-won-opportunity", "send_notification", "won_opportunity", timedelta(0)),
    ]


def test_urgent_priority_immediate_call_and_urgent_notification_and_no_double_call():
    planned = plan("opportunity.created", {"leadSource": "website", "priority": "urgent"})
    assert planned == [
        ("default-urgent-priority-follow-up", "create_activity", "call", timedelta(0)),
        ("default-urgent-priority-follow-up", "send_notification", "urgent_lead", timedelta(0)),
    ]


def test_referral_special_handling():
    assert plan("opportunity.created", {"leadSource": "referral"}) == [
        ("default-referral-lead", "create_activity", "call", timedelta(hours=2)),
        ("default-referral-lead", "send_notification", "referral_lead", timedelta(0)),
    ]


def test_negotiating_weekly_follow_up():
    assert plan("opportunity.status_changed", {"newStatus": "negotiating"}) == [
        ("default-negotiating-weekly", "create_activity", "follow_up", timedelta(days=7))
    ]


def test_every_default_rule_is_exercised_above():
    payloads = [
        ("opportunity.created", {"leadSource": "website"}),
        ("opportunity.created", {"leadSource": "referral"}),
        ("opportunity.created", {"priority": "urgent"}),
        ("activity.completed", {"outcome": "callback_requested"}),
        ("estimate.created", {}),
        ("opportunity.status_changed", {"newStatus": "lost"}),
        ("opportunity.status_changed", {"newStatus": "won"}),
        ("opportunity.status_changed", {"newStatus": "negotiating"}),
    ]
    fired = {p[0] for t, body in payloads for p in plan(t, body)}
    assert fired == {r.rule_id for r in default_rules()}
    assert {r.actions[0].activity_type for r in default_rules()} <= set(ActivityType)
