"""Benchmark: leadflow's rule engine against a hand-written baseline and three PyPI rule engines.

Workload (deterministic, seeded): the 8 default rules plus 12 variants (20 active rules), and a
scale point of the 8 defaults plus 992 generated variants (1,000 rules, about 50 matches per
event), over 10,000 generated events of four types with realistic payloads. Every engine
evaluates the same rules in the same order (priority descending, then rule id; a matching
``stopProcessing`` rule ends the list) and must return the same matched rules for every event.

Engines:

* baseline   -- plain Python: a dict from event type to ``(rule_id, predicates, stop)`` with
                one lambda per condition (what you would write by hand, without a library);
* leadflow   -- ``RuleEngine.match(event)`` (matching only) and ``RuleEngine.evaluate(event)``
                (matching plus planned actions with due times);
* business-rules, rule-engine, json-logic (``json-logic-qubit``) -- each written the way its
  documentation shows (see the ``build_*`` functions), in two forms: "by type", the rules split
  by event type like the baseline's (the same dispatch, so only rule evaluation differs), and
  "one list", the single rule list of the peers' examples with the event type as every rule's
  first condition. They are in the ``bench`` extra (``pip install -e '.[bench]'``); a peer that
  is not installed is skipped.

Figures are medians over several runs of the whole event set, in microseconds per event, with
the ratio to the baseline measured in the same process over the same events. Peers at 1,000
rules take milliseconds per event, so they run on the first ``--peer-events`` events (leadflow
and the baseline are timed on those too, for the ratios).

    python benchmarks/bench_engine.py            # the full run (about 70 s on the CI machine)
    python benchmarks/bench_engine.py --quick    # fewer events and runs (about 15 s)

Exit status: 0 when every engine agrees and every target is met, 1 when a target is missed,
2 when engines disagree.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from leadflow import Condition, Event, FollowUpRule, RuleEngine, __version__, default_rules

SEED = 20261101

# --------------------------------------------------------------------------- workload

PRIORITIES = ["low", "medium", "high", "urgent"]
PRIORITY_WEIGHTS = [30, 35, 25, 10]
REGIONS = ["north", "south", "east", "west", "central"]
SEGMENTS = ["residential", "commercial", "property_manager", "builder"]
TAGS = ["vip", "repeat", "commercial", "storm", "insurance", "financing", "roofing", "solar"]
LEAD_SOURCES = ["website", "referral", "phone", "walk_in", "social", "trade_show", "partner"]
LEAD_SOURCE_WEIGHTS = [30, 15, 20, 5, 15, 5, 10]
STATUSES = ["new", "contacted", "qualified", "negotiating", "won", "lost", "on_hold"]
ACTIVITY_TYPES = ["call", "email", "meeting", "follow_up"]
OUTCOMES = [
    "successful",
    "no_answer",
    "voicemail",
    "callback_requested",
    "not_interested",
    "converted",
]
NOTE_WORDS = [
    "asked",
    "about",
    "price",
    "discount",
    "warranty",
    "schedule",
    "install",
    "roof",
    "financing",
    "competitor",
    "budget",
    "timeline",
    "permit",
    "insurance",
    "claim",
]
EVENT_TYPES = [
    "opportunity.created",
    "opportunity.status_changed",
    "estimate.created",
    "activity.completed",
]
EVENT_TYPE_WEIGHTS = [30, 25, 20, 25]
BASE_TIME = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _common_payload(rng: random.Random, n: int) -> dict[str, Any]:
    return {
        "opportunityId": f"opp-{rng.randrange(1, 50_000):06d}",
        "customerId": f"cust-{rng.randrange(1, 20_000):06d}",
        "priority": rng.choices(PRIORITIES, PRIORITY_WEIGHTS)[0],
        "region": rng.choice(REGIONS),
        "tags": rng.sample(TAGS, rng.choice([0, 1, 1, 2, 2, 3])),
        "customer": {
            "segment": rng.choice(SEGMENTS),
            "name": f"Customer {n}",
            "city": rng.choice(["Austin", "Dallas", "Denver", "Tampa", "Columbus"]),
        },
        "assignedTo": f"user-{rng.randrange(1, 40)}",
    }


def make_event_documents(count: int, seed: int = SEED) -> list[dict[str, Any]]:
    """``count`` event documents: type, time, id and a payload typical of the type."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for n in range(count):
        kind = rng.choices(EVENT_TYPES, EVENT_TYPE_WEIGHTS)[0]
        payload = _common_payload(rng, n)
        if kind == "opportunity.created":
            payload["leadSource"] = rng.choices(LEAD_SOURCES, LEAD_SOURCE_WEIGHTS)[0]
            payload["estimateValue"] = rng.randrange(500, 60_001, 50)
            payload["status"] = "new"
        elif kind == "opportunity.status_changed":
            old, new = rng.sample(STATUSES, 2)
            payload["oldStatus"] = old
            payload["newStatus"] = new
            payload["estimateValue"] = rng.randrange(500, 60_001, 50)
            payload["changedBy"] = f"user-{rng.randrange(1, 40)}"
        elif kind == "estimate.created":
            payload["estimateId"] = f"est-{n:06d}"
            payload["quoteValue"] = round(rng.uniform(800, 80_000), 2)
            payload["lineItems"] = rng.randrange(1, 25)
            payload["leadSource"] = rng.choices(LEAD_SOURCES, LEAD_SOURCE_WEIGHTS)[0]
        else:
            payload["activityId"] = f"act-{n:06d}"
            payload["activityType"] = rng.choice(ACTIVITY_TYPES)
            payload["outcome"] = rng.choice(OUTCOMES)
            payload["metadata"] = {
                "phoneDuration": rng.randrange(0, 1801),
                "emailOpened": rng.random() < 0.4,
            }
            payload["notes"] = " ".join(rng.sample(NOTE_WORDS, rng.randrange(2, 7)))
        out.append(
            {
                "id": f"evt-{n:06d}",
                "type": kind,
                "time": BASE_TIME + timedelta(minutes=rng.randrange(0, 60 * 24 * 30)),
                "payload": payload,
            }
        )
    return out


