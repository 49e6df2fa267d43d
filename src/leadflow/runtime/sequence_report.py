"""A/B results and totals of a sequence: a pure function over its enrollments and definition
(:func:`sequence_report`), and :func:`report_for` that reads them from the stores.

**Per split step and variant**: ``enrolled`` (enrollments that took the variant:
``Enrollment.variants[step_id]``), ``goal_reached`` (those of them in state
``goal_reached``), the conversion rate (``goal_reached / enrolled``) and the median time to the
goal (``ended_at - enrolled_at`` of the goal-reached ones).

**The test**: the variant with the highest conversion rate (ties: the first in the split's
order) is compared with each other variant by a **pooled two-proportion z-test, two-sided**::

    p = (x1 + x2) / (n1 + n2)
    z = (x1/n1 - x2/n2) / sqrt(p (1 - p) (1/n1 + 1/n2))
    p-value = 2 (1 - Phi(|z|)) = erfc(|z| / sqrt 2)

(``p`` of 0 or 1, where the two arms cannot differ, gives ``z = 0`` and a p-value of 1). The
verdict is ``"<best> converts better, 95% confidence"`` when every arm has at least
``min_per_arm`` enrollments and the best one's p-value against every other arm is below
``1 - confidence``; otherwise ``"not enough data yet"``.

**Totals** count the enrollments of every version by state. :func:`report_for` reads a
sequence's enrollments page by page (10,000 a page), each kept as the few fields the report
needs, up to :data:`ENROLLMENT_SCAN_LIMIT` (the oldest); :attr:`SequenceReport.complete`
says whether the report saw them all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from ..ports import EnrollmentStore, SequenceRepository
from ..sequences import Enrollment, EnrollmentState, SequenceDefinition, SplitStep
from .sequence_programs import running_version

__all__ = [
    "ENROLLMENT_SCAN_LIMIT",
    "SequenceReport",
    "SequenceTotals",
    "SplitReport",
    "VariantReport",
    "report_for",
    "sequence_report",
    "two_proportion_z_test",
]

ENROLLMENT_SCAN_LIMIT = 1_000_000
"""The most enrollments :func:`report_for` reads (the oldest first)."""

_PAGE = 10_000  # the enrollment store's largest page


class _Reported(Protocol):
    """What the report reads of an enrollment."""

    @property
    def sequence_id(self) -> str: ...
    @property
    def state(self) -> EnrollmentState: ...
    @property
    def variants(self) -> Mapping[str, str]: ...
    @property
    def enrolled_at(self) -> datetime: ...
    @property
    def ended_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class _Seen:
    """An enrollment as the report keeps it (its history and context left behind)."""

    sequence_id: str
    state: EnrollmentState
    variants: Mapping[str, str]
    enrolled_at: datetime
    ended_at: datetime | None

    @classmethod
    def of(cls, enrollment: Enrollment) -> _Seen:
        return cls(
            enrollment.sequence_id,
            enrollment.state,
            enrollment.variants,
            enrollment.enrolled_at,
            enrollment.ended_at,
        )


class _Out(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True, frozen=True
    )


class VariantReport(_Out):
    """One arm of a split. ``p_value``/``z``: against the best arm (None for the best arm
    itself and for an arm without enrollments)."""

    name: str
    enrolled: int
    goal_reached: int
    conversion_rate: float | None
    median_seconds_to_goal: float | None
    z: float | None = None
    p_value: float | None = None


class SplitReport(_Out):
    """A split step's arms, the best one (None while no arm has enrollments) and the verdict."""

    step_id: str
    variants: list[VariantReport]
    best: str | None
    verdict: str


class SequenceTotals(_Out):
    """Enrollments of every version of the sequence, by state."""

    enrolled: int = 0
    active: int = 0
    completed: int = 0
    goal_reached: int = 0
    unenrolled: int = 0
    ended: int = 0


class SequenceReport(_Out):
    """What :func:`sequence_report` returns; ``complete`` is False when the enrollments read
    were capped (:data:`ENROLLMENT_SCAN_LIMIT`)."""

    sequence_id: str
    name: str
    version: int
    totals: SequenceTotals
    splits: list[SplitReport]
    min_per_arm: int
    confidence: float
    complete: bool = True


def two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """``(z, two-sided p-value)`` of the pooled two-proportion z-test of ``x1/n1`` against
    ``x2/n2`` (see the module docstring). :class:`ValueError` unless ``0 <= x <= n`` and
    ``n >= 1`` for both arms."""
    for x, n in ((x1, n1), (x2, n2)):
        if n < 1 or not 0 <= x <= n:
            raise ValueError(f"expected 0 <= successes <= trials and trials >= 1: {x}/{n}")
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return 0.0, 1.0
    z = (x1 / n1 - x2 / n2) / math.sqrt(variance)
    return z, math.erfc(abs(z) / math.sqrt(2))


