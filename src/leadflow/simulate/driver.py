"""The backtest's driver: the real :class:`~leadflow.LeadFlow` on memory storage and a
:class:`~leadflow.ManualClock` that follows the recorded history.

For each recorded event the clock moves to its time; on the way, every stored action falls due
and runs at its own due time (``run_due`` with the clock there) and the periodic jobs the
backtest keeps (the stale-opportunity job) run at their slots through a
:class:`~leadflow.scheduling.JobRunner`; then the event is handled (``flow.handle``). The facts
the history records feed the integrations first (:class:`~.world.HistoryOpportunities`), and a
recorded ``activity.completed`` completes the opportunity's oldest open automated activity in
the store before it is handled as recorded. The report is read from what the runtime stored
(activities, pending and parked actions) and recorded (notifier, messenger, event sink, the
gateway's changes, the handlers it ran).

Deterministic: the same rules and history give the same report (the clock is the history's,
ids derive from idempotency keys, the worker id is fixed).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

from pydantic import ValidationError

from ..adapters import RecordingMessenger, RecordingNotifier, StaticTeamDirectory
from ..clock import ManualClock
from ..errors import InvalidInputError, LeadflowError, NotFoundError
from ..models import Activity, Event, FollowUpRule, Outcome
from ..ports import Integrations
from ..records import ActionKind, ScheduledActionState
from ..rules import EventTypes, OperatorRegistry, WorkingCalendar
from ..runtime import FlowSettings, HandleResult, HandlerRegistry, LeadFlow, LeadflowJobs
from ..runtime.flow import read_event_document
from ..runtime.jobs import JobSchedule, JobSettings
from ..runtime.sequence_report import sequence_report
from ..scheduling import JobRunner
from ..sequences import Enrollment, EnrollmentState, SequenceDefinition, SplitStep
from .report import (
    MAX_REFUSAL_REASONS,
    OTHER_REASONS,
    SequenceFigures,
    SimulationReport,
    StepFigures,
    refusal_reason,
)
from .world import CountingEventSink, HistoryOpportunities, Observations, watched

__all__ = ["SimulationSettings", "Simulator", "load_sequences"]

WORKER: Final = "backtest"
BATCH: Final = 500
_START: Final = datetime(1970, 1, 1, tzinfo=UTC)
_OFF: Final = JobSchedule("0 0 1 1 *", enabled=False)


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    """``reps``: the team (the team directory, for ``round_robin`` / ``least_loaded``);
    ``timezone``: the zone of the report's days; ``due_grace``, ``max_cascade_depth``: the
    flow's ``FlowSettings``; ``stale_after`` / ``stale_every``: the stale-opportunity job
    (``stale_every`` a whole number of minutes dividing an hour, or of hours dividing a day;
    ``None`` switches it off)."""

    reps: tuple[str, ...] = ()
    timezone: tzinfo = UTC
    due_grace: timedelta = timedelta(0)
    max_cascade_depth: int = 5
    stale_after: timedelta = timedelta(days=7)
    stale_every: timedelta | None = timedelta(hours=6)


def _cron(every: timedelta) -> str:
    """``every`` as a cron expression in UTC (slots at whole multiples of it since midnight)."""
    minutes, rest = divmod(every, timedelta(minutes=1))
    if not rest and minutes >= 1:
        if minutes < 60 and 60 % minutes == 0:
            return f"*/{minutes} * * * *"
        hours, left = divmod(minutes, 60)
        if not left and 24 % hours == 0:
            return f"0 */{hours} * * *"
    raise InvalidInputError(
        "must be whole minutes dividing an hour or whole hours dividing a day",
        field="stale_every",
    )


SequenceInput = SequenceDefinition | Mapping[str, Any]


def load_sequences(sequences: Iterable[SequenceInput]) -> list[SequenceDefinition]:
    """The definitions (documents are validated); :class:`~leadflow.InvalidInputError`
    (field ``sequences``) when two share a ``sequenceId``: a backtest runs one version of
    each sequence (compare two versions with :func:`~leadflow.simulate.compare`)."""
    out: list[SequenceDefinition] = []
    seen: set[str] = set()
    for item in sequences:
        definition = (
            item
            if isinstance(item, SequenceDefinition)
            else SequenceDefinition.model_validate(item)
        )
        if definition.sequence_id in seen:
            raise InvalidInputError(
                f"sequence {definition.sequence_id!r} given twice: a backtest runs one version "
                "of each sequence",
                field="sequences",
            )
        seen.add(definition.sequence_id)
        out.append(definition)
    return out


class _Quiet(logging.Filter):
    """Drops the runtime's log records made by a thread while it runs a backtest: a backtest's
    parked actions and stopped cascades are in its report, not news for the host's alerts."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "depth", 0)


