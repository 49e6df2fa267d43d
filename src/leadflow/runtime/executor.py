"""The executor: one loop for everything stored in the scheduled-action store.

It runs one claimed action (:meth:`Executor.execute`), records the outcome (done; a failure
retried with backoff or parked with the reason) and drains what is due (:meth:`Executor.run_due`,
acknowledging a batch's successes together). What an action *does* is not its business: each
:class:`~leadflow.records.ActionKind` has a runner registered with :meth:`Executor.register_kind`
(a rule's action goes to the handler registry, an outbox delivery to the outbox), and the
executor never looks at a kind or an action type by name.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final, cast

from ..clock import ensure_utc
from ..errors import ConflictError, PermanentError
from ..models import Event
from ..ports import BatchAcknowledgement, Clock, Integrations, Storage
from ..records import ActionKind, ScheduledAction, ScheduledActionState
from .acknowledgement import mark_done
from .context import ActionContext
from .emitter import Emitter
from .planning import is_permanent
from .results import ActionRun, DueRunReport
from .settings import FlowSettings

__all__ = ["BatchRunner", "Cascade", "Executor", "Finishing", "KindRunner"]

log = logging.getLogger("leadflow")

KindRunner = Callable[[ActionContext[Any]], "str | None"]
"""Runs one claimed action of a kind; returns a short note, raises to fail the attempt."""

BatchRunner = Callable[[Sequence[ActionContext[Any]]], "Sequence[str | Exception | None]"]
"""Runs several claimed actions of a kind together (so that their writes can share commits);
returns, in order, each one's note or the exception that failed its attempt."""


class Finishing(list["str | Exception | None"]):
    """What a batch runner may return instead of a plain list: its outcomes, with the writes
    that complete its successes still to do (``finish``). :meth:`Executor.run_due`, on a
    storage whose units of work are atomic, runs them in the unit of work of the batch's
    acknowledgement (one commit for both); elsewhere they run as soon as the runner returns.

    ``finish(True)``: every write in the unit open around the call, raising if any fails (the
    unit is rolled back: a later call starts again from the outcomes as the runner returned
    them); ``finish(False)``: each action's writes in a unit of their own, a failure failing
    that action alone. Both return every outcome again, in order (a note may change; a success
    may become the exception that failed its attempt)."""

    def __init__(
        self,
        outcomes: Iterable[str | Exception | None],
        finish: Callable[[bool], Sequence[str | Exception | None]],
    ) -> None:
        super().__init__(outcomes)
        self.finish = finish


@dataclasses.dataclass(eq=False)
class _Unfinished:
    """A batch whose writes wait for the acknowledgement: its actions, at ``start`` .. ``end``
    of the claimed list (and of the report's runs)."""

    start: int
    end: int
    actions: Sequence[ScheduledAction]
    finishing: Finishing


BATCH_SIZE: Final = 50
"""The most actions one call of a batch runner gets (what is acknowledged after it returns:
a bound on the time a claimed action waits for its acknowledgement, and for the runner's
own use of the batch)."""

Cascade = Callable[[Event, ActionContext[Any]], None]
"""Feeds an event an action caused back into the rules (see :meth:`ActionContext.cascade`)."""


def _no_cascade(event: Event, ctx: ActionContext[Any]) -> None:  # pragma: no cover - wiring error
    raise RuntimeError("this executor has no planner to cascade into (Executor.cascade_to)")


