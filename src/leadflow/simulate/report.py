"""What a backtest reports: :class:`SimulationReport`, its text and JSON forms."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

__all__ = ["SequenceFigures", "SimulationReport", "StepFigures", "refusal_reason"]

MAX_REFUSAL_REASONS: Final = 20
"""Distinct reasons a report counts refused events (or parked actions) under; later ones go to
OTHER_REASONS."""
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


def hours(seconds: float | None) -> str:
    """A duration for people: ``26.5 h``, ``3.2 d`` from 72 hours on, ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds >= 72 * 3600:
        return f"{seconds / 86400:.1f} d"
    return f"{seconds / 3600:.1f} h"


@dataclass(slots=True)
class StepFigures:
    """What a backtest's enrollments did: of one sequence, or of one split variant.

    ``entries``: enrollments made; ``sends``: action steps run, per action type (a step that
    failed and was retried counts once, when it ran; one skipped because the enrollment had
    ended counts nothing); ``steps``: action steps run, per step id; ``goals_reached``,
    ``completed`` (past the last step or an exit), ``active`` (still in the sequence at the
    end), ``ended`` (unenrolled or ended by the system: a re-entry); ``goals``: goal reached,
    per goal name; ``median_seconds_to_goal``: from entry to the goal, of the enrollments that
    reached one (None: none did)."""

    entries: int = 0
    sends: dict[str, int] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    goals_reached: int = 0
    completed: int = 0
    active: int = 0
    ended: int = 0
    goals: dict[str, int] = field(default_factory=dict)
    median_seconds_to_goal: float | None = None

    @property
    def sent(self) -> int:
        return sum(self.sends.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "sends": dict(sorted(self.sends.items())),
            "steps": dict(sorted(self.steps.items())),
            "goalsReached": self.goals_reached,
            "completed": self.completed,
            "active": self.active,
            "ended": self.ended,
            "goals": dict(sorted(self.goals.items())),
            "medianSecondsToGoal": self.median_seconds_to_goal,
        }

    def summary(self) -> str:
        """One line: entries, sends by type, goals, completed, active, ended, time to goal."""
        sends = ", ".join(f"{k} {v}" for k, v in sorted(self.sends.items())) or "none"
        return (
            f"{self.entries} entered; sends {self.sent} ({sends}); goals reached "
            f"{self.goals_reached}, completed {self.completed}, active at the end "
            f"{self.active}, ended {self.ended}; median time to goal "
            f"{hours(self.median_seconds_to_goal)}"
        )


@dataclass(slots=True)
class SequenceFigures(StepFigures):
    """:class:`StepFigures` of one sequence in a backtest (every enrollment of the version
    loaded), with ``splits``: per split step, per variant (in the split's order), the figures
    of the enrollments that took it, and ``verdicts``: per split step, the A/B verdict of
    :func:`~leadflow.runtime.sequence_report.sequence_report` (a pooled two-proportion z-test
    of reaching a goal, 95%, at least 30 per arm)."""

    sequence_id: str = ""
    name: str = ""
    version: int = 1
    splits: dict[str, dict[str, StepFigures]] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {"sequenceId": self.sequence_id, "name": self.name, "version": self.version}
        data.update(StepFigures.to_dict(self))
        data["splits"] = {
            step: {"variants": {name: arm.to_dict() for name, arm in arms.items()},
                   "verdict": self.verdicts.get(step)}
            for step, arms in self.splits.items()
        }  # fmt: skip
        return data

    def to_text(self) -> list[str]:
        lines = [f"sequence {self.sequence_id!r} ({self.name}, v{self.version}): {self.summary()}"]
        if self.steps:
            steps = ", ".join(f"{k} {v}" for k, v in self.steps.items())
            lines.append(f"  action steps run: {steps}")
        for step, arms in self.splits.items():
            lines.append(f"  split {step!r}: {self.verdicts.get(step, '')}")
            for variant, arm in arms.items():
                lines.append(f"    {variant}: {arm.summary()}")
        return lines


