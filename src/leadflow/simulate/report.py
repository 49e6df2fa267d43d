"""What a backtest reports: :class:`SimulationReport`, its text and JSON forms."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

__all__ = ["SimulationReport", "refusal_reason"]

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
        for title, counts in tables:
            if not counts:
                continue
            lines.append(f"{title}:")
            for key, value in _top(counts, limit):
                lines.append(f"  {value:>8}  {key}")
            if len(counts) > limit:
                lines.append(f"  ... {len(counts) - limit} more")
        return "\n".join(lines) + "\n"
