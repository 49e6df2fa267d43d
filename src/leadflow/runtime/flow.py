"""The ``LeadFlow`` facade: events in, follow-ups out, exactly once in effect.

A host builds one ``LeadFlow`` from a :class:`~leadflow.ports.Storage` and its
:class:`~leadflow.ports.Integrations`, feeds it domain events with :meth:`LeadFlow.handle`, calls
:meth:`LeadFlow.run_due` periodically (or lets the jobs do it), and serves its users through the
role-checked operations of :mod:`leadflow.access`, which sit on top of this class.

Exactly once in effect: every planned action is first stored under its idempotency key (event,
rule, action index); an action that runs now is stored already claimed by this worker, then run,
then marked done. Handling an event again finds the keys and does nothing; a crash between the
steps leaves a claimed action whose lease expires, and :meth:`run_due` runs it again; handlers
key their writes on the idempotency key, so the rerun creates nothing twice. Completions go
through an outbox entry stored before the write (see :func:`~.planning.delivery_action`).
:meth:`run_due` marks the successes of a batch done together, in one store call (and at the
latest when half the lease has passed): a crash in between reruns at most that batch, which
the keys make harmless.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..adapters import (
    InMemoryOpportunities,
    RecordingEventSink,
    RecordingMessenger,
    RecordingNotifier,
    StaticTeamDirectory,
)
from ..clock import SystemClock, ensure_utc
from ..errors import (
    CascadeDepthError,
    ConflictError,
    HandlerError,
    LeadflowError,
    NotFoundError,
    PermanentError,
)
from ..models import Event, FollowUpRule
from ..ports import Clock, Integrations, Storage
from ..records import ActionKind, ScheduledAction, ScheduledActionState
from ..rules import EventTypes, OperatorRegistry, RuleEngine
from ..rules.calendar import WorkingCalendar
from .actions import HandlerRegistry
from .activity_writes import ActivityWrites, activity_payload
from .context import ActionContext
from .explain import why
from .planning import completed_event, is_permanent, rule_action
from .results import ActionRun, DueRunReport, HandleResult
from .rulebook import RuleBook
from .rules_admin import RulesAdmin
from .settings import FlowSettings

__all__ = ["LeadFlow"]

log = logging.getLogger("leadflow")


class LeadFlow(ActivityWrites):
    """Events in, follow-ups out. Build it explicitly; nothing is global.

    ``storage`` and ``integrations`` are the two port bundles; ``handlers`` (default: the
    built-ins), ``operators`` (default: a fresh built-in registry), ``calendar`` (business-time
    delays) and ``settings`` (retries, due grace, leases, retention...) are optional.
    """

    def __init__(
        self,
        storage: Storage,
        integrations: Integrations,
        *,
        clock: Clock | None = None,
        handlers: HandlerRegistry | None = None,
        operators: OperatorRegistry | None = None,
        event_types: EventTypes | Iterable[str] | None = None,
        calendar: WorkingCalendar | None = None,
        settings: FlowSettings | None = None,
    ) -> None:
        if not isinstance(storage, Storage):
            raise TypeError("storage must be a leadflow.ports.Storage bundle")
        if not isinstance(integrations, Integrations):
            raise TypeError("integrations must be a leadflow.ports.Integrations bundle")
        self.storage = storage
        self.integrations = integrations
        self.clock: Clock = clock or SystemClock()
        self.handlers = handlers if handlers is not None else HandlerRegistry.default()
        self.settings = settings or FlowSettings()
        self.worker_id = (
            self.settings.worker_id
            or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self.rulebook = RuleBook(
            storage.rules,
            clock=self.clock,
            operators=operators if operators is not None else OperatorRegistry.default(),
            event_types=event_types
            if isinstance(event_types, EventTypes)
            else EventTypes(event_types or ()),
            handlers=self.handlers,
            calendar=calendar or WorkingCalendar(),
            refresh=self.settings.rules_refresh,
        )
        self.rules = RulesAdmin(self)

    @classmethod
    def in_memory(
        cls,
        *,
        clock: Clock | None = None,
        rules: Iterable[FollowUpRule] = (),
        reps: Sequence[str] = (),
        handlers: HandlerRegistry | None = None,
        operators: OperatorRegistry | None = None,
        event_types: EventTypes | Iterable[str] | None = None,
        calendar: WorkingCalendar | None = None,
        settings: FlowSettings | None = None,
        storage: Storage | None = None,
    ) -> LeadFlow:
        """A flow on in-memory stores (or the given ``storage``) and recording integrations:
        tests, demos, prototypes. ``rules`` are checked and stored through
        :attr:`rules` (e.g. ``default_rules()``);
        ``reps`` fill the team directory."""
        if storage is None:
            from ..stores.memory import memory_storage

            storage = memory_storage()
        flow = cls(
            storage,
            Integrations(
                notifier=RecordingNotifier(),
                messenger=RecordingMessenger(),
                opportunities=InMemoryOpportunities(),
                team=StaticTeamDirectory(reps),
                events=RecordingEventSink(),
            ),
            clock=clock,
            handlers=handlers,
            operators=operators,
            event_types=event_types,
            calendar=calendar,
            settings=settings,
        )
        for rule in rules:
            flow.rules.create(rule)
        return flow

    # ------------------------------------------------------------------ plumbing

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        """Send one of leadflow's own events to the sink; a failing sink is logged, not raised
        (the work it reports is already done)."""
        try:
            self.integrations.events.emit(name, payload)
        except Exception:
            log.exception("event sink failed", extra={"leadflow_event": name})

    def engine(self) -> RuleEngine:
        """The compiled active rules (see :class:`~.rulebook.RuleBook`)."""
        return self.rulebook.engine()

    def now(self) -> datetime:
        return ensure_utc(self.clock.now(), "clock.now()")

    # ------------------------------------------------------------------ events

    def handle(self, event: Event | Mapping[str, Any]) -> HandleResult:
        """Evaluate the active rules for ``event`` and carry out what they plan.

        Actions due now and actions whose handler is eager (``create_activity``) run at once;
        later ones are stored and run by :meth:`run_due`. Handling the same event (same ``id``)
        again does nothing twice. A rule whose actions cannot be planned for this event is
        reported in ``errors`` and the other rules still apply.
        """
        if not isinstance(event, Event):
            event = Event.model_validate(event)
        return self._handle(event, 0)

    def _handle(self, event: Event, depth: int) -> HandleResult:
        if depth > self.settings.max_cascade_depth:
            raise CascadeDepthError(
                f"event {event.id} ({event.type}) would be cascade level {depth}, beyond the "
                f"limit of {self.settings.max_cascade_depth}: rules keep triggering each other"
            )
        errors: list[LeadflowError] = []
        evaluation = self.rulebook.evaluate(event, errors)
        now = self.now()
        result = HandleResult(event, [r.rule_id for r in evaluation.matched_rules], errors=errors)
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
            spec = self.handlers.get(planned.action.action_type)
            eager = spec is not None and spec.eager
            run_now = eager or planned.due_at <= now
            rule = planned.rule
            if eager and rule.rule_id not in explanations:
                # Only handlers that keep an explanation (eager ones: created activities) pay.
                explanations[rule.rule_id] = why(
                    rule, event, operators=self.rulebook.operators, calendar=self.rulebook.calendar
                )
            try:
                planned_action = rule_action(
                    planned,
                    event,
                    depth=depth,
                    explanation=explanations.get(rule.rule_id) if eager else None,
                    run_now=run_now,
                    now=now,
                    worker=self.worker_id,
                    lease=self.settings.action_lease,
                    max_attempts=self.settings.retry.max_attempts,
                    partitions=self.settings.partitions,
                )
            except ValidationError as exc:  # e.g. a due time beyond the datetime limits
                problem = exc.errors()[0]
                result.errors.append(
                    HandlerError(
                        f"rule {rule.rule_id!r} action {planned.action_index} could not be "
                        f"planned: {'.'.join(map(str, problem['loc']))}: {problem['msg']}"
                    )
                )
                continue
            stored, created = self.storage.scheduled.schedule(planned_action)
            if not created:
                result.duplicates.append(stored.idempotency_key)
                continue
            if run_now:
                run, ctx = self._execute(stored)
                result.executed.append(run)
                result.errors.extend(ctx.errors)
                result.cascades.extend(ctx.cascades)
                if not run.ok:
                    result.errors.append(run.error())
            else:
                result.scheduled.append(stored)
        return result

    def _cascade(self, event: Event, ctx: ActionContext) -> None:
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

    # ------------------------------------------------------------------ running actions

    def _context(self, action: ScheduledAction, params: Any, now: datetime) -> ActionContext:
        return ActionContext(
            action, params, now, self.storage, self.integrations, self.settings,
            self.emit, self._cascade,
        )  # fmt: skip

    def _execute(
        self, action: ScheduledAction, *, defer_done: bool = False
    ) -> tuple[ActionRun, ActionContext]:
        """Run one claimed action and record the outcome. With ``defer_done`` a success is not
        marked done here: the caller acknowledges it with others (:meth:`run_due`)."""
        now = self.now()
        ctx = self._context(action, None, now)
        fields = {
            "action_id": action.action_id,
            "idempotency_key": action.idempotency_key,
            "action_type": action.action_type,
            "rule_id": action.rule_id,
            "attempt": action.attempts,
        }
        note: str | None
        try:
            if action.kind is ActionKind.DELIVERY:
                note = self._deliver(ctx)
            else:
                assert action.action is not None
                spec = self.handlers.get(action.action.action_type)
                if spec is None:
                    raise PermanentError(
                        f"no handler is registered for action type {action.action_type!r}"
                    )
                ctx.params = self.handlers.parse(
                    spec, action.action, key=(action.rule_id, action.action_index)
                )
                note = spec.handler(ctx)
        except Exception as exc:
            return self._failed(action, ctx, exc, now, fields), ctx
        state = ScheduledActionState.DONE
        try:
            if not defer_done:
                self.storage.scheduled.mark_done(
                    action.action_id, worker=self.worker_id, now=self.now()
                )
        except ConflictError:
            # Took longer than the lease and another worker took over; the handler's effect is
            # keyed on the idempotency key, so the other run changes nothing.
            log.warning("lease lost before marking an action done", extra=fields)
            state = ScheduledActionState.CLAIMED
        if log.isEnabledFor(logging.INFO):
            log.info("action done: %s", note, extra=fields)
        return ActionRun(action.idempotency_key, action.action_type, True, note, state), ctx

    def _failed(
        self,
        action: ScheduledAction,
        ctx: ActionContext,
        exc: Exception,
        now: datetime,
        fields: dict[str, Any],
    ) -> ActionRun:
        permanent = is_permanent(exc)
        error = f"{type(exc).__name__}: {exc}"[:2000]
        retry_at = now + self.settings.retry.delay_after(action.attempts)
        try:
            updated = self.storage.scheduled.mark_failed(
                action.action_id,
                worker=self.worker_id,
                now=now,
                error=error,
                retry_at=retry_at,
                permanent=permanent,
            )
            state = updated.state
        except ConflictError:
            log.warning("lease lost before recording a failure", extra=fields)
            state = ScheduledActionState.CLAIMED
        if state is ScheduledActionState.PARKED:
            log.error("action parked after %s attempt(s): %s", action.attempts, error, extra=fields)
            self.emit(
                "action.parked",
                {
                    "actionId": action.action_id,
                    "idempotencyKey": action.idempotency_key,
                    "ruleId": action.rule_id,
                    "error": error,
                    "permanent": permanent,
                },
            )
        else:
            log.warning("action failed, retry at %s: %s", retry_at.isoformat(), error, extra=fields)
        return ActionRun(action.idempotency_key, action.action_type, False, error, state, permanent)

    def _deliver(self, ctx: ActionContext) -> str:
        """Deliver an outbox entry: feed the completion of ``activity_id`` into the rules if the
        write it was stored before really happened (the event is rebuilt from what is stored)."""
        activity_id = ctx.scheduled.activity_id
        event = ctx.event
        if activity_id is not None:
            try:
                activity = self.storage.activities.get(activity_id)
            except NotFoundError:
                return "activity is gone; nothing to deliver"
            if activity.completed_date is None:
                return "activity was not completed; nothing to deliver"
            event = completed_event(activity, activity_payload(activity))
        ctx.cascades.append(self._handle(event, ctx.depth))
        return f"delivered {event.type} {event.id}"

    def run_due(
        self, *, limit: int = 100, now: datetime | None = None, partition: int | None = None
    ) -> DueRunReport:
        """Claim and run the stored actions that are due (and those whose worker's lease
        expired). Safe to call from many instances at once: each action is claimed by one.
        ``partition`` pins this call to one partition (``0 .. settings.partitions - 1``, else
        :class:`InvalidInputError`); None takes from every partition."""
        when = ensure_utc(now, "now") if now is not None else self.now()
        partition = self.settings.checked_partition(partition)
        report = DueRunReport()
        lease = self.settings.action_lease
        claimed = self.storage.scheduled.claim_due(
            when, worker=self.worker_id, limit=limit, lease=lease, partition=partition
        )
        # Successes are acknowledged together (one store call per batch); once half the lease
        # has passed (the claims all expire together), each one at once.
        unacked: dict[str, int] = {}
        flush_at = when + lease / 2
        try:
            for action in claimed:
                report.claimed += 1
                run, _ = self._execute(action, defer_done=True)
                if run.ok:
                    unacked[action.action_id] = len(report.runs)
                    report.succeeded += 1
                elif run.state is ScheduledActionState.PARKED:
                    report.parked += 1
                else:
                    report.failed += 1
                report.runs.append(run)
                if unacked and self.now() >= flush_at:
                    self._acknowledge(unacked, report)
        except BaseException:
            # Interrupted (a storage failure, KeyboardInterrupt...): what already succeeded is
            # still acknowledged if the store lets it, so that it does not run again.
            try:
                self._acknowledge(unacked, report)
            except Exception:
                log.warning("could not acknowledge the batch's successes", exc_info=True)
            raise
        self._acknowledge(unacked, report)
        return report

    def _acknowledge(self, unacked: dict[str, int], report: DueRunReport) -> None:
        """Mark the actions in ``unacked`` (id -> index of their run in ``report``) done in
        one store call; one whose lease was lost meanwhile is reported ``claimed``: another
        worker reruns it, and its effects are keyed on its idempotency key."""
        if not unacked:
            return
        done = self.storage.scheduled.mark_done_many(
            list(unacked), worker=self.worker_id, now=self.now()
        )
        for action in done:
            del unacked[action.action_id]
        for action_id, index in unacked.items():
            log.warning(
                "lease lost before marking an action done",
                extra={
                    "action_id": action_id,
                    "idempotency_key": report.runs[index].idempotency_key,
                },
            )
            report.runs[index] = dataclasses.replace(
                report.runs[index], state=ScheduledActionState.CLAIMED
            )
        unacked.clear()

    def purge_finished(self, now: datetime | None = None) -> int:
        """Delete finished scheduled actions older than ``settings.retention``."""
        when = ensure_utc(now, "now") if now is not None else self.now()
        return self.storage.scheduled.purge_finished(when - self.settings.retention)

    # ------------------------------------------------------------------ parked actions

    def retry_parked(self, action_id: str) -> ScheduledAction:
        """Put a parked action back in the queue, due now, with fresh attempts."""
        return self.storage.scheduled.retry(action_id, now=self.now())
