"""Rules through a flow: a rule that loads never blocks handling, editing or deleting a rule
settles its pending delayed actions (issue 9), and handlers see a narrow context with params
validated when the rule is loaded (issue 8)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from leadflow import (
    ActionContext,
    Event,
    FlowSettings,
    FollowUpRule,
    HandlerError,
    HandlerRegistry,
    InvalidInputError,
    LeadFlow,
    ManualClock,
    RuleValidationError,
    ScheduledActionState,
    WorkingCalendar,
)
from leadflow.lint import lint

from .helpers import T0
from .service_support import (
    ADMIN,
    EVERY_BACKEND,
    build_flow,
    clock_of,
    close_sql,
    notifier_of,
    ops,
    payloads,
    restarted,
    rule,
)

State = ScheduledActionState


@pytest.fixture(params=EVERY_BACKEND)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    yield str(request.param)
    close_sql()


def created(event_id: str = "e-1", opportunity: str = "opp-1", *, at: datetime = T0) -> Event:
    return Event(
        id=event_id, type="opportunity.created", time=at, payload={"opportunityId": opportunity}
    )


def notify(rule_id: str, template: str, *, delay: Any = 0, **extra: Any) -> FollowUpRule:
    return rule(
        rule_id,
        "opportunity.created",
        [{"actionType": "send_notification", "template": template, "delay": delay}],
        **extra,
    )


def templates(flow: LeadFlow) -> list[str]:
    return [n.template for n in notifier_of(flow).sent]


# ------------------------------------------------------------------ a loaded rule never blocks


def test_a_business_delay_the_calendar_cannot_plan_is_refused_when_created() -> None:
    mondays_only = WorkingCalendar(workdays=[0])
    flow = LeadFlow.in_memory(clock=ManualClock(T0), calendar=mondays_only)
    too_far = notify("too-far", "x", delay={"amount": 3660, "unit": "business_days"})
    with pytest.raises(RuleValidationError) as refused:
        flow.rules.create(too_far)
    assert refused.value.rule_id == "too-far"
    assert refused.value.location == "actions[0].delay"
    assert flow.storage.rules.list() == []
    # The same rule is fine on a calendar that has the working days.
    assert LeadFlow.in_memory(clock=ManualClock(T0)).rules.create(too_far).rule_id == "too-far"


@pytest.mark.parametrize(
    "broken",
    [
        notify("b-operator", "x", conditions=[{"field": "a", "operator": "nope", "value": 1}]),
        rule("b-params", "opportunity.created", [{"actionType": "create_activity"}]),
    ],
    ids=["unknown-operator", "bad-params"],
)
def test_a_broken_stored_rule_is_skipped_and_the_others_act(
    backend: str, broken: FollowUpRule, caplog: pytest.LogCaptureFixture
) -> None:
    flow = build_flow(backend, rules=[notify("good-1", "one"), broken, notify("good-2", "two")])
    with caplog.at_level("ERROR", logger="leadflow"):
        result = flow.handle(created())
    assert sorted(result.matched_rules) == ["good-1", "good-2"]
    assert sorted(templates(flow)) == ["one", "two"]
    assert result.all_errors() == []
    assert any(broken.rule_id in r.getMessage() for r in caplog.records)


def test_one_rule_failing_to_plan_for_an_event_does_not_lose_the_others(backend: str) -> None:
    # Mondays only, and every Monday from 2027 on is a holiday: "1 business day" can be
    # planned from today (the rule loads) but not from an event dated mid-2027.
    holidays = {date(2027, 1, 4) + timedelta(weeks=k) for k in range(1100)}
    calendar = WorkingCalendar(workdays=[0], holidays=holidays)
    base = build_flow(backend, rules=[])
    flow = LeadFlow(base.storage, base.integrations, clock=base.clock, calendar=calendar)
    flow.rules.create(notify("first", "one", priority=10))
    flow.rules.create(notify("stuck", "never", delay={"amount": 1, "unit": "business_days"}))
    flow.rules.create(notify("last", "two", priority=-10))
    later = datetime(2027, 6, 1, 12, tzinfo=UTC)
    result = flow.handle(created(at=later))
    assert result.matched_rules == ["first", "last"]
    [error] = result.all_errors()
    assert isinstance(error, HandlerError) and "stuck" in str(error)
    assert [(a.rule_id, a.due_at) for a in result.scheduled] == [
        ("first", later),
        ("last", later),
    ]
    # An event the rule can plan for still gets all three.
    assert flow.handle(created("e-2", at=T0)).matched_rules == ["first", "stuck", "last"]


def test_the_fan_out_limit_is_not_bypassed_by_rule_by_rule_planning(backend: str) -> None:
    # Three rules of two actions each plan six actions; with a limit of five the event is
    # refused as a whole, and planning rule by rule (the isolation fallback) must not let
    # the actions through one rule at a time.
    from leadflow.limits import Limits

    flow = build_flow(backend, rules=[])
    for name in ("a", "b", "c"):
        flow.rules.create(
            FollowUpRule.model_validate(
                {
                    "ruleId": name,
                    "name": name,
                    "trigger": {"eventType": "opportunity.created"},
                    "actions": [
                        {"actionType": "send_notification", "template": f"{name}1"},
                        {"actionType": "send_notification", "template": f"{name}2"},
                    ],
                }
            )
        )
    flow.rulebook.limits = Limits(planned_per_event=5)  # recompiles every rule
    with pytest.raises(InvalidInputError) as caught:
        flow.handle(created())
    assert caught.value.field == "event"
    assert flow.storage.scheduled.list() == []
    assert templates(flow) == []


# ------------------------------------------------------------------ changing a rule


def pending_flow(backend: str, **options: Any) -> tuple[LeadFlow, FollowUpRule]:
    nudge = notify("nudge", "nudge", delay=2, allowDuplicates=True)
    flow = build_flow(backend, rules=[nudge, notify("other", "other", delay=2)], **options)
    for n in range(3):
        flow.handle(created(f"e-{n}", f"opp-{n + 1}"))
    assert len(flow.storage.scheduled.list(State.PENDING)) == 6
    return flow, flow.storage.rules.get("nudge")


def run_later(flow: LeadFlow) -> None:
    clock_of(flow).advance(hours=3)
    flow.run_due()


def test_changing_a_rule_cancels_its_pending_actions_by_default(backend: str) -> None:
    flow, nudge = pending_flow(backend)
    changed = nudge.model_copy(update={"name": "nudge v2"})
    change = flow.rules.replace(changed)
    assert change.rule is not None and change.rule.version == nudge.version + 1
    assert len(change.cancelled) == 3
    assert {a.rule_id for a in change.cancelled} == {"nudge"}
    assert {a.state for a in change.cancelled} == {State.CANCELLED}
    run_later(flow)
    assert templates(flow) == ["other"] * 3
    assert payloads(flow, "rule.updated")[-1]["cancelled"] == 3
    # Events after the change use the new rule as usual.
    flow.handle(created("e-new"))
    run_later(flow)
    assert templates(flow).count("nudge") == 1


class UpdateThenHandle:
    """The rule store of a flow, where another instance handles an event with the new rule
    right after a rule update is stored and before the changing flow cancels old plans."""

    def __init__(self, inner: Any, handle_meanwhile: Any) -> None:
        self._inner = inner
        self._handle_meanwhile = handle_meanwhile

    def update(self, rule: FollowUpRule) -> FollowUpRule:
        stored = self._inner.update(rule)
        self._handle_meanwhile()
        return stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_change_keeps_what_the_new_version_planned_meanwhile(backend: str) -> None:
    flow, nudge = pending_flow(backend)
    storage = flow.storage

    def other_instance_handles() -> None:  # a fresh instance reads the new version
        other = build_flow(backend, rules=(), storage=storage, clock=clock_of(flow))
        other.handle(created("e-meanwhile", "opp-4"))

    changing = build_flow(
        backend,
        rules=(),
        clock=clock_of(flow),
        storage=dataclasses.replace(
            storage, rules=UpdateThenHandle(storage.rules, other_instance_handles)
        ),
    )
    change = changing.rules.replace(nudge.model_copy(update={"name": "nudge v2"}))
    assert change.rule is not None
    assert len(change.cancelled) == 3  # only the three the old version planned
    assert {a.rule_version for a in change.cancelled} == {nudge.version}
    fresh = [a for a in storage.scheduled.list(State.PENDING) if a.event.id == "e-meanwhile"]
    assert {(a.rule_id, a.rule_version) for a in fresh} == {
        ("nudge", change.rule.version),
        ("other", storage.rules.get("other").version),
    }
    run_later(flow)
    assert sorted(templates(flow)) == ["nudge"] + ["other"] * 4


def test_changing_a_rule_with_keep_lets_its_pending_actions_run(backend: str) -> None:
    flow, nudge = pending_flow(backend)
    change = flow.rules.replace(nudge.model_copy(update={"name": "v2"}), pending="keep")
    assert change.cancelled == ()
    run_later(flow)
    assert sorted(templates(flow)) == ["nudge"] * 3 + ["other"] * 3


def test_deleting_a_rule_cancels_or_keeps_its_pending_actions(backend: str) -> None:
    flow, _ = pending_flow(backend)
    change = flow.rules.delete("nudge")
    assert change.rule is None and len(change.cancelled) == 3
    run_later(flow)
    assert templates(flow) == ["other"] * 3

    kept, _ = pending_flow(backend)
    assert kept.rules.delete("nudge", pending="keep").cancelled == ()
    run_later(kept)
    assert sorted(templates(kept)) == ["nudge"] * 3 + ["other"] * 3


def test_the_default_policy_is_a_setting(backend: str) -> None:
    flow, nudge = pending_flow(backend, settings=FlowSettings(pending_on_rule_change="keep"))
    assert flow.rules.replace(nudge.model_copy(update={"name": "v2"})).cancelled == ()
    assert len(flow.rules.delete("nudge", pending="cancel").cancelled) == 3
    with pytest.raises(InvalidInputError, match="pending"):
        flow.rules.delete("other", pending="drop")  # type: ignore[arg-type]
    assert flow.storage.rules.get("other").rule_id == "other"


def test_an_admin_change_is_audited_with_what_it_cancelled(backend: str) -> None:
    flow, _ = pending_flow(backend)
    admin = ops(flow)
    change = admin.update_rule(ADMIN, "nudge", {"description": "quieter"})
    assert len(change.cancelled) == 3
    trail = admin.audit_trail(ADMIN)
    [updated] = [e for e in trail if e.subject == "rule"]
    assert (updated.change, updated.actor, updated.subject_id) == ("updated", "admin-1", "nudge")
    assert updated.note is not None and "cancelled 3" in updated.note
    cancelled = sorted(e.subject_id for e in trail if e.change == "cancelled")
    assert cancelled == sorted(a.action_id for a in change.cancelled)


def test_a_stale_rule_replace_changes_nothing(backend: str) -> None:
    flow, nudge = pending_flow(backend)
    flow.rules.replace(nudge.model_copy(update={"name": "v2"}), pending="keep")
    from leadflow import StaleWriteError

    with pytest.raises(StaleWriteError):
        flow.rules.replace(nudge.model_copy(update={"name": "v3"}))
    assert flow.storage.rules.get("nudge").name == "v2"
    assert len(flow.storage.scheduled.list(State.PENDING)) == 6


# ------------------------------------------------------------------ handlers' narrow context


class SyncParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=1)
    retries: int = Field(default=0, ge=0, le=5)


class Seen:
    def __init__(self) -> None:
        self.contexts: list[ActionContext] = []

    def __call__(self, ctx: ActionContext) -> str:
        self.contexts.append(ctx)
        return "synced"


def sync_rule(params: dict[str, Any], *, delay: float = 0, rule_id: str = "sync") -> FollowUpRule:
    return rule(
        rule_id,
        "opportunity.created",
        [
            {"actionType": "send_notification", "template": "hello"},
            {"actionType": "sync_crm", "delay": delay, "params": params},
        ],
    )


def sync_flow(backend: str, *, eager: bool = False) -> tuple[LeadFlow, Seen]:
    seen = Seen()
    handlers = HandlerRegistry.default()
    handlers.register("sync_crm", seen, params=SyncParams, eager=eager)
    return build_flow(backend, rules=[], handlers=handlers), seen


def test_an_integrator_handler_gets_validated_params_and_a_narrow_context(backend: str) -> None:
    flow, seen = sync_flow(backend)
    flow.rules.create(sync_rule({"endpoint": "https://crm.example/api", "retries": "2"}))
    result = flow.handle(created())
    assert [r.note for r in result.executed] == ["notified 1 recipient(s) with hello", "synced"]
    [ctx] = seen.contexts
    assert isinstance(ctx.params, SyncParams)
    assert (ctx.params.endpoint, ctx.params.retries) == ("https://crm.example/api", 2)
    assert ctx.storage is flow.storage and ctx.integrations is flow.integrations
    assert ctx.rule_id == "sync" and ctx.event.id == "e-1" and ctx.opportunity_id() == "opp-1"
    assert not hasattr(ctx, "flow") and not any(
        isinstance(getattr(ctx, name, None), LeadFlow) for name in dir(ctx)
    )


@pytest.mark.parametrize(
    ("params", "location"),
    [
        ({}, "actions[1].params.endpoint"),
        ({"endpoint": ""}, "actions[1].params.endpoint"),
        ({"endpoint": "x", "retries": 9}, "actions[1].params.retries"),
        ({"endpoint": "x", "verbose": True}, "actions[1].params.verbose"),
    ],
)
def test_invalid_params_are_refused_when_the_rule_is_loaded(
    backend: str, params: dict[str, Any], location: str
) -> None:
    flow, seen = sync_flow(backend)
    with pytest.raises(RuleValidationError) as refused:
        flow.rules.create(sync_rule(params))
    assert (refused.value.rule_id, refused.value.location) == ("sync", location)
    assert location in str(refused.value)
    assert flow.storage.rules.list() == []
    assert flow.handle(created()).matched_rules == [] and seen.contexts == []


def test_built_in_params_are_checked_at_load_too(backend: str) -> None:
    flow = build_flow(backend, rules=[])
    bad = [
        (rule("a", "opportunity.created", [{"actionType": "create_activity"}]),
         "actions[0].subject"),
        (rule("b", "opportunity.created", [{"actionType": "send_notification"}]),
         "actions[0].template"),
        (rule("c", "opportunity.created", [{"actionType": "sync_everything"}]),
         "actions[0].actionType"),
    ]  # fmt: skip
    for candidate, location in bad:
        with pytest.raises(RuleValidationError) as refused:
            flow.rules.create(candidate)
        assert refused.value.location == location
    assert flow.storage.rules.list() == []


def test_an_eager_handler_runs_when_the_event_is_handled(backend: str) -> None:
    flow, seen = sync_flow(backend, eager=True)
    flow.rules.create(sync_rule({"endpoint": "x"}, delay=5))
    clock_of(flow).advance(minutes=10)
    result = flow.handle(created())
    assert [r.action_type for r in result.executed] == ["send_notification", "sync_crm"]
    assert result.scheduled == []
    [ctx] = seen.contexts
    assert ctx.now == T0 + timedelta(minutes=10)
    assert ctx.planned_at == T0 + timedelta(hours=5)


def test_a_lazy_handler_waits_for_its_delay(backend: str) -> None:
    flow, seen = sync_flow(backend, eager=False)
    flow.rules.create(sync_rule({"endpoint": "x"}, delay=5))
    result = flow.handle(created())
    assert [a.action_type for a in result.scheduled] == ["sync_crm"] and seen.contexts == []
    clock_of(flow).advance(hours=5)
    assert flow.run_due().succeeded == 1
    [ctx] = seen.contexts
    assert ctx.now == ctx.planned_at == T0 + timedelta(hours=5)


def test_a_handler_feeds_a_caused_event_back_in_through_cascade(backend: str) -> None:
    def escalate(ctx: ActionContext) -> str:
        ctx.cascade(
            Event(
                id=f"escalated-{ctx.event.id}",
                type="opportunity.status_changed",
                time=ctx.now,
                payload={"opportunityId": ctx.opportunity_id(), "newStatus": "won"},
            )
        )
        ctx.emit("crm.escalated", {"opportunityId": ctx.opportunity_id()})
        return "escalated"

    handlers = HandlerRegistry.default()
    handlers.register("escalate", escalate)
    won = rule(
        "won",
        "opportunity.status_changed",
        [{"actionType": "send_notification", "template": "won"}],
    )
    flow = build_flow(
        backend,
        rules=[rule("esc", "opportunity.created", [{"actionType": "escalate"}]), won],
        handlers=handlers,
    )
    result = flow.handle(created())
    [cascade] = result.cascades
    assert cascade.matched_rules == ["won"]
    assert cascade.event.type == "opportunity.status_changed"
    assert templates(flow) == ["won"]
    assert payloads(flow, "crm.escalated") == [{"opportunityId": "opp-1"}]
    # Handling the event again changes nothing, cascade included.
    flow.handle(created())
    assert templates(flow) == ["won"]


def test_registries_are_per_flow(backend: str) -> None:
    flow, _ = sync_flow(backend)
    plain = restarted(flow)
    assert "sync_crm" in plain.handlers
    fresh = LeadFlow(flow.storage, flow.integrations, clock=flow.clock)
    assert "sync_crm" not in fresh.handlers
    with pytest.raises(RuleValidationError):
        fresh.rules.create(sync_rule({"endpoint": "x"}))
    with pytest.raises(InvalidInputError, match="exists"):
        flow.handlers.register("sync_crm", lambda ctx: None)


def test_an_activity_created_after_another_action_of_its_rule_keeps_its_explanation(
    backend: str,
) -> None:
    both = rule(
        "both",
        "opportunity.created",
        [
            {"actionType": "send_notification", "template": "hello"},
            {"actionType": "create_activity", "subject": "Call", "assignTo": "lead_owner"},
        ],
        conditions=[{"field": "opportunityId", "operator": "equals", "value": "opp-1"}],
    )
    flow = build_flow(backend, rules=[both])
    flow.handle(created())
    [call] = flow.storage.activities.for_opportunity("opp-1")
    explanation = (call.metadata.model_extra or {}).get("automationExplanation")
    assert explanation is not None and "opportunityId equals 'opp-1'" in explanation


class _WebhookParams(BaseModel):
    url: str
    headers: dict[str, str] = {}


def _webhook(ctx: ActionContext[_WebhookParams]) -> str:
    return f"posted to {ctx.params.url}"


@pytest.mark.parametrize(
    ("action", "where"),
    [
        ({"actionType": "call_webhook"}, "actions[0].params.url"),
        (
            {"actionType": "call_webhook", "params": {"url": "u", "headers": {"a": 1}}},
            "actions[0].params.headers.a",
        ),
        ({"actionType": "send_notification"}, "actions[0].template"),
        ({"actionType": "create_activity", "subject": ""}, "actions[0].subject"),
    ],
)
def test_a_refused_setting_is_named_where_it_lives_in_the_rule(
    action: dict[str, Any], where: str
) -> None:
    """A setting the handler's params model refuses is reported at its place in the rule
    document: the seed's fields at the action, everything else under ``params``; the same
    spelling from the runtime (RuleValidationError) and from lint."""
    handlers = HandlerRegistry.default()
    handlers.register("call_webhook", _webhook, params=_WebhookParams)
    flow = LeadFlow.in_memory(clock=ManualClock(T0), handlers=handlers)
    candidate = rule("r", "opportunity.created", [action])
    with pytest.raises(RuleValidationError) as caught:
        flow.rules.create(candidate)
    assert caught.value.field == where
    findings = [f for f in lint([candidate], flow=flow) if f.code == "bad-params"]
    assert findings and findings[0].location == where
    assert flow.storage.rules.list() == []


def test_a_typed_handler_gets_its_params_model() -> None:
    handlers = HandlerRegistry.default()
    handlers.register("call_webhook", _webhook, params=_WebhookParams)
    flow = LeadFlow.in_memory(clock=ManualClock(T0), handlers=handlers)
    flow.rules.create(
        rule("r", "opportunity.created", [{"actionType": "call_webhook", "params": {"url": "u"}}])
    )
    [run] = flow.handle(created()).executed
    assert (run.ok, run.note) == (True, "posted to u")


def test_a_stored_rule_for_another_workers_handler_plans_its_actions_for_that_worker(
    backend: str,
) -> None:
    """Nothing is lost on a worker without a host's handler (e.g. one delivering a completion):
    the rule still plans its action, stored pending; this worker neither runs nor claims it,
    and a worker with the handler runs it."""
    flow = build_flow(backend, rules=[notify("good", "one")])
    host = HandlerRegistry.default()
    host.register("call_crm", lambda ctx: "called")
    admin = LeadFlow(flow.storage, flow.integrations, clock=flow.clock, handlers=host)
    admin.rules.create(rule("crm", "opportunity.created", [{"actionType": "call_crm"}]))
    result = flow.handle(created())
    assert sorted(result.matched_rules) == ["crm", "good"]
    [held] = result.scheduled
    assert (held.action_type, held.state) == ("call_crm", State.PENDING)
    assert flow.run_due(now=T0 + timedelta(hours=1)).claimed == 0
    report = LeadFlow(flow.storage, flow.integrations, clock=flow.clock, handlers=host).run_due(
        now=T0 + timedelta(hours=1)
    )
    assert [run.note for run in report.runs] == ["called"]
