"""The A/B report (``leadflow.runtime.sequence_report``) against data computed by hand: counts,
conversion rates, median time to goal, the pooled two-sided two-proportion z-test, verdicts,
totals by state."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from leadflow.runtime.sequence_report import sequence_report, two_proportion_z_test
from leadflow.sequences import Enrollment, EnrollmentState, SequenceDefinition

T = datetime(2026, 1, 5, 9, tzinfo=UTC)

SPLIT = SequenceDefinition.model_validate(
    {
        "sequenceId": "ab",
        "name": "A/B",
        "steps": [
            {"id": "split", "kind": "split", "variants": [
                {"name": "A", "weight": 1, "goto": "a"}, {"name": "B", "weight": 1, "goto": "b"}]},
            {"id": "a", "kind": "wait", "delay": 1},
            {"id": "b", "kind": "wait", "delay": 2},
        ],
    }
)  # fmt: skip

_counter = iter(range(10**6))


def enrollment(
    variant: str | None,
    state: EnrollmentState = EnrollmentState.ACTIVE,
    *,
    hours: float | None = None,
    sequence_id: str = "ab",
) -> Enrollment:
    n = next(_counter)
    ended = T + timedelta(hours=hours) if hours is not None else None
    if state is not EnrollmentState.ACTIVE and ended is None:
        ended = T + timedelta(days=1)
    return Enrollment(
        enrollment_id=f"e{n}",
        sequence_id=sequence_id,
        sequence_version=1,
        opportunity_id=f"o{n}",
        state=state,
        variants={"split": variant} if variant else {},
        enrolled_at=T,
        ended_at=ended,
    )


def arm(
    variant: str, enrolled: int, won: int, hours: list[float] | None = None
) -> list[Enrollment]:
    hours = hours or [1.0] * won
    out = [enrollment(variant, EnrollmentState.GOAL_REACHED, hours=h) for h in hours[:won]]
    out += [enrollment(variant, EnrollmentState.COMPLETED) for _ in range(enrolled - won)]
    return out


def test_the_z_test_by_hand() -> None:
    # A: 2 of 10, B: 6 of 10. Pooled p = 8/20 = 0.4; standard error
    # sqrt(0.4 * 0.6 * (1/10 + 1/10)) = sqrt(0.048) = 0.2190890; z = (0.6 - 0.2) / 0.2190890
    # = 1.8257419; two-sided p = 2 (1 - Phi(1.8257)) = 2 (1 - 0.9660554) = 0.0678892.
    z, p = two_proportion_z_test(6, 10, 2, 10)
    assert z == pytest.approx(0.4 / math.sqrt(0.048))
    assert z == pytest.approx(1.8257419, abs=1e-6)
    assert p == pytest.approx(0.0678892, abs=1e-6)
    # Symmetric, and no difference at all is p = 1.
    assert two_proportion_z_test(2, 10, 6, 10) == pytest.approx((-z, p))
    assert two_proportion_z_test(3, 10, 3, 10) == (0.0, 1.0)
    assert two_proportion_z_test(0, 5, 0, 7) == (0.0, 1.0)  # pooled 0: nothing to compare
    assert two_proportion_z_test(5, 5, 7, 7) == (0.0, 1.0)  # pooled 1
    with pytest.raises(ValueError):
        two_proportion_z_test(3, 2, 1, 1)
    with pytest.raises(ValueError):
        two_proportion_z_test(0, 0, 1, 1)


def test_a_small_split_is_not_enough_data_yet() -> None:
    data = arm("A", 10, 2) + arm("B", 10, 6, [1, 3, 2, 10, 4, 5])
    report = sequence_report(SPLIT, data)
    [split] = report.splits
    a, b = split.variants
    assert (a.name, a.enrolled, a.goal_reached, a.conversion_rate) == ("A", 10, 2, 0.2)
    assert (b.name, b.enrolled, b.goal_reached, b.conversion_rate) == ("B", 10, 6, 0.6)
    assert split.best == "B" and b.p_value is None and b.z is None
    assert a.p_value == pytest.approx(0.0678892, abs=1e-6)
    assert a.z == pytest.approx(1.8257419, abs=1e-6)  # the best arm against this one
    # Median of 1, 2, 3, 4, 5, 10 hours: (3 + 4) / 2 = 3.5 hours.
    assert b.median_seconds_to_goal == 3.5 * 3600
    assert a.median_seconds_to_goal == 3600
    assert split.verdict == "not enough data yet"  # fewer than 30 per arm, and p >= 0.05
    # Even with a low bar per arm, p = 0.068 is not 95% confidence.
    assert sequence_report(SPLIT, data, min_per_arm=5).splits[0].verdict == "not enough data yet"


def test_a_clear_winner_at_95_percent() -> None:
    # A: 10 of 100, B: 25 of 100. Pooled p = 35/200 = 0.175; standard error
    # sqrt(0.175 * 0.825 * 0.02) = 0.0537355; z = 0.15 / 0.0537355 = 2.7914526;
    # two-sided p = 0.0052472.
    data = arm("A", 100, 10) + arm("B", 100, 25)
    [split] = sequence_report(SPLIT, data).splits
    assert split.best == "B"
    assert split.variants[0].p_value == pytest.approx(0.0052472, abs=1e-6)
    assert split.verdict == "B converts better, 95% confidence"
    # At 99.9% confidence it is not settled yet.
    strict = sequence_report(SPLIT, data, confidence=0.999).splits[0]
    assert strict.verdict == "not enough data yet"


def test_a_close_race_with_plenty_of_data_is_not_a_verdict() -> None:
    data = arm("A", 100, 20) + arm("B", 100, 25)  # p = 0.397
    [split] = sequence_report(SPLIT, data).splits
    assert split.best == "B"
    assert split.variants[0].p_value == pytest.approx(0.3971805, abs=1e-6)
    assert split.verdict == "not enough data yet"


def test_an_arm_without_enrollments_and_an_empty_split() -> None:
    [split] = sequence_report(SPLIT, []).splits
    assert split.best is None and split.verdict == "not enough data yet"
    assert [(v.name, v.enrolled, v.conversion_rate) for v in split.variants] == [
        ("A", 0, None),
        ("B", 0, None),
    ]
    [split] = sequence_report(SPLIT, arm("A", 40, 10)).splits
    assert split.best == "A" and split.verdict == "not enough data yet"
    assert split.variants[1].p_value is None


def test_totals_by_state_and_other_sequences_ignored() -> None:
    data = [
        enrollment("A"),
        enrollment("B"),
        enrollment("A", EnrollmentState.COMPLETED),
        enrollment("B", EnrollmentState.GOAL_REACHED, hours=2),
        enrollment(None, EnrollmentState.UNENROLLED),
        enrollment(None, EnrollmentState.ENDED),
        enrollment("A", EnrollmentState.GOAL_REACHED, sequence_id="other"),
    ]
    report = sequence_report(SPLIT, data)
    totals = report.totals
    assert (totals.enrolled, totals.active, totals.completed, totals.goal_reached,
            totals.unenrolled, totals.ended) == (6, 2, 1, 1, 1, 1)  # fmt: skip
    assert [v.enrolled for v in report.splits[0].variants] == [2, 2]
    assert report.model_dump(by_alias=True)["totals"]["goalReached"] == 1


def test_variants_only_older_versions_had_are_reported_too() -> None:
    old = enrollment("C", EnrollmentState.GOAL_REACHED, hours=1)
    gone = Enrollment.model_validate({**old.model_dump(), "variants": {"old-split": "X"}})
    [split, older] = sequence_report(SPLIT, [old, gone]).splits
    assert [v.name for v in split.variants] == ["A", "B", "C"]
    assert older.step_id == "old-split" and [v.name for v in older.variants] == ["X"]


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        sequence_report(SPLIT, [], min_per_arm=0)
    with pytest.raises(ValueError):
        sequence_report(SPLIT, [], confidence=1.0)