def _top(counts: dict[str, int], limit: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


@dataclass(slots=True)
class SimulationReport:
    """What replaying a history through a rule set would have done.

    Counts are plain dicts (keys sorted in :meth:`to_dict`). ``refused_per_reason`` counts the
    events that could not be replayed by why (at most 20 reasons, then ``"(other reasons)"``);
    ``refused_examples`` keeps the first five with their event ids. ``workload`` is activities
    per rep per day (the day each activity is due, in the report's time zone;
    ``"(unassigned)"`` for no assignee). ``busiest`` is ``(rep, day, count)`` of the busiest
    rep-day, or None.
    """

    start: str | None = None
    end: str | None = None
    events: int = 0
    events_refused: int = 0
    refused_per_reason: dict[str, int] = field(default_factory=dict)
    refused_examples: list[str] = field(default_factory=list)
    matched_per_rule: dict[str, int] = field(default_factory=dict)
    activities_per_rule: dict[str, int] = field(default_factory=dict)
    activities_per_rep: dict[str, int] = field(default_factory=dict)
    activities_per_day: dict[str, int] = field(default_factory=dict)
    workload: dict[str, dict[str, int]] = field(default_factory=dict)
    duplicates_skipped: dict[str, int] = field(default_factory=dict)
    notifications_per_template: dict[str, int] = field(default_factory=dict)
    notifications_per_rule: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    other_actions: dict[str, int] = field(default_factory=dict)
    status_changes: int = 0
    assignments: int = 0
    stale_detected: int = 0
    completions_matched: int = 0
    pending_at_end: dict[str, int] = field(default_factory=dict)
    parked: dict[str, int] = field(default_factory=dict)
    open_activities_at_end: int = 0
    max_cascade_depth: int = 0
    cascades_stopped: int = 0
    busiest: tuple[str, str, int] | None = None
    sequences: dict[str, SequenceFigures] = field(default_factory=dict)

    @property
    def activities(self) -> int:
        return sum(self.activities_per_rule.values())

    @property
    def notifications(self) -> int:
        return sum(self.notifications_per_template.values())

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data: camelCase keys like every document leadflow writes,
        every mapping with sorted keys."""

        def ordered(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: ordered(value[k]) for k in sorted(value)}
            return value

        data = {to_camel(name): ordered(getattr(self, name)) for name in self.__slots__}
        data["busiest"] = (
            None
            if self.busiest is None
            else {"rep": self.busiest[0], "day": self.busiest[1], "count": self.busiest[2]}
        )
        data["activities"] = self.activities
        data["notifications"] = self.notifications
        data["sequences"] = {k: self.sequences[k].to_dict() for k in sorted(self.sequences)}
        return data

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_text(self, *, limit: int = 10) -> str:
        """A readable summary (the ``limit`` largest entries of each table)."""
        lines = [
            f"replayed {self.events} event(s) from {self.start} to {self.end}"
            + (f" ({self.events_refused} refused)" if self.events_refused else ""),
            f"activities created: {self.activities}; notifications: {self.notifications}; "
            f"status changes: {self.status_changes}; stale detections: {self.stale_detected}",
            f"pending at the end: {sum(self.pending_at_end.values())}; parked: "
            f"{sum(self.parked.values())}; open activities at the end: "
            f"{self.open_activities_at_end}",
            f"cascade depth reached: {self.max_cascade_depth}"
            + (f" ({self.cascades_stopped} cascade(s) stopped)" if self.cascades_stopped else ""),
        ]
        if self.busiest is not None:
            rep, day, count = self.busiest
            lines.append(f"busiest rep-day: {rep} on {day} with {count} activities due")
        tables = [
            ("events refused, per reason", self.refused_per_reason),
            ("rules matched", self.matched_per_rule),
            ("activities per rule", self.activities_per_rule),
            ("activities per rep", self.activities_per_rep),
            ("activities per day", self.activities_per_day),
            ("duplicates skipped (an activity of the rule still open)", self.duplicates_skipped),
            ("notifications per template", self.notifications_per_template),
            ("messages", self.messages),
            ("pending at the end, per rule", self.pending_at_end),
            ("parked, per reason", self.parked),
        ]
        if self.sequences:
            lines.append("sequences:")
            for figures in self.sequences.values():
                lines.extend(f"  {line}" for line in figures.to_text())
        for title, counts in tables:
            if not counts:
                continue
            lines.append(f"{title}:")
            for key, value in _top(counts, limit):
                lines.append(f"  {value:>8}  {key}")
            if len(counts) > limit:
                lines.append(f"  ... {len(counts) - limit} more")
        return "\n".join(lines) + "\n"
