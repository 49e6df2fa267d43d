"""Lint: per-rule findings, relations between rules, cycles, renderers, the activation gate."""

from __future__ import annotations

import json
from typing import Any

import pytest

from leadflow import LeadFlow, RuleValidationError
from leadflow.access.operations import Operations
from leadflow.lint import (
    Finding,
    PayloadSchemas,
    exit_status,
    lint,
    load_rule_documents,
    render_json,
    render_text,
)
from leadflow.rules import default_rules
from leadflow.runtime.actions import HandlerRegistry

from .access_support import SUPER

CALL = [{"actionType": "create_activity", "subject": "Call", "activityType": "call"}]


def rule(
    rid: str, event_type: str = "opportunity.created", conditions: Any = (), **kw: Any
) -> dict[str, Any]:
    return {
        "ruleId": rid,
        "name": rid,
        "trigger": {"eventType": event_type, "conditions": list(conditions)},
        "actions": kw.pop("actions", CALL),
        **kw,
    }


def eq(field: str, value: Any, op: str = "equals") -> dict[str, Any]:
    return {"field": field, "operator": op, "value": value}


def codes(findings: list[Finding], rule_id: str | None = None) -> set[str]:
    return {f.code for f in findings if rule_id is None or f.rule_id == rule_id}


def test_the_seed_rules_are_clean() -> None:
    assert lint(default_rules()) == []
    assert exit_status([]) == 0


@pytest.mark.parametrize(
    ("conditions", "why"),
    [
        ([eq("leadSource", "a"), eq("leadSource", "b")], "cannot both hold"),
        (
            [eq("estimatedValue", 10, "greater_than"), eq("estimatedValue", 5, "less_than")],
            "no value",
        ),
        ([eq("leadSource", [], "in")], "empty list"),
        ([eq("leadSource", "a"), eq("leadSource", "a", "not_equals")], "cannot both hold"),
        ([eq("leadSource", "a"), eq("leadSource", ["b", "c"], "in")], "cannot both hold"),
        ([eq("status", None, "not_exists"), eq("status", "x", "starts_with")], "cannot both"),
        (
            [eq("estimatedValue", [1, 2], "between"), eq("estimatedValue", 3, "greater_or_equal")],
            "no value",
        ),
        ([eq("leadSource", ["a"], "in"), eq("leadSource", ["a", "b"], "not_in")], "cannot both"),
        ([{"all": [eq("priority", "x"), eq("priority", "y")]}], "cannot both"),
        ([{"any": [eq("x", [], "in"), eq("y", [], "in")]}], "no alternative"),
        (
            [
                eq("estimatedValue", 5, "greater_than"),
                eq("estimatedValue", "2026-01-01T00:00:00+00:00", "less_than"),
            ],
            "different kinds",
        ),
    ],
)
def test_rules_that_can_never_match_are_errors(conditions: Any, why: str) -> None:
    [finding] = [f for f in lint([rule("r", conditions=conditions)]) if f.code == "never-matches"]
    assert finding.severity == "error" and finding.rule_id == "r"
    assert why in finding.message and finding.hint


@pytest.mark.parametrize(
    "conditions",
    [
        [eq("leadSource", "a"), eq("priority", "b")],
        [eq("estimatedValue", 5, "greater_than"), eq("estimatedValue", 10, "less_than")],
        [eq("estimatedValue", 5, "greater_or_equal"), eq("estimatedValue", 5, "less_or_equal")],
        [eq("leadSource", "a", "not_equals"), eq("leadSource", "b", "not_equals")],
        [{"any": [eq("x", [], "in"), eq("y", 1)]}],
        [eq("leadSource", "A"), {**eq("leadSource", "a"), "ignoreCase": True}],
        [eq("tags", ["a"], "in"), eq("tags", ["b"], "in")],  # a list field may hold both
        [eq("status", None, "not_exists"), eq("status", None)],  # null is "not exists"
    ],
)
def test_satisfiable_rules_are_not_reported(conditions: Any) -> None:
    assert "never-matches" not in codes(lint([rule("r", conditions=conditions)]))


