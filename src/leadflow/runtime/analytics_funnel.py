"""The funnel of the analytics, as pure functions over the facts of
:mod:`leadflow.facts`. Defined in :mod:`leadflow.runtime.analytics`'s docstring.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise

from ..facts import StageSums, StatusChange, stage_sums_of
from ..stores.analytics_checks import check_stages
from .analytics_figures import Figure, share

__all__ = ["DEFAULT_STAGES", "Funnel", "FunnelStep", "funnel_of", "funnel_rows"]

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
    stages = check_stages(stages)
    return funnel_rows(stage_sums_of(changes, stages))


def funnel_rows(sums: Sequence[StageSums]) -> Funnel:
    """The funnel of its stages' sums (:func:`~leadflow.facts.stage_sums_of`, in order)."""
    steps = [
        FunnelStep(
            from_stage=here.stage,
            to_stage=there.stage,
            advanced=here.advanced,
            conversion=share(here.advanced, here.reached),
            drop_off=here.reached - here.advanced,
        )
        for here, there in pairwise(sums)
    ]
    return Funnel(
        stages=[s.stage for s in sums],
        reached=[s.reached for s in sums],
        steps=steps,
        median_time_in_stage_seconds=[s.median_stay_seconds for s in sums],
        still_in=[s.still_in for s in sums],
    )
