"""The planner: an event in, stored actions out.

It asks the rule book what the active rules plan for the event, stores each planned action
under its idempotency key (event, rule, action index) and hands the ones that run now (due
already, or an eager handler's) to the executor, already claimed by this worker. Handling an
event again finds the keys and plans nothing twice. Events the actions cause come back here one
cascade level deeper, up to ``FlowSettings.max_cascade_depth``.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from ..clock import ensure_utc
from ..errors import CascadeDepthError, HandlerError, LeadflowError
from ..models import Event
from ..ports import Clock, ScheduledActionStore
from .actions import HandlerRegistry
from .context import ActionContext
from .executor import Executor
from .explain import render_why
from .planning import rule_action
from .results import HandleResult
from .rulebook import RuleBook
from .settings import FlowSettings

__all__ = ["Planner"]

log = logging.getLogger("leadflow")


class Planner:
    """Plans and stores what the rules say for each event; runs what is due now through the
    ``executor``. Knows no principals and no handler code (only whether a handler is eager)."""

    def __init__(
        self,
        *,
        rulebook: RuleBook,
        scheduled: ScheduledActionStore,
        handlers: HandlerRegistry,
        executor: Executor,
        settings: FlowSettings,
        clock: Clock,
    ) -> None:
        self._rulebook = rulebook
        self._scheduled = scheduled
        self._handlers = handlers
        self._executor = executor
        self._settings = settings
        self._clock = clock

    def handle(self, event: Event, depth: int = 0) -> HandleResult:
        """Plan, store and (when due now) run what the active rules plan for ``event`` at
        cascade level ``depth``. :class:`CascadeDepthError` beyond the settings' limit."""
        if depth > self._settings.max_cascade_depth:
            raise CascadeDepthError(
                f"event {event.id} ({event.type}) would be cascade level {depth}, beyond the "
                f"limit of {self._settings.max_cascade_depth}: rules keep triggering each other"
            )
        errors: list[LeadflowError] = []
        evaluation = self._rulebook.evaluate(event, errors)
        now = ensure_utc(self._clock.now(), "clock.now()")
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
        settings = self._settings
        explanations: dict[str, str] = {}
        for planned in evaluation.planned:
            spec = self._handlers.get(planned.action.action_type)
            eager = spec is not None and spec.eager
            # A type this worker holds (does not run) waits, pending, for one that runs it.
            run_now = (eager or planned.due_at <= now) and self._handlers.runs(
                planned.action.action_type
            )
            rule = planned.rule
            if eager and rule.rule_id not in explanations:
                # Only handlers that keep an explanation (eager ones: created activities) pay.
                explained = self._rulebook.engine().explain_match(evaluation, rule)
                explanations[rule.rule_id] = render_why(event, explained)
            try:
                stored_form = rule_action(
                    planned,
                    event,
                    depth=depth,
                    explanation=explanations.get(rule.rule_id) if eager else None,
                    run_now=run_now,
                    now=now,
                    worker=self._executor.worker_id,
                    lease=settings.action_lease,
                    max_attempts=settings.retry.max_attempts,
                    partitions=settings.partitions,
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
            stored, created = self._scheduled.schedule(stored_form)
            if not created:
                result.duplicates.append(stored.idempotency_key)
                continue
            if run_now:
                run, ctx = self._executor.execute(stored)
                result.executed.append(run)
                result.errors.extend(ctx.errors)
                result.cascades.extend(ctx.cascades)
                if not run.ok:
                    result.errors.append(run.error())
            else:
                result.scheduled.append(stored)
        return result

    def cascade(self, event: Event, ctx: ActionContext) -> None:
        """Handle an event an action caused, one level below the action's own; a depth-limit
        stop is logged and lands in the action's ``ctx.errors``."""
        try:
            result = self.handle(event, ctx.depth + 1)
        except CascadeDepthError as exc:
            log.error(
                "cascade stopped: %s",
                exc,
                extra={"event_id": event.id, "event_type": event.type, "depth": ctx.depth + 1},
            )
            ctx.errors.append(exc)
            return
        ctx.cascades.append(result)
