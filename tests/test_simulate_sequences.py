"""Backtesting sequences: the website-lead sequence replayed over a recorded event stream through
the real runtime (entries, calls, replies, status changes), its figures computed by hand; two
versions compared; per-variant figures of a split; the HTML section; the command line
(``leadflow simulate --sequences``, ``leadflow sequences test`` and ``report``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from leadflow import InvalidInputError
from leadflow.cli import cli
from leadflow.rules import WorkingCalendar
from leadflow.simulate import Simulator, compare, render_html, simulate

from .sequence_support import website_lead_sequence

PARIS = WorkingCalendar("Europe/Paris")  # 09:00 in Paris is 08:00 UTC in January


def _event(ident: str, at: str, kind: str, **payload: Any) -> dict[str, Any]:
    return {"id": ident, "type": kind, "time": f"2026-01-{at}:00+00:00", "payload": payload}


def _created(ident: str, at: str, opportunity: str, source: str = "website") -> dict[str, Any]:
    return _event(ident, at, "opportunity.created", opportunityId=opportunity, source=source)


def _call_done(ident: str, at: str, opportunity: str, outcome: str) -> dict[str, Any]:
    return _event(ident, at, "activity.completed", opportunityId=opportunity,
                  activityType="call", outcome=outcome)  # fmt: skip


# Monday 5 January 2026 to Friday 9 January, UTC. What the sequence does with each lead (by
# hand: wait 1 h, call; the call's outcome or 1 business day; answered -> exit; else 09:00 Paris
# the next business day an e-mail; a reply within 2 business days -> exit, else a second call):
#   o1  call Mon 11:00, answered 11:30                       -> completed     1 call
#   o2  call Mon 11:30, no answer 12:00, e-mail Tue 08:00,
#       reply Tue 15:00                                      -> completed     1 call, 1 e-mail
#   o3  a phone lead                                         -> never enters
#   o4  call Mon 13:00, no outcome: timeout Tue 13:00, e-mail
#       Wed 08:00, won Wed 09:00                             -> goal (45 h)   1 call, 1 e-mail
#   o5  call Mon 15:00, voicemail 16:00, e-mail Tue 08:00, no
#       reply: second call Thu 08:00                         -> completed     2 calls, 1 e-mail
#   o8  call Mon 16:00, no answer 16:30, e-mail Tue 08:00,
#       reply Wed 12:00 (within 2 business days)             -> completed     1 call, 1 e-mail
#   o6  enters Tue 09:00, lost Tue 09:30 before its call     -> goal (30 min) nothing sent
#   o7  enters Fri 16:00, call 17:00, still waiting at 18:00 -> active        1 call
STREAM = sorted(
    [
        _created("c1", "05T10:00", "o1"),
        _created("c2", "05T10:30", "o2"),
        _created("c3", "05T11:00", "o3", source="phone"),
        _call_done("d1", "05T11:30", "o1", "successful"),
        _created("c4", "05T12:00", "o4"),
        _call_done("d2", "05T12:00", "o2", "no_answer"),
        _created("c5", "05T14:00", "o5"),
        _created("c8", "05T15:00", "o8"),
        _call_done("d5", "05T16:00", "o5", "voicemail"),
        _call_done("d8", "05T16:30", "o8", "no_answer"),
        _created("c6", "06T09:00", "o6"),
        _event("l6", "06T09:30", "opportunity.status_changed", opportunityId="o6",
               newStatus="lost"),
        _event("r2", "06T15:00", "email.replied", opportunityId="o2"),
        _event("w4", "07T09:00", "opportunity.status_changed", opportunityId="o4",
               newStatus="won"),
        _event("r8", "07T12:00", "email.replied", opportunityId="o8"),
        _created("c7", "09T16:00", "o7"),
        _event("q3", "09T18:00", "opportunity.status_changed", opportunityId="o3",
               newStatus="qualified"),
    ],
    key=lambda e: e["time"],
)  # fmt: skip

OPTIONS: dict[str, Any] = {"event_types": ["email.replied"], "calendar": PARIS}


def _reply_within(days: int) -> Any:
    document = website_lead_sequence().to_document()
    [reply] = [s for s in document["steps"] if s["id"] == "reply"]
    reply["timeout"] = {"amount": days, "unit": "business_days"}
    return document


def test_the_website_lead_sequence_backtested_over_a_recorded_stream() -> None:
    report = simulate([], STREAM, sequences=[website_lead_sequence()], **OPTIONS)
    assert (report.events, report.events_refused) == (17, 0)
    figures = report.sequences["website-lead"]
    assert (figures.name, figures.version) == ("New website lead", 1)
    assert figures.entries == 7  # o3 came by phone
    assert figures.sends == {"create_activity": 7, "send_email": 4}
    assert figures.steps == {"first-call": 6, "email": 4, "second-call": 1}  # o6: no call
    assert (figures.goals_reached, figures.completed, figures.active, figures.ended) == (2, 4, 1, 0)
    assert figures.goals == {"won or lost": 2}
    # median of 45 h (o4) and 30 min (o6)
    assert figures.median_seconds_to_goal == (45 * 3600 + 30 * 60) / 2
    assert figures.splits == {} and figures.verdicts == {}
    # The rest of the report sees the sequence's work as the runtime did it.
    assert report.messages == {"email": 4}
    assert report.activities_per_rule == {"website-lead": 7}
    assert report.completions_matched == 4  # o1, o2, o5, o8: their calls, as recorded
    assert report.pending_at_end == {}  # o7's visit is the sequence's, not a rule's
    text = report.to_text()
    assert (
        "sequence 'website-lead' (New website lead, v1): 7 entered; sends 11 (create_activity 7, "
        "send_email 4); goals reached 2, completed 4, active at the end 1, ended 0; median time "
        "to goal 22.8 h"
    ) in text
    data = json.loads(report.to_json())["sequences"]["website-lead"]
    assert data["entries"] == 7 and data["medianSecondsToGoal"] == 81900.0
    assert data["sends"] == {"create_activity": 7, "send_email": 4}


def test_every_step_runs_at_its_due_time_as_the_clock_advances() -> None:
    simulator = Simulator([], sequences=[website_lead_sequence()], **OPTIONS)
    for event in STREAM:
        simulator.feed(event)
    simulator.finish()
    store = simulator.flow.storage.enrollments
    assert store is not None
    [o5] = store.list(opportunity_id="o5")
    done = {h.step_id: h.at for h in o5.history if h.outcome == "scheduled"}
    assert done["email"] == datetime(2026, 1, 6, 8, tzinfo=UTC)  # 09:00 Paris, the next day
    assert done["second-call"] == datetime(2026, 1, 8, 8, tzinfo=UTC)  # 2 business days on
    [second] = [a for a in simulator.flow.storage.activities.for_opportunity("o5")][1:]
    assert second.created_at == datetime(2026, 1, 8, 8, tzinfo=UTC)


def test_compare_two_versions_of_a_sequence_over_the_same_events() -> None:
    """Waiting one business day for a reply instead of two: o8's reply (Wednesday noon) comes
    after the shorter wait, so it gets a second call."""
    comparison = compare(
        [], [], STREAM, sequences=[_reply_within(2)], other_sequences=[_reply_within(1)],
        **OPTIONS,
    )  # fmt: skip
    [diff] = comparison.sequences
    assert diff.sequence_id == "website-lead" and diff.changed
    assert diff.pair("sent") == (11, 12)
    assert diff.pair("completed") == (4, 4) and diff.pair("goals_reached") == (2, 2)
    assert diff.steps()["second-call"] == (1, 2)
    assert comparison.rules == []
    text = comparison.to_text()
    assert "sequence 'website-lead' (v1 -> v1): entries 7 -> 7, sends 11 -> 12 (+1)" in text
    assert "    step 'second-call' ran 1 -> 2 time(s) (+1)" in text
    data = json.loads(comparison.to_json())["sequences"][0]
    assert data["sends"] == [11, 12] and data["steps"]["second-call"] == [1, 2]
    same = compare([], [], STREAM, sequences=[website_lead_sequence()], **OPTIONS)
    assert not same.sequences[0].changed
    assert "no sequence behaves differently" in same.to_text()


def _ab() -> dict[str, Any]:
    return {
        "sequenceId": "ab",
        "name": "A/B",
        "entry": {"eventType": "opportunity.created"},
        "steps": [
            {"id": "split", "kind": "split", "variants": [
                {"name": "call", "weight": 1, "goto": "call"},
                {"name": "mail", "weight": 1, "goto": "mail"}]},
            {"id": "call", "kind": "action", "action": {
                "actionType": "create_activity", "activityType": "call", "subject": "Call"}},
            {"id": "call-wait", "kind": "wait", "delay": 48},
            {"id": "call-end", "kind": "exit"},
            {"id": "mail", "kind": "action", "action": {
                "actionType": "send_email", "template": "hello"}},
            {"id": "mail-wait", "kind": "wait", "delay": 48},
        ],
        "goals": [{"name": "won", "eventType": "opportunity.status_changed",
                   "conditions": [{"field": "newStatus", "operator": "equals",
                                   "value": "won"}]}],
    }  # fmt: skip


def test_split_variants_have_their_own_figures_and_the_html_shows_them() -> None:
    events = [_created(f"c{n}", f"05T{8 + n:02d}:00", f"o{n}") for n in range(8)]
    events.append(_event("w", "05T20:00", "opportunity.status_changed", opportunityId="o0",
                         newStatus="won"))  # fmt: skip
    report = simulate([], events, sequences=[_ab()])
    figures = report.sequences["ab"]
    arms = figures.splits["split"]
    assert list(arms) == ["call", "mail"]
    assert sum(a.entries for a in arms.values()) == figures.entries == 8
    for name, arm in arms.items():
        assert arm.sends == ({"create_activity": arm.entries} if name == "call" else
                             {"send_email": arm.entries})  # fmt: skip
    assert figures.goals_reached == 1 and figures.verdicts == {"split": "not enough data yet"}
    assert figures.active + figures.completed + figures.goals_reached == 8
    page = render_html(report)
    assert "<h2>sequences</h2>" in page and "<th>split: call</th>" in page
    assert "<td>sends: send_email</td>" in page and "split split: not enough data yet" in page
    other = _ab()
    other["steps"][0]["variants"][1]["weight"] = 9
    comparison = compare([], [], events, sequences=[_ab()], other_sequences=[other])
    page = render_html(comparison.after, comparison)
    assert "<h2>sequences, before and after</h2>" in page and "<th>after (v1)</th>" in page
    assert "<script" not in page


def test_one_version_per_sequence_and_sequences_that_do_not_load_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="given twice"):
        simulate([], STREAM, sequences=[website_lead_sequence(), website_lead_sequence()],
                 **OPTIONS)  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"email\.replied"):
        simulate([], STREAM, sequences=[website_lead_sequence()])  # not a seed event type


# ---------------------------------------------------------------------- the command line


def _write(path: Path, data: Any) -> str:
    path.write_text(json.dumps(data, default=str), encoding="utf-8")
    return str(path)


def _stream(path: Path) -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in STREAM), encoding="utf-8")
    return str(path)


def test_simulate_backtests_and_compares_sequences_from_files(tmp_path: Path) -> None:
    old = _write(tmp_path / "old.json", _reply_within(2))
    new = _write(tmp_path / "new.json", [_reply_within(1)])
    history = _stream(tmp_path / "history.jsonl")
    runner = CliRunner()
    base = ["simulate", history, "--sequences", old, "--event-type", "email.replied",
            "--calendar-timezone", "Europe/Paris"]  # fmt: skip
    result = runner.invoke(cli, [*base, "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "sequence 'website-lead' (New website lead, v1): 7 entered; sends 11" in result.stdout
    assert "<h2>sequences</h2>" in (tmp_path / "r.html").read_text(encoding="utf-8")
    result = runner.invoke(cli, [*base, "--compare-sequences", new, "--json"])
    assert result.exit_code == 0, result.output
    [diff] = json.loads(result.stdout)["sequences"]
    assert diff["steps"]["second-call"] == [1, 2]
    # With a rule file first, as before; without --sequences one path is not enough.
    rules = _write(tmp_path / "rules.json", [])
    assert runner.invoke(cli, ["simulate", rules, history, "--sequences", old, "--event-type",
                               "email.replied"]).exit_code == 0  # fmt: skip
    result = runner.invoke(cli, ["simulate", history])
    assert result.exit_code == 2 and "HISTORY alone with --sequences" in result.output
    result = runner.invoke(cli, ["simulate", rules, history, "--compare-sequences", new])
    assert result.exit_code == 2 and "--compare-sequences needs --sequences" in result.output
    result = runner.invoke(cli, ["simulate", history, "--sequences", old])
    assert result.exit_code == 1 and "email.replied" in result.output


def test_sequences_test_prints_each_step_when_and_why(tmp_path: Path) -> None:
    file = _write(tmp_path / "seq.json", website_lead_sequence().to_document())
    runner = CliRunner()
    events = [json.dumps(STREAM[1]), json.dumps(STREAM[5])]  # o2: created, no answer
    args = ["sequences", "test", file, "--event-type", "email.replied", "--calendar-timezone",
            "Europe/Paris", "--until", "2026-01-09T00:00:00+00:00"]  # fmt: skip
    result = runner.invoke(cli, [*args, "--event", events[0], "--event", events[1]])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "sequence 'website-lead' (New website lead)",
        "event c2 (opportunity.created) at 2026-01-05T10:30:00+00:00: enrolled",
        "event d2 (activity.completed) at 2026-01-05T12:00:00+00:00: matched (call-outcome)",
        "opportunity o2: entered at 2026-01-05T10:30:00+00:00 (event c2)",
    ]
    assert (
        "  2026-01-06T08:00:00+00:00  email [action send_email] done: after done: due at once"
        in result.stdout
    )
    assert "second-call [action create_activity] done: after timed_out" in result.stdout
    assert "  2026-01-08T08:00:00+00:00  end: completed: exit step done" in lines
    assert "in all: 1 entered; sends 3 (create_activity 2, send_email 1)" in result.stdout
    # A stop before the e-mail: it is pending, with its due time.
    (tmp_path / "o2.jsonl").write_text(f"{events[0]}\n{events[1]}\n", encoding="utf-8")
    early = [*args[:-1], "2026-01-05T20:00:00+00:00", "--event", f"@{tmp_path / 'o2.jsonl'}"]
    result = runner.invoke(cli, early)
    assert result.exit_code == 0, result.output
    assert "  2026-01-06T08:00:00+00:00  morning [wait] pending: after matched: waits until" in (
        result.stdout
    )
    # Exit codes: a refused event, an invalid file, no --event, two sequences.
    refused = runner.invoke(cli, [*args, "--event", '{"type": "email.replied", "payload": {}}',
                                  "--event", '{"type": "nope", "payload": {}}'])  # fmt: skip
    assert refused.exit_code == 1 and "refused" in refused.output
    broken = _write(tmp_path / "broken.json", {**_ab(), "steps": []})
    assert runner.invoke(cli, ["sequences", "test", broken, "--event", "{}"]).exit_code == 1
    assert runner.invoke(cli, ["sequences", "test", file]).exit_code == 2
    two = _write(tmp_path / "two.json", [_ab(), {**_ab(), "sequenceId": "ab2"}])
    result = runner.invoke(cli, ["sequences", "test", two, "--event", "{}"])
    assert result.exit_code == 1 and "pick one with --sequence ID" in result.output
    result = runner.invoke(cli, ["sequences", "test", two, "--sequence", "ab2", "--event",
                                 json.dumps(STREAM[0])])  # fmt: skip
    assert result.exit_code == 0 and "opportunity o1: entered" in result.stdout


def test_sequences_report_reads_a_store(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy")
    from leadflow import LeadFlow, ManualClock
    from leadflow.adapters import InMemoryOpportunities
    from leadflow.ports import Integrations
    from leadflow.stores.sql import sql_storage

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    storage = sql_storage(url, create=True)
    try:
        flow = LeadFlow.in_memory(clock=ManualClock(datetime(2026, 1, 5, 9, tzinfo=UTC)))
        gateway = flow.integrations.opportunities
        assert isinstance(gateway, InMemoryOpportunities)
        integrations = Integrations(
            notifier=flow.integrations.notifier, messenger=flow.integrations.messenger,
            opportunities=gateway, team=flow.integrations.team, events=flow.integrations.events,
        )  # fmt: skip
        on_sql = LeadFlow(storage, integrations, clock=flow.clock)
        on_sql.sequences.publish(_ab())
        for n in range(4):
            gateway.add(f"o{n}", owner="alice", email=f"o{n}@example.com")
            on_sql.handle(_created(f"c{n}", f"05T{9 + n:02d}:00", f"o{n}"))
        on_sql.handle(_event("w", "05T14:00", "opportunity.status_changed", opportunityId="o1",
                             newStatus="won"))  # fmt: skip
    finally:
        storage.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["sequences", "report", "ab", "--url", url])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "sequence 'ab' (A/B, v1)",
        "enrolled 4: active 3, completed 0, goal reached 1, unenrolled 0, ended 0",
        "split 'split': not enough data yet",
    ]
    data = json.loads(runner.invoke(cli, ["sequences", "report", "ab", "--url", url,
                                          "--json"]).stdout)  # fmt: skip
    assert data["totals"]["enrolled"] == 4 and data["splits"][0]["stepId"] == "split"
    assert sum(v["enrolled"] for v in data["splits"][0]["variants"]) == 4
    unknown = runner.invoke(cli, ["sequences", "report", "nope", "--url", url])
    assert unknown.exit_code == 1 and "no sequence 'nope'" in unknown.output
    missing = runner.invoke(cli, ["sequences", "report", "ab", "--url", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "no SQLite database" in missing.output
    assert runner.invoke(cli, ["sequences", "report", "ab"]).exit_code == 2  # no --url


def test_the_history_gives_branches_the_status_and_owner_and_waits_the_customer_zone() -> None:
    from leadflow.simulate import HistoryOpportunities

    gateway = HistoryOpportunities()
    created = {"opportunityId": "o", "assignedTo": "ann", "status": "new",
               "timezone": "America/New_York"}  # fmt: skip
    gateway.record("opportunity.created", created)
    assert gateway.fields("o") == {"status": "new", "owner": "ann"}
    assert gateway.fields("unknown") == {}
    contact = gateway.contact("o")  # a placeholder address, the recorded zone
    assert (contact.email, contact.timezone) == ("o@backtest.invalid", "America/New_York")
    gateway.record("opportunity.updated", {"opportunityId": "o", "email": "o@example.com"})
    assert gateway.contact("o").email == "o@example.com"
    assert gateway.contact("o").timezone == "America/New_York"
