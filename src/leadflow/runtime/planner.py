"""The planner: an event in, stored actions out.

It asks the rule book what the active rules plan for the event, stores each planned action
under its idempotency key (event, rule, action index) and hands the ones that run now (due
already, or an eager handler's) to the executor, already claimed by this worker. Handling an
event again finds the keys and plans nothing twice. Events the actions cause come back here one
cascade level deeper, up to ``FlowSettings.max_cascade_depth``.

**One commit per event.** On a storage whose unit of work is atomic (SQL), one event's planning
and the actions it runs now are one unit of work: its writes (the stored actions, the handlers'
writes, the done marks, its cascades) are committed together, and the successes are marked
done with one ``mark_done_many`` at its end. A crash or an error before the commit leaves
nothing of the event: the host, which got no result, hands it in again. leadflow's own events
(``activity.created``...) wait for the commit (:meth:`Emitter.held`). The host's integrations
(notifier, messenger, opportunities) are called inside the unit: if it is then rolled back,
they were called for nothing, and handling the event again calls them again with the same
idempotency key, which they drop as a duplicate (the at-least-once of every foreign call,
unchanged). When a store call fails inside the unit (PostgreSQL can then only roll it back),
the event is handled again step by step, each store call committing on its own as before, so
a failing action is still recorded (retried or parked) and reported. Where the storage
offers it (:class:`~leadflow.ports.DeferredUnits`, PostgreSQL) the unit is a deferred one,
whose writes travel together; a write it answered ahead that did not go in (a repeated event,
an open key held) rolls it back, and the event is handled again in an ordinary unit.

:meth:`Planner.handle_many` does the same for a batch: the events of a chunk are planned, their
actions stored with one ``schedule_many`` (where the store offers it), the run-now ones run in
event order, and the chunk is one unit of work.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import partial
from typing import Any, Final

from pydantic import ValidationError

from ..clock import ensure_utc
from ..errors import (
    CascadeDepthError,
    HandlerError,
    LeadflowError,
    UnavailableError,
)
from ..models import Event
from ..ports import (
    AcknowledgedScheduling,
    BatchScheduling,
    Clock,
    DeferredUnits,
    DeferredWriteError,
    ScheduledActionStore,
    UnitOfWork,
)
from ..records import ScheduledAction, ScheduledActionState
from ..stores.checks import handed_over
from .acknowledgement import mark_done
from .actions import HandlerRegistry
from .context import ActionContext
from .emitter import Emitter
from .executor import Executor
from .explain import why
from .fact_recorder import FactRecorder
from .planning import rule_actions
from .results import ActionRun, HandleResult
from .rulebook import RuleBook
from .sequencer import Sequencer
from .settings import FlowSettings

__all__ = ["BATCH_CHUNK", "Planner"]

log = logging.getLogger("leadflow")

BATCH_CHUNK: Final = 500
"""Events :meth:`Planner.handle_many` handles in one unit of work (one commit)."""
_ACK_MAX: Final = 1000  # ids per mark_done_many


class _Planned:
    """One event's plan: its result so far and its actions in their stored form."""

    __slots__ = ("_planning_errors", "actions", "result", "run_now")

    def __init__(self, result: HandleResult) -> None:
        self.result = result
        self._planning_errors: list[LeadflowError] = []
        self.actions: list[ScheduledAction] = []
        self.run_now: list[bool] = []

    def again(self) -> _Planned:
        """The same plan with a fresh result (what a rolled-back attempt reported is void; the
        planning errors are kept)."""
        r = self.result
        fresh = _Planned(HandleResult(r.event, r.matched_rules, errors=self._planning_errors))
        fresh.actions, fresh.run_now = self.actions, self.run_now
        return fresh


