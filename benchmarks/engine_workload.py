"""The rule-engine benchmark's workload: event documents and rule sets (seeded, deterministic).

Events: documents of four types as a host holds them (``id``, ``type``, ``time`` as an aware
datetime, a ``payload`` of realistic fields: strings, numbers, a ``tags`` list, nested
``customer`` and ``metadata`` objects). Rules: the 8 defaults, 12 hand-written variants and,
for the scale point, generated variants; about a quarter of the rules hold ``any`` groups
(some with an ``all`` group inside), the rest plain conditions. :func:`condition_tree` gives a
rule's conditions as plain tuples for the peers' translations.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from leadflow import Condition, ConditionGroup, FollowUpRule, default_rules

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


def _any(*conditions: Any) -> dict[str, Any]:
    return {"any": list(conditions)}


def _all(*conditions: Any) -> dict[str, Any]:
    return {"all": list(conditions)}


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
    """Twelve hand-written rules beside the defaults: 1-3 conditions, mixed operators, five
    with an ``any`` group (one holding an ``all`` group)."""
    oc, sc, ec, ac = EVENT_TYPES
    return [
        _rule(
            "high-value-website-lead",
            oc,
            70,
            [
                _cond("leadSource", "equals", "website"),
                _any(
                    _cond("estimateValue", "greater_than", 20000), _cond("tags", "contains", "vip")
                ),
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
                _any(_cond("tags", "contains", "storm"), _cond("tags", "contains", "insurance")),
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
            [
                _any(
                    _all(
                        _cond("tags", "contains", "insurance"),
                        _cond("region", "not_equals", "central"),
                    ),
                    _cond("quoteValue", "greater_than", 60000),
                )
            ],
            [_message("send_email", "insurance_documents", 1)],
        ),
        _rule(
            "no-answer-retry",
            ac,
            45,
            [
                _cond("activityType", "equals", "call"),
                _any(
                    _cond("outcome", "equals", "no_answer"), _cond("outcome", "equals", "voicemail")
                ),
            ],
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
                _any(_cond("notes", "contains", "price"), _cond("notes", "contains", "discount")),
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
    """``count`` random rules with 1-3 conditions each; a quarter have one more, an ``any`` of
    two conditions, and a few of the others are ``any(all(a, b), c)``."""
    rng = random.Random(seed)
    rules = []
    for n in range(count):
        kind = rng.choices(EVENT_TYPES, EVENT_TYPE_WEIGHTS)[0]
        size = rng.choices([1, 2, 3], [20, 45, 35])[0]
        shape = rng.random()
        extra = 2 if shape < 0.25 else 0  # a further condition: any(d, e)
        fields = rng.sample(FIELDS[kind], size + extra)
        conditions = [_generated_condition(rng, *f) for f in fields[:size]]
        if extra:
            conditions.append(_any(*(_generated_condition(rng, *f) for f in fields[size:])))
        elif size == 3 and shape < 0.35:  # any(all(a, b), c)
            conditions = [_any(_all(*conditions[:2]), conditions[2])]
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


# --------------------------------------------------------------------------- rule order and trees

# A condition tree as plain data: ("leaf", field, operator, value) or ("all" | "any", children).
Tree = tuple[Any, ...]


def ordered_by_type(rules: Sequence[FollowUpRule]) -> dict[str, list[FollowUpRule]]:
    """Active rules by event type, in application order (priority desc, then rule id)."""
    out: dict[str, list[FollowUpRule]] = {}
    for rule in sorted(rules, key=lambda r: (-r.priority, r.rule_id)):
        if rule.is_active:
            out.setdefault(rule.trigger.event_type, []).append(rule)
    return out


def one_list(rules: Sequence[FollowUpRule]) -> list[FollowUpRule]:
    """Every active rule in application order (for the peers' "one list" form)."""
    return [r for bucket in ordered_by_type(rules).values() for r in bucket]


def _tree(node: Condition | ConditionGroup) -> Tree:
    if isinstance(node, Condition):
        assert not node.ignore_case
        return ("leaf", node.field, node.operator, node.value)
    assert node.kind in ("all", "any"), "the workload has no 'not' groups"
    return (node.kind, [_tree(child) for child in node.conditions])


def condition_tree(rule: FollowUpRule) -> Tree:
    """The rule's trigger conditions as one ``all`` tree (see :data:`Tree`)."""
    return ("all", [_tree(node) for node in rule.trigger.conditions])


def count_groups(rules: Sequence[FollowUpRule]) -> int:
    """How many of ``rules`` hold at least one condition group."""
    return sum(any(isinstance(n, ConditionGroup) for n in r.trigger.conditions) for r in rules)