def _median(values: Sequence[timedelta]) -> float | None:
    if not values:
        return None
    ordered = sorted(v.total_seconds() for v in values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _arms(step_id: str, names: list[str], enrollments: Sequence[_Reported]) -> list[VariantReport]:
    took: dict[str, list[_Reported]] = {name: [] for name in names}
    for enrollment in enrollments:
        name = enrollment.variants.get(step_id)
        if name is not None:
            took.setdefault(name, []).append(enrollment)
    arms = []
    for name, group in took.items():
        won = [e for e in group if e.state is EnrollmentState.GOAL_REACHED]
        times = [e.ended_at - e.enrolled_at for e in won if e.ended_at is not None]
        arms.append(
            VariantReport(
                name=name,
                enrolled=len(group),
                goal_reached=len(won),
                conversion_rate=len(won) / len(group) if group else None,
                median_seconds_to_goal=_median(times),
            )
        )
    return arms


def _split(
    step_id: str,
    names: list[str],
    enrollments: Sequence[_Reported],
    min_per_arm: int,
    confidence: float,
) -> SplitReport:
    arms = _arms(step_id, names, enrollments)
    rated = [a for a in arms if a.conversion_rate is not None]
    if not rated:
        return SplitReport(step_id=step_id, variants=arms, best=None, verdict=_NOT_YET)
    best = max(rated, key=lambda a: a.conversion_rate or 0.0)  # the first of equals
    alpha = 1 - confidence
    tested: list[VariantReport] = []
    significant = True
    for arm in arms:
        if arm is best or arm.enrolled == 0:
            tested.append(arm)
            significant = significant and arm is best
            continue
        z, p = two_proportion_z_test(best.goal_reached, best.enrolled, arm.goal_reached,
                                     arm.enrolled)  # fmt: skip
        tested.append(arm.model_copy(update={"z": z, "p_value": p}))
        significant = significant and p < alpha and z > 0
    enough = len(arms) >= 2 and all(a.enrolled >= min_per_arm for a in arms)
    verdict = (
        f"{best.name} converts better, {confidence:.0%} confidence"
        if enough and significant
        else _NOT_YET
    )
    return SplitReport(step_id=step_id, variants=tested, best=best.name, verdict=verdict)


_NOT_YET = "not enough data yet"


def _totals(enrollments: Iterable[_Reported]) -> SequenceTotals:
    counts = dict.fromkeys(EnrollmentState, 0)
    total = 0
    for enrollment in enrollments:
        counts[enrollment.state] += 1
        total += 1
    return SequenceTotals(
        enrolled=total,
        active=counts[EnrollmentState.ACTIVE],
        completed=counts[EnrollmentState.COMPLETED],
        goal_reached=counts[EnrollmentState.GOAL_REACHED],
        unenrolled=counts[EnrollmentState.UNENROLLED],
        ended=counts[EnrollmentState.ENDED],
    )


def sequence_report(
    definition: SequenceDefinition,
    enrollments: Iterable[Enrollment] | Iterable[_Reported],
    *,
    min_per_arm: int = 30,
    confidence: float = 0.95,
    complete: bool = True,
) -> SequenceReport:
    """The A/B results and totals of ``definition``'s sequence over ``enrollments`` (those of
    other sequences are ignored). Split steps are the definition's, in its order, each with
    its variants in its order, then any split step and variant only older versions had (seen
    in the enrollments' ``variants``). Pure: no I/O, no clock."""
    if isinstance(min_per_arm, bool) or not isinstance(min_per_arm, int) or min_per_arm < 1:
        raise ValueError("min_per_arm must be a positive integer")
    if not 0.5 <= confidence < 1:
        raise ValueError("confidence must be in [0.5, 1)")
    mine = [e for e in enrollments if e.sequence_id == definition.sequence_id]
    splits: dict[str, list[str]] = {
        step.id: [v.name for v in step.variants]
        for step in definition.steps
        if isinstance(step, SplitStep)
    }
    for enrollment in mine:
        for step_id in enrollment.variants:
            splits.setdefault(step_id, [])
    return SequenceReport(
        sequence_id=definition.sequence_id,
        name=definition.name,
        version=definition.version,
        totals=_totals(mine),
        splits=[_split(s, names, mine, min_per_arm, confidence) for s, names in splits.items()],
        min_per_arm=min_per_arm,
        confidence=confidence,
        complete=complete,
    )


def report_for(
    sequences: SequenceRepository,
    enrollments: EnrollmentStore,
    sequence_id: str,
    *,
    min_per_arm: int = 30,
    confidence: float = 0.95,
) -> SequenceReport:
    """:func:`sequence_report` of the sequence's running version (its latest that is not a
    draft) over its enrollments (at most :data:`ENROLLMENT_SCAN_LIMIT`, the oldest;
    ``complete`` says whether that was all). :class:`~leadflow.NotFoundError` for an unknown
    sequence."""
    definition = running_version(sequences, sequences.get(sequence_id))
    found: list[_Seen] = []
    after: str | None = None
    complete = False
    while len(found) < ENROLLMENT_SCAN_LIMIT:
        asked = min(_PAGE, ENROLLMENT_SCAN_LIMIT - len(found))
        page = enrollments.list(sequence_id=sequence_id, limit=asked, after=after)
        found.extend(_Seen.of(enrollment) for enrollment in page)
        if len(page) < asked:
            complete = True
            break
        after = page[-1].enrollment_id
    return sequence_report(
        definition, found, min_per_arm=min_per_arm, confidence=confidence, complete=complete
    )