_QUIET: Final = _Quiet()
_QUIET_LOGGERS: Final = ("leadflow", "leadflow.scheduling")


class _Quieted:
    """The context in which this thread's runtime log records are dropped (re-entrant). The
    filter is put on the loggers when a simulator is made (:func:`_install_quiet`), not on
    every entry: an entry costs a thread-local counter, once per event fed."""

    __slots__ = ()

    def __enter__(self) -> None:
        local = _QUIET.local
        local.depth = getattr(local, "depth", 0) + 1

    def __exit__(self, *exc: object) -> None:
        _QUIET.local.depth -= 1


def _install_quiet() -> None:
    """Put the filter on the runtime's loggers (once; a logger keeps it)."""
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


_QUIETED: Final = _Quieted()


def _quiet() -> _Quieted:
    return _QUIETED


class _Flow(LeadFlow):
    """The real flow; handling an event also notes the rules it matched at its own level (the
    levels below are noted by the watched handlers that caused them)."""

    seen: Observations

    def _handle_read(self, event: Event) -> HandleResult:
        result = super()._handle_read(event)
        self.seen.matched_rules(result.matched_rules, 0)
        return result


class Simulator:
    """Replays events one by one through a real flow (:meth:`feed`) and reports
    (:meth:`finish`). ``flow``, ``clock``, ``notifier``, ``messenger`` and ``opportunities``
    are there to look at afterwards. See the module docstring."""

    def __init__(
        self,
        rules: Iterable[FollowUpRule | Mapping[str, Any]],
        *,
        settings: SimulationSettings | None = None,
        handlers: HandlerRegistry | None = None,
        operators: OperatorRegistry | None = None,
        event_types: EventTypes | Iterable[str] | None = None,
        calendar: WorkingCalendar | None = None,
        sequences: Iterable[SequenceInput] = (),
    ) -> None:
        from ..stores.memory.fast import fast_memory_storage

        self.settings = settings = settings or SimulationSettings()
        _install_quiet()
        self.report = SimulationReport()
        self.seen = Observations()
        self.clock = ManualClock(_START)
        self.notifier = RecordingNotifier()
        self.messenger = RecordingMessenger()
        self.opportunities = HistoryOpportunities()
        self.events = CountingEventSink()
        flow = _Flow(
            fast_memory_storage(),
            Integrations(
                notifier=self.notifier,
                messenger=self.messenger,
                opportunities=self.opportunities,
                team=StaticTeamDirectory(settings.reps),
                events=self.events,
            ),
            clock=self.clock,
            handlers=watched(
                handlers if handlers is not None else HandlerRegistry.default(), self.seen
            ),
            operators=operators,
            event_types=event_types,
            calendar=calendar,
            settings=FlowSettings(
                due_grace=settings.due_grace,
                max_cascade_depth=settings.max_cascade_depth,
                rules_refresh=timedelta(days=365_000),  # the rules change only here
                worker_id=WORKER,
            ),
        )
        flow.seen = self.seen
        self.flow: LeadFlow = flow
        for rule in rules:
            flow.rules.create(
                FollowUpRule.model_validate(rule) if isinstance(rule, Mapping) else rule
            )
        self.sequences: list[SequenceDefinition] = [
            flow.sequences.publish(definition.model_copy(update={"version": 1}))
            for definition in load_sequences(sequences)
        ]
        self.runner: JobRunner | None = None
        if settings.stale_every is not None:
            jobs = JobSettings(
                due_actions=_OFF,
                overdue_check=_OFF,
                upcoming_reminders=_OFF,
                cleanup=_OFF,
                daily_summary=_OFF,
                stale_opportunities=JobSchedule(
                    _cron(settings.stale_every), grace=timedelta(0), lease=timedelta(hours=1)
                ),
                stale_after=settings.stale_after,
            )
            self.runner = LeadflowJobs(flow, jobs).runner(worker_id=WORKER)
        self.now: datetime | None = None
        self.matched_now: dict[str, int] = {}
        """Rules matched for the last event fed (its cascades included): for comparisons."""
        self.last_result: HandleResult | None = None
        """What handling the last event fed did (None: it was refused)."""

    # ------------------------------------------------------------------ time

    def advance(self, until: datetime) -> None:
        """Move the clock to ``until``, running on the way every stored action at its due time
        and every job slot at its time (in time order; a slot before the actions due with it)."""
        with _quiet():
            self._advance(until)

    def _advance(self, until: datetime) -> None:
        scheduled = self.flow.storage.scheduled
        runner = self.runner
        clock = self.clock
        while True:
            due = scheduled.next_due()
            tick = runner.next_run_time() if runner is not None else None
            if tick is not None and tick <= until and (due is None or tick <= due):
                clock.set(tick)
                runner.run_pending()  # type: ignore[union-attr]
                continue
            if due is None or due > until:
                break
            at = max(due, clock.now())
            clock.set(at)
            while self.flow.run_due(limit=BATCH, now=at).claimed == BATCH:
                pass
        clock.set(until)
        self.now = until

    # ------------------------------------------------------------------ events

    def feed(self, document: Mapping[str, Any]) -> None:
        """Replay one recorded event (an event document). Events must come in time order;
        one that does not, or that is not a valid event, is counted as refused."""
        report = self.report
        self.matched_now = {}
        self.last_result = None
        if isinstance(document, Mapping) and "eventId" not in document and "id" not in document:
            document = {**document, "id": f"event-{report.events + report.events_refused + 1}"}
        try:
            # Read once, by the flow's own reader: handling it does not check it again.
            event = read_event_document(document)
        except (ValidationError, LeadflowError, ValueError, TypeError) as exc:
            self._refuse(document, exc)
            return
        time = event.time
        if self.now is not None and time < self.now:
            self._refuse(document, InvalidInputError("out of time order", field="time"))
            return
        if report.start is None:
            report.start = time.isoformat()
            self.clock.set(time)
            self.now = time
        report.end = time.isoformat()
        report.events += 1
        with _quiet():
            self._replay(document, event)

    def _replay(self, document: Mapping[str, Any], event: Event) -> None:
        self._advance(event.time)
        opportunity = self.opportunities.record(event.type, event.payload)
        if opportunity is not None and event.type == "activity.completed":
            self._complete(opportunity, event)
        current = self.seen.current = Counter()
        try:
            self.last_result = self.flow._handle_read(event)
        except (ValidationError, LeadflowError) as exc:
            self._refuse(document, exc)
        finally:
            self.seen.current = None
        self.matched_now = dict(current)

    def _refuse(self, document: Any, exc: Exception) -> None:
        report = self.report
        report.events_refused += 1
        reasons = report.refused_per_reason
        reason = refusal_reason(exc)
        if reason not in reasons and len(reasons) >= MAX_REFUSAL_REASONS:
            reason = OTHER_REASONS
        reasons[reason] = reasons.get(reason, 0) + 1
        if len(report.refused_examples) < 5:
            ident = (
                document.get("eventId", document.get("id"))
                if isinstance(document, Mapping)
                else None
            )
            report.refused_examples.append(f"{ident}: {exc}"[:300])

    def _complete(self, opportunity: str, event: Event) -> None:
        """Complete the opportunity's oldest open automated activity, as recorded."""
        activities = self.flow.storage.activities
        for activity in activities.for_opportunity(opportunity):
            automated = activity.metadata is not None and activity.metadata.automation_rule_id
            if activity.completed_date is None and automated:
                recorded = event.payload.get("outcome")
                known = isinstance(recorded, str) and recorded in Outcome._value2member_map_
                outcome = Outcome(recorded) if known and isinstance(recorded, str) else None
                by = event.payload.get("completedBy", event.actor)
                try:
                    activities.complete(
                        activity.activity_id,
                        outcome=outcome,
                        completed_by=by if isinstance(by, str) else None,
                        completed_at=event.time,
                    )
                except (NotFoundError, InvalidInputError):
                    continue
                self.report.completions_matched += 1
                return

    # ------------------------------------------------------------------ the end

    def finish(self, until: datetime | None = None) -> SimulationReport:
        """Run what falls due up to ``until`` (default: the last event's time) and read the
        report from the stores and the recordings."""
        report, seen = self.report, self.seen
        if self.now is not None:
            with _quiet():
                self._advance(max(until, self.now) if until is not None else self.now)
        report.matched_per_rule = dict(seen.matched)
        report.max_cascade_depth = seen.max_depth
        report.cascades_stopped = seen.cascades_stopped
        self._read_activities()
        for notification in self.notifier.sent:
            _count(report.notifications_per_template, notification.template)
            rule_id = notification.data.get("ruleId")
            if isinstance(rule_id, str):
                _count(report.notifications_per_rule, rule_id)
        for message in self.messenger.sent:
            _count(report.messages, message.channel)
        builtin = HandlerRegistry.default()
        report.other_actions = {k: n for k, n in seen.runs.items() if k not in builtin}
        report.status_changes = self.opportunities.status_changes
        report.assignments = self.opportunities.assignments
        report.stale_detected = self.events.counts["opportunity.stale_detected"]
        scheduled = self.flow.storage.scheduled
        for action in _all(scheduled.list, ScheduledActionState.PENDING):
            if action.rule_id is not None and action.kind is not ActionKind.STEP:
                _count(report.pending_at_end, action.rule_id)
        for action in _all(scheduled.list, ScheduledActionState.PARKED):
            # The runtime's reason without the exception's class name, under the action type.
            error = action.last_error or "parked"
            text = error.partition(": ")[2] or error
            kind = action.action_type
            key = (text if kind in text else f"{kind}: {text}")[:200]
            if key not in report.parked and len(report.parked) >= MAX_REFUSAL_REASONS:
                key = OTHER_REASONS
            _count(report.parked, key)
        cells = [
            (-count, rep, day)
            for rep, days in report.workload.items()
            for day, count in days.items()
        ]
        if cells:
            count, rep, day = min(cells)  # the most; ties: the first rep, then the first day
            report.busiest = (rep, day, -count)
        self._read_sequences()
        return report

    def _read_sequences(self) -> None:
        """Per sequence (and split variant): the figures of its enrollments."""
        if not self.sequences:
            return
        store = self.flow.storage.enrollments
        assert store is not None
        mine: dict[str, list[Enrollment]] = {d.sequence_id: [] for d in self.sequences}
        for enrollment_id in dict.fromkeys(self.events.enrollments):
            enrollment = store.get(enrollment_id)
            mine.setdefault(enrollment.sequence_id, []).append(enrollment)
        sends: dict[str, list[tuple[str, str, int]]] = {}
        for (enrollment_id, step_id, action_type), runs in self.seen.sends.items():
            sends.setdefault(enrollment_id, []).append((step_id, action_type, runs))
        for definition in self.sequences:
            group = mine[definition.sequence_id]
            figures = SequenceFigures(
                sequence_id=definition.sequence_id,
                name=definition.name,
                version=definition.version,
            )
            _tally_enrollments(figures, group, sends)
            order = {step.id: index for index, step in enumerate(definition.steps)}
            figures.steps = dict(sorted(figures.steps.items(), key=lambda kv: order[kv[0]]))
            names = {
                step.id: [v.name for v in step.variants]
                for step in definition.steps
                if isinstance(step, SplitStep)
            }
            for step_id, variants in names.items():
                arms: dict[str, StepFigures] = {}
                for variant in variants:
                    took = [e for e in group if e.variants.get(step_id) == variant]
                    arms[variant] = _tally_enrollments(StepFigures(), took, sends)
                figures.splits[step_id] = arms
            if names:
                ab = sequence_report(definition, group)
                figures.verdicts = {split.step_id: split.verdict for split in ab.splits}
            self.report.sequences[definition.sequence_id] = figures

    def _read_activities(self) -> None:
        report = self.report
        zone = self.settings.timezone
        created: Counter[str] = Counter()
        cursor: str | None = None
        while True:
            page = self.flow.storage.activities.list(None, limit=1000, cursor=cursor)
            for activity in page.items:
                self._tally(activity, zone, created)
            cursor = page.next_cursor
            if cursor is None or not page.items:
                break
        for rule_id, runs in self.seen.created_runs.items():
            skipped = runs - created[rule_id]
            if skipped > 0:
                report.duplicates_skipped[rule_id] = skipped

    def _tally(self, activity: Activity, zone: tzinfo, created: Counter[str]) -> None:
        report = self.report
        rule_id = activity.metadata.automation_rule_id if activity.metadata else None
        if activity.completed_date is None:
            report.open_activities_at_end += 1
        if rule_id is None:
            return
        created[rule_id] += 1
        rep = activity.assigned_to if activity.assigned_to is not None else "(unassigned)"
        due = activity.due_date or activity.created_at
        day = due.astimezone(zone).date().isoformat() if due is not None else "(no date)"
        _count(report.activities_per_rule, rule_id)
        _count(report.activities_per_rep, rep)
        _count(report.activities_per_day, day)
        _count(report.workload.setdefault(rep, {}), day)