def test_unknown_fields_event_types_and_kinds() -> None:
    findings = lint(
        [
            rule("typo", conditions=[eq("leadsorce", "web")]),
            rule("evt", "opportunity.craeted"),
            rule("kind", conditions=[eq("estimatedValue", "10")]),
            rule("order", conditions=[eq("leadSource", 3, "greater_than")]),
            rule("age", conditions=[eq("priority", 3, "older_than")]),
            rule("enum", "activity.completed", [eq("outcome", "callbak_requested")]),
        ]
    )
    by_rule = {f.rule_id: f for f in findings if f.code != "same-follow-up"}
    assert by_rule["typo"].code == "unknown-field"
    assert by_rule["typo"].severity == "warning"  # the seed's schemas are open
    assert "'leadSource'" in by_rule["typo"].hint
    assert by_rule["typo"].location == "trigger.conditions[0].field"
    assert (
        by_rule["evt"].code == "unknown-event-type" and "opportunity.created" in by_rule["evt"].hint
    )
    assert by_rule["kind"].code == "type-mismatch" and by_rule["kind"].severity == "error"
    assert by_rule["kind"].location == "trigger.conditions[0].value"
    assert by_rule["order"].code == "type-mismatch"
    assert by_rule["age"].code == "type-mismatch"
    assert by_rule["enum"].code == "unknown-value" and "callback_requested" in by_rule["enum"].hint


def test_hints_are_readable_without_the_source_tree() -> None:
    """pip users have no docs/ folder: a hint says what to do inline, never 'see docs/x.md'."""
    findings = lint(
        [
            rule("bad-in", conditions=[{"field": "amount", "operator": "in", "value": 3}]),
            {"ruleId": "no-name", "trigger": {"eventType": "opportunity.created"}},
        ]
    )
    by_code = {f.code: f for f in findings}
    assert set(by_code) >= {"bad-value", "invalid-rule"}, findings
    assert all("docs/" not in f.hint for f in findings), [f.hint for f in findings]
    assert "value is one of the list" in by_code["bad-value"].hint  # what 'in' does
    assert "leadflow rules schema" in by_code["invalid-rule"].hint


def test_a_host_schema_can_be_strict() -> None:
    schemas = PayloadSchemas()
    schemas.register("ticket.opened", {"severity": "integer", "queue": "string"}, strict=True)
    handlers = HandlerRegistry.default()
    from leadflow.rules import EventTypes

    types = EventTypes(["ticket.opened"])
    findings = lint(
        [rule("t", "ticket.opened", [eq("sevrity", 3, "greater_than")])],
        payload_schemas=schemas,
        handlers=handlers,
        event_types=types,
    )
    [finding] = findings
    assert (finding.code, finding.severity) == ("unknown-field", "error")
    assert "'severity'" in finding.hint


def test_operators_values_and_params() -> None:
    findings = lint(
        [
            rule("op", conditions=[eq("leadSource", "x", "equalz")]),
            rule("val", conditions=[eq("leadSource", 5, "starts_with")]),
            rule("params", actions=[{"actionType": "create_activity"}]),
            rule("handler", actions=[{"actionType": "fax"}]),
        ]
    )
    assert codes(findings, "op") == {"unknown-operator"}
    assert codes(findings, "val") == {"bad-value"}
    [params] = [f for f in findings if f.rule_id == "params"]
    assert (params.code, params.location) == ("bad-params", "actions[0].subject")
    assert codes(findings, "handler") == {"unknown-action"}


def test_shadowed_duplicate_and_same_follow_up() -> None:
    notify = [{"actionType": "send_notification", "template": "t"}]
    findings = lint(
        [
            rule("broad", "estimate.created", [eq("amount", 5, "greater_than")], actions=notify,
                 priority=10, stopProcessing=True),
            rule("narrow", "estimate.created", [eq("amount", 9, "greater_or_equal"),
                                                 eq("currency", "EUR")], actions=notify),
            rule("other", "estimate.created", [eq("amount", 5, "less_than")], actions=notify),
            rule("dup1", "activity.completed", [eq("outcome", "no_answer")]),
            rule("dup2", "activity.completed", [eq("outcome", "no_answer")]),
            rule("fu1", conditions=[eq("priority", "high")], priority=5),
            rule("fu2", conditions=[eq("leadSource", "web")]),
            rule("fu3", conditions=[eq("priority", "low")]),
        ]
    )  # fmt: skip
    assert codes(findings, "narrow") == {"shadowed"}
    assert "other" not in {f.rule_id for f in findings}
    assert codes(findings, "dup2") == {"duplicate-rule"}
    assert "dup1" not in {f.rule_id for f in findings}
    assert codes(findings, "fu2") == {"same-follow-up"}
    # fu3 and fu1 exclude each other (priority low / high); fu3 and fu2 may meet
    assert [f.message for f in findings if f.rule_id == "fu3"] == [
        "rule 'fu3' and rule 'fu2' can match one event and both open a call 'call': "
        "the rep gets it twice"
    ]


