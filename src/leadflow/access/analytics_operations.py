"""Role-checked analytics (``Operations.analytics``): the figures of
:mod:`leadflow.runtime.analytics` as people see them.

============================  ==========================================================
operation                     methods
============================  ==========================================================
``analytics.read``            every method: without ``analytics.read_all`` (sales, by
                              default) over the principal's own rows only: their leads,
                              their completions, their line of the leaderboard; asking
                              for another rep's is :class:`PermissionDeniedError`
``analytics.read_all``        the team's rows, and :meth:`~AnalyticsOperations.funnel`
                              (which is not per rep)
============================  ==========================================================

A flow whose storage keeps no analytic facts (``Storage.analytics`` is None) answers every
method with :class:`~leadflow.InvalidStateError`. Periods are half-open, ``[start, end)``, of
aware datetimes, at most 400 days long (:class:`~leadflow.InvalidInputError`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Final

from ..clock import ensure_utc
from ..errors import InvalidInputError, InvalidStateError, PermissionDeniedError
from ..runtime.analytics import (
    DEFAULT_STAGES,
    Analytics,
    AutomationRow,
    Dashboard,
    Funnel,
    RankBy,
    RepRow,
    SourceRow,
    SpeedToLeadReport,
)
from ..runtime.flow import LeadFlow
from .policy import Policy, Principal

__all__ = ["MAX_PERIOD", "AnalyticsOperations"]

MAX_PERIOD: Final = timedelta(days=400)
"""The longest period a figure is asked for."""

_RANKS: Final = frozenset(RankBy.__args__)  # type: ignore[attr-defined]


class AnalyticsOperations:
    """The analytics people ask for, each checked against the principal's role (see the module
    docstring). Built by :class:`~leadflow.access.Operations` as its ``analytics``."""

    def __init__(self, flow: LeadFlow, policy: Callable[[], Policy]) -> None:
        self._policy = policy
        self._clock = flow.clock
        store = flow.storage.analytics
        self._analytics = (
            None
            if store is None
            else Analytics(store, flow.storage.activities, flow.rulebook.calendar)
        )

    def _ready(self, principal: Principal, start: datetime, end: datetime) -> Analytics:
        self._policy().require(principal, "analytics.read")
        if self._analytics is None:
            raise InvalidStateError("this flow's storage keeps no analytic facts")
        for value, field in ((start, "start"), (end, "end")):
            if not isinstance(value, datetime):
                raise InvalidInputError(f"expected a datetime, got {value!r}", field=field)
            ensure_utc(value, field)
        if not start < end:
            raise InvalidInputError("start must be before end", field="end")
        if end - start > MAX_PERIOD:
            raise InvalidInputError("a period is at most 400 days", field="end")
        return self._analytics

    def _reps(self, principal: Principal, reps: Collection[str] | None) -> list[str] | None:
        """The reps ``principal`` may see: the given ones (None: all) with ``read_all``, else
        their own (asking for anyone else's is refused)."""
        if self._policy().allows(principal, "analytics.read_all"):
            return None if reps is None else sorted(_names(reps, "reps"))
        if reps is not None and set(_names(reps, "reps")) - {principal.user_id}:
            raise PermissionDeniedError("sales may only see their own analytics")
        return [principal.user_id]

    def speed_to_lead(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        *,
        reps: Collection[str] | None = None,
        sources: Collection[str] | None = None,
    ) -> SpeedToLeadReport:
        """Speed to lead of the leads that arrived in the period."""
        analytics = self._ready(principal, start, end)
        return analytics.speed_to_lead(
            start, end, reps=self._reps(principal, reps), sources=_opt(sources, "sources")
        )

    def sources(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        *,
        reps: Collection[str] | None = None,
        sources: Collection[str] | None = None,
    ) -> list[SourceRow]:
        """Lead source performance of the leads that arrived in the period."""
        analytics = self._ready(principal, start, end)
        return analytics.sources(
            start, end, reps=self._reps(principal, reps), sources=_opt(sources, "sources")
        )

    def leaderboard(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        *,
        rank_by: str = "completed",
        reps: Collection[str] | None = None,
    ) -> list[RepRow]:
        """The rep leaderboard of the period, ranked by ``rank_by``."""
        analytics = self._ready(principal, start, end)
        return analytics.leaderboard(
            start,
            end,
            as_of=ensure_utc(self._clock.now(), "clock.now()"),
            rank_by=_rank(rank_by),
            reps=self._reps(principal, reps),
        )

    def funnel(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        *,
        stages: Sequence[str] = DEFAULT_STAGES,
    ) -> Funnel:
        """The funnel of the period's status changes (the team's: ``analytics.read_all``)."""
        analytics = self._ready(principal, start, end)
        self._policy().require(principal, "analytics.read_all")
        return analytics.funnel(start, end, stages=stages)

    def automation(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        *,
        reps: Collection[str] | None = None,
    ) -> list[AutomationRow]:
        """What each automation earned in the period."""
        analytics = self._ready(principal, start, end)
        return analytics.automation(start, end, reps=self._reps(principal, reps))

    def dashboard(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        *,
        rank_by: str = "completed",
        stages: Sequence[str] = DEFAULT_STAGES,
    ) -> Dashboard:
        """Every figure of the period the principal may see (sales: their own, no funnel)."""
        analytics = self._ready(principal, start, end)
        team = self._policy().allows(principal, "analytics.read_all")
        return analytics.dashboard(
            start,
            end,
            as_of=ensure_utc(self._clock.now(), "clock.now()"),
            rank_by=_rank(rank_by),
            reps=self._reps(principal, None),
            stages=stages if team else None,
        )


def _names(values: object, field: str) -> list[str]:
    if isinstance(values, str | bytes) or not isinstance(values, Collection):
        raise InvalidInputError("expected a list of names", field=field)
    if len(values) > 1000 or not all(isinstance(value, str) for value in values):
        raise InvalidInputError("expected at most 1,000 names", field=field)
    return list(values)


def _opt(values: Collection[str] | None, field: str) -> list[str] | None:
    return None if values is None else _names(values, field)


def _rank(rank_by: object) -> RankBy:
    if rank_by not in _RANKS:
        raise InvalidInputError(
            f"rank_by must be one of {', '.join(sorted(_RANKS))}", field="rank_by"
        )
    return rank_by  # type: ignore[return-value]