def _tally_enrollments(
    figures: StepFigures,
    enrollments: Sequence[Enrollment],
    sends: Mapping[str, list[tuple[str, str, int]]],
) -> StepFigures:
    """``figures`` with ``enrollments`` (and the action steps they ran) counted."""
    for enrollment in enrollments:
        figures.entries += 1
        state = enrollment.state
        if state is EnrollmentState.GOAL_REACHED:
            figures.goals_reached += 1
            _count(figures.goals, enrollment.goal or "(goal)")
        elif state is EnrollmentState.COMPLETED:
            figures.completed += 1
        elif state is EnrollmentState.ACTIVE:
            figures.active += 1
        else:
            figures.ended += 1
        for step_id, action_type, runs in sends.get(enrollment.enrollment_id, ()):
            _count(figures.sends, action_type, runs)
            _count(figures.steps, step_id, runs)
    figures.median_seconds_to_goal = _median_to_goal(enrollments)
    return figures


def _median_to_goal(enrollments: Sequence[Enrollment]) -> float | None:
    times = sorted(
        (e.ended_at - e.enrolled_at).total_seconds()
        for e in enrollments
        if e.state is EnrollmentState.GOAL_REACHED and e.ended_at is not None
    )
    if not times:
        return None
    middle = len(times) // 2
    return times[middle] if len(times) % 2 else (times[middle - 1] + times[middle]) / 2


def _count(table: dict[str, int], key: str, n: int = 1) -> None:
    table[key] = table.get(key, 0) + n


def _all(listing: Any, state: ScheduledActionState) -> list[Any]:
    """Every action in ``state`` (the store lists soonest due first, up to a limit)."""
    limit = 10_000
    while True:
        found: list[Any] = listing(state, limit=limit)
        if len(found) < limit:
            return found
        limit *= 4