def _cond(field: str, operator: str, value: Any) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


def _activity(delay: Any, activity_type: str, subject: str) -> dict[str, Any]:
    return {
        "actionType": "create_activity",
        "delay": delay,
        "activityType": activity_type,
        "subject": subject,
        "assignTo": "lead_owner",
    }


def _message(kind: str, template: str, delay: Any = 0) -> dict[str, Any]:
    return {"actionType": kind, "delay": delay, "template": template}


def _rule(
    rule_id: str, event_type: str, priority: int, conditions: list[Any], actions: list[Any]
) -> dict[str, Any]:
    return {
        "ruleId": rule_id,
        "name": rule_id.replace("-", " ").capitalize(),
        "trigger": {"eventType": event_type, "conditions": conditions},
        "actions": actions,
        "priority": priority,
    }


def twelve_variants() -> list[dict[str, Any]]:
    """Twelve hand-written rules beside the defaults: 1-3 conditions, mixed operators."""
    oc, sc, ec, ac = EVENT_TYPES
    return [
        _rule(
            "high-value-website-lead",
            oc,
            70,
            [
                _cond("leadSource", "equals", "website"),
                _cond("estimateValue", "greater_than", 20000),
            ],
            [_message("send_notification", "high_value_lead")],
        ),
        _rule(
            "commercial-lead-north-east",
            oc,
            45,
            [
                _cond("customer.segment", "equals", "commercial"),
                _cond("region", "in", ["north", "east"]),
            ],
            [{"actionType": "assign_sales_rep", "assignTo": "commercial-team"}],
        ),
        _rule(
            "vip-lead-call",
            oc,
            80,
            [_cond("tags", "contains", "vip")],
            [_activity({"amount": 30, "unit": "minutes"}, "call", "Call VIP lead")],
        ),
        _rule(
            "small-job-intro",
            oc,
            10,
            [_cond("estimateValue", "less_than", 2000), _cond("priority", "not_equals", "urgent")],
            [_message("send_email", "small_job_intro", 24)],
        ),
        _rule(
            "won-big-deal",
            sc,
            65,
            [_cond("newStatus", "equals", "won"), _cond("estimateValue", "greater_than", 25000)],
            [_message("send_notification", "big_win")],
        ),
        _rule(
            "lost-after-negotiation",
            sc,
            55,
            [_cond("newStatus", "equals", "lost"), _cond("oldStatus", "equals", "negotiating")],
            [_activity({"amount": 2, "unit": "business_days"}, "follow_up", "Ask why we lost it")],
        ),
        _rule(
            "storm-pipeline-update",
            sc,
            20,
            [
                _cond("tags", "contains", "storm"),
                _cond("newStatus", "in", ["qualified", "negotiating"]),
                _cond("region", "not_equals", "central"),
            ],
            [_message("send_sms", "storm_update")],
        ),
        _rule(
            "large-quote-review",
            ec,
            50,
            [_cond("quoteValue", "greater_than", 15000)],
            [
                _activity(24, "meeting", "Review large quote with the customer"),
                _message("send_notification", "large_quote"),
            ],
        ),
        _rule(
            "insurance-quote-docs",
            ec,
            35,
            [_cond("tags", "contains", "insurance"), _cond("region", "not_equals", "central")],
            [_message("send_email", "insurance_documents", 1)],
        ),
        _rule(
            "no-answer-retry",
            ac,
            45,
            [_cond("outcome", "equals", "no_answer"), _cond("activityType", "equals", "call")],
            [_activity(4, "call", "Try calling again")],
        ),
        _rule(
            "nurture-cold-lead",
            ac,
            15,
            [_cond("outcome", "in", ["not_interested", "voicemail"])],
            [_message("send_email", "nurture", 72)],
        ),
        _rule(
            "long-call-pricing",
            ac,
            25,
            [
                _cond("metadata.phoneDuration", "greater_than", 600),
                _cond("notes", "contains", "price"),
                _cond("customer.segment", "not_equals", "builder"),
            ],
            [_activity(2, "email", "Send the price sheet")],
        ),
    ]


