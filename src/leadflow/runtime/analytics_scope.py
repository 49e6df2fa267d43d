"""Which facts a figure takes: the filters of the analytics (rep, team, lead source, automation)
and how each kind of fact is judged by them. Defined in :mod:`leadflow.runtime.analytics`'s
docstring ("Filters").
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from ..errors import InvalidInputError
from ..facts import Completion, LeadArrival
from ..stores.analytics_checks import MAX_IDS, check_values
from .analytics_figures import MANUAL, NONE, lead_rep

__all__ = ["Scope", "Teams", "chunks", "scope_of"]

Teams = Mapping[str, str] | Callable[[], Mapping[str, str]]
"""Who is in which team: rep id -> team name, or a callable that answers it (read at each
query, so a host's changes show at once)."""


@dataclass(frozen=True, slots=True)
class Scope:
    """The filters of one query, teams resolved to their reps. None: no filter."""

    reps: frozenset[str] | None = None
    sources: frozenset[str] | None = None
    automations: frozenset[str] | None = None

    @property
    def everything(self) -> bool:
        return self.reps is None and self.sources is None and self.automations is None

    def takes_lead(self, arrival: LeadArrival, contact: Completion | None) -> bool:
        """A lead is taken when its rep, its source and its first contact's automation are
        among the wanted ones."""
        if self.reps is not None and lead_rep(arrival, contact) not in self.reps:
            return False
        if self.sources is not None and (arrival.source or NONE) not in self.sources:
            return False
        return self.automations is None or (
            contact is not None and (contact.rule_id or MANUAL) in self.automations
        )

    def takes_completion(self, completion: Completion, arrival: LeadArrival | None) -> bool:
        """A completion is taken when its assignee, its automation and its lead's source
        (``arrival``: the opportunity's, whenever it came) are among the wanted ones."""
        if self.reps is not None and (completion.assigned_to or NONE) not in self.reps:
            return False
        if self.automations is not None and (completion.rule_id or MANUAL) not in self.automations:
            return False
        return self.sources is None or _source(arrival) in self.sources

    def takes_opportunity(self, arrival: LeadArrival | None, touched: bool) -> bool:
        """An opportunity (of the funnel) is taken when its arrival's owner and source are
        among the wanted ones and, with an automation filter, an activity of one of them was
        completed on it in the period (``touched``)."""
        if self.reps is not None and (arrival is None or (arrival.owner or NONE) not in self.reps):
            return False
        if self.sources is not None and _source(arrival) not in self.sources:
            return False
        return self.automations is None or touched

    def store_sources(self) -> frozenset[str] | None:
        """The sources a store query may filter on (None when they include ``"(none)"``)."""
        return None if self.sources is None or NONE in self.sources else self.sources

    def store_assignees(self) -> frozenset[str] | None:
        """The assignees a store query may filter on (None when the wanted reps include
        ``"(none)"``, which no store filter matches: the completions are then judged here)."""
        return None if self.reps is None or NONE in self.reps else self.reps


def _source(arrival: LeadArrival | None) -> str:
    return NONE if arrival is None or arrival.source is None else arrival.source


def scope_of(
    *,
    reps: Collection[str] | None,
    teams: Collection[str] | None,
    sources: Collection[str] | None,
    automations: Collection[str] | None,
    directory: Teams | None,
) -> Scope:
    """The scope of the given filters (:class:`InvalidInputError` naming the field unless
    each is None or at most 1,000 strings). ``teams`` take the reps ``directory`` puts in one
    of them (none without a directory); with ``reps`` too, a rep must be in both."""
    wanted_reps = check_values(reps, "reps")
    wanted_teams = check_values(teams, "teams")
    if wanted_teams is not None:
        members = directory() if callable(directory) else (directory or {})
        if not isinstance(members, Mapping):
            raise InvalidInputError("the team directory must map reps to teams", field="teams")
        in_teams = frozenset(rep for rep, team in members.items() if team in wanted_teams)
        wanted_reps = in_teams if wanted_reps is None else wanted_reps & in_teams
    return Scope(
        reps=wanted_reps,
        sources=check_values(sources, "sources"),
        automations=check_values(automations, "automations"),
    )


def chunks(ids: Collection[str]) -> list[list[str]]:
    """``ids`` sorted, in lists a store's ``arrivals_of`` takes."""
    ordered = sorted(set(ids))
    return [ordered[first : first + MAX_IDS] for first in range(0, len(ordered), MAX_IDS)]
