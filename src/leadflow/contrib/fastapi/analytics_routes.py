# Depends() as a parameter default is how FastAPI declares a dependency whose callable is only
# known when the router is built (see routes.py).
# ruff: noqa: B008
"""The analytics routes (included by :func:`leadflow.contrib.fastapi.router`), each on one
role-checked operation of ``Operations.analytics`` (sales: their own rows; the funnel: the
team's). Every route takes the period as ``?start=&end=`` (ISO 8601 with an offset) and the
filters ``&reps=&teams=&sources=&automations=`` (each repeatable).

=======  ===================================  ===============================================
method   path                                 figure
=======  ===================================  ===============================================
GET      ``/analytics/speed-to-lead``         speed to lead
GET      ``/analytics/sources``               lead source performance
GET      ``/analytics/leaderboard``           the rep leaderboard (``&rankBy=``)
GET      ``/analytics/funnel``                the funnel (``&stages=new&stages=won...``)
GET      ``/analytics/automation``            automation effectiveness
GET      ``/analytics/trend``                 the figures per ISO week
GET      ``/analytics/dashboard``             every figure at once (``&rankBy=``)
=======  ===================================  ===============================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, Field

from ...access import Operations, Principal
from ...runtime.analytics import (
    DEFAULT_STAGES,
    AutomationRow,
    Dashboard,
    Funnel,
    RepRow,
    SourceRow,
    SpeedToLeadReport,
    WeekRow,
)
from .bodies import _Wire

__all__ = ["FunnelQuery", "LeadQuery", "PeriodQuery", "RankQuery", "analytics_routes"]


class PeriodQuery(_Wire):
    """The half-open period ``[start, end)``."""

    start: AwareDatetime
    end: AwareDatetime


class LeadQuery(PeriodQuery):
    """The filters every figure takes (``?reps=a&reps=b``, ``teams``, ``sources``,
    ``automations``)."""

    reps: list[str] | None = Field(default=None, max_length=1000)
    teams: list[str] | None = Field(default=None, max_length=1000)
    sources: list[str] | None = Field(default=None, max_length=1000)
    automations: list[str] | None = Field(default=None, max_length=1000)

    def filters(self) -> dict[str, list[str] | None]:
        return {
            "reps": self.reps,
            "teams": self.teams,
            "sources": self.sources,
            "automations": self.automations,
        }


class RankQuery(LeadQuery):
    rank_by: str = "completed"


class FunnelQuery(LeadQuery):
    stages: list[str] = Field(default_factory=lambda: list(DEFAULT_STAGES), max_length=50)


def analytics_routes(api: APIRouter, ops: Operations, current: Callable[..., Principal]) -> None:
    """Add the analytics routes (see the module docstring) to ``api``."""
    base = "/analytics"
    analytics = ops.analytics

    @api.get(f"{base}/speed-to-lead", response_model=SpeedToLeadReport,
             summary="Speed to lead of the leads that arrived in the period")  # fmt: skip
    def analytics_speed_to_lead(
        query: Annotated[LeadQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        return analytics.speed_to_lead(who, query.start, query.end, **query.filters())

    @api.get(f"{base}/sources", response_model=list[SourceRow],
             summary="Lead source performance")  # fmt: skip
    def analytics_sources(
        query: Annotated[LeadQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        return analytics.sources(who, query.start, query.end, **query.filters())

    @api.get(f"{base}/leaderboard", response_model=list[RepRow],
             summary="The rep leaderboard, ranked by ?rankBy=")  # fmt: skip
    def analytics_leaderboard(
        query: Annotated[RankQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        return analytics.leaderboard(
            who, query.start, query.end, rank_by=query.rank_by, **query.filters()
        )

    @api.get(f"{base}/funnel", response_model=Funnel, summary="The status funnel")
    def analytics_funnel(
        query: Annotated[FunnelQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        return analytics.funnel(who, query.start, query.end, stages=query.stages, **query.filters())

    @api.get(f"{base}/automation", response_model=list[AutomationRow],
             summary="What each rule and sequence earned (last-touch wins)")  # fmt: skip
    def analytics_automation(
        query: Annotated[RankQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        return analytics.automation(who, query.start, query.end, **query.filters())

    @api.get(f"{base}/trend", response_model=list[WeekRow],
             summary="The figures per ISO week of the period")  # fmt: skip
    def analytics_trend(
        query: Annotated[LeadQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        return analytics.trend(who, query.start, query.end, **query.filters())

    @api.get(f"{base}/dashboard", response_model=Dashboard,
             summary="Every figure of the period")  # fmt: skip
    def analytics_dashboard(
        query: Annotated[RankQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        return analytics.dashboard(
            who,
            query.start,
            query.end,
            rank_by=query.rank_by,
            reps=query.reps,
            teams=query.teams,
            sources=query.sources,
            automations=query.automations,
        )