# Fields a generated rule may test, per event type: (field, kind, domain).
_COMMON_FIELDS: list[tuple[str, str, Any]] = [
    ("priority", "enum", PRIORITIES),
    ("region", "enum", REGIONS),
    ("tags", "tags", TAGS),
    ("customer.segment", "enum", SEGMENTS),
]
FIELDS: dict[str, list[tuple[str, str, Any]]] = {
    "opportunity.created": [
        *_COMMON_FIELDS,
        ("leadSource", "enum", LEAD_SOURCES),
        ("estimateValue", "number", (500, 60_000)),
    ],
    "opportunity.status_changed": [
        *_COMMON_FIELDS,
        ("newStatus", "enum", STATUSES),
        ("oldStatus", "enum", STATUSES),
        ("estimateValue", "number", (500, 60_000)),
    ],
    "estimate.created": [
        *_COMMON_FIELDS,
        ("leadSource", "enum", LEAD_SOURCES),
        ("quoteValue", "number", (800, 80_000)),
    ],
    "activity.completed": [
        *_COMMON_FIELDS,
        ("outcome", "enum", OUTCOMES),
        ("activityType", "enum", ACTIVITY_TYPES),
        ("metadata.phoneDuration", "number", (0, 1800)),
        ("notes", "text", NOTE_WORDS),
    ],
}


def _generated_condition(rng: random.Random, field: str, kind: str, domain: Any) -> Any:
    if kind == "enum":
        operator = rng.choices(["equals", "in", "not_equals"], [45, 35, 20])[0]
        if operator == "in":
            return _cond(field, "in", rng.sample(domain, rng.choice([2, 3])))
        return _cond(field, operator, rng.choice(domain))
    if kind == "number":
        low, high = domain
        operator = rng.choice(["greater_than", "less_than"])
        return _cond(field, operator, rng.randrange(low, high, 100))
    return _cond(field, "contains", rng.choice(domain))  # tags list or notes text


def generated_variants(count: int, seed: int = SEED + 1) -> list[dict[str, Any]]:
    """``count`` random rules with 1-3 conditions each (about 1 in 5 match a given event)."""
    rng = random.Random(seed)
    rules = []
    for n in range(count):
        kind = rng.choices(EVENT_TYPES, EVENT_TYPE_WEIGHTS)[0]
        size = rng.choices([1, 2, 3], [20, 45, 35])[0]
        fields = rng.sample(FIELDS[kind], size)
        conditions = [_generated_condition(rng, *f) for f in fields]
        actions: list[Any] = [
            _activity(rng.choice([0, 1, 2, 4, 24, 48, 72]), "follow_up", f"Generated step {n}")
        ]
        if rng.random() < 0.3:
            actions.append(_message("send_notification", f"generated_{n % 50}"))
        if rng.random() < 0.03:
            actions[0]["delay"] = {"amount": rng.choice([1, 2, 3]), "unit": "business_days"}
        rules.append(_rule(f"gen-{n:04d}", kind, rng.randrange(0, 96), conditions, actions))
    return rules


def rule_set(size: int) -> list[FollowUpRule]:
    """The 8 defaults plus ``size - 8`` variants (the 12 hand-written ones first)."""
    docs = twelve_variants()
    if size - 8 > len(docs):
        docs += generated_variants(size - 8 - len(docs))
    docs = docs[: size - 8]
    return default_rules() + [FollowUpRule.model_validate(d) for d in docs]


# --------------------------------------------------------------------------- rule order


def ordered_by_type(rules: Sequence[FollowUpRule]) -> dict[str, list[FollowUpRule]]:
    """Active rules by event type, in application order (priority desc, then rule id)."""
    out: dict[str, list[FollowUpRule]] = {}
    for rule in sorted(rules, key=lambda r: (-r.priority, r.rule_id)):
        if rule.is_active:
            out.setdefault(rule.trigger.event_type, []).append(rule)
    return out


def leaf_conditions(rule: FollowUpRule) -> list[tuple[str, str, Any]]:
    """The rule's flat list of conditions as (field, operator, value)."""
    out = []
    for node in rule.trigger.conditions:
        assert isinstance(node, Condition)  # the workload's rules have no groups
        out.append((node.field, node.operator, node.value))
    return out