class Executor:
    """Claims, runs and acknowledges stored actions for one worker.

    Built from explicit parts: the stores and integrations handlers see (through their
    :class:`ActionContext`), the settings (leases, retries), the clock, the worker's id and the
    emitter for leadflow's own events. Kinds are registered; :meth:`cascade_to` connects the
    planner that cascaded events go to.
    """

    def __init__(
        self,
        *,
        storage: Storage,
        integrations: Integrations,
        settings: FlowSettings,
        clock: Clock,
        worker_id: str,
        emit: Emitter,
    ) -> None:
        self._storage = storage
        self._scheduled = storage.scheduled
        # As acknowledgement.mark_done: only a method the store's class defines (a wrapper
        # passing other calls on through __getattr__ keeps seeing each mark_done).
        # Looked up on each call, not bound here: what is patched onto the class later
        # (metrics, a recorder) sees every call.
        self._acknowledging: BatchAcknowledgement | None = (
            cast(BatchAcknowledgement, storage.scheduled)
            if callable(getattr(type(storage.scheduled), "mark_done_ids", None))
            else None
        )
        self._integrations = integrations
        self._settings = settings
        self._clock = clock
        self.worker_id = worker_id
        self._emit = emit
        self._kinds: dict[ActionKind, KindRunner] = {}
        self._batches: dict[ActionKind, BatchRunner] = {}
        self._batched: dict[ActionKind, Callable[[ScheduledAction], bool]] = {}
        self._cascade: Cascade = _no_cascade

    def register_kind(
        self,
        kind: ActionKind,
        runner: KindRunner,
        *,
        batch: BatchRunner | None = None,
        batches: Callable[[ScheduledAction], bool] | None = None,
    ) -> None:
        """Run the actions of ``kind`` with ``runner`` (replacing any runner before); with
        ``batch``, :meth:`run_due` hands it the consecutive actions of the kind in a claimed
        batch at once instead (their successes are acknowledged after it returns). With
        ``batches`` too, only the consecutive actions it accepts (the others run one by one,
        each success acknowledged at once once half the lease has passed); ``handle_many``
        hands the batch runner every action of the kind (see :meth:`execute_many`)."""
        kind = ActionKind(kind)
        self._kinds[kind] = runner
        self._batched.pop(kind, None)
        if batch is None:
            self._batches.pop(kind, None)
        else:
            self._batches[kind] = batch
            if batches is not None:
                self._batched[kind] = batches

    def cascade_to(self, cascade: Cascade) -> None:
        """Where :meth:`ActionContext.cascade` sends the events actions cause."""
        self._cascade = cascade

    def now(self) -> datetime:
        return ensure_utc(self._clock.now(), "clock.now()")

    # ------------------------------------------------------------------ one action

    def context(self, action: ScheduledAction, now: datetime) -> ActionContext[Any]:
        """The narrow context a runner (and a handler) sees for ``action``."""
        return ActionContext(
            action, None, now, self._storage, self._integrations, self._settings,
            self._emit, self._cascade,
        )  # fmt: skip

    def execute(
        self, action: ScheduledAction, *, defer_done: bool = False
    ) -> tuple[ActionRun, ActionContext[Any]]:
        """Run one claimed action and record the outcome. With ``defer_done`` a success is not
        marked done here: the caller acknowledges it with others (:meth:`run_due`)."""
        now = self.now()
        ctx = self.context(action, now)
        try:
            runner = self._kinds.get(action.kind)
            if runner is None:
                raise PermanentError(f"no runner is registered for kind {action.kind.value!r}")
            note = runner(ctx)
        except Exception as exc:
            return self._failed(action, exc, now), ctx
        return self._succeeded(action, note, defer_done=defer_done), ctx

    def _succeeded(
        self, action: ScheduledAction, note: str | None, *, defer_done: bool
    ) -> ActionRun:
        state = ScheduledActionState.DONE
        if not defer_done and not self._marked_done(action):
            # Took longer than the lease and another worker took over; the handler's effect
            # is keyed on the idempotency key, so the other run changes nothing.
            log.warning("lease lost before marking an action done", extra=_fields(action))
            state = ScheduledActionState.CLAIMED
        if log.isEnabledFor(logging.INFO):
            log.info("action done: %s", note, extra=_fields(action))
        return ActionRun(action.idempotency_key, action.action_type, True, note, state)

    def _marked_done(self, action: ScheduledAction) -> bool:
        """Mark ``action`` done; False if this worker no longer holds it. Through the store's
        :meth:`~leadflow.ports.BatchAcknowledgement.mark_done_ids` where its class defines it
        (nobody reads the done action ``mark_done`` returns: the fast memory store then builds
        none), else ``mark_done``."""
        now, acknowledging = self.now(), self._acknowledging
        if acknowledging is not None:
            ids = [action.action_id]
            return bool(acknowledging.mark_done_ids(ids, worker=self.worker_id, now=now))
        try:
            self._scheduled.mark_done(action.action_id, worker=self.worker_id, now=now)
        except ConflictError:
            return False
        return True

    def execute_many(
        self,
        claimed: Sequence[ScheduledAction],
        *,
        size: int = BATCH_SIZE,
        every: bool = False,
        unfinished: list[_Unfinished] | None = None,
    ) -> Iterator[tuple[ActionRun, ActionContext[Any]]]:
        """Run claimed actions in order, successes not marked done (the caller acknowledges
        them together): one by one, or a kind's consecutive actions together (at most
        ``size``) where the kind has a batch runner (those it accepts, or with ``every`` all
        of them); each one's run and the context it ran with, as :meth:`execute` gives
        them. ``unfinished``: where a batch's :class:`Finishing` writes are kept for the
        caller's acknowledgement (:meth:`run_due`); without it they run at once."""
        start = 0
        while start < len(claimed):
            kind = claimed[start].kind
            batch = self._batches.get(kind)
            accepts = None if every else self._batched.get(kind)
            if batch is not None and accepts is not None and not accepts(claimed[start]):
                batch = None
            end = start + 1
            if batch is not None:
                limit = min(len(claimed), start + size)
                while (
                    end < limit
                    and claimed[end].kind is kind
                    and (accepts is None or accepts(claimed[end]))
                ):
                    end += 1
            if batch is None or end - start == 1:
                yield self.execute(claimed[start], defer_done=True)
            else:
                actions = claimed[start:end]
                yield from self._run_batch(batch, actions, start, unfinished)
            start = end

    def _run_batch(
        self,
        batch: BatchRunner,
        actions: Sequence[ScheduledAction],
        start: int = 0,
        unfinished: list[_Unfinished] | None = None,
    ) -> Iterator[tuple[ActionRun, ActionContext[Any]]]:
        now = self.now()
        contexts = [self.context(action, now) for action in actions]
        try:
            outcomes = batch(contexts)
            if len(outcomes) != len(actions):  # pragma: no cover - a runner's wiring error
                raise RuntimeError(f"a batch runner returned {len(outcomes)} outcomes")
            if isinstance(outcomes, Finishing):
                if unfinished is None:
                    outcomes = list(outcomes.finish(False))
                else:
                    end = start + len(actions)
                    unfinished.append(_Unfinished(start, end, actions, outcomes))
        except Exception as exc:
            outcomes = [exc] * len(actions)
        for action, ctx, outcome in zip(actions, contexts, outcomes, strict=True):
            if isinstance(outcome, Exception):
                yield self._failed(action, outcome, now), ctx
            else:
                yield self._succeeded(action, outcome, defer_done=True), ctx

    def _failed(self, action: ScheduledAction, exc: Exception, now: datetime) -> ActionRun:
        permanent = is_permanent(exc)
        error = f"{type(exc).__name__}: {exc}"[:2000]
        retry_at = now + self._settings.retry.delay_after(action.attempts)
        fields = _fields(action)
        try:
            updated = self._scheduled.mark_failed(
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
            self._emit(
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

    # ------------------------------------------------------------------ what is due

    def run_due(
        self,
        *,
        limit: int = 100,
        now: datetime | None = None,
        partition: int | None = None,
        action_types: Collection[str] | None = None,
    ) -> DueRunReport:
        """Claim and run the stored actions that are due (and those whose worker's lease
        expired). Safe to call from many instances at once: each action is claimed by one.
        ``partition`` pins this call to one partition (``0 .. settings.partitions - 1``, else
        :class:`InvalidInputError`); None takes from every partition. ``action_types`` is the
        store's claim filter (None: any type; see
        :meth:`~leadflow.ports.ScheduledActionStore.claim_due`)."""
        when = ensure_utc(now, "now") if now is not None else self.now()
        partition = self._settings.checked_partition(partition)
        report = DueRunReport()
        lease = self._settings.action_lease
        claimed = self._scheduled.claim_due(
            when,
            worker=self.worker_id,
            limit=limit,
            lease=lease,
            partition=partition,
            action_types=action_types,
        )
        # Successes are acknowledged together (one store call per batch); once half the lease
        # has passed (the claims all expire together), each one at once.
        unacked: dict[str, int] = {}
        flush_at = when + lease / 2
        # On atomic units, a batch runner's remaining writes (a sequence's moves) go into the
        # acknowledgement's unit (:class:`Finishing`).
        unfinished: list[_Unfinished] | None = [] if self._storage.unit_of_work.atomic else None
        runs = (run for run, _ in self.execute_many(claimed, unfinished=unfinished))
        try:
            report.claimed = len(claimed)
            for action, run in zip(claimed, runs, strict=True):
                if run.ok:
                    unacked[action.action_id] = len(report.runs)
                    report.succeeded += 1
                elif run.state is ScheduledActionState.PARKED:
                    report.parked += 1
                else:
                    report.failed += 1
                report.runs.append(run)
                if (unacked or unfinished) and self.now() >= flush_at:
                    self._acknowledge(unacked, report, unfinished)
        except BaseException:
            # Interrupted (a storage failure, KeyboardInterrupt...): what already succeeded is
            # still acknowledged if the store lets it, so that it does not run again.
            try:
                self._acknowledge(unacked, report, unfinished)
            except Exception:
                log.warning("could not acknowledge the batch's successes", exc_info=True)
            raise
        self._acknowledge(unacked, report, unfinished)
        return report

    def _acknowledge(
        self,
        unacked: dict[str, int],
        report: DueRunReport,
        unfinished: list[_Unfinished] | None = None,
    ) -> None:
        """Mark the actions in ``unacked`` (id -> index of their run in ``report``) done in
        one store call; one whose lease was lost meanwhile is reported ``claimed``: another
        worker reruns it, and its effects are keyed on its idempotency key. The writes of the
        ``unfinished`` batches whose runs are all in ``report`` go first, in the same unit of
        work (:meth:`_finish`); the successes of a batch whose writes are not done (not all
        its runs are in ``report`` yet) stay in ``unacked``, never acknowledged without them
        (if ``run_due`` stops there, they run again after their leases, by their keys)."""
        waiting = [u for u in unfinished or () if u.end > len(report.runs)]
        ready = [u for u in unfinished or () if u.end <= len(report.runs)]
        held = {action.action_id for u in waiting for action in u.actions}
        now_acked = {key: index for key, index in unacked.items() if key not in held}
        if ready:
            self._finish(ready, now_acked, report)
            assert unfinished is not None
            unfinished[:] = waiting  # only once their writes are done (or settled)
        elif now_acked:
            self._acknowledged(now_acked, report, self._mark_done(now_acked))
        for key in [key for key in unacked if key not in held]:
            del unacked[key]

    def _mark_done(self, unacked: dict[str, int]) -> list[str]:
        return mark_done(self._scheduled, list(unacked), worker=self.worker_id, now=self.now())

    def _acknowledged(self, unacked: dict[str, int], report: DueRunReport, done: list[str]) -> None:
        """What :meth:`_mark_done` marked (``done``) taken out of ``unacked``; the others
        reported ``claimed`` (their leases were lost)."""
        for action_id in done:
            del unacked[action_id]
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

    def _finish(
        self, ready: list[_Unfinished], unacked: dict[str, int], report: DueRunReport
    ) -> None:
        """The ``ready`` batches' writes and the acknowledgement of ``unacked`` in one unit of
        work (leadflow's events held until it commits). If that unit fails, the batches'
        writes are done again one action at a time, each in its own unit (an action whose
        writes fail there fails its attempt: retried, or parked, as any failure), then the
        rest is acknowledged."""
        try:
            with self._emit.held(), self._storage.unit_of_work():
                finished = [u.finishing.finish(True) for u in ready]
                done = self._mark_done(unacked) if unacked else []
        except Exception:
            log.warning("a batch's writes failed with its acknowledgement: one action at a "
                        "time now", exc_info=True)  # fmt: skip
            finished = [u.finishing.finish(False) for u in ready]
            self._settle(ready, finished, unacked, report)
            done = self._mark_done(unacked) if unacked else []
            self._acknowledged(unacked, report, done)
            return
        self._settle(ready, finished, unacked, report)
        self._acknowledged(unacked, report, done)

    def _settle(
        self,
        ready: list[_Unfinished],
        finished: list[Sequence[str | Exception | None]],
        unacked: dict[str, int],
        report: DueRunReport,
    ) -> None:
        """The runs of ``ready`` as their writes left them: a changed note replaced, a
        success whose writes failed recorded as a failed attempt (and not acknowledged)."""
        now = self.now()
        for batch, outcomes in zip(ready, finished, strict=True):
            for index, action, outcome in zip(
                range(batch.start, batch.end), batch.actions, outcomes, strict=True
            ):
                run = report.runs[index]
                if not run.ok or action.action_id not in unacked:
                    continue
                if isinstance(outcome, Exception):
                    del unacked[action.action_id]
                    failed = report.runs[index] = self._failed(action, outcome, now)
                    report.succeeded -= 1
                    if failed.state is ScheduledActionState.PARKED:
                        report.parked += 1
                    else:
                        report.failed += 1
                elif outcome != run.note:
                    report.runs[index] = dataclasses.replace(run, note=outcome)

    # ------------------------------------------------------------------ upkeep

    def purge_finished(self, now: datetime | None = None) -> int:
        """Delete finished scheduled actions older than ``settings.retention``."""
        when = ensure_utc(now, "now") if now is not None else self.now()
        return self._scheduled.purge_finished(when - self._settings.retention)

    def retry_parked(self, action_id: str) -> ScheduledAction:
        """Put a parked action back in the queue, due now, with fresh attempts."""
        return self._scheduled.retry(action_id, now=self.now())


def _fields(action: ScheduledAction) -> dict[str, Any]:
    return {
        "action_id": action.action_id,
        "idempotency_key": action.idempotency_key,
        "action_type": action.action_type,
        "rule_id": action.rule_id,
        "attempt": action.attempts,
    }