def test_shadowing_needs_stop_processing_and_broader_conditions() -> None:
    notify = [{"actionType": "send_notification", "template": "t"}]
    base = [eq("amount", 5, "greater_than")]
    assert lint(
        [
            rule("a", "estimate.created", base, actions=notify, priority=10),  # no stop
            rule("b", "estimate.created", [eq("amount", 9, "greater_than")], actions=notify),
            rule("c", "estimate.created", [eq("amount", 1, "greater_than")], actions=notify,
                 priority=20, stopProcessing=True, isActive=False),
        ]
    ) == []  # fmt: skip
    narrower = lint(
        [
            rule("a", "estimate.created", base, actions=notify, priority=10, stopProcessing=True),
            rule("b", "estimate.created", [eq("amount", 1, "greater_than")], actions=notify),
        ]
    )
    assert narrower == []  # a is narrower than b: b still applies to amounts in (1, 5]


def test_cycles_are_reported_with_their_path() -> None:
    def status(to: str) -> list[dict[str, Any]]:
        return [{"actionType": "update_status", "params": {"status": to}}]

    findings = lint(
        [
            rule("a", "opportunity.status_changed", [eq("newStatus", "x")], actions=status("y")),
            rule("b", "opportunity.status_changed", [eq("newStatus", "y")], actions=status("x")),
            rule("same", "opportunity.status_changed", [eq("newStatus", "z")], actions=status("z")),
            rule("c", "opportunity.status_changed", [eq("newStatus", "w")], actions=status("q")),
        ]
    )
    [cycle] = [f for f in findings if f.code == "cycle"]
    assert cycle.severity == "error" and cycle.rule_id == "a" and cycle.location == "actions[0]"
    assert (
        "rule 'a' -> opportunity.status_changed -> rule 'b' -> opportunity.status_changed "
        "-> rule 'a'" in cycle.message
    )


def test_integrator_handlers_declare_what_they_cause() -> None:
    handlers = HandlerRegistry.default()
    handlers.register("reopen", lambda ctx: None, causes=("opportunity.created",))
    findings = lint([rule("loop", actions=[{"actionType": "reopen"}])], handlers=handlers)
    assert [f.message for f in findings if f.code == "cycle"] == [
        "rules can trigger each other in a loop: rule 'loop' -> opportunity.created -> rule 'loop'"
    ]
    with pytest.raises(Exception, match="causes"):
        handlers.register("bad", lambda ctx: None, causes="opportunity.created")


def test_activity_created_loops_are_cut_by_rule_id() -> None:
    guarded = rule("g", "activity.created", [eq("ruleId", "g", "not_equals")])
    assert "cycle" not in codes(lint([guarded]))
    assert "cycle" in codes(lint([rule("u", "activity.created")]))


def test_invalid_documents_and_duplicate_ids() -> None:
    findings = lint([{"ruleId": "x", "name": "x"}, rule("d"), rule("d")])
    assert ("x", "invalid-rule") in {(f.rule_id, f.code) for f in findings}
    assert ("d", "duplicate-id") in {(f.rule_id, f.code) for f in findings}


def test_renderers_and_exit_status(tmp_path: Any) -> None:
    findings = lint([rule("r", conditions=[eq("leadSource", [], "in")])])
    text = render_text(findings)
    assert "error: r trigger.conditions: the rule can never match" in text
    assert text.endswith("1 error(s), 0 warning(s), 0 info(s)\n")
    data = json.loads(render_json(findings))
    assert data["counts"] == {"error": 1, "warning": 0, "info": 0}
    assert data["findings"][0]["ruleId"] == "r" and data["findings"][0]["code"] == "never-matches"
    assert exit_status(findings) == 1
    warning = Finding("warning", "r", "", "x", "m")
    assert exit_status([warning]) == 0 and exit_status([warning], strict=True) == 1
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": [rule("r")]}))
    assert [d["ruleId"] for d in load_rule_documents(path)] == ["r"]
    path.write_text("{")
    with pytest.raises(Exception, match="not JSON"):
        load_rule_documents(path)


def test_operations_refuse_lint_errors_unless_forced() -> None:
    flow = LeadFlow.in_memory(rules=default_rules())
    ops = Operations(flow)
    bad = rule("bad", conditions=[eq("leadSource", "a"), eq("leadSource", "b")])
    with pytest.raises(RuleValidationError, match="never-matches") as caught:
        ops.create_rule(SUPER, bad)
    assert caught.value.rule_id == "bad"
    assert [r.rule_id for r in flow.storage.rules.list() if r.rule_id == "bad"] == []
    ops.create_rule(SUPER, bad, force=True)
    assert flow.storage.rules.get("bad").rule_id == "bad"
    # shadowing an existing rule is refused on update, too
    with pytest.raises(RuleValidationError, match="shadowed"):
        conditions = [eq("priority", "urgent"), eq("leadSource", "x")]
        trigger = {"eventType": "opportunity.created", "conditions": conditions}
        ops.update_rule(SUPER, "bad", {"trigger": trigger})
    inactive = rule("off", conditions=[eq("leadSource", [], "in")], isActive=False)
    ops.create_rule(SUPER, inactive)  # activating nothing: not linted