def _cut_at_stop(fired: list[str], stoppers: frozenset[str]) -> list[str]:
    """Apply stopProcessing after the fact (for peers that run every rule)."""
    for i, rule_id in enumerate(fired):
        if rule_id in stoppers:
            return fired[: i + 1]
    return fired


# An engine under test: a callable run per event (timed) and how to read its answer as rule ids.
@dataclass
class Contender:
    name: str
    run: Callable[[Any], Any]
    ids: Callable[[Any], list[str]]
    document: bool = False  # run() takes the event document (a dict), not an Event


# --------------------------------------------------------------------------- baseline


def build_baseline(rules: Sequence[FollowUpRule]) -> Contender:
    """Hand-written Python: one lambda per condition, rules grouped by event type."""

    def predicate(field: str, operator: str, value: Any) -> Callable[[dict[str, Any]], bool]:
        if "." in field:
            outer, inner = field.split(".")
            if operator == "equals":
                return lambda p: p.get(outer, {}).get(inner) == value
            if operator == "not_equals":
                return lambda p: p.get(outer, {}).get(inner) != value
            if operator == "in":
                options = frozenset(value)
                return lambda p: p.get(outer, {}).get(inner) in options
            if operator == "greater_than":
                return lambda p: p.get(outer, {}).get(inner, 0) > value
            if operator == "less_than":
                return lambda p: p.get(outer, {}).get(inner, 0) < value
        else:
            if operator == "equals":
                return lambda p: p.get(field) == value
            if operator == "not_equals":
                return lambda p: p.get(field) != value
            if operator == "in":
                options = frozenset(value)
                return lambda p: p.get(field) in options
            if operator == "contains":
                return lambda p: value in p.get(field, ())
            if operator == "greater_than":
                return lambda p: p.get(field, 0) > value
            if operator == "less_than":
                return lambda p: p.get(field, 0) < value
        raise ValueError(f"baseline has no {operator} for {field}")

    table = {
        kind: [
            (
                r.rule_id,
                tuple(predicate(*c) for c in leaf_conditions(r)),
                r.stop_processing,
            )
            for r in bucket
        ]
        for kind, bucket in ordered_by_type(rules).items()
    }

    def run(event: Event) -> list[str]:
        payload = event.payload
        matched = []
        for rule_id, predicates, stop in table.get(event.type, ()):
            for test in predicates:
                if not test(payload):
                    break
            else:
                matched.append(rule_id)
                if stop:
                    break
        return matched

    return Contender("baseline (dict of lambdas)", run, lambda result: result)


def build_baseline_document(rules: Sequence[FollowUpRule]) -> Contender:
    """The baseline reading the host's document (no validation at all)."""
    base = build_baseline(rules)

    def run_document(document: dict[str, Any]) -> list[str]:
        return base.run(_Shim(document["type"], document["payload"]))  # type: ignore[arg-type]

    return Contender("baseline, from the document", run_document, lambda r: r, document=True)


class _Shim:
    """What the baseline reads from an event: ``type`` and ``payload`` (no validation)."""

    __slots__ = ("payload", "type")

    def __init__(self, kind: str, payload: dict[str, Any]) -> None:
        self.type = kind
        self.payload = payload


# --------------------------------------------------------------------------- leadflow


def build_leadflow(rules: Sequence[FollowUpRule]) -> tuple[Contender, Contender]:
    engine = RuleEngine(rules)
    match = Contender("leadflow match()", engine.match, lambda rs: [r.rule_id for r in rs])
    evaluate = Contender(
        "leadflow evaluate()",
        engine.evaluate,
        lambda ev: [r.rule_id for r in ev.matched_rules],
    )
    return match, evaluate


def build_leadflow_document(rules: Sequence[FollowUpRule]) -> tuple[Contender, Contender]:
    """leadflow from the host's document: validated as Event.model_validate would, then matched
    (``evaluate(document)``), and the naive way (``evaluate(Event.model_validate(document))``)."""
    engine = RuleEngine(rules)

    def naive(document: dict[str, Any]) -> Any:
        return engine.evaluate(Event.model_validate(document))

    ids = lambda ev: [r.rule_id for r in ev.matched_rules]  # noqa: E731
    return (
        Contender(DOC_EVALUATE, engine.evaluate, ids, document=True),
        Contender("leadflow evaluate(Event(doc))", naive, ids, document=True),
    )


# --------------------------------------------------------------------------- peers
#
# None of the peers knows event types. Each is measured two ways: "by type", where the rules
# are split by event type as in the baseline and leadflow (the same dispatch: only the rule
# evaluation differs), and "one list", the single rule list of the peers' own examples with the
# event type as the rule's first condition.


def one_list(rules: Sequence[FollowUpRule]) -> list[FollowUpRule]:
    """Every active rule in application order (for the "one list" form)."""
    return [r for bucket in ordered_by_type(rules).values() for r in bucket]


