"""Automation effectiveness: what each rule and sequence (and each A/B branch of a sequence)
earned in a period, as a pure function over the facts of :mod:`leadflow.facts`, the counts of
the activities each automation created, and the sequences' enrollments. Defined in
:mod:`leadflow.runtime.analytics`'s docstring ("Automation effectiveness").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from ..facts import Completion, CompletionGroup, StatusChange, Touches, groups_of, touches_of
from ..sequences import Enrollment, EnrollmentState
from .analytics_figures import MANUAL, Figure, percentile, share

__all__ = [
    "NO_EFFECT_MAX_COMPLETION",
    "NO_EFFECT_MIN_ACTIVITIES",
    "AutomationRow",
    "BranchRow",
    "Created",
    "automation_of",
    "automation_rows",
    "first_wins",
]

NO_EFFECT_MIN_ACTIVITIES: Final = 10
"""An automation is judged for "no effect" once it created at least this many activities in
the period."""

NO_EFFECT_MAX_COMPLETION: Final = 0.2
"""... and is flagged when fewer than this share of them were completed."""

Kind = Literal["rule", "sequence", "manual", "unknown"]


@dataclass(frozen=True, slots=True)
class Created:
    """The activities an automation created in the period: how many, and how many of them
    are completed (at the time of asking)."""

    created: int
    completed: int


class BranchRow(Figure):
    """One variant of one split step of a sequence, over the enrollments that took it and
    were enrolled in the period."""

    step_id: str
    variant: str
    enrolled: int
    goal_reached: int
    conversion_rate: float | None
    median_time_to_goal_seconds: float | None
    completed: int
    won: int


class AutomationRow(Figure):
    """What one automation (a rule, a sequence, or none: ``"(manual)"``) earned."""

    automation_id: str
    kind: Kind
    created: int
    created_completed: int
    completion_share: float | None
    no_effect: bool
    completed: int
    outcomes: dict[str, int]
    touched: int
    converted: int
    wins: int
    win_rate: float | None
    enrolled: int
    goal_reached: int
    median_time_to_goal_seconds: float | None
    branches: list[BranchRow]


def first_wins(changes: Iterable[StatusChange], won_status: str) -> dict[str, datetime]:
    """Each opportunity's earliest change to ``won_status`` among ``changes``."""
    won_at: dict[str, datetime] = {}
    for change in changes:
        if change.to_status == won_status:
            known = won_at.get(change.opportunity_id)
            won_at[change.opportunity_id] = min(known or change.changed_at, change.changed_at)
    return won_at


def _to_goal(enrollments: Iterable[Enrollment]) -> list[float]:
    return [
        (e.ended_at - e.enrolled_at).total_seconds()
        for e in enrollments
        if e.state is EnrollmentState.GOAL_REACHED and e.ended_at is not None
    ]


def _branches(
    enrollments: Sequence[Enrollment],
    completions: Sequence[Completion],
    won_at: Mapping[str, datetime],
) -> list[BranchRow]:
    arms: dict[tuple[str, str], list[Enrollment]] = defaultdict(list)
    for enrollment in enrollments:
        for step_id, variant in enrollment.variants.items():
            arms[step_id, variant].append(enrollment)
    rows = []
    for (step_id, variant), arm in sorted(arms.items()):
        opportunities = {e.opportunity_id for e in arm}
        goal = _to_goal(arm)
        rows.append(
            BranchRow(
                step_id=step_id,
                variant=variant,
                enrolled=len(arm),
                goal_reached=len(goal),
                conversion_rate=share(len(goal), len(arm)),
                median_time_to_goal_seconds=percentile(goal, 50),
                completed=sum(c.opportunity_id in opportunities for c in completions),
                won=len(opportunities & won_at.keys()),
            )
        )
    return rows


def automation_of(
    completions: Sequence[Completion],
    changes: Iterable[StatusChange],
    won_status: str,
    *,
    created: Mapping[str, Created] | None = None,
    enrollments: Mapping[str, Sequence[Enrollment]] | None = None,
    kinds: Mapping[str, Kind] | None = None,
    only: Collection[str] | None = None,
) -> list[AutomationRow]:
    """Per automation id (of ``completions``, ``created`` and ``enrollments``; of ``only``
    when given), with last-touch wins from ``changes``. ``created``: the activities each
    created in the period; ``enrollments``: each sequence's enrollments enrolled in the
    period; ``kinds``: what each id is (else ``"manual"`` for ``"(manual)"``, ``"unknown"``)."""
    won_at = first_wins(changes, won_status)
    by_rule: dict[str, list[Completion]] = defaultdict(list)
    for completion in completions:
        by_rule[completion.rule_id or MANUAL].append(completion)
    return automation_rows(
        groups_of(completions, "rule_id"),
        touches_of(won_at, completions),
        won_at,
        created=created,
        enrollments=enrollments,
        enrolled_completions=by_rule,
        kinds=kinds,
        only=only,
    )


def automation_rows(
    groups: Iterable[CompletionGroup],
    touches: Iterable[Touches],
    won_at: Mapping[str, datetime],
    *,
    created: Mapping[str, Created] | None = None,
    enrollments: Mapping[str, Sequence[Enrollment]] | None = None,
    enrolled_completions: Mapping[str, Sequence[Completion]] | None = None,
    kinds: Mapping[str, Kind] | None = None,
    only: Collection[str] | None = None,
) -> list[AutomationRow]:
    """:func:`automation_of` from the period's completions summed up per automation
    (``groups``: per ``rule_id``, None for ``"(manual)"``), what the opportunities won in the
    period owe each (``touches``, :func:`~leadflow.facts.touches_of`; ``won_at``: each one's
    first win) and, per sequence with enrollments, its completions in the period on their
    opportunities (``enrolled_completions``, for the A/B branches)."""
    created = created or {}
    enrollments = enrollments or {}
    enrolled_completions = enrolled_completions or {}
    kinds = kinds or {}
    summed = {group.key or MANUAL: group for group in groups}
    owed = {touch.key or MANUAL: touch for touch in touches}
    ids = set(summed) | {a for a, n in created.items() if n.created} | set(enrollments)
    if only is not None:
        ids &= set(only)
    empty = CompletionGroup(None, 0, 0, 0, None)
    nothing = Touches(None, 0, 0)
    rows = []
    for automation in sorted(ids):
        group = summed.get(automation, empty)
        touch = owed.get(automation, nothing)
        made = created.get(automation, Created(0, 0))
        enrolled = enrollments.get(automation, ())
        goal = _to_goal(enrolled)
        completion_share = share(made.completed, made.created)
        rows.append(
            AutomationRow(
                automation_id=automation,
                kind=kinds.get(automation, "manual" if automation == MANUAL else "unknown"),
                created=made.created,
                created_completed=made.completed,
                completion_share=completion_share,
                no_effect=made.created >= NO_EFFECT_MIN_ACTIVITIES
                and completion_share is not None
                and completion_share < NO_EFFECT_MAX_COMPLETION,
                completed=group.completed,
                outcomes=dict(sorted(group.outcomes.items())),
                touched=group.opportunities,
                converted=touch.converted,
                wins=touch.wins,
                win_rate=share(touch.wins, group.opportunities),
                enrolled=len(enrolled),
                goal_reached=len(goal),
                median_time_to_goal_seconds=percentile(goal, 50),
                branches=_branches(enrolled, enrolled_completions.get(automation, ()), won_at),
            )
        )
    return rows
