"""The backtest (the real runtime replaying a history) and its reports."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leadflow import HandlerRegistry
from leadflow.rules import default_rules
from leadflow.runtime import ActionContext
from leadflow.simulate import SimulationSettings, Simulator, compare, render_html, simulate

START = datetime(2026, 3, 2, 8, tzinfo=UTC)
REPS = ("alice", "bob", "carol")


def rule(
    rid: str, event_type: str, conditions: list[Any], actions: list[Any], **kw: Any
) -> dict[str, Any]:
    trigger = {"eventType": event_type, "conditions": conditions}
    return {"ruleId": rid, "name": rid, "trigger": trigger, "actions": actions, **kw}


def when(field: str, value: Any, op: str = "equals") -> list[dict[str, Any]]:
    return [{"field": field, "operator": op, "value": value}]


def activity(subject: str, assign: str, delay: int, **kw: Any) -> dict[str, Any]:
    return {"actionType": "create_activity", "subject": subject, "assignTo": assign,
            "delay": delay, **kw}  # fmt: skip


def notify(template: str, delay: int = 0) -> dict[str, Any]:
    return {"actionType": "send_notification", "template": template, "delay": delay}


def set_status(status: str) -> dict[str, Any]:
    return {"actionType": "update_status", "params": {"status": status}}


EXTRA: list[Any] = [
    rule("rr-email", "opportunity.created", when("leadSource", "phone"),
         [activity("E-mail", "round_robin", 3, activityType="email"), notify("later", 30)]),
    rule("big-quote", "estimate.created", when("amount", 5000, "greater_than"),
         [set_status("negotiating"), notify("big_quote")], priority=45),
    rule("least", "opportunity.status_changed", when("newStatus", "qualified"),
         [activity("Qualify", "least_loaded", 2)]),
]  # fmt: skip


def history(count: int = 400, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    opportunities: list[str] = []
    time = START
    for n in range(count):
        time += timedelta(minutes=rng.randint(5, 90))
        kind = rng.choices(["created", "status", "estimate"], [4, 3, 3])[0]
        if kind == "created" or not opportunities:
            opp = f"opp-{len(opportunities)}"
            opportunities.append(opp)
            payload: dict[str, Any] = {
                "opportunityId": opp,
                "status": "new",
                "assignedTo": rng.choice(REPS),
                "leadSource": rng.choice(["website", "referral", "phone", "social"]),
                "priority": rng.choice(["low", "high", "urgent"]),
            }
            events.append(
                {
                    "id": f"e{n}",
                    "type": "opportunity.created",
                    "time": time.isoformat(),
                    "payload": payload,
                }
            )
        elif kind == "status":
            opp = rng.choice(opportunities)
            status = rng.choice(["qualified", "won", "lost", "negotiating"])
            payload = {"opportunityId": opp, "newStatus": status}
            events.append(
                {
                    "id": f"e{n}",
                    "type": "opportunity.status_changed",
                    "time": time.isoformat(),
                    "payload": payload,
                }
            )
        else:
            payload = {
                "opportunityId": rng.choice(opportunities),
                "amount": rng.choice([100, 9000]),
            }
            events.append(
                {
                    "id": f"e{n}",
                    "type": "estimate.created",
                    "time": time.isoformat(),
                    "payload": payload,
                }
            )
    return events  # fmt: skip


def test_deterministic_and_json(tmp_path: Path) -> None:
    rules: list[Any] = [*default_rules(), *EXTRA]
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in history(200)) + "\n\n")
    settings = SimulationSettings(reps=REPS)
    first = simulate(rules, path, settings=settings)
    second = simulate(rules, history(200), settings=settings)
    assert first.to_json() == second.to_json()
    data = json.loads(first.to_json())
    assert data["events"] == 200 and data["busiest"]["count"] == max(
        n for days in first.workload.values() for n in days.values()
    )
    assert "busiest rep-day" in first.to_text()


def test_refused_parked_and_cascades_stopped() -> None:
    loop = [
        rule("a", "opportunity.status_changed", when("newStatus", "x"), [set_status("y")]),
        rule("b", "opportunity.status_changed", when("newStatus", "y"), [set_status("x")]),
        rule("c", "estimate.created", [], [{"actionType": "create_activity", "subject": "s"}]),
    ]  # fmt: skip
    events = [
        {"id": "1", "type": "opportunity.status_changed", "time": START.isoformat(),
         "payload": {"opportunityId": "o", "newStatus": "x"}},
        {"id": "2", "type": "estimate.created", "time": START.isoformat(), "payload": {}},
        {"id": "3", "type": "estimate.created", "time": "2026-01-01T00:00:00+00:00", "payload": {}},
        {"id": "4", "type": "estimate.created"},
    ]  # fmt: skip
    report = simulate(loop, events)
    assert report.max_cascade_depth == 5 and report.cascades_stopped == 1
    assert report.parked == {  # the runtime's reason
        "payload.opportunityId: create_activity needs an opportunity, the event has no "
        "opportunityId": 1
    }
    assert report.events == 2 and report.events_refused == 2
    assert "out of time order" in report.refused_examples[0]


def test_refused_events_are_counted_per_reason_with_a_cap() -> None:
    late = {"type": "estimate.created", "time": "2025-01-01T00:00:00+00:00", "payload": {}}
    events: list[dict[str, object]] = [
        {"type": "estimate.created", "time": START.isoformat(), "payload": {}},
        *({"type": "estimate.created"} for _ in range(3)),  # no time
        *(late for _ in range(2)),
        *({"type": "estimate.created", "time": f"not a time {n}"} for n in range(40)),
    ]
    report = simulate([], events)
    assert report.events == 1 and report.events_refused == 45
    reasons = report.refused_per_reason
    assert reasons["time: out of time order"] == 2
    assert sum(reasons.values()) == 45
    assert len(reasons) <= 21  # 20 reasons at most, the rest counted together
    text = report.to_text()
    assert "events refused, per reason:" in text
    assert "2  time: out of time order" in text


def test_stale_opportunities_feed_the_rules() -> None:
    stale = rule("stale", "opportunity.stale_detected", [],
                 [{"actionType": "create_activity", "subject": "Revive"}])  # fmt: skip
    website: list[Any] = [
        r for r in default_rules() if r.rule_id == "default-website-lead-follow-up"
    ]
    events = [
        {"id": "1", "type": "opportunity.created", "time": START.isoformat(),
         "payload": {"opportunityId": "o", "leadSource": "website", "assignedTo": "alice"}},
        {"id": "2", "type": "estimate.created", "time": (START + timedelta(days=20)).isoformat(),
         "payload": {"opportunityId": "o"}},
    ]  # fmt: skip
    report = simulate([*website, stale], events)
    # the website activity is still open: one stale detection, whose activity opens a new period
    assert report.stale_detected == 2
    assert report.activities_per_rule == {"default-website-lead-follow-up": 1, "stale": 1}
    assert report.duplicates_skipped == {"stale": 1}


def test_compare_shows_differences_with_examples() -> None:
    rules: list[Any] = [*default_rules(), *EXTRA]
    without = [r for r in rules if not (isinstance(r, dict) and r["ruleId"] == "big-quote")]
    comparison = compare(rules, without, history(200), settings=SimulationSettings(reps=REPS))
    by_rule = {d.rule_id: d for d in comparison.rules}
    big = by_rule["big-quote"]
    assert big.matched[0] > 0 and big.matched[1] == 0 and len(big.examples) == 3
    assert all(before == 1 and after == 0 for _, before, after in big.examples)
    assert "default-negotiating-weekly" in by_rule  # fed by big-quote's status changes
    assert "rule 'big-quote': matched" in comparison.to_text()
    assert (
        json.loads(comparison.to_json())["differences"][0]["ruleId"] == comparison.rules[0].rule_id
    )
    same = compare(rules, rules, history(50), settings=SimulationSettings(reps=REPS))
    assert same.rules == [] and "no rule behaves differently" in same.to_text()


def test_the_html_report_is_self_contained() -> None:
    rules: list[Any] = [*default_rules(), *EXTRA]
    events = history(200)
    report = simulate(rules, events, settings=SimulationSettings(reps=REPS))
    page = render_html(
        report, compare(rules, default_rules(), events, settings=SimulationSettings(reps=REPS))
    )
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "</html>" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<script" not in page
    rep, day, count = report.busiest or ("", "", 0)
    assert f"<title>{rep} {day}: {count}</title>" in page


def test_a_bad_history_line_is_named() -> None:
    with pytest.raises(Exception, match="line 2 is not JSON"):
        simulate(
            default_rules(),
            ['{"id": "1", "type": "estimate.created", "time": "2026-03-02T08:00:00+00:00"}', "{"],
        )


def test_host_handlers_run_at_their_due_times_in_the_real_runtime(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The host's own handler runs (delayed: when its time comes on the history's clock), and
    a delayed status change cascades then; the report is what the runtime stored."""
    seen: list[tuple[str | None, datetime]] = []

    def webhook(ctx: ActionContext) -> str:
        seen.append((ctx.scheduled.opportunity_id, ctx.now))
        return "posted"

    registry = HandlerRegistry.default()
    registry.register("post_webhook", webhook)
    rules = [
        rule("hook", "opportunity.created", [], [{"actionType": "post_webhook", "delay": 2}]),
        rule("later", "estimate.created", [],
             [{"actionType": "update_status", "delay": 24, "params": {"status": "quoted"}}]),
        rule("quoted", "opportunity.status_changed", when("newStatus", "quoted"),
             [activity("Chase the quote", "lead_owner", 1)]),
        rule("broken", "estimate.created", [], [{"actionType": "send_sms", "delay": 1,
                                                 "template": "t"}]),
    ]  # fmt: skip
    events = [
        {"id": "1", "type": "opportunity.created", "time": START.isoformat(),
         "payload": {"opportunityId": "o", "assignedTo": "bob", "phone": ""}},
        {"id": "2", "type": "estimate.created", "time": (START + timedelta(hours=1)).isoformat(),
         "payload": {"opportunityId": "o"}},
        {"id": "3", "type": "estimate.created", "time": (START + timedelta(days=3)).isoformat(),
         "payload": {"opportunityId": "p"}},
    ]  # fmt: skip
    simulator = Simulator(rules, handlers=registry, settings=SimulationSettings(stale_every=None))
    for event in events:
        simulator.feed(event)
    report = simulator.finish(START + timedelta(days=3, hours=2))
    assert seen == [("o", START + timedelta(hours=2))]
    assert report.other_actions == {"post_webhook": 1}
    # update_status ran a day after o's estimate; the cascade's activity is due an hour later
    assert report.status_changes == 1 and report.max_cascade_depth == 1
    assert report.activities_per_rule == {"quoted": 1}
    assert report.workload == {"bob": {"2026-03-03": 1}}
    [chase] = simulator.flow.storage.activities.for_opportunity("o")
    assert chase.due_date == START + timedelta(days=1, hours=2)
    # o's phone was recorded empty: the runtime parks its SMS and says why; p has no contact
    # recorded, so its SMS goes to the placeholder
    assert report.parked == {"send_sms: contact: the opportunity has no sms contact": 1}
    assert report.messages == {"sms": 1}
    assert report.pending_at_end == {"later": 1}  # p's status change is due after the end
    assert not [r for r in caplog.records if r.name.startswith("leadflow")]