def _by_type_or_one_list(
    rules: Sequence[FollowUpRule], single: bool, translate: Callable[[FollowUpRule], Any]
) -> dict[str | None, list[tuple[str, Any, bool]]]:
    """Translated rules keyed by event type, or under None when ``single``; in order."""
    if single:
        return {None: [(r.rule_id, translate(r), r.stop_processing) for r in one_list(rules)]}
    return {
        kind: [(r.rule_id, translate(r), r.stop_processing) for r in bucket]
        for kind, bucket in ordered_by_type(rules).items()
    }


def build_business_rules(rules: Sequence[FollowUpRule], single: bool) -> Contender:
    """business-rules: a variables class, an actions class, ``run_all`` per event."""
    from business_rules import run_all
    from business_rules.actions import BaseActions, rule_action
    from business_rules.fields import FIELD_SELECT_MULTIPLE, FIELD_TEXT
    from business_rules.operators import StringType, export_type, type_operator
    from business_rules.variables import (
        BaseVariables,
        boolean_rule_variable,
        numeric_rule_variable,
        rule_variable,
        select_rule_variable,
    )

    # business-rules has no "not equal" and no "one of" for strings: add them the documented
    # way, as operators of a custom type.
    @export_type
    class LeadString(StringType):
        name = "lead_string"

        @type_operator(FIELD_TEXT)
        def not_equal_to(self, other: str) -> bool:
            return bool(self.value != other)

        @type_operator(FIELD_SELECT_MULTIPLE, assert_type_for_arguments=False)
        def is_one_of(self, options: list[str]) -> bool:
            return self.value in options

    def lead_string(func: Any) -> Any:
        return rule_variable(LeadString)(func)

    class LeadVariables(BaseVariables):
        def __init__(self, event: Event) -> None:
            self.kind = event.type
            self.p = event.payload

        @boolean_rule_variable
        def always(self) -> bool:  # business-rules needs >= 1 condition per rule
            return True

        @lead_string
        def event_type(self) -> Any:
            return self.kind

        @lead_string
        def priority(self) -> Any:
            return self.p.get("priority")

        @lead_string
        def region(self) -> Any:
            return self.p.get("region")

        @select_rule_variable()
        def tags(self) -> Any:
            return self.p.get("tags", [])

        @lead_string
        def customer_segment(self) -> Any:
            return self.p.get("customer", {}).get("segment")

        @lead_string
        def lead_source(self) -> Any:
            return self.p.get("leadSource")

        @numeric_rule_variable
        def estimate_value(self) -> Any:
            return self.p.get("estimateValue", 0)

        @lead_string
        def new_status(self) -> Any:
            return self.p.get("newStatus")

        @lead_string
        def old_status(self) -> Any:
            return self.p.get("oldStatus")

        @numeric_rule_variable
        def quote_value(self) -> Any:
            return self.p.get("quoteValue", 0)

        @lead_string
        def outcome(self) -> Any:
            return self.p.get("outcome")

        @lead_string
        def activity_type(self) -> Any:
            return self.p.get("activityType")

        @numeric_rule_variable
        def phone_duration(self) -> Any:
            return self.p.get("metadata", {}).get("phoneDuration", 0)

        @lead_string
        def notes(self) -> Any:
            return self.p.get("notes")

    class LeadActions(BaseActions):
        def __init__(self, fired: list[str]) -> None:
            self.fired = fired

        @rule_action(params={"rule_id": FIELD_TEXT})
        def fire(self, rule_id: str) -> None:
            self.fired.append(rule_id)

    names = {
        "customer.segment": "customer_segment",
        "leadSource": "lead_source",
        "estimateValue": "estimate_value",
        "newStatus": "new_status",
        "oldStatus": "old_status",
        "quoteValue": "quote_value",
        "activityType": "activity_type",
        "metadata.phoneDuration": "phone_duration",
    }
    operators = {
        "equals": "equal_to",
        "not_equals": "not_equal_to",
        "in": "is_one_of",
        "greater_than": "greater_than",
        "less_than": "less_than",
        "contains": "contains",
    }

    def translate(rule: FollowUpRule) -> dict[str, Any]:
        conditions = [
            {"name": names.get(f, f), "operator": operators[op], "value": v}
            for f, op, v in leaf_conditions(rule)
        ]
        if single:
            kind = rule.trigger.event_type
            conditions.insert(0, {"name": "event_type", "operator": "equal_to", "value": kind})
        if not conditions:
            conditions = [{"name": "always", "operator": "is_true", "value": None}]
        return {
            "conditions": {"all": conditions},
            "actions": [{"name": "fire", "params": {"rule_id": rule.rule_id}}],
        }

    table = {
        kind: [rule for _, rule, _ in entries]
        for kind, entries in _by_type_or_one_list(rules, single, translate).items()
    }
    stoppers = frozenset(r.rule_id for r in rules if r.stop_processing)
    everything = table.get(None, [])

    def run(event: Event) -> list[str]:
        fired: list[str] = []
        run_all(
            everything if single else table.get(event.type, []),
            LeadVariables(event),
            LeadActions(fired),
            stop_on_first_trigger=False,
        )
        return _cut_at_stop(fired, stoppers)

    return Contender(_peer_name("business-rules", single), run, lambda result: result)