class Planner:
    """Plans and stores what the rules say for each event; runs what is due now through the
    ``executor``. Knows no principals and no handler code (only whether a handler is eager).
    ``units`` is the storage's unit of work; ``emit`` the emitter whose events wait for it."""

    def __init__(
        self,
        *,
        rulebook: RuleBook,
        scheduled: ScheduledActionStore,
        handlers: HandlerRegistry,
        executor: Executor,
        settings: FlowSettings,
        clock: Clock,
        units: UnitOfWork,
        emit: Emitter,
        sequencer: Sequencer | None = None,
        facts: FactRecorder | None = None,
    ) -> None:
        self._rulebook = rulebook
        self._scheduled = scheduled
        self._batch = scheduled if isinstance(scheduled, BatchScheduling) else None
        # Only a schedule_done the store's class defines: a wrapper that watches the
        # acknowledgements (mark_done_many) and passes the rest on keeps seeing them.
        self._ahead = (
            scheduled
            if isinstance(scheduled, AcknowledgedScheduling)
            and callable(getattr(type(scheduled), "schedule_done", None))
            else None
        )
        self._handlers = handlers
        self._executor = executor
        self._settings = settings
        self._clock = clock
        self._units = units
        self._emit = emit
        self._sequencer = sequencer
        self._facts = facts

    # ------------------------------------------------------------------ one event

    def handle(self, event: Event, depth: int = 0) -> HandleResult:
        """Plan, store and (when due now) run what the active rules plan for ``event`` at
        cascade level ``depth``, in one unit of work when the storage's is atomic (see the
        module's docstring). :class:`CascadeDepthError` beyond the settings' limit."""
        if depth > self._settings.max_cascade_depth:
            raise CascadeDepthError(
                f"event {event.id} ({event.type}) would be cascade level {depth}, beyond the "
                f"limit of {self._settings.max_cascade_depth}: rules keep triggering each other"
            )
        return self._commit(self._plan(event, depth))

    def _commit(self, planned: _Planned, *, defer: bool = True) -> HandleResult:
        """Store and run ``planned`` in one unit of work where the storage has atomic ones: a
        deferred one (:class:`DeferredUnits`) unless ``defer`` is false."""
        units = self._units
        if not planned.actions and not self._listens(planned) and not self._records(planned):
            return planned.result
        if not units.atomic:
            return self._store(planned, batched=False)
        if units.active:  # a cascade, or the host's own unit: joined, its owner commits
            return self._store(planned, batched=True)
        unit = (
            units.deferred(ahead=self._contained(planned))
            if defer and isinstance(units, DeferredUnits)
            else units()
        )
        try:
            with self._emit.held(), unit:
                return self._store(planned, batched=True)
        except UnavailableError:
            raise
        except DeferredWriteError:
            # A write the deferred unit answered ahead did not go in (the event's actions
            # were stored already: a duplicate; its activity's open key held): again in an
            # ordinary unit, where each write is answered as it is made.
            return self._commit(planned.again(), defer=False)
        except LeadflowError as error:
            return self._step_by_step(planned, error)

    def _contained(self, planned: _Planned) -> bool:
        """Whether every action ``planned`` runs now has a handler whose every effect is a
        store write (:meth:`HandlerRegistry.contained`): its actions may then be stored
        ahead, their handlers run before the database says they are new."""
        contained = self._handlers.contained
        return all(
            contained(stored.action.action_type) if stored.action is not None else False
            for stored, run_now in zip(planned.actions, planned.run_now, strict=True)
            if run_now
        )

    def _step_by_step(self, planned: _Planned, error: LeadflowError) -> HandleResult:
        """A store call failed in the unit, which was rolled back: ``planned`` stored and run
        again with each store call on its own (as a storage without units does)."""
        event = planned.result.event
        log.warning(
            "unit of work rolled back (%s); handling the event step by step",
            error,
            extra={"event_id": event.id, "event_type": event.type},
        )
        return self._store(planned.again(), batched=False)

    def _store(self, planned: _Planned, *, batched: bool) -> HandleResult:
        """Store ``planned``'s actions and run the run-now ones; with ``batched`` their
        successes are marked done together at the end."""
        done: list[tuple[str, HandleResult, int]] = []
        stored_forms = self._stored(planned.actions, together=batched)
        for (stored, created), run_now in zip(stored_forms, planned.run_now, strict=True):
            if not created:
                planned.result.duplicates.append(stored.idempotency_key)
            elif run_now:
                self._run(stored, planned.result, done if batched else None)
            else:
                planned.result.scheduled.append(stored)
        if self._facts is not None and self._facts.wants(planned.result.event):
            self._facts.record(planned.result.event, planned.result.errors, batched=batched)
        self._sequence(planned, batched=batched)
        self._acknowledge(done)
        return planned.result

    def _stored(
        self, actions: list[ScheduledAction], *, together: bool
    ) -> Iterator[tuple[ScheduledAction, bool]]:
        """Each of ``actions`` stored, with whether it was new, one at a time as the caller
        goes (each stored just before it runs). ``together`` (in a unit of work) and a store
        that takes a batch: all stored first with one ``schedule_many`` (on PostgreSQL one
        statement, one round trip, for the event's actions), then run, as ``handle_many``
        does; what is stored and run is the same."""
        if together and self._batch is not None and len(actions) > 1:
            yield from zip(actions, self._schedule_all(actions), strict=True)
            return
        for action in actions:
            # Built and validated here (rule_action): handed over, not checked again.
            yield handed_over(self._scheduled.schedule, action)

    def _listens(self, planned: _Planned) -> bool:
        return self._sequencer is not None and self._sequencer.listens(planned.result.event)

    def _records(self, planned: _Planned) -> bool:
        return self._facts is not None and self._facts.wants(planned.result.event)

    def _sequence(self, planned: _Planned, *, batched: bool) -> None:
        """What the event does to sequences (entries, goals, waits), after its rules' actions.
        In a unit of work a failure rolls the unit back (the event is handled again step by
        step); step by step it is reported in the result's errors."""
        if not self._listens(planned):
            return
        assert self._sequencer is not None
        try:
            planned.result.sequences.extend(self._sequencer.on_event(planned.result.event))
        except UnavailableError:
            raise
        except LeadflowError as error:
            if batched:
                raise
            log.error("sequences could not take the event: %s", error)
            planned.result.errors.append(error)

    def _plan(self, event: Event, depth: int) -> _Planned:
        """What the rules plan for ``event``: the stored forms of its actions (a rule that
        cannot be planned is reported in the result's errors)."""
        errors: list[LeadflowError] = []
        evaluation = self._rulebook.evaluate(event, errors)
        now = self._now()
        planned = _Planned(
            HandleResult(event, [r.rule_id for r in evaluation.matched_rules], errors=errors)
        )
        if log.isEnabledFor(logging.INFO):
            log.info(
                "rules evaluated",
                extra={
                    "event_id": event.id,
                    "event_type": event.type,
                    "matched_rules": planned.result.matched_rules,
                    "planned_actions": len(evaluation.planned),
                    "depth": depth,
                },
            )
        if not evaluation.planned:
            planned._planning_errors = list(errors)
            return planned
        settings = self._settings
        stored_form = rule_actions(
            event,
            depth=depth,
            now=now,
            worker=self._executor.worker_id,
            lease=settings.action_lease,
            max_attempts=settings.retry.max_attempts,
            partitions=settings.partitions,
        )
        explanations: dict[str, str] = {}
        at: str | None = None  # the event's time in ISO form, for the explanations
        for action in evaluation.planned:
            spec = self._handlers.get(action.action.action_type)
            eager = spec is not None and spec.eager
            # A type this worker holds (does not run) waits, pending, for one that runs it.
            run_now = (eager or action.due_at <= now) and self._handlers.runs(
                action.action.action_type
            )
            rule = action.rule
            if eager and rule.rule_id not in explanations:
                # Only handlers that keep an explanation (eager ones: created activities) pay.
                if at is None:
                    at = event.time.isoformat()
                rendered = self._rulebook.engine().render_match(evaluation, rule, start=at)
                explanations[rule.rule_id] = why(event, rendered, at)
            try:
                stored = stored_form(
                    action,
                    explanation=explanations.get(rule.rule_id) if eager else None,
                    run_now=run_now,
                )
            except ValidationError as exc:  # e.g. a due time beyond the datetime limits
                problem = exc.errors()[0]
                planned.result.errors.append(
                    HandlerError(
                        f"rule {rule.rule_id!r} action {action.action_index} could not be "
                        f"planned: {'.'.join(map(str, problem['loc']))}: {problem['msg']}"
                    )
                )
                continue
            planned.actions.append(stored)
            planned.run_now.append(run_now)
        planned._planning_errors = list(planned.result.errors)
        return planned

    def _run(
        self,
        stored: ScheduledAction,
        result: HandleResult,
        done: list[tuple[str, HandleResult, int]] | None,
    ) -> None:
        """Run a stored, claimed action; with ``done``, a success is marked done later with the
        others (``done`` gets its id, its result and its run's index)."""
        run, ctx = self._executor.execute(stored, defer_done=done is not None)
        self._ran(stored, result, run, ctx, done)

    @staticmethod
    def _ran(
        stored: ScheduledAction,
        result: HandleResult,
        run: ActionRun,
        ctx: ActionContext[Any],
        done: list[tuple[str, HandleResult, int]] | None,
    ) -> None:
        result.executed.append(run)
        result.errors.extend(ctx.errors)
        result.cascades.extend(ctx.cascades)
        if not run.ok:
            result.errors.append(run.error())
        elif done is not None:
            done.append((stored.action_id, result, len(result.executed) - 1))

    def _acknowledge(self, done: list[tuple[str, HandleResult, int]]) -> None:
        """Mark the successes in ``done`` done, 1,000 per store call; one whose lease was lost
        meanwhile is reported ``claimed`` (another worker reruns it, harmlessly)."""
        worker = self._executor.worker_id
        for start in range(0, len(done), _ACK_MAX):
            part = done[start : start + _ACK_MAX]
            marked = mark_done(
                self._scheduled,
                [action_id for action_id, _, _ in part],
                worker=worker,
                now=self._now(),
            )
            if len(marked) == len(part):
                continue
            kept = set(marked)
            for action_id, result, index in part:
                if action_id not in kept:
                    log.warning(
                        "lease lost before marking an action done",
                        extra={"action_id": action_id},
                    )
                    run = result.executed[index]
                    result.executed[index] = ActionRun(
                        run.idempotency_key,
                        run.action_type,
                        run.ok,
                        run.note,
                        ScheduledActionState.CLAIMED,
                        run.permanent,
                    )

    # ------------------------------------------------------------------ many events

    def handle_many(
        self, events: Sequence[Event], *, chunk: int = BATCH_CHUNK
    ) -> list[HandleResult | LeadflowError]:
        """Handle ``events`` in order, as :meth:`handle` would one by one, ``chunk`` events per
        unit of work: one entry per event, its result or the error that stopped it (then
        nothing of that event was written; the others still apply).

        Within a chunk the events are planned first, their actions stored together (one
        ``schedule_many`` when the store offers it), then the run-now actions run in event
        order and the successes are marked done together. When a store call fails in the
        chunk's unit, it is rolled back and each of its events is handled on its own
        (:meth:`handle`), so one event's failure never keeps or half-writes another's."""
        results: list[HandleResult | LeadflowError] = []
        for start in range(0, len(events), chunk):
            part = events[start : start + chunk]
            results.extend(self._chunk(part))
        return results

    def _chunk(self, events: Sequence[Event]) -> list[HandleResult | LeadflowError]:
        plans = [self._plan(event, 0) for event in events]
        units = self._units
        if not any(plan.actions or self._listens(plan) or self._records(plan) for plan in plans):
            return [plan.result for plan in plans]
        if units.active:  # the host's own unit: joined, its owner commits
            return self._batched(plans)
        if units.atomic:
            try:
                with self._emit.held(), units():
                    return self._batched(plans)
            except UnavailableError:
                raise
            except LeadflowError as error:
                log.warning(
                    "unit of work of %d events rolled back (%s); handling them one by one",
                    len(plans),
                    error,
                )
                plans = [plan.again() for plan in plans]
        results: list[HandleResult | LeadflowError] = []
        for plan in plans:
            try:
                results.append(self._commit(plan))
            except UnavailableError:
                raise
            except LeadflowError as error:
                results.append(error)
        return results

    def _batched(self, plans: list[_Planned]) -> list[HandleResult | LeadflowError]:
        """Store the chunk's actions together, then run the run-now ones in event order
        through the executor's batch runners (a built-in ``create_activity``'s activities
        stored together: :meth:`HandlerRegistry.run_batch`); each event's analytics and
        sequences after its actions, and no later event's action before the sequences of an
        event they listen to have taken it."""
        actions = [action for plan in plans for action in plan.actions]
        listening = [self._listens(plan) for plan in plans]
        acknowledged: set[str] = set()
        leaves = self._ahead is not None and not any(listening) and self._leaves(plans)
        created = self._schedule_all(actions, acknowledged if leaves else None)
        done: list[tuple[str, HandleResult, int]] = []
        runs: list[tuple[ScheduledAction, HandleResult]] = []
        waiting: list[_Planned] = []
        n = 0
        for plan, listens in zip(plans, listening, strict=True):
            result = plan.result
            for action, run_now in zip(plan.actions, plan.run_now, strict=True):
                if not created[n]:
                    result.duplicates.append(action.idempotency_key)
                elif run_now:
                    runs.append((action, result))
                else:
                    result.scheduled.append(action)
                n += 1
            waiting.append(plan)
            if listens:
                self._run_all(runs, waiting, done)
        self._run_all(runs, waiting, done)
        if acknowledged:  # stored done already (a failure's mark undid its own)
            done = [entry for entry in done if entry[0] not in acknowledged]
        self._acknowledge(done)
        return [plan.result for plan in plans]

    def _leaves(self, plans: list[_Planned]) -> bool:
        """Whether every run-now action of the chunk has a handler that leaves stored actions
        alone (:meth:`HandlerRegistry.leaves_actions`): with no event for sequences, nothing
        in the chunk reads a stored action before its commit, and its actions may be stored
        acknowledged."""
        types = {
            stored.action.action_type if stored.action is not None else None
            for plan in plans
            for stored, run_now in zip(plan.actions, plan.run_now, strict=True)
            if run_now
        }
        leaves = self._handlers.leaves_actions
        return all(kind is not None and leaves(kind) for kind in types)

    def _run_all(
        self,
        runs: list[tuple[ScheduledAction, HandleResult]],
        waiting: list[_Planned],
        done: list[tuple[str, HandleResult, int]],
    ) -> None:
        """Run ``runs`` (their successes into ``done``), then record and sequence the
        ``waiting`` events; both lists are emptied."""
        executed = self._executor.execute_many(
            [action for action, _ in runs], size=_ACK_MAX, every=True
        )
        for (action, result), (run, ctx) in zip(runs, executed, strict=True):
            self._ran(action, result, run, ctx, done)
        if self._facts is not None:
            facts = self._facts
            facts.record_all([p.result.event for p in waiting if facts.wants(p.result.event)])
        for plan in waiting:
            self._sequence(plan, batched=True)
        runs.clear()
        waiting.clear()

    def _schedule_all(
        self, actions: list[ScheduledAction], acknowledged: set[str] | None = None
    ) -> list[bool]:
        """Whether each of ``actions`` was stored anew. With ``acknowledged`` (a set), where
        the store offers it (:class:`AcknowledgedScheduling`), the claimed ones go in done
        already: the ids of those stored so are added to the set (their successes need no
        acknowledgement)."""
        if self._batch is None:
            return [handed_over(self._scheduled.schedule, action)[1] for action in actions]
        ahead = self._ahead if acknowledged is not None else None
        created: list[bool] = []
        for start in range(0, len(actions), _ACK_MAX):
            part = actions[start : start + _ACK_MAX]
            stored = None
            if ahead is not None and acknowledged is not None:
                stored = handed_over(partial(ahead.schedule_done, now=self._now()), part, *part)
                if stored is not None:
                    acknowledged.update(
                        action.action_id
                        for action, new in zip(part, stored, strict=True)
                        if new and action.state is ScheduledActionState.CLAIMED
                    )
            if stored is None:
                stored = handed_over(self._batch.schedule_many, part, *part)
            created += stored
        return created

    # ------------------------------------------------------------------ cascades

    def cascade(self, event: Event, ctx: ActionContext[Any]) -> None:
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

    def _now(self) -> datetime:
        return ensure_utc(self._clock.now(), "clock.now()")
