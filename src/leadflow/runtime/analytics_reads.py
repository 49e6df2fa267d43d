"""What the figures of one period under one set of filters read from the analytic store, each
read at most once: the figures of a dashboard share their reads (the period's leads summed up
per group, the status changes, the completions when the filters need them one by one). Used
by :class:`leadflow.runtime.analytics.Analytics`.

The lead figures (speed to lead, lead sources, the leaderboard's speed and wins, the trend's
leads) are summed up in the store (:meth:`~leadflow.ports.AnalyticsStore.lead_sums`), and only
the leads contacted later than a working day's clock length come back one by one, for the
working calendar to say whether they were within one business day; a dashboard (and speed to
lead) reads them once for all its groupings (:meth:`Reads.summarize`). They are read one by one
(arrivals, first contacts, wins) only where the sums cannot be told apart: a source named
``"(none)"`` beside leads without one, or a source filter of 1,000 names with ``"(none)"``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from datetime import datetime, timedelta
from functools import cached_property

from ..facts import (
    Completion,
    CompletionGroup,
    LateMicros,
    LeadArrival,
    LeadSummary,
    LeadSums,
    StatusChange,
    groups_of,
    total_of,
)
from ..ports import AnalyticsStore
from ..rules.calendar import WorkingCalendar
from .analytics_automation import first_wins
from .analytics_deadlines import Deadlines
from .analytics_figures import MANUAL, NONE, SpeedToLeadReport, speed_from, speed_of
from .analytics_period import first_monday, weeks_of
from .analytics_scope import Scope, chunks

__all__ = ["Reads"]

WEEK = timedelta(days=7)


class Reads:
    """The reads of ``[start, end)`` under ``scope`` (not thread-safe: one per query)."""

    def __init__(
        self,
        store: AnalyticsStore,
        calendar: WorkingCalendar,
        won_status: str,
        start: datetime,
        end: datetime,
        scope: Scope,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.store = store
        self.deadlines = Deadlines(calendar) if deadlines is None else deadlines
        self.calendar = calendar
        self.won_status = won_status
        self.start = start
        self.end = end
        self.scope = scope
        self._lead_sums: dict[str | None, list[LeadSums]] = {}
        self._late: list[LateMicros] | None = None

    @cached_property
    def pushed(self) -> dict[str, frozenset[str | None] | None] | None:
        """The filters as the store's lead queries take them (``"(none)"`` / ``"(manual)"``
        as None; a source filter's ``"(none)"`` also takes a source of that name), or None
        when they cannot (a source filter of 1,000 names with ``"(none)"``, teams of more than
        1,000 reps)."""
        scope = self.scope
        if scope.reps is not None and len(scope.reps) > 1000:
            return None
        sources: frozenset[str | None] | None = None
        if scope.sources is not None:
            if NONE in scope.sources and len(scope.sources) >= 1000:
                return None
            sources = frozenset(scope.sources) | ({None} if NONE in scope.sources else set())
        return {
            "reps": None
            if scope.reps is None
            else frozenset(None if rep == NONE else rep for rep in scope.reps),
            "sources": sources,
            "automations": None
            if scope.automations is None
            else frozenset(None if a == MANUAL else a for a in scope.automations),
        }

    def lead_sums(self, by: str | None) -> list[LeadSums]:
        """The leads of the period the filters take, summed up in the store ``by`` None,
        ``"rep"``, ``"source"`` or ``"bucket"`` (the weeks of the trend)."""
        found = self._lead_sums.get(by)
        if found is None:
            pushed = self.pushed
            assert pushed is not None
            bucket = by == "bucket"
            found = self._lead_sums[by] = self.store.lead_sums(
                self.start,
                self.end,
                status=self.won_status,
                day=self.calendar.day_length,
                by=by,
                origin=first_monday(self.start) if bucket else None,
                width=WEEK if bucket else None,
                reps=pushed["reps"],
                sources=pushed["sources"],
                automations=pushed["automations"],
            )
        return found

    def summarize(self, groupings: tuple[str | None, ...]) -> None:
        """Read the period's leads once for all of ``groupings`` (and the late contacts): the
        store's ``lead_summary``, which :meth:`lead_sums` and :attr:`late` then answer from,
        instead of one read of the leads each. Nothing when the filters cannot go to the store
        or the groupings were read."""
        pushed = self.pushed
        if pushed is None or all(by in self._lead_sums for by in groupings):
            return
        bucket = "bucket" in groupings
        summary = self.store.lead_summary(
            self.start,
            self.end,
            status=self.won_status,
            day=self.calendar.day_length,
            groupings=groupings,
            origin=first_monday(self.start) if bucket else None,
            width=WEEK if bucket else None,
            reps=pushed["reps"],
            sources=pushed["sources"],
            automations=pushed["automations"],
            late=self._late is None,
        )
        self._lead_sums.update(summary.sums)
        if self._late is None:
            self._late = summary.late_micros

    def by_key(self, by: str) -> dict[str, LeadSums] | None:
        """:meth:`lead_sums` per rep or source name (None: ``"(none)"``), or None when the
        filters cannot go to the store or a source is named ``"(none)"`` beside leads
        without one (their sums cannot be told apart)."""
        if self.pushed is None:
            return None
        found: dict[str, LeadSums] = {}
        for sums in self.lead_sums(by):
            name = NONE if sums.key is None else sums.key
            if name in found:
                return None
            found[name] = sums
        return dict(sorted(found.items()))

    @cached_property
    def late(self) -> list[tuple[str, str, bool]]:
        """The leads contacted later than a working day's clock length after they arrived:
        rep, source and whether it was within one business day on the calendar."""
        pushed = self.pushed
        assert pushed is not None
        within = self.deadlines.within_micros
        found = self._late
        if found is None:
            found = LeadSummary(
                {},
                self.store.late_contacts(
                    self.start,
                    self.end,
                    day=self.calendar.day_length,
                    reps=pushed["reps"],
                    sources=pushed["sources"],
                    automations=pushed["automations"],
                ),
            ).late_micros
        return [
            (rep or NONE, source or NONE, within(arrived, contacted))
            for rep, source, arrived, contacted in found
        ]

    @cached_property
    def leads(self) -> tuple[list[LeadArrival], list[Completion]]:
        """The period's arrivals the filters take, and the first contacts of all of them."""
        scope = self.scope
        arrivals = self.store.arrivals(self.start, self.end, sources=scope.store_sources())
        contacts = self.store.first_contacts(self.start, self.end)
        if not scope.everything:
            first = {contact.opportunity_id: contact for contact in contacts}
            arrivals = [a for a in arrivals if scope.takes_lead(a, first.get(a.opportunity_id))]
        return arrivals, contacts

    @cached_property
    def speed(self) -> SpeedToLeadReport:
        self.summarize((None, "rep", "source"))
        by_source = self.by_key("source")
        by_rep = self.by_key("rep")
        if by_source is None or by_rep is None:
            arrivals, contacts = self.leads
            return speed_of(arrivals, contacts, self.calendar)
        overall = self.lead_sums(None)
        late_all, late_rep, late_source = 0, Counter[str](), Counter[str]()
        for rep, source, within in self.late:
            if within:
                late_all += 1
                late_rep[rep] += 1
                late_source[source] += 1
        return SpeedToLeadReport(
            overall=speed_from(
                overall[0] if overall else None,
                (overall[0].within[2] if overall else 0) + late_all,
            ),
            by_rep={
                rep: speed_from(sums, sums.within[2] + late_rep[rep])
                for rep, sums in by_rep.items()
            },
            by_source={
                source: speed_from(sums, sums.within[2] + late_source[source])
                for source, sums in by_source.items()
            },
        )

    @cached_property
    def wins(self) -> dict[str, datetime]:
        """The first win of each lead of the period (whenever it came)."""
        return self.store.reached(self.start, self.end, self.won_status)

    @cached_property
    def changes(self) -> list[StatusChange]:
        """The status changes of the period (all of them)."""
        return self.store.status_changes(self.start, self.end)

    @cached_property
    def won_at(self) -> dict[str, datetime]:
        """The first change to won, in the period, of each opportunity won in it."""
        return first_wins(self.changes, self.won_status)

    @cached_property
    def completions(self) -> list[Completion]:
        """The period's completions the filters take, one by one."""
        scope = self.scope
        found = self.store.completions(self.start, self.end, assigned_to=scope.store_assignees())
        if scope.everything:
            return found
        lead = self.arrivals_of({c.opportunity_id for c in found}) if scope.sources else {}
        return [c for c in found if scope.takes_completion(c, lead.get(c.opportunity_id))]

    def arrivals_of(self, opportunities: Collection[str]) -> dict[str, LeadArrival]:
        found: dict[str, LeadArrival] = {}
        for chunk in chunks(opportunities):
            found.update(self.store.arrivals_of(chunk))
        return found

    def completions_of(self, opportunities: Collection[str]) -> list[Completion]:
        """The period's completions the filters take of ``opportunities``."""
        found: list[Completion] = []
        for chunk in chunks(opportunities):
            found += self.store.completions_of(chunk, self.start, self.end)
        scope = self.scope
        if scope.everything:
            return found
        lead = self.arrivals_of({c.opportunity_id for c in found}) if scope.sources else {}
        return [c for c in found if scope.takes_completion(c, lead.get(c.opportunity_id))]

    def weekly(self) -> list[CompletionGroup]:
        """The completions the filters take summed up per week of :func:`weeks_of` of the
        period: in the store, two bucketed counts (the first week, clipped to the period, and
        the rest), unless the filters need them one by one."""
        weeks = weeks_of(self.start, self.end)
        scope = self.scope
        if scope.sources is not None or (scope.reps is not None and scope.automations is not None):
            return [
                total_of(self.summed(week_start, week_end)) for _, week_start, week_end in weeks
            ]
        by, keys = None, None
        if scope.reps is not None:
            by, keys = "assigned_to", {None if rep == NONE else rep for rep in scope.reps}
        elif scope.automations is not None:
            by, keys = "rule_id", {None if a == MANUAL else a for a in scope.automations}
        empty = CompletionGroup(None, 0, 0, 0, None)
        first_end = weeks[0][2]
        found = [
            self.store.completion_buckets(
                self.start, first_end, width=first_end - self.start, by=by, keys=keys
            ).get(0, empty)
        ]
        if len(weeks) > 1:
            rest = self.store.completion_buckets(first_end, self.end, width=WEEK, by=by, keys=keys)
            found += [rest.get(n, empty) for n in range(len(weeks) - 1)]
        return found

    def summed(self, start: datetime, end: datetime) -> list[CompletionGroup]:
        """The completions of ``[start, end)`` (within the period) the filters take, summed
        up in the store: per rep under a rep filter, else per automation (a source filter, or
        reps and automations together, need them one by one: summed up here). Without the
        median time to complete: the automation figure and the weekly counts do not use it."""
        scope = self.scope
        if scope.sources is not None or (scope.reps is not None and scope.automations is not None):
            return groups_of(
                [c for c in self.completions if start <= c.completed_at < end], "rule_id"
            )
        if scope.reps is not None:
            keys = {None if rep == NONE else rep for rep in scope.reps}
            return self.store.completion_groups(
                start, end, by="assigned_to", keys=keys, median=False
            )
        wanted = scope.automations
        rules = None if wanted is None else {None if a == MANUAL else a for a in wanted}
        return self.store.completion_groups(start, end, by="rule_id", keys=rules, median=False)
