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
``analytics.backfill``        :meth:`~AnalyticsOperations.backfill` (admins)
============================  ==========================================================

Every method takes the filters ``reps``, ``teams``, ``sources`` and ``automations`` (rule or
sequence ids, ``"(manual)"`` for activities no automation created); a sales principal's
``reps`` are their own whatever they ask. Teams come from the flow's team directory: a
directory with a ``teams()`` method (rep id -> team name; ``StaticTeamDirectory(reps,
teams=...)``) lets the ``teams`` filter pick its reps; without one, a ``teams`` filter takes no
one.

A flow whose storage keeps no analytic facts (``Storage.analytics`` is None) answers every
method with :class:`~leadflow.InvalidStateError`. Periods are half-open, ``[start, end)``, of
aware datetimes, at most 400 days long (:class:`~leadflow.InvalidInputError`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from ..clock import ensure_utc
from ..errors import InvalidInputError, InvalidStateError, PermissionDeniedError
from ..models import Event
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
    Teams,
    WeekRow,
)
from ..runtime.analytics_backfill import BackfillResult, backfill
from ..runtime.analytics_period import MAX_PERIOD, check_period
from ..runtime.flow import LeadFlow
from .policy import Policy, Principal

__all__ = ["MAX_PERIOD", "AnalyticsOperations"]


_RANKS: Final = frozenset(RankBy.__args__)  # type: ignore[attr-defined]


