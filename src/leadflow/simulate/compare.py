"""Two rule sets (and sequence versions) over one history, side by side: the difference rule by
rule, with examples, and sequence by sequence."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic.alias_generators import to_camel

from .report import SequenceFigures, SimulationReport, StepFigures, hours

__all__ = ["Comparison", "RuleDifference", "SequenceDifference"]

EXAMPLES = 3
"""Example events kept per rule difference."""


@dataclass(slots=True)
class RuleDifference:
    """One rule's figures under the current (``before``) and the other (``after``) rule set,
    and up to :data:`EXAMPLES` events it matched under one and not (as often) the other:
    ``(event id, times matched before, times matched after)``."""

    rule_id: str
    matched: tuple[int, int] = (0, 0)
    activities: tuple[int, int] = (0, 0)
    notifications: tuple[int, int] = (0, 0)
    pending_at_end: tuple[int, int] = (0, 0)
    examples: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        pairs = (self.matched, self.activities, self.notifications, self.pending_at_end)
        return any(a != b for a, b in pairs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ruleId": self.rule_id,
            "matched": list(self.matched),
            "activities": list(self.activities),
            "notifications": list(self.notifications),
            "pendingAtEnd": list(self.pending_at_end),
            "examples": [{"eventId": e, "before": a, "after": b} for e, a, b in self.examples],
        }


_FIGURES = ("entries", "sent", "goals_reached", "completed", "active", "ended")


@dataclass(frozen=True, slots=True)
class SequenceDifference:
    """One sequence's figures before and after (a side without it: ``None``): the versions
    side by side over the same events."""

    sequence_id: str
    before: SequenceFigures | None
    after: SequenceFigures | None

    def pair(self, name: str) -> tuple[Any, Any]:
        """``(before, after)`` of one figure (``entries``, ``sent``, ``goals_reached``,
        ``completed``, ``active``, ``ended``, ``median_seconds_to_goal``); 0 / None for a
        side without the sequence."""
        empty = StepFigures()
        return (
            getattr(self.before if self.before is not None else empty, name),
            getattr(self.after if self.after is not None else empty, name),
        )

    def steps(self) -> dict[str, tuple[int, int]]:
        """Action steps run per step id, before and after (either side's steps)."""
        left = self.before.steps if self.before is not None else {}
        right = self.after.steps if self.after is not None else {}
        return {k: (left.get(k, 0), right.get(k, 0)) for k in dict.fromkeys([*left, *right])}

    @property
    def changed(self) -> bool:
        pairs = [self.pair(name) for name in (*_FIGURES, "median_seconds_to_goal")]
        return any(a != b for a, b in pairs) or any(a != b for a, b in self.steps().values())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sequenceId": self.sequence_id}
        for name in (*_FIGURES, "median_seconds_to_goal"):
            key = "sends" if name == "sent" else name
            out[to_camel(key)] = list(self.pair(name))
        out["steps"] = {k: list(v) for k, v in self.steps().items()}
        return out

    def to_text(self) -> list[str]:
        versions = " -> ".join(
            f"v{f.version}" if f is not None else "(absent)" for f in (self.before, self.after)
        )
        parts = []
        for name in _FIGURES:
            a, b = self.pair(name)
            label = "sends" if name == "sent" else name.replace("_", " ")
            parts.append(f"{label} {a} -> {b}" + (f" ({b - a:+d})" if a != b else ""))
        a, b = self.pair("median_seconds_to_goal")
        parts.append(f"median time to goal {hours(a)} -> {hours(b)}")
        lines = [f"sequence {self.sequence_id!r} ({versions}): " + ", ".join(parts)]
        for step, (a, b) in self.steps().items():
            if a != b:
                lines.append(f"    step {step!r} ran {a} -> {b} time(s) ({b - a:+d})")
        return lines


def sequence_differences(
    before: SimulationReport, after: SimulationReport
) -> list[SequenceDifference]:
    """Every sequence of either report (sorted by id), before and after."""
    ids = sorted(before.sequences.keys() | after.sequences.keys())
    return [SequenceDifference(i, before.sequences.get(i), after.sequences.get(i)) for i in ids]


@dataclass(slots=True)
class Comparison:
    """``before`` and ``after`` reports and the rules whose figures differ (sorted by id);
    :attr:`sequences`: every sequence of either side, before and after."""

    before: SimulationReport
    after: SimulationReport
    rules: list[RuleDifference]

    @property
    def sequences(self) -> list[SequenceDifference]:
        return sequence_differences(self.before, self.after)

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "differences": [r.to_dict() for r in self.rules],
            "sequences": [s.to_dict() for s in self.sequences],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_text(self) -> str:
        b, a = self.before, self.after
        lines = [
            f"replayed {b.events} event(s); activities {b.activities} -> {a.activities}, "
            f"notifications {b.notifications} -> {a.notifications}, pending at the end "
            f"{sum(b.pending_at_end.values())} -> {sum(a.pending_at_end.values())}",
        ]
        if b.events_refused:  # the same history: the same events refused on both sides
            lines.append(f"{b.events_refused} event(s) refused, per reason:")
            for reason, count in sorted(b.refused_per_reason.items(), key=lambda kv: -kv[1]):
                lines.append(f"  {count:>8}  {reason}")
        if b.busiest != a.busiest:
            lines.append(f"busiest rep-day: {b.busiest} -> {a.busiest}")
        sequences = self.sequences
        for sequence in sequences:
            lines.extend(sequence.to_text())
        if sequences and not any(s.changed for s in sequences):
            lines.append("no sequence behaves differently")
        if not self.rules:
            lines.append("no rule behaves differently")
        for diff in self.rules:
            parts = []
            for name in ("matched", "activities", "notifications", "pending_at_end"):
                before, after = getattr(diff, name)
                if before != after:
                    parts.append(
                        f"{name.replace('_', ' ')} {before} -> {after} ({after - before:+d})"
                    )
            lines.append(f"rule {diff.rule_id!r}: " + ", ".join(parts))
            for event_id, before_n, after_n in diff.examples:
                lines.append(f"    e.g. event {event_id}: matched {before_n} -> {after_n} time(s)")
        return "\n".join(lines) + "\n"


def differences(
    before: SimulationReport,
    after: SimulationReport,
    examples: dict[str, list[tuple[str, int, int]]],
) -> list[RuleDifference]:
    """The rules (of either report) whose figures differ, with their examples (a sequence's
    activities and notifications, counted under its id, are the sequences' differences)."""
    ids: set[str] = set()
    for report in (before, after):
        for table in (
            report.matched_per_rule,
            report.activities_per_rule,
            report.notifications_per_rule,
            report.pending_at_end,
        ):
            ids.update(table)
    ids -= before.sequences.keys() | after.sequences.keys()
    out = []
    for rule_id in sorted(ids):
        diff = RuleDifference(
            rule_id,
            (before.matched_per_rule.get(rule_id, 0), after.matched_per_rule.get(rule_id, 0)),
            (before.activities_per_rule.get(rule_id, 0), after.activities_per_rule.get(rule_id, 0)),
            (
                before.notifications_per_rule.get(rule_id, 0),
                after.notifications_per_rule.get(rule_id, 0),
            ),
            (before.pending_at_end.get(rule_id, 0), after.pending_at_end.get(rule_id, 0)),
            examples.get(rule_id, []),
        )
        if diff.changed or diff.examples:
            out.append(diff)
    return out
