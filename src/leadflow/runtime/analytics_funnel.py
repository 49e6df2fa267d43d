"""The funnel of the analytics, as pure functions over the facts of
:mod:`leadflow.facts`. Defined in :mod:`leadflow.runtime.analytics`'s docstring.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise

from ..errors import InvalidInputError
from ..facts import StatusChange
from .analytics_figures import Figure, percentile, share

__all__ = ["DEFAULT_STAGES", "Funnel", "FunnelStep", "funnel_of"]

DEFAULT_STAGES: tuple[str, ...] = ("new", "contacted", "qualified", "proposal", "won")
"""The funnel's stages unless told otherwise."""


# --------------------------------------------------------------------------- funnel


class FunnelStep(Figure):
    """From one stage to the next."""

    from_stage: str
    to_stage: str
    advanced: int
    conversion: float | None
    drop_off: int


class Funnel(Figure):
    """Opportunities per stage and the steps between them (see the module's docstring)."""

    stages: list[str]
    reached: list[int]
    steps: list[FunnelStep]
    median_time_in_stage_seconds: list[float | None]
    still_in: list[int]


def funnel_of(changes: Iterable[StatusChange], stages: Sequence[str]) -> Funnel:
    """The funnel of ``changes`` over ``stages``, in order (:class:`InvalidInputError` unless
    they are 1 to 50 distinct strings)."""
    if (
        isinstance(stages, str | bytes)
        or not isinstance(stages, Sequence)
        or not 0 < len(stages) <= 50
        or not all(isinstance(stage, str) for stage in stages)
        or len(set(stages)) != len(stages)
    ):
        raise InvalidInputError("expected 1 to 50 distinct stage names", field="stages")
    seen: dict[str, set[str]] = {stage: set() for stage in stages}
    paths: dict[str, list[StatusChange]] = defaultdict(list)
    for change in changes:
        paths[change.opportunity_id].append(change)
        if change.to_status in seen:
            seen[change.to_status].add(change.opportunity_id)
    stays: dict[str, list[float]] = {stage: [] for stage in stages}
    still: Counter[str] = Counter()
    for path in paths.values():
        path.sort(key=lambda change: (change.changed_at, change.event_id))
        stay = path[0]
        for change in path[1:]:
            if change.to_status != stay.to_status:
                if stay.to_status in stays:
                    waited = change.changed_at - stay.changed_at
                    stays[stay.to_status].append(waited.total_seconds())
                stay = change
        still[stay.to_status] += 1
    steps = []
    for here, there in pairwise(stages):
        advanced = len(seen[here] & seen[there])
        steps.append(
            FunnelStep(
                from_stage=here,
                to_stage=there,
                advanced=advanced,
                conversion=share(advanced, len(seen[here])),
                drop_off=len(seen[here]) - advanced,
            )
        )
    return Funnel(
        stages=list(stages),
        reached=[len(seen[s]) for s in stages],
        steps=steps,
        median_time_in_stage_seconds=[percentile(stays[s], 50) for s in stages],
        still_in=[still.get(s, 0) for s in stages],
    )