class AnalyticsOperations:
    """The analytics people ask for, each checked against the principal's role (see the module
    docstring). Built by :class:`~leadflow.access.Operations` as its ``analytics``."""

    def __init__(self, flow: LeadFlow, policy: Callable[[], Policy]) -> None:
        self._policy = policy
        self._clock = flow.clock
        self._activities = flow.storage.activities
        store = self._store = flow.storage.analytics
        self._analytics = (
            None
            if store is None
            else Analytics(
                store,
                flow.storage.activities,
                flow.rulebook.calendar,
                teams=_directory_teams(flow.integrations.team),
                rules=flow.storage.rules,
                sequences=flow.storage.sequences,
                enrollments=flow.storage.enrollments,
            )
        )

    def _ready(self, principal: Principal, start: datetime, end: datetime) -> Analytics:
        self._policy().require(principal, "analytics.read")
        if self._analytics is None:
            raise InvalidStateError("this flow's storage keeps no analytic facts")
        check_period(start, end, longest=MAX_PERIOD)
        return self._analytics

    def _reps(self, principal: Principal, reps: Collection[str] | None) -> list[str] | None:
        """The reps ``principal`` may see: the given ones (None: all) with ``read_all``, else
        their own (asking for anyone else's is refused)."""
        if self._policy().allows(principal, "analytics.read_all"):
            return None if reps is None else sorted(_names(reps, "reps"))
        if reps is not None and set(_names(reps, "reps")) - {principal.user_id}:
            raise PermissionDeniedError("sales may only see their own analytics")
        return [principal.user_id]

    def _filters(
        self,
        principal: Principal,
        reps: Collection[str] | None,
        teams: Collection[str] | None,
        sources: Collection[str] | None,
        automations: Collection[str] | None,
    ) -> dict[str, list[str] | None]:
        return {
            "reps": self._reps(principal, reps),
            "teams": _opt(teams, "teams"),
            "sources": _opt(sources, "sources"),
            "automations": _opt(automations, "automations"),
        }

    def speed_to_lead(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        *,
        reps: Collection[str] | None = None,
        teams: Collection[str] | None = None,
        sources: Collection[str] | None = None,
        automations: Collection[str] | None = None,
    ) -> SpeedToLeadReport:
        """Speed to lead of the leads that arrived in the period."""
        analytics = self._ready(principal, start, end)
        filters = self._filters(principal, reps, teams, sources, automations)
        return analytics.speed_to_lead(start, end, **filters)

    def sources(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        *,
        reps: Collection[str] | None = None,
        teams: Collection[str] | None = None,
        sources: Collection[str] | None = None,
        automations: Collection[str] | None = None,
    ) -> list[SourceRow]:
        """Lead source performance of the leads that arrived in the period."""
        analytics = self._ready(principal, start, end)
        filters = self._filters(principal, reps, teams, sources, automations)
        return analytics.sources(start, end, **filters)

    def leaderboard(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        *,
        rank_by: str = "completed",
        reps: Collection[str] | None = None,
        teams: Collection[str] | None = None,
        sources: Collection[str] | None = None,
        automations: Collection[str] | None = None,
    ) -> list[RepRow]:
        """The rep leaderboard of the period, ranked by ``rank_by``."""
        analytics = self._ready(principal, start, end)
        filters = self._filters(principal, reps, teams, sources, automations)
        return analytics.leaderboard(
            start,
            end,
            as_of=ensure_utc(self._clock.now(), "clock.now()"),
            rank_by=_rank(rank_by),
            **filters,
        )

    def funnel(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        *,
        stages: Sequence[str] = DEFAULT_STAGES,
        reps: Collection[str] | None = None,
        teams: Collection[str] | None = None,
        sources: Collection[str] | None = None,
        automations: Collection[str] | None = None,
    ) -> Funnel:
        """The funnel of the period's status changes (the team's: ``analytics.read_all``)."""
        analytics = self._ready(principal, start, end)
        self._policy().require(principal, "analytics.read_all")
        filters = self._filters(principal, reps, teams, sources, automations)
        return analytics.funnel(start, end, stages=stages, **filters)

    def automation(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        *,
        reps: Collection[str] | None = None,
        teams: Collection[str] | None = None,
        sources: Collection[str] | None = None,
        automations: Collection[str] | None = None,
    ) -> list[AutomationRow]:
        """What each automation earned in the period."""
        analytics = self._ready(principal, start, end)
        filters = self._filters(principal, reps, teams, sources, automations)
        return analytics.automation(start, end, **filters)

    def trend(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        *,
        reps: Collection[str] | None = None,
        teams: Collection[str] | None = None,
        sources: Collection[str] | None = None,
        automations: Collection[str] | None = None,
    ) -> list[WeekRow]:
        """The figures per ISO week of the period."""
        analytics = self._ready(principal, start, end)
        filters = self._filters(principal, reps, teams, sources, automations)
        return analytics.trend(start, end, **filters)

    def dashboard(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        *,
        rank_by: str = "completed",
        stages: Sequence[str] = DEFAULT_STAGES,
        reps: Collection[str] | None = None,
        teams: Collection[str] | None = None,
        sources: Collection[str] | None = None,
        automations: Collection[str] | None = None,
    ) -> Dashboard:
        """Every figure of the period the principal may see (sales: their own, no funnel)."""
        analytics = self._ready(principal, start, end)
        team = self._policy().allows(principal, "analytics.read_all")
        filters = self._filters(principal, reps, teams, sources, automations)
        return analytics.dashboard(
            start,
            end,
            as_of=ensure_utc(self._clock.now(), "clock.now()"),
            rank_by=_rank(rank_by),
            stages=stages if team else None,
            **filters,
        )

    def backfill(
        self,
        principal: Principal,
        *,
        events: Iterable[Event | Mapping[str, Any]] = (),
        from_activities: bool = True,
        completed_from: datetime | None = None,
        completed_to: datetime | None = None,
    ) -> BackfillResult:
        """Record the facts of the history before analytics (``analytics.backfill``: admins):
        the completed activities of the store (unless ``from_activities`` is False; those
        completed in ``[completed_from, completed_to)`` when given) and ``events``, a host's
        event history. Idempotent (:mod:`leadflow.runtime.analytics_backfill`)."""
        self._policy().require(principal, "analytics.backfill")
        if self._store is None:
            raise InvalidStateError("this flow's storage keeps no analytic facts")
        if not isinstance(from_activities, bool):
            raise InvalidInputError("expected true or false", field="from_activities")
        return backfill(
            self._store,
            self._activities if from_activities else None,
            events=events,
            completed_from=completed_from,
            completed_to=completed_to,
        )


def _directory_teams(directory: object) -> Teams | None:
    """The team directory's ``teams()`` (rep id -> team name), when it has one."""
    teams = getattr(directory, "teams", None)
    return teams if callable(teams) else None


def _names(values: object, field: str) -> list[str]:
    if isinstance(values, str | bytes) or not isinstance(values, Collection):
        raise InvalidInputError("expected a list of names", field=field)
    if len(values) > 1000 or not all(isinstance(value, str) for value in values):
        raise InvalidInputError("expected at most 1,000 names", field=field)
    return list(values)


def _opt(values: Collection[str] | None, field: str) -> list[str] | None:
    return None if values is None else _names(values, field)


def _rank(rank_by: object) -> RankBy:
    if not isinstance(rank_by, str) or rank_by not in _RANKS:
        raise InvalidInputError(
            f"rank_by must be one of {', '.join(sorted(_RANKS))}", field="rank_by"
        )
    return rank_by  # type: ignore[return-value]
