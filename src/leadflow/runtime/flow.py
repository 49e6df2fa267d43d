"""The ``LeadFlow`` facade: events in, follow-ups out, exactly once, behind role-based access.

Host applications build one ``LeadFlow`` from its parts (stores, ports, handlers, clock), feed it
their domain events with :meth:`LeadFlow.handle`, call :meth:`LeadFlow.run_due` periodically (or
let the scheduler do it), and serve their users through the role-checked operations.

Exactly once in effect: every planned action is first stored under its idempotency key (event,
rule, action index); an action that runs now is stored already claimed by this worker, then run,
then marked done. Handling an event again finds the keys and does nothing; a crash between the
steps leaves a claimed action whose lease expires, and :meth:`LeadFlow.run_due` runs it again;
handlers key their writes on the idempotency key, so the rerun creates nothing twice.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ..adapters import (
    InMemoryOpportunities,
    RecordingEventSink,
    RecordingMessenger,
    RecordingNotifier,
    StaticTeamDirectory,
)
from ..clock import Clock, SystemClock, ensure_utc
from ..errors import (
    CascadeDepthError,
    ConflictError,
    HandlerError,
    InvalidInputError,
    LeadflowError,
    NotFoundError,
    PermissionDeniedError,
    RuleValidationError,
)
from ..models import ID_RE, Action, Activity, ActivityState, Event, FollowUpRule, Outcome
from ..ports import (
    ActivityRepository,
    AuditLog,
    CounterStore,
    EventSink,
    Messenger,
    Notifier,
    OpportunityGateway,
    RuleRepository,
    ScheduledActionStore,
    TeamDirectory,
)
from ..queries import ActivityFilter, ActivitySort, ActivityStatistics, Page
from ..records import RuleAuditEntry, ScheduledAction, ScheduledActionState
from ..rules.calendar import WorkingCalendar
from ..rules.conditions import MISSING, OperatorRegistry, describe, field_getter
from ..rules.engine import Evaluation, PlannedAction, RuleEngine, validate_rule
from ..stores.memory import InMemoryAuditLog, InMemoryCounterStore
from .actions import ActionContext, HandlerRegistry

__all__ = [
    "ActionRun",
    "CompletionResult",
    "DueRunReport",
    "HandleResult",
    "LeadFlow",
    "Principal",
    "RetryPolicy",
    "Role",
    "RuleTestResult",
]

log = logging.getLogger("leadflow")

_KEYS = uuid.UUID("0c5b8f36-61a4-4e0a-b3f2-6f0c0ffee000")
_INTERNAL_RULE = "leadflow-internal"


class Role(StrEnum):
    """The seed's roles."""

    SUPER_ADMIN = "super_admin"
    ADMIN = "admin"
    DISPATCHER = "dispatcher"
    SALES = "sales"


_ADMINS = frozenset({Role.SUPER_ADMIN, Role.ADMIN})
_READ_ALL = _ADMINS | {Role.DISPATCHER}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user id and a role (the host authenticates; leadflow authorises)."""

    user_id: str
    role: Role

    def __post_init__(self) -> None:
        _checked_id(self.user_id, "user_id")
        if not isinstance(self.role, Role):
            raise InvalidInputError(f"unknown role {self.role!r}", field="role")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: ``base * factor ** (attempt - 1)``, capped at ``cap``; an action is
    parked after ``max_attempts`` failed attempts."""

    max_attempts: int = 5
    base: timedelta = timedelta(seconds=30)
    factor: float = 2.0
    cap: timedelta = timedelta(hours=1)

    def delay_after(self, attempt: int) -> timedelta:
        return min(self.cap, self.base * (self.factor ** max(attempt - 1, 0)))


@dataclass(slots=True)
class ActionRun:
    """One execution attempt of an action."""

    idempotency_key: str
    action_type: str
    ok: bool
    note: str | None
    state: ScheduledActionState


@dataclass(slots=True)
class HandleResult:
    """What handling one event did. ``duplicates`` lists idempotency keys that were already
    stored (the event, or part of it, had been handled); ``errors`` holds non-fatal problems such
    as a cascade stopped by the depth limit."""

    event: Event
    matched_rules: list[str]
    executed: list[ActionRun] = field(default_factory=list)
    scheduled: list[ScheduledAction] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    cascades: list[HandleResult] = field(default_factory=list)
    errors: list[LeadflowError] = field(default_factory=list)

    def all_errors(self) -> list[LeadflowError]:
        """Errors of this event and of every cascade it caused."""
        found = list(self.errors)
        for child in self.cascades:
            found.extend(child.all_errors())
        return found