def build_rule_engine(rules: Sequence[FollowUpRule], single: bool) -> Contender:
    """rule-engine: one ``Rule`` (expression text) per rule, ``rule.matches(payload)``."""
    import rule_engine

    def term(field: str, operator: str, value: Any) -> str:
        if "." in field:
            outer, inner = field.split(".")
            symbol = f"{outer}[{inner!r}]"  # a["b"] is twice as fast as a.b on mappings
        else:
            symbol = field
        if operator == "equals":
            return f"{symbol} == {value!r}"
        if operator == "not_equals":
            return f"{symbol} != {value!r}"
        if operator == "in":
            return f"{symbol} in [{', '.join(repr(v) for v in value)}]"
        if operator == "contains":
            return f"{value!r} in {symbol}"
        if operator == "greater_than":
            return f"{symbol} > {value!r}"
        if operator == "less_than":
            return f"{symbol} < {value!r}"
        raise ValueError(operator)

    def translate(rule: FollowUpRule) -> Any:
        terms = [term(*c) for c in leaf_conditions(rule)]
        if single:
            terms.insert(0, f"eventType == {rule.trigger.event_type!r}")
        return rule_engine.Rule(" and ".join(terms) or "true")

    return _loop_peer(
        "rule-engine", rules, single, translate, lambda rule, data: rule.matches(data)
    )


def build_json_logic(rules: Sequence[FollowUpRule], single: bool) -> Contender:
    """json-logic-qubit: one JsonLogic document per rule, ``jsonLogic(rule, payload)``."""
    from json_logic import jsonLogic

    def term(field: str, operator: str, value: Any) -> dict[str, Any]:
        var = {"var": field}
        if operator == "equals":
            return {"==": [var, value]}
        if operator == "not_equals":
            return {"!=": [var, value]}
        if operator == "in":
            return {"in": [var, value]}
        if operator == "contains":
            return {"in": [value, var]}
        if operator == "greater_than":
            return {">": [var, value]}
        if operator == "less_than":
            return {"<": [var, value]}
        raise ValueError(operator)

    def translate(rule: FollowUpRule) -> Any:
        terms = [term(*c) for c in leaf_conditions(rule)]
        if single:
            terms.insert(0, {"==": [{"var": "eventType"}, rule.trigger.event_type]})
        return {"and": terms} if terms else True

    return _loop_peer("json-logic", rules, single, translate, jsonLogic)


def _peer_name(name: str, single: bool) -> str:
    return f"{name} (one list)" if single else f"{name} (by type)"


def _loop_peer(
    name: str,
    rules: Sequence[FollowUpRule],
    single: bool,
    translate: Callable[[FollowUpRule], Any],
    holds: Callable[[Any, dict[str, Any]], Any],
) -> Contender:
    """A peer called rule by rule: stop at a matching stopProcessing rule."""
    table = _by_type_or_one_list(rules, single, translate)
    everything = table.get(None, [])

    def run_by_type(event: Event) -> list[str]:
        payload = event.payload
        matched = []
        for rule_id, rule, stop in table.get(event.type, ()):
            if holds(rule, payload):
                matched.append(rule_id)
                if stop:
                    break
        return matched

    def run_one_list(event: Event) -> list[str]:
        data = {**event.payload, "eventType": event.type}
        matched = []
        for rule_id, rule, stop in everything:
            if holds(rule, data):
                matched.append(rule_id)
                if stop:
                    break
        return matched

    return Contender(_peer_name(name, single), run_one_list if single else run_by_type, lambda r: r)


PEERS: list[tuple[str, str, Callable[[Sequence[FollowUpRule], bool], Contender]]] = [
    ("business-rules", "business_rules", build_business_rules),
    ("rule-engine", "rule_engine", build_rule_engine),
    ("json-logic", "json_logic", build_json_logic),
]


# --------------------------------------------------------------------------- measurement


def per_event_us(run: Callable[[Any], Any], events: Sequence[Any], reps: int) -> float:
    """Median over ``reps`` passes of the whole event list, in microseconds per event."""
    samples = []
    for _ in range(reps):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            for event in events:
                run(event)
            elapsed = time.perf_counter_ns() - start
        finally:
            gc.enable()
        samples.append(elapsed / len(events) / 1000)
    return statistics.median(samples)


