"""The backtest's model of the runtime: the rule engine for decisions, plain dicts for state.

It replays what :class:`~leadflow.LeadFlow` does with the in-memory stores, on a simulated
clock, without storing anything: eager actions (``create_activity``) and actions due at once run
when the event is handled, later ones when their time comes (before the next recorded event at
or after it); ``update_status`` feeds ``opportunity.status_changed`` back into the rules (at most
``max_cascade_depth`` levels); an automated activity is skipped while the same rule's previous
one for the opportunity is open (unless the rule allows duplicates); the stale-opportunity job
runs every ``stale_every`` and feeds ``opportunity.stale_detected`` for opportunities without
activity for ``stale_after``, once per stale period.

Recorded facts come from the history: an event's ``assignedTo`` / ``ownerId`` makes that user
the opportunity's owner (``lead_owner``), its ``status`` / ``newStatus`` the opportunity's
status, and a recorded ``activity.completed`` for an opportunity completes its oldest open
automated activity (completions as recorded) before it is fed to the rules. Actions that would
be parked (no ``opportunityId``, no handler, nobody to assign) are counted by reason. Host
handlers are not run: their actions are counted under ``other_actions``.

Deterministic: the same rules and history give the same report (no wall clock, no random ids).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

from pydantic import ValidationError

from ..errors import InvalidInputError, LeadflowError
from ..models import Action, FollowUpRule
from ..rules import PlannedAction, RuleEngine
from ..rules.intake import read_event
from .report import SimulationReport

MAX_REFUSAL_REASONS: Final = 20
"""Distinct reasons a report counts refused events under; later ones go to OTHER_REASONS."""
OTHER_REASONS: Final = "(other reasons)"


def refusal_reason(exc: Exception) -> str:
    """Why an event was refused, in one line without the event's own values, so that events
    refused for one reason count together: a pydantic error names its first field."""
    if isinstance(exc, ValidationError):
        problems = exc.errors()
        first = problems[0]
        where = ".".join(str(part) for part in first["loc"]) or exc.title
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return f"{where}: {first['msg']}{more}"[:200]
    return " ".join(str(exc).split())[:200] or type(exc).__name__


__all__ = ["SimulationSettings", "Simulator"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    """``reps``: the team (for ``round_robin`` / ``least_loaded``); ``timezone``: the zone of
    the report's days; ``due_grace``, ``max_cascade_depth``: as in ``FlowSettings``;
    ``stale_after`` / ``stale_every``: the stale job (``stale_every=None`` switches it off)."""

    reps: tuple[str, ...] = ()
    timezone: tzinfo = UTC
    due_grace: timedelta = timedelta(0)
    max_cascade_depth: int = 5
    stale_after: timedelta = timedelta(days=7)
    stale_every: timedelta | None = timedelta(hours=6)


@dataclass(slots=True)
class _Activity:
    number: int
    rule_id: str
    opportunity: str
    assignee: str | None
    open_key: tuple[str, str] | None
    done: bool = False


_Pending = tuple[datetime, int, PlannedAction, Mapping[str, Any], int]


def _count(table: dict[str, int], key: str, n: int = 1) -> None:
    table[key] = table.get(key, 0) + n


class Simulator:
    """Feeds events one by one (:meth:`feed`) and reports (:meth:`finish`). See the module
    docstring for what is modelled."""

    def __init__(self, engine: RuleEngine, handlers: Any, settings: SimulationSettings) -> None:
        self.engine = engine
        self.handlers = handlers
        self.settings = settings
        self.report = SimulationReport()
        self.now: datetime | None = None
        self._pending: list[_Pending] = []
        self._seq = 0
        self._owners: dict[str, str] = {}
        self._status: dict[str, str] = {}
        self._open: dict[tuple[str, str], _Activity] = {}
        self._open_by_opp: dict[str, deque[_Activity]] = {}
        self._open_per_rep: dict[str, int] = {r: 0 for r in settings.reps}
        self._turn = 0
        self._params: dict[tuple[str, int], Any] = {}
        self._last_activity: dict[str, datetime] = {}
        self._stale_heap: list[tuple[datetime, str]] = []
        self._stale_done: set[tuple[str, datetime]] = set()
        self._next_tick: datetime | None = None
        self._day_cache: dict[datetime, str] = {}
        self.matched_now: dict[str, int] = {}
        """Rules matched for the last event fed (cascades included): for comparisons."""

    # ------------------------------------------------------------------ time

    def _tick_after(self, moment: datetime) -> datetime | None:
        every = self.settings.stale_every
        if every is None:
            return None
        steps = (moment - _EPOCH) // every + 1
        return _EPOCH + every * steps

    def _advance(self, until: datetime) -> None:
        if self._next_tick is None and self.now is not None:
            self._next_tick = self._tick_after(self.now)
        while True:
            due = self._pending[0][0] if self._pending else None
            tick = self._next_tick
            if tick is not None and tick <= until and (due is None or tick < due):
                self.now = tick
                self._detect_stale(tick)
                self._next_tick = self._tick_after(tick)
                continue
            if due is None or due > until:
                break
            at, _, planned, payload, depth = heapq.heappop(self._pending)
            self.now = max(at, self.now) if self.now is not None else at
            self._run(planned, payload, depth, at)
        self.now = until

    def _detect_stale(self, at: datetime) -> None:
        after = self.settings.stale_after
        heap = self._stale_heap
        while heap and heap[0][0] + after <= at:
            last, opportunity = heapq.heappop(heap)
            if self._last_activity.get(opportunity) != last:
                continue  # a newer activity started a new period
            if (opportunity, last) in self._stale_done:
                continue
            self._stale_done.add((opportunity, last))
            self.report.stale_detected += 1
            payload = {
                "opportunityId": opportunity,
                "lastActivityAt": last.isoformat(),
                "staleSince": (last + after).isoformat(),
                "daysSinceLastActivity": (at - last) // timedelta(days=1),
            }
            event = {
                "id": f"stale:{opportunity}:{int(last.timestamp())}",
                "type": "opportunity.stale_detected",
                "time": at,
                "payload": payload,
            }
            self._handle(event, payload, at, 0)

    def _touch(self, opportunity: str, at: datetime) -> None:
        if self.settings.stale_every is None:
            return
        self._last_activity[opportunity] = at
        heapq.heappush(self._stale_heap, (at, opportunity))

    # ------------------------------------------------------------------ events

    def feed(self, document: Mapping[str, Any]) -> None:
        """Replay one recorded event (an event document). Events must come in time order;
        one that does not, or that is not a valid event, is counted as refused."""
        report = self.report
        self.matched_now = {}
        if isinstance(document, Mapping) and "eventId" not in document and "id" not in document:
            document = {**document, "id": f"event-{report.events + report.events_refused + 1}"}
        try:
            fields = read_event(document)
        except (ValidationError, LeadflowError, ValueError, TypeError) as exc:
            self._refuse(document, exc)
            return
        kind, time, payload = fields.type, fields.time, fields.payload
        if self.now is not None and time < self.now:
            self._refuse(document, InvalidInputError("out of time order", field="time"))
            return
        if report.start is None:
            report.start = time.isoformat()
        report.end = time.isoformat()
        report.events += 1
        self._advance(time)
        opportunity = payload.get("opportunityId", payload.get("opportunity_id"))
        if isinstance(opportunity, str):
            owner = payload.get("assignedTo", payload.get("ownerId"))
            if isinstance(owner, str) and kind.startswith("opportunity."):
                self._owners[opportunity] = owner
            status = payload.get("newStatus", payload.get("status"))
            if isinstance(status, str) and kind.startswith("opportunity."):
                self._status[opportunity] = status
            if kind == "activity.completed":
                self._complete(opportunity, time)
        self._handle(fields.event(), payload, time, 0)

    def _refuse(self, document: Mapping[str, Any], exc: Exception) -> None:
        self.report.events_refused += 1
        reasons = self.report.refused_per_reason
        reason = refusal_reason(exc)
        if reason not in reasons and len(reasons) >= MAX_REFUSAL_REASONS:
            reason = OTHER_REASONS
        reasons[reason] = reasons.get(reason, 0) + 1
        if len(self.report.refused_examples) < 5:
            ident = (
                document.get("eventId", document.get("id"))
                if isinstance(document, Mapping)
                else None
            )
            self.report.refused_examples.append(f"{ident}: {exc}"[:300])

    def _complete(self, opportunity: str, at: datetime) -> None:
        queue = self._open_by_opp.get(opportunity)
        self._touch(opportunity, at)
        while queue:
            activity = queue.popleft()
            if activity.done:
                continue
            activity.done = True
            self.report.completions_matched += 1
            if activity.open_key is not None:
                self._open.pop(activity.open_key, None)
            if activity.assignee in self._open_per_rep:
                self._open_per_rep[activity.assignee] -= 1
            return

    def _handle(self, event: Any, payload: Mapping[str, Any], now: datetime, depth: int) -> None:
        report = self.report
        report.max_cascade_depth = max(report.max_cascade_depth, depth)
        try:
            evaluation = self.engine.evaluate(event)
        except (InvalidInputError, ValidationError) as exc:
            self._refuse(event if isinstance(event, Mapping) else {}, exc)
            return
        matched_now = self.matched_now
        for rule in evaluation.matched_rules:
            _count(report.matched_per_rule, rule.rule_id)
            _count(matched_now, rule.rule_id)
        for planned in evaluation.planned:
            spec = self.handlers.get(planned.action.action_type)
            if spec is not None and (spec.eager or planned.due_at <= now):
                self._run(planned, payload, depth, now)
            else:
                self._seq += 1
                heapq.heappush(self._pending, (planned.due_at, self._seq, planned, payload, depth))

    # ------------------------------------------------------------------ actions

    def _settings(self, planned: PlannedAction, spec: Any) -> Any:
        key = (planned.rule.rule_id, planned.action_index)
        params = self._params.get(key)
        if params is None:
            params = self._params[key] = spec.parse(planned.action)
        return params

    def _run(
        self, planned: PlannedAction, payload: Mapping[str, Any], depth: int, now: datetime
    ) -> None:
        report = self.report
        action: Action = planned.action
        kind = action.action_type
        spec = self.handlers.get(kind)
        if spec is None:
            _count(report.parked, f"no handler for {kind}")
            return
        opportunity = payload.get("opportunityId", payload.get("opportunity_id"))
        if not isinstance(opportunity, str):
            opportunity = None
        rule = planned.rule
        if kind == "create_activity":
            if opportunity is None:
                _count(report.parked, "create_activity: the event has no opportunityId")
                return
            self._create(rule, self._settings(planned, spec), opportunity, planned.due_at, now)
        elif kind == "send_notification":
            template = self._settings(planned, spec).template
            _count(report.notifications_per_template, template)
            _count(report.notifications_per_rule, rule.rule_id)
        elif kind == "update_status":
            if opportunity is None:
                _count(report.parked, "update_status: the event has no opportunityId")
                return
            self._update_status(planned, payload, opportunity, depth, now, spec)
        elif kind == "assign_sales_rep":
            if opportunity is None:
                _count(report.parked, "assign_sales_rep: the event has no opportunityId")
                return
            rep = self._assignee(self._settings(planned, spec).assign_to, opportunity)
            if rep is None:
                _count(report.parked, "assign_sales_rep: nobody to assign")
                return
            self._owners[opportunity] = rep
            report.assignments += 1
        elif kind in ("send_email", "send_sms"):
            if opportunity is None:
                _count(report.parked, f"{kind}: the event has no opportunityId")
                return
            _count(report.messages, kind.removeprefix("send_"))
        else:
            _count(report.other_actions, kind)

    def _assignee(self, strategy: str | None, opportunity: str) -> str | None:
        if strategy is None:
            return None
        if strategy == "lead_owner":
            return self._owners.get(opportunity)
        reps: Sequence[str] = self.settings.reps
        if strategy == "round_robin":
            if not reps:
                return None
            self._turn += 1
            return reps[(self._turn - 1) % len(reps)]
        if strategy == "least_loaded":
            if not reps:
                return None
            loads = self._open_per_rep
            return min(reps, key=lambda rep: (loads.get(rep, 0), reps.index(rep)))
        return strategy

    def _create(
        self, rule: FollowUpRule, params: Any, opportunity: str, planned_at: datetime,
        now: datetime,
    ) -> None:  # fmt: skip
        report = self.report
        key = None if rule.allow_duplicates else (opportunity, rule.rule_id)
        if key is not None and key in self._open:
            _count(report.duplicates_skipped, rule.rule_id)
            return
        if params.assign_to in ("round_robin", "least_loaded") and not self.settings.reps:
            _count(report.parked, "create_activity: no sales reps to assign to")
            return
        assignee = self._assignee(params.assign_to, opportunity)
        grace = (
            timedelta(hours=params.due_within_hours)
            if params.due_within_hours is not None
            else self.settings.due_grace
        )
        due = planned_at + grace
        self._seq += 1
        activity = _Activity(self._seq, rule.rule_id, opportunity, assignee, key)
        if key is not None:
            self._open[key] = activity
        self._open_by_opp.setdefault(opportunity, deque()).append(activity)
        rep = assignee if assignee is not None else "(unassigned)"
        if assignee in self._open_per_rep:
            self._open_per_rep[assignee] += 1
        day = self._day(due)
        _count(report.activities_per_rule, rule.rule_id)
        _count(report.activities_per_rep, rep)
        _count(report.activities_per_day, day)
        _count(report.workload.setdefault(rep, {}), day)
        self._touch(opportunity, now)

    def _day(self, moment: datetime) -> str:
        hour = moment.replace(minute=0, second=0, microsecond=0)
        day = self._day_cache.get(hour)
        if day is None:
            if len(self._day_cache) > 100_000:
                self._day_cache.clear()
            day = self._day_cache[hour] = (
                moment.astimezone(self.settings.timezone).date().isoformat()
            )
        return day

    def _update_status(
        self, planned: PlannedAction, payload: Mapping[str, Any], opportunity: str, depth: int,
        now: datetime, spec: Any,
    ) -> None:  # fmt: skip
        report = self.report
        status = self._settings(planned, spec).status
        previous = self._status.get(opportunity)
        self._status[opportunity] = status
        if previous == status:
            return
        report.status_changes += 1
        if depth + 1 > self.settings.max_cascade_depth:
            report.cascades_stopped += 1
            return
        self._seq += 1
        cascaded = {
            **payload,
            "opportunityId": opportunity,
            "oldStatus": previous,
            "newStatus": status,
        }
        event = {
            "id": f"cascade-{self._seq}",
            "type": "opportunity.status_changed",
            "time": now,
            "payload": cascaded,
        }
        self._handle(event, cascaded, now, depth + 1)

    # ------------------------------------------------------------------ the end

    def finish(self, until: datetime | None = None) -> SimulationReport:
        """Run what falls due up to ``until`` (default: the last event's time) and complete
        the report: pending actions per rule, open activities, the busiest rep-day."""
        report = self.report
        if self.now is not None:
            self._advance(max(until, self.now) if until is not None else self.now)
        for _, _, planned, _, _ in self._pending:
            _count(report.pending_at_end, planned.rule.rule_id)
        report.open_activities_at_end = sum(
            1 for queue in self._open_by_opp.values() for a in queue if not a.done
        )
        cells = [
            (-count, rep, day)
            for rep, days in report.workload.items()
            for day, count in days.items()
        ]
        if cells:
            count, rep, day = min(cells)  # the most; ties: the first rep, then the first day
            report.busiest = (rep, day, -count)
        return report