@dataclass(slots=True)
class DueRunReport:
    """What one :meth:`LeadFlow.run_due` pass did."""

    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    parked: int = 0
    runs: list[ActionRun] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CompletionResult:
    """A completed activity and what its ``activity.completed`` event set off."""

    activity: Activity
    follow_up: HandleResult | None


@dataclass(frozen=True, slots=True)
class RuleTestResult:
    """A dry run of one rule against sample data: nothing was written."""

    rule: FollowUpRule
    matched: bool
    planned: tuple[PlannedAction, ...]
    reason: str
    evaluation: Evaluation


@functools.lru_cache(maxsize=1024)
def _getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    return field_getter(path)


def _key_uuid(key: str) -> str:
    """A short deterministic id for a key (the same key always gives the same id)."""
    return hashlib.blake2b(key.encode(), digest_size=16, key=_KEYS.bytes).hexdigest()


class LeadFlow:
    """The facade host applications call. Build it explicitly; nothing is global.

    ``due_window`` is how long after its scheduled time an automated activity is due (an action
    may say otherwise with ``params.dueWithinHours``). ``rules_refresh`` bounds how long a
    compiled rule set is reused before the rule store is read again (changes made through this
    instance apply at once; this matters when several instances share a store).
    """

    def __init__(
        self,
        *,
        activities: ActivityRepository,
        rules: RuleRepository,
        scheduled: ScheduledActionStore,
        counters: CounterStore,
        audit: AuditLog,
        notifier: Notifier,
        messenger: Messenger,
        opportunities: OpportunityGateway,
        team: TeamDirectory,
        events: EventSink,
        clock: Clock | None = None,
        handlers: HandlerRegistry | None = None,
        operators: OperatorRegistry | None = None,
        calendar: WorkingCalendar | None = None,
        retry: RetryPolicy | None = None,
        max_cascade_depth: int = 5,
        due_window: timedelta = timedelta(hours=24),
        action_lease: timedelta = timedelta(minutes=5),
        rules_refresh: timedelta = timedelta(seconds=30),
        worker_id: str | None = None,
        system_user: str = "leadflow",
    ) -> None:
        self.activities = activities
        self.rules = rules
        self.scheduled = scheduled
        self.counters = counters
        self.audit = audit
        self.notifier = notifier
        self.messenger = messenger
        self.opportunities = opportunities
        self.team = team
        self.events = events
        self.clock: Clock = clock or SystemClock()
        self.handlers = handlers or HandlerRegistry.default()
        self.operators = operators or OperatorRegistry.default()
        self.calendar = calendar or WorkingCalendar()
        self.retry = retry or RetryPolicy()
        if max_cascade_depth < 0:
            raise InvalidInputError("must be >= 0", field="max_cascade_depth")
        self.max_cascade_depth = max_cascade_depth
        self.due_window = due_window
        self.action_lease = action_lease
        self.rules_refresh = rules_refresh
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.system_user = system_user
        self._engine: RuleEngine | None = None
        self._engine_loaded_at: datetime | None = None
        self._engine_lock = threading.Lock()

    @classmethod
    def in_memory(
        cls,
        *,
        clock: Clock | None = None,
        rule_set: Iterable[FollowUpRule] = (),
        reps: Sequence[str] = (),
        **options: Any,
    ) -> LeadFlow:
        """A flow on in-memory stores and recording ports (tests, demos, prototypes).

        ``rule_set`` is stored as given (e.g. ``default_rules()``); ``reps`` fill the team
        directory. Any constructor argument may be passed to replace a part.
        """
        from ..stores.memory import (
            InMemoryActivityRepository,
            InMemoryRuleRepository,
            InMemoryScheduledActionStore,
        )

        parts: dict[str, Any] = {
            "activities": InMemoryActivityRepository(),
            "rules": InMemoryRuleRepository(),
            "scheduled": InMemoryScheduledActionStore(),
            "counters": InMemoryCounterStore(),
            "audit": InMemoryAuditLog(),
            "notifier": RecordingNotifier(),
            "messenger": RecordingMessenger(),
            "opportunities": InMemoryOpportunities(),
            "team": StaticTeamDirectory(reps),
            "events": RecordingEventSink(),
        }
        parts.update(options)
        flow = cls(clock=clock, **parts)
        for rule in rule_set:
            flow.rules.create(rule)
        return flow

    # ------------------------------------------------------------------ plumbing

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        """Send one of leadflow's own events to the sink; a failing sink is logged, not raised
        (the work it reports is already done)."""
        try:
            self.events.emit(name, payload)
        except Exception:
            log.exception("event sink failed", extra={"leadflow_event": name})

    def engine(self) -> RuleEngine:
        """The compiled active rules, reloaded after ``rules_refresh`` or a local rule change.
        A stored rule that does not load here (e.g. an operator this instance lacks) is logged
        and left out; the others still apply."""
        now = self.clock.now()
        with self._engine_lock:
            loaded = self._engine_loaded_at
            if self._engine is None or loaded is None or abs(now - loaded) >= self.rules_refresh:
                usable = []
                for rule in self.rules.list_active():
                    try:
                        self._check_rule(rule)
                    except RuleValidationError as exc:
                        log.error("rule skipped: %s", exc, extra={"rule_id": rule.rule_id})
                        continue
                    usable.append(rule)
                self._engine = RuleEngine(usable, operators=self.operators, calendar=self.calendar)
                self._engine_loaded_at = now
            return self._engine

    def _invalidate_rules(self) -> None:
        with self._engine_lock:
            self._engine = None

    def _check_rule(self, rule: FollowUpRule) -> None:
        validate_rule(rule, self.operators)
        for i, action in enumerate(rule.actions):
            if action.action_type not in self.handlers:
                raise RuleValidationError(
                    rule.rule_id,
                    f"actions[{i}].actionType",
                    f"no handler is registered for {action.action_type!r}",
                )

    def activity_event_payload(self, activity: Activity, **extra: Any) -> dict[str, Any]:
        """An activity as an event payload (camelCase document plus ``extra``)."""
        return {**activity.to_document(), **extra}

    def open_activity_counts(self, users: Sequence[str]) -> dict[str, int]:
        """Open (not completed) activities per user, for least-loaded assignment."""
        now = self.clock.now()
        counts: dict[str, int] = {}
        for user in users:
            stats = self.activities.statistics(ActivityFilter(assigned_to=user), as_of=now)
            counts[user] = stats.total - stats.by_state.get(ActivityState.COMPLETED.value, 0)
        return counts

    # ------------------------------------------------------------------ events

    def handle(self, event: Event | Mapping[str, Any]) -> HandleResult:
        """Evaluate the active rules for ``event`` and carry out what they plan.

        Actions due now (and every ``create_activity``, which creates its activity now with
        future scheduled / due dates) run at once; later ones are stored and run by
        :meth:`run_due`. Handling the same event (same ``id``) again does nothing twice.
        """
        if not isinstance(event, Event):
            event = Event.model_validate(event)
        return self._handle(event, 0)

    def cascade(self, event: Event, ctx: ActionContext) -> None:
        """Feed an event caused by an action back into the rules, one level deeper."""
        try:
            result = self._handle(event, ctx.depth + 1)
        except CascadeDepthError as exc:
            log.error(
                "cascade stopped: %s",
                exc,
                extra={"event_id": event.id, "event_type": event.type, "depth": ctx.depth + 1},
            )
            ctx.errors.append(exc)
            return
        ctx.cascades.append(result)

    def _handle(self, event: Event, depth: int) -> HandleResult:
        if depth > self.max_cascade_depth:
            raise CascadeDepthError(
                f"event {event.id} ({event.type}) would be cascade level {depth}, beyond the "
                f"limit of {self.max_cascade_depth}: rules keep triggering each other"
            )
        evaluation = self.engine().evaluate(event)
        now = ensure_utc(self.clock.now(), "clock.now()")
        result = HandleResult(event, [r.rule_id for r in evaluation.matched_rules])
        if log.isEnabledFor(logging.INFO):
            log.info(
                "rules evaluated",
                extra={
                    "event_id": event.id,
                    "event_type": event.type,
                    "matched_rules": result.matched_rules,
                    "planned_actions": len(evaluation.planned),
                    "depth": depth,
                },
            )
        explanations: dict[str, str] = {}
        for planned in evaluation.planned:
            rule = planned.rule
            key = planned.idempotency_key
            run_now = planned.action.action_type == "create_activity" or planned.due_at <= now
            if rule.rule_id not in explanations:
                # Only created activities keep the explanation; skip the work otherwise.
                explanations[rule.rule_id] = (
                    self._why(rule, event)
                    if any(a.action_type == "create_activity" for a in rule.actions)
                    else ""
                )
            stored, created = self.scheduled.schedule(
                self._new_action(
                    key,
                    event,
                    rule.rule_id,
                    planned.action_index,
                    planned.action,
                    due_at=planned.due_at,
                    now=now,
                    run_now=run_now,
                    extra={
                        "plannedAt": planned.due_at.isoformat(),
                        "ruleName": rule.name,
                        "allowDuplicates": rule.allow_duplicates,
                        "explanation": explanations[rule.rule_id] or None,
                        "depth": depth,
                    },
                )
            )
            if not created:
                result.duplicates.append(key)
                continue
            if run_now:
                run, ctx = self._execute(stored, depth)
                result.executed.append(run)
                result.errors.extend(ctx.errors)
                result.cascades.extend(ctx.cascades)
            else:
                result.scheduled.append(stored)
        return result

    def _new_action(
        self,
        key: str,
        event: Event,
        rule_id: str,
        action_index: int,
        action: Action,
        *,
        due_at: datetime,
        now: datetime,
        run_now: bool,
        extra: dict[str, Any],
    ) -> ScheduledAction:
        """The stored form of a planned action. One that runs now is stored already claimed by
        this worker, so a crash before it is done leaves a lease that expires, not a gap."""
        return ScheduledAction(
            action_id=_key_uuid(key),
            idempotency_key=key,
            event=event,
            rule_id=rule_id,
            action_index=action_index,
            action=action,
            opportunity_id=event.opportunity_id,
            due_at=now if run_now else due_at,
            state=ScheduledActionState.CLAIMED if run_now else ScheduledActionState.PENDING,
            attempts=1 if run_now else 0,
            max_attempts=self.retry.max_attempts,
            lease_owner=self.worker_id if run_now else None,
            lease_expires_at=now + self.action_lease if run_now else None,
            created_at=now,
            updated_at=now,
            extra=extra,
        )

    def _why(self, rule: FollowUpRule, event: Event) -> str:
        parts = []
        for node in rule.trigger.conditions:
            text = describe(node)
            if hasattr(node, "field"):
                actual = _getter(node.field)(event.payload)
                text += f" (actual: {'missing' if actual is MISSING else repr(actual)})"
            parts.append(text)
        conditions = "; ".join(parts) if parts else "no conditions"
        return f"rule {rule.name!r} matched {event.type} {event.id}: {conditions}"

    def _execute(self, action: ScheduledAction, depth: int) -> tuple[ActionRun, ActionContext]:
        now = self.clock.now()
        ctx = ActionContext(self, action, now, depth)
        action_type = action.action.action_type
        handler = (
            self._deliver_outbox
            if action.rule_id == _INTERNAL_RULE
            else self.handlers.get(action_type)
        )
        fields = {
            "action_id": action.action_id,
            "idempotency_key": action.idempotency_key,
            "action_type": action_type,
            "rule_id": action.rule_id,
            "attempt": action.attempts,
        }
        try:
            if handler is None:
                raise HandlerError(f"no handler is registered for action type {action_type!r}")
            note = handler(ctx)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            retry_at = now + self.retry.delay_after(action.attempts)
            try:
                updated = self.scheduled.mark_failed(
                    action.action_id, worker=self.worker_id, now=now, error=error, retry_at=retry_at
                )
                state = updated.state
            except ConflictError:
                log.warning("lease lost before recording a failure", extra=fields)
                state = ScheduledActionState.CLAIMED
            if state is ScheduledActionState.PARKED:
                log.error(
                    "action parked after %s attempts: %s", action.attempts, error, extra=fields
                )
                self.emit(
                    "action.parked",
                    {
                        "actionId": action.action_id,
                        "idempotencyKey": action.idempotency_key,
                        "ruleId": action.rule_id,
                        "error": error,
                    },
                )
            else:
                log.warning(
                    "action failed, retry at %s: %s", retry_at.isoformat(), error, extra=fields
                )
            return ActionRun(action.idempotency_key, action_type, False, error, state), ctx
        try:
            self.scheduled.mark_done(action.action_id, worker=self.worker_id, now=self.clock.now())
            state = ScheduledActionState.DONE
        except ConflictError:
            # Took longer than the lease and another worker took over; the handler's effect is
            # keyed on the idempotency key, so the other run changes nothing.
            log.warning("lease lost before marking an action done", extra=fields)
            state = ScheduledActionState.CLAIMED
        if log.isEnabledFor(logging.INFO):
            log.info("action done: %s", note, extra=fields)
        return ActionRun(action.idempotency_key, action_type, True, note, state), ctx

    def _deliver_outbox(self, ctx: ActionContext) -> str:
        """Deliver an event stored before the write that causes it (a completion): if the write
        never happened, there is nothing to deliver."""
        activity_id = ctx.scheduled.extra.get("activityId")
        if isinstance(activity_id, str):
            try:
                activity = self.activities.get(activity_id)
            except NotFoundError:
                return "activity is gone; nothing to deliver"
            if activity.completed_date is None:
                return "activity was not completed; nothing to deliver"
        ctx.cascades.append(self._handle(ctx.event, ctx.depth))
        return f"delivered {ctx.event.type} {ctx.event.id}"

    def run_due(self, *, limit: int = 100, now: datetime | None = None) -> DueRunReport:
        """Claim and run the stored actions that are due (and those whose worker's lease
        expired). Safe to call from many instances at once: each action is claimed by one."""
        when = ensure_utc(now, "now") if now is not None else self.clock.now()
        report = DueRunReport()
        for action in self.scheduled.claim_due(
            when, worker=self.worker_id, limit=limit, lease=self.action_lease
        ):
            report.claimed += 1
            run, _ = self._execute(action, int(action.extra.get("depth", 0)))
            report.runs.append(run)
            if run.ok:
                report.succeeded += 1
            elif run.state is ScheduledActionState.PARKED:
                report.parked += 1
            else:
                report.failed += 1
        return report

    # ------------------------------------------------------------------ access control

    @staticmethod
    def _require(principal: Principal, roles: frozenset[Role], what: str) -> None:
        if principal.role not in roles:
            raise PermissionDeniedError(f"role {principal.role.value!r} may not {what}")

    @staticmethod
    def _sees(principal: Principal, activity: Activity) -> bool:
        return principal.role in _READ_ALL or activity.assigned_to == principal.user_id

    def _scoped(self, principal: Principal, filter: ActivityFilter | None) -> ActivityFilter | None:
        """The filter narrowed to what the principal may read; None when nothing can match."""
        filter = filter or ActivityFilter()
        if principal.role in _READ_ALL:
            return filter
        if filter.assigned_to not in (None, principal.user_id):
            return None
        return filter.model_copy(update={"assigned_to": principal.user_id})

    def _visible(self, principal: Principal, activity_id: str) -> Activity:
        try:
            activity: Activity | None = self.activities.get(_checked_id(activity_id, "activity_id"))
        except NotFoundError:
            activity = None
        if activity is None or not self._sees(principal, activity):
            # The same answer whether it is missing or someone else's: existence stays private.
            raise NotFoundError(f"activity {activity_id!r} not found")
        return activity

    # ------------------------------------------------------------------ activities

    def create_activity(self, principal: Principal, data: Activity | Mapping[str, Any]) -> Activity:
        """Record an activity (sales: only for themselves). One created already completed
        (a logged call) also sets off ``activity.completed``."""
        self._require(principal, _READ_ALL | {Role.SALES}, "create activities")
        raw = data.model_dump() if isinstance(data, Activity) else dict(data)
        now = self.clock.now()
        assignee = raw.get("assigned_to", raw.get("assignedTo"))
        if principal.role is Role.SALES:
            if assignee not in (None, principal.user_id):
                raise PermissionDeniedError(
                    "sales may only create activities assigned to themselves"
                )
            raw.pop("assignedTo", None)
            raw["assigned_to"] = principal.user_id
        for key in (
            "created_by",
            "createdBy",
            "updated_by",
            "updatedBy",
            "created_at",
            "createdAt",
            "updated_at",
            "updatedAt",
            "version",
        ):
            raw.pop(key, None)
        activity = Activity.model_validate(
            {
                **raw,
                "created_by": principal.user_id,
                "updated_by": principal.user_id,
                "created_at": now,
                "updated_at": now,
            }
        )
        stored = self.activities.add(activity)
        log.info(
            "activity created",
            extra={"activity_id": stored.activity_id, "actor": principal.user_id},
        )
        self.emit("activity.created", self.activity_event_payload(stored))
        if stored.completed_date is not None:
            self.emit("activity.completed", self.activity_event_payload(stored))
            self.handle(self._completed_event(stored))
        return stored

    def get_activity(self, principal: Principal, activity_id: str) -> Activity:
        """One activity; another user's activity is "not found" for sales."""
        return self._visible(principal, activity_id)

    def list_activities(
        self,
        principal: Principal,
        filter: ActivityFilter | Mapping[str, Any] | None = None,
        *,
        sort: ActivitySort | Mapping[str, Any] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Activity]:
        """A page of activities matching ``filter`` (sales: their own only)."""
        scoped = self._scoped(principal, _as(ActivityFilter, filter))
        if scoped is None:
            return Page[Activity](items=[])
        return self.activities.list(
            scoped, sort=_as(ActivitySort, sort), limit=limit, cursor=cursor
        )

    def activities_for_opportunity(
        self, principal: Principal, opportunity_id: str
    ) -> list[Activity]:
        items = self.activities.for_opportunity(_checked_id(opportunity_id, "opportunity_id"))
        return [a for a in items if self._sees(principal, a)]

    def activities_for_customer(self, principal: Principal, customer_id: str) -> list[Activity]:
        items = self.activities.for_customer(_checked_id(customer_id, "customer_id"))
        return [a for a in items if self._sees(principal, a)]

    def pending_activities(
        self, principal: Principal, *, assigned_to: str | None = None, limit: int = 50
    ) -> list[Activity]:
        """Open activities whose time has come and that are not overdue (sales: their own)."""
        user = self._assignee_scope(principal, assigned_to)
        return self.activities.pending(self.clock.now(), assigned_to=user, limit=limit)

    def overdue_activities(
        self, principal: Principal, *, assigned_to: str | None = None, limit: int = 50
    ) -> list[Activity]:
        """Open activities past their due date (sales: their own)."""
        user = self._assignee_scope(principal, assigned_to)
        return self.activities.overdue(self.clock.now(), assigned_to=user, limit=limit)

    def _assignee_scope(self, principal: Principal, assigned_to: str | None) -> str | None:
        if assigned_to is not None:
            _checked_id(assigned_to, "assigned_to")
        if principal.role in _READ_ALL:
            return assigned_to
        if assigned_to not in (None, principal.user_id):
            raise PermissionDeniedError("sales may only list their own activities")
        return principal.user_id

    def activity_statistics(
        self, principal: Principal, filter: ActivityFilter | Mapping[str, Any] | None = None
    ) -> ActivityStatistics:
        """Counts, completion rate and timings (sales: over their own activities)."""
        now = self.clock.now()
        scoped = self._scoped(principal, _as(ActivityFilter, filter))
        if scoped is None:
            raise PermissionDeniedError("sales may only see statistics of their own activities")
        return self.activities.statistics(scoped, as_of=now)

    def activity_timeline(self, principal: Principal, opportunity_id: str) -> list[Activity]:
        """An opportunity's activities in chronological order (sales: their own)."""
        items = self.activities.timeline(_checked_id(opportunity_id, "opportunity_id"))
        return [a for a in items if self._sees(principal, a)]

    def complete_activity(
        self,
        principal: Principal,
        activity_id: str,
        outcome: Outcome | str | None = None,
        *,
        expected_version: int | None = None,
    ) -> CompletionResult:
        """Mark an activity done (admins: any; sales: their own) and feed
        ``activity.completed`` into the rules (seed, Example 1, step 7)."""
        self._require(principal, _ADMINS | {Role.SALES}, "complete activities")
        activity = self._visible(principal, activity_id)
        parsed = _outcome(outcome)
        now = self.clock.now()
        # Outbox first: if we crash after completing, run_due still delivers the event.
        event = self._completed_event(
            activity.model_copy(
                update={"completed_date": now, "outcome": parsed, "completed_by": principal.user_id}
            )
        )
        key = f"{event.id}:{_INTERNAL_RULE}:0"
        outbox, created = self.scheduled.schedule(
            self._new_action(
                key,
                event,
                _INTERNAL_RULE,
                0,
                Action(action_type="handle_event"),
                due_at=now,
                now=now,
                run_now=True,
                extra={"depth": 0, "activityId": activity.activity_id},
            )
        )
        try:
            done = self.activities.complete(
                activity.activity_id,
                outcome=parsed,
                completed_by=principal.user_id,
                completed_at=now,
                expected_version=expected_version,
            )
        except LeadflowError:
            if created:  # nothing happened: retire the outbox entry we just wrote
                self.scheduled.mark_done(outbox.action_id, worker=self.worker_id, now=now)
            raise
        log.info(
            "activity completed",
            extra={"activity_id": done.activity_id, "outcome": parsed, "actor": principal.user_id},
        )
        self.emit("activity.completed", self.activity_event_payload(done))
        follow_up = None
        if created:
            _, ctx = self._execute(outbox, 0)
            follow_up = ctx.cascades[0] if ctx.cascades else None
        return CompletionResult(done, follow_up)

    def _completed_event(self, activity: Activity) -> Event:
        return Event(
            id=_key_uuid(f"activity.completed/{activity.activity_id}"),
            type="activity.completed",
            time=activity.completed_date or self.clock.now(),
            payload=self.activity_event_payload(activity),
            actor=activity.completed_by,
        )

    def delete_activity(self, principal: Principal, activity_id: str) -> None:
        """Remove an activity (admins only, as in the seed)."""
        self._require(principal, _ADMINS, "delete activities")
        self.activities.delete(_checked_id(activity_id, "activity_id"))
        log.info("activity deleted", extra={"activity_id": activity_id, "actor": principal.user_id})
        self.emit("activity.deleted", {"activityId": activity_id, "deletedBy": principal.user_id})

    # ------------------------------------------------------------------ rules

    def create_rule(
        self, principal: Principal, data: FollowUpRule | Mapping[str, Any]
    ) -> FollowUpRule:
        """Store a new rule after checking that it loads here (operators, values, handlers)."""
        self._require(principal, _ADMINS, "create rules")
        now = self.clock.now()
        raw = data.to_document() if isinstance(data, FollowUpRule) else dict(data)
        rule = FollowUpRule.model_validate(
            {
                **_without_audit(raw),
                "createdBy": principal.user_id,
                "updatedBy": principal.user_id,
                "createdAt": now,
                "updatedAt": now,
            }
        )
        self._check_rule(rule)
        stored = self.rules.create(rule)
        self._audit(principal, stored.rule_id, "created", None, stored, now)
        return stored

    def update_rule(
        self,
        principal: Principal,
        rule_id: str,
        changes: Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> FollowUpRule:
        """Apply ``changes`` (camelCase or snake_case fields) to a rule. With
        ``expected_version``, a rule changed meanwhile raises :class:`StaleWriteError`."""
        self._require(principal, _ADMINS, "change rules")
        current = self.rules.get(_checked_id(rule_id, "rule_id"))
        now = self.clock.now()
        merged = {**current.model_dump(), **_snake(changes)}
        merged.update(
            rule_id=current.rule_id,
            version=expected_version if expected_version is not None else current.version,
            created_by=current.created_by,
            created_at=current.created_at,
            updated_by=principal.user_id,
            updated_at=now,
        )
        rule = FollowUpRule.model_validate(merged)
        self._check_rule(rule)
        stored = self.rules.update(rule)
        self._audit(principal, stored.rule_id, "updated", current, stored, now)
        return stored

    def delete_rule(self, principal: Principal, rule_id: str) -> None:
        self._require(principal, _ADMINS, "delete rules")
        current = self.rules.get(_checked_id(rule_id, "rule_id"))
        self.rules.delete(current.rule_id)
        self._audit(principal, current.rule_id, "deleted", current, None, self.clock.now())

    def get_rule(self, principal: Principal, rule_id: str) -> FollowUpRule:
        self._require(principal, _READ_ALL, "read rules")
        return self.rules.get(_checked_id(rule_id, "rule_id"))

    def list_rules(self, principal: Principal) -> list[FollowUpRule]:
        self._require(principal, _READ_ALL, "read rules")
        return self.rules.list()

    def list_active_rules(self, principal: Principal) -> list[FollowUpRule]:
        self._require(principal, _READ_ALL, "read rules")
        return self.rules.list_active()

    def rule_audit_trail(
        self, principal: Principal, rule_id: str | None = None
    ) -> list[RuleAuditEntry]:
        """Who changed which rule when, with the rule before and after."""
        self._require(principal, _ADMINS, "read the rule audit trail")
        return self.audit.list(None if rule_id is None else _checked_id(rule_id, "rule_id"))

    def test_rule(
        self,
        principal: Principal,
        rule: str | FollowUpRule | Mapping[str, Any],
        sample: Event | Mapping[str, Any],
    ) -> RuleTestResult:
        """Dry run (the seed's test mode): would this rule (stored, or given) match ``sample``,
        what would it plan, and why. Writes nothing and runs no action."""
        self._require(principal, _ADMINS, "test rules")
        if isinstance(rule, str):
            candidate = self.rules.get(_checked_id(rule, "rule_id"))
        elif isinstance(rule, FollowUpRule):
            candidate = rule
        else:
            candidate = FollowUpRule.model_validate(rule)
        candidate = candidate.model_copy(update={"is_active": True})
        self._check_rule(candidate)
        if not isinstance(sample, Event):
            data = dict(sample)
            data.setdefault("time", self.clock.now())
            sample = Event.model_validate(data)
        engine = RuleEngine([candidate], operators=self.operators, calendar=self.calendar)
        evaluation = engine.evaluate(sample, explain=True)
        explanation = (evaluation.explanations or ())[0]
        return RuleTestResult(
            candidate, explanation.matched, evaluation.planned, explanation.reason, evaluation
        )

    def _audit(
        self,
        principal: Principal,
        rule_id: str,
        change: str,
        before: FollowUpRule | None,
        after: FollowUpRule | None,
        now: datetime,
    ) -> None:
        self._invalidate_rules()
        entry = RuleAuditEntry.model_validate(
            {
                "ruleId": rule_id,
                "change": change,
                "actor": principal.user_id,
                "at": now,
                "before": before.to_document() if before else None,
                "after": after.to_document() if after else None,
            }
        )
        self.audit.append(entry)
        log.info("rule %s", change, extra={"rule_id": rule_id, "actor": principal.user_id})
        self.emit(f"rule.{change}", {"ruleId": rule_id, "actor": principal.user_id})

    # ------------------------------------------------------------------ parked actions

    def list_parked_actions(
        self, principal: Principal, *, limit: int = 100
    ) -> list[ScheduledAction]:
        """Actions that failed every attempt and wait for a person."""
        self._require(principal, _ADMINS, "see parked actions")
        return self.scheduled.list(ScheduledActionState.PARKED, limit=limit)

    def retry_action(self, principal: Principal, action_id: str) -> ScheduledAction:
        """Put a parked action back in the queue, due now, with fresh attempts."""
        self._require(principal, _ADMINS, "retry actions")
        return self.scheduled.retry(_checked_id(action_id, "action_id"), now=self.clock.now())


# ---------------------------------------------------------------------- helpers


def _checked_id(value: object, field: str) -> str:
    """Refuse anything but a well-formed id (no dicts, no ``$`` operators) before it reaches a
    store."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise InvalidInputError(f"invalid id {value!r}", field=field)
    return value


def _as(model: Any, value: Any) -> Any:
    if value is None or isinstance(value, model):
        return value
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"expected a {model.__name__} or a mapping", field=model.__name__)
    return model.model_validate(dict(value))


def _outcome(value: Outcome | str | None) -> Outcome | None:
    if value is None or isinstance(value, Outcome):
        return value
    try:
        return Outcome(value)
    except ValueError:
        raise InvalidInputError(
            f"unknown outcome {value!r} (one of {', '.join(o.value for o in Outcome)})",
            field="outcome",
        ) from None


_AUDIT_FIELDS = {
    "createdBy",
    "created_by",
    "updatedBy",
    "updated_by",
    "createdAt",
    "created_at",
    "updatedAt",
    "updated_at",
    "version",
}


def _without_audit(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in _AUDIT_FIELDS}


def _snake(changes: Mapping[str, Any]) -> dict[str, Any]:
    from pydantic.alias_generators import to_snake

    if not isinstance(changes, Mapping):
        raise InvalidInputError("changes must be a mapping of rule fields", field="changes")
    out: dict[str, Any] = {}
    for key, value in changes.items():
        name = to_snake(str(key))
        if name in {"rule_id", "version", "created_by", "created_at", "updated_by", "updated_at"}:
            raise InvalidInputError("this field cannot be changed", field=str(key))
        if name not in FollowUpRule.model_fields:
            raise InvalidInputError("unknown rule field", field=str(key))
        out[name] = value
    return out