@dataclass
class Row:
    name: str
    us: float | None
    ratio: float | None
    events: int
    note: str = ""


def agree(reference: list[list[str]], contender: Contender, events: Sequence[Event]) -> str | None:
    """None when ``contender`` matches the reference on every event, else a description."""
    for i, event in enumerate(events):
        got = contender.ids(contender.run(DOCUMENTS[event.id] if contender.document else event))
        if got != reference[i]:
            return (
                f"{contender.name} disagrees on event {event.id} ({event.type}, payload "
                f"{event.payload}):\n    expected {reference[i]}\n    got      {got}"
            )
    return None


def measure_point(
    label: str,
    rules: list[FollowUpRule],
    events: list[Event],
    reps: int,
    peer_events: int,
) -> tuple[dict[str, Row], float, list[str]]:
    """Check agreement and time every engine on one rule set. Returns rows by engine name,
    matched rules per event and the problems found (disagreements)."""
    count = min(peer_events, len(events))
    print(f"\n== {label}: {len(rules):,} rules, {len(events):,} events, median of {reps} runs")
    baseline = build_baseline(rules)
    reference = [baseline.ids(baseline.run(e)) for e in events]
    mean_matches = sum(len(r) for r in reference) / len(events)
    print(f"   matched rules per event: {mean_matches:.2f} on average")
    if count < len(events):
        print(f"   peers run on the first {count:,} events")
    contenders: list[tuple[Contender, int]] = [(baseline, len(events))]
    contenders += [(c, len(events)) for c in build_leadflow(rules)]
    contenders += [(build_baseline_document(rules), len(events))]
    contenders += [(c, len(events)) for c in build_leadflow_document(rules)]
    for name, module, build in PEERS:
        try:
            __import__(module)
        except ImportError:
            print(f"   {name}: not installed, skipped (pip install -e '.[bench]')")
            continue
        contenders += [(build(rules, single), count) for single in (False, True)]

    rows: dict[str, Row] = {}
    problems: list[str] = []
    base_us: dict[int, float] = {}  # baseline us/event by number of events
    for contender, n in contenders:
        subset: Sequence[Any] = events[:n]
        problem = agree(reference, contender, subset)  # also warms caches up
        if contender.document:
            subset = [DOCUMENTS[e.id] for e in subset]
        if problem is not None:
            print(f"   FAILURE: {problem}")
            problems.append(problem)
            rows[contender.name] = Row(contender.name, None, None, n, "disagrees: not timed")
            continue
        if n not in base_us:  # ratios compare runs over the same events
            base_us[n] = per_event_us(baseline.run, subset, reps)
            if n < len(events):
                for own in contenders[1:3]:  # leadflow too, for the comparison with the peers
                    rows[f"{own[0].name} [first {n:,}]"] = Row(
                        own[0].name, per_event_us(own[0].run, subset, reps), None, n
                    )
        us = base_us[n] if contender is baseline else per_event_us(contender.run, subset, reps)
        note = "" if n == len(events) else f"first {n:,} events"
        rows[contender.name] = Row(contender.name, us, us / base_us[n], n, note)
        print(f"   {contender.name:<30} {us:>10.2f} us/event {us / base_us[n]:>8.1f}x  {note}")
    for n, us in base_us.items():
        if n < len(events):
            match = rows[f"{MATCH} [first {n:,}]"].us
            evaluate = rows[f"{EVALUATE} [first {n:,}]"].us
            print(
                f"   on the first {n:,} events: baseline {us:.2f}, match() {match:.2f}, "
                f"evaluate() {evaluate:.2f} us/event (the peers' ratios use these)"
            )
    return rows, mean_matches, problems


def measure_memory(size: int) -> tuple[int, int]:
    """Bytes held by ``size`` rule models, and by a RuleEngine compiled from them."""
    docs = [r.to_document() for r in rule_set(size)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        models = [FollowUpRule.model_validate(d) for d in docs]
        after_models = tracemalloc.get_traced_memory()[0]
        engine = RuleEngine(models)
        gc.collect()
        after_engine = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(engine.rules) == size
    return after_models - before, after_engine - after_models


# --------------------------------------------------------------------------- report

BASELINE = "baseline (dict of lambdas)"
MATCH = "leadflow match()"
EVALUATE = "leadflow evaluate()"
DOC_EVALUATE = "leadflow evaluate(doc)"
DOCUMENTS: dict[str, dict[str, Any]] = {}  # event id -> the document the host holds


def _us(rows: dict[str, Row], name: str, events: int | None = None) -> float:
    """An engine's figure; with ``events``, its run over that many first events if any."""
    row = rows.get(name)
    if events is not None and row is not None and row.events != events:
        row = rows.get(f"{name} [first {events:,}]", row)
    return float("inf") if row is None or row.us is None else row.us


def _cell(row: Row | None) -> tuple[str, str]:
    if row is None or row.us is None or row.ratio is None:
        return ("-", "-")
    return (f"{row.us:.2f}", f"{row.ratio:.2f}x")


def summary(points: list[tuple[str, dict[str, Row]]]) -> None:
    print("\n== summary: median us/event (ratio to the baseline of the same run)")
    names = list(dict.fromkeys(name for _, rows in points for name in rows if "[" not in name))
    header = "".join(f" {label:>12} {'ratio':>8}" for label, _ in points)
    print(f"{'engine':<30}{header}")
    for name in names:
        cells = "".join(" {:>12} {:>8}".format(*_cell(rows.get(name))) for _, rows in points)
        notes = sorted({r.note for _, rows in points if (r := rows.get(name)) and r.note})
        print(f"{name:<30}{cells}  {'; '.join(notes)}".rstrip())
    print("(a run over the first events only is compared with the baseline over the same events)")


def targets(
    small: dict[str, Row], large: dict[str, Row], engine_bytes: int, agreed: bool
) -> list[tuple[bool, str]]:
    out: list[tuple[bool, str]] = []
    ev_small, ev_large = _us(small, EVALUATE), _us(large, EVALUATE)
    ratio = _us(small, MATCH) / _us(small, BASELINE)
    out.append((ev_small <= 5, f"20 rules: evaluate() <= 5 us/event ({ev_small:.2f})"))
    out.append((ratio <= 3, f"20 rules: match() <= 3x the baseline ({ratio:.2f}x)"))
    doc_ratio = _us(small, DOC_EVALUATE) / _us(small, "baseline, from the document")
    out.append(
        (
            doc_ratio <= 3,
            f"20 rules: evaluate(document) <= 3x the baseline from the document ({doc_ratio:.2f}x)",
        )
    )
    out.append((ev_large <= 100, f"1,000 rules: evaluate() <= 100 us/event ({ev_large:.1f})"))
    # Like for like: the peers report which rules fired, as match() does, with the same
    # dispatch by event type. evaluate() (which also plans actions) and the one-list form of
    # the peers are shown beside it.
    for point, rows in (("20 rules", small), ("1,000 rules", large)):
        for peer, _, _ in PEERS:
            by_type, single = rows.get(_peer_name(peer, False)), rows.get(_peer_name(peer, True))
            if by_type is None or by_type.us is None:
                continue
            n = by_type.events
            speedup = by_type.us / _us(rows, MATCH, n)
            text = (
                f"{point}: match() >= 10x faster than {peer} ({speedup:.1f}x; "
                f"evaluate() {by_type.us / _us(rows, EVALUATE, n):.1f}x"
            )
            if single is not None and single.us is not None:
                text += f"; its one-list form: {single.us / _us(rows, EVALUATE, n):.0f}x"
                text += " with evaluate()"
            out.append((speedup >= 10, text + ")"))
    out.append(
        (engine_bytes <= 10e6, f"1,000 compiled rules <= 10 MB ({engine_bytes / 1e6:.2f} MB)")
    )
    out.append((agreed, "every engine returns the same rules for every event"))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and repetitions")
    parser.add_argument("--events", type=int, help="events (default 10,000; --quick 2,000)")
    parser.add_argument("--reps", type=int, help="timed runs per engine (default 5; --quick 3)")
    parser.add_argument(
        "--peer-events",
        type=int,
        help="events for the peers at 1,000 rules (default 500; --quick 100)",
    )
    args = parser.parse_args(argv)
    n_events = args.events or (2_000 if args.quick else 10_000)
    reps = args.reps or (3 if args.quick else 5)
    peer_events = args.peer_events or (100 if args.quick else 500)

    print(
        f"leadflow {__version__}, CPython {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}"
    )
    documents = make_event_documents(n_events)
    DOCUMENTS.update((d["id"], d) for d in documents)
    events = [Event.model_validate(d) for d in documents]
    small, small_matches, problems = measure_point("20 rules", rule_set(20), events, reps, n_events)
    large, large_matches, more = measure_point(
        "1,000 rules", rule_set(1000), events, reps, peer_events
    )
    problems += more
    model_bytes, engine_bytes = measure_memory(1000)
    print(
        f"\n== memory of 1,000 rules (tracemalloc): compiled RuleEngine "
        f"{engine_bytes / 1e6:.2f} MB, not counting the rules' pydantic models "
        f"({model_bytes / 1e6:.2f} MB, built beforehand)"
    )
    summary([("20 rules", small), ("1,000 rules", large)])
    print(f"matched rules per event: {small_matches:.2f} at 20 rules, {large_matches:.1f} at 1,000")
    print("\n== targets")
    results = targets(small, large, engine_bytes, not problems)
    for ok, text in results:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    if problems:
        print("\nFAILURE: engines disagree (details above); their timings are left out.")
        return 2
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
