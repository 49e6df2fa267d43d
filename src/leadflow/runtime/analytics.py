"""The analytics a sales manager opens every morning: every figure is defined here, once.

Each figure is a pure function over the facts of :mod:`leadflow.facts` (``*_of``), and
:class:`Analytics` reads those facts from the stores for a period and calls it.

**Period and cohorts.** A period is half-open, ``[start, end)``. Lead figures (speed to lead,
lead sources, a rep's wins) are about the *cohort* of leads that **arrived** in the period,
whatever happened to them later (a lead that arrived on the 30th and was won the next month
counts as won). Activity figures (completed, on time, time to complete, automation) are about
activities **completed** in the period; the funnel counts **status changes** in the period.

**Rep and source of a lead.** A lead's rep is its arrival's owner (``assignedTo`` / ``ownerId``
of ``opportunity.created``), else the assignee of its first contact; its source is the
arrival's ``leadSource`` / ``source``. A lead with neither is counted in the totals and under
the key ``"(none)"`` in per-rep / per-source rows.

**Medians and percentiles** are nearest-rank: the p-th percentile of n sorted values is the
``ceil(p / 100 * n)``-th (the median is p50: of an even count, the lower middle value). None
when there are no values. Durations are in seconds.

**Speed to lead.** A lead's response time is from its arrival to its *first contact*: the
earliest completed call, email or meeting of its opportunity (:data:`~leadflow.facts.
CONTACT_TYPES`; a contact completed before the arrival counts as 0). ``leads`` counts the
cohort, ``contacted`` those with a first contact; ``p50`` / ``p90`` are over the contacted
leads; ``within_5_minutes``, ``within_1_hour`` and ``within_1_business_day`` are shares of
**all** leads (an uncontacted lead is not within anything) contacted at most that long after
arrival; a business day is one working day's length of working time on the flow's calendar
(:meth:`WorkingCalendar.add_business_hours`: a lead arriving Saturday has until Monday's close).
``buckets`` count the contacted leads by response time: under 5 min, 5-60 min, 1-4 h, 4-24 h,
1-7 days, 7 days and more. The same per rep and per source.

**Lead source performance**, per source: ``leads``; ``contacted`` (leads with a first contact);
``won`` (leads whose opportunity ever changed to the won status, ``"won"`` unless told);
``conversion_rate = won / leads``; ``median_time_to_win`` (arrival to the first change to won).

**Rep leaderboard**, per rep: ``completed`` (activities assigned to the rep completed in the
period); ``on_time_rate`` (of those with a due date, the share completed at or before it; None
without any); ``median_time_to_complete`` (creation to completion, of those with a creation
date); ``overdue_now`` (open activities assigned to the rep past due at ``as_of``, from the
activity store); ``speed_to_lead_p50`` and ``wins`` (of the leads of the rep's cohort).
Ranked by the chosen figure, best first (the most of a count or rate, the least of a time;
None last), ties by rep id.

**Funnel.** For the ordered ``stages`` (statuses), ``reached[i]`` is the number of
opportunities with a change to ``stages[i]`` in the period; between consecutive stages,
``advanced`` counts those that reached both, ``conversion = advanced / reached[i]`` (None when
0) and ``drop_off = reached[i] - advanced``. An opportunity may skip a stage: it counts where
it was seen. **Time in stage**: an opportunity's changes in the period, in time order, make
stays: a change to a stage starts one, the opportunity's next change to another status ends
it; ``median_time_in_stage_seconds[i]`` is the median length of the ended stays in
``stages[i]`` (a stay still open at the period's end has no length yet; a repeated change to
the same status does not end a stay). ``still_in[i]`` counts the opportunities whose latest
change in the period is to ``stages[i]``.

**Automation effectiveness**, per automation id (an activity's ``metadata.automationRuleId``:
the rule, or a sequence's steps, that created it; ``"(manual)"`` for activities no automation
created): ``completed`` activities in the period and their ``outcomes``; ``wins`` by
**last-touch attribution**: an opportunity that changed to won in the period is credited to the
automation id of its latest activity completed at or before the win (within the period); no
activity before the win: no credit. ``win_rate = wins / opportunities touched`` (opportunities
with a completed activity of that automation in the period).

**Filters.** Every figure takes ``reps``, ``teams``, ``sources`` and ``automations`` (None:
no filter; each at most 1,000 names; ``"(none)"`` / ``"(manual)"`` name the leads without a
rep or source and the activities no automation created). ``teams`` pick the reps the host's
team directory puts in them (rep id -> team name: ``Analytics(teams=...)``, or a team
directory with a ``teams()`` method under ``Operations``); with ``reps`` too, a rep must be in
both. How each kind of fact is judged:

- a **lead** (speed to lead, lead sources, a rep's wins and speed): its rep (as above), its
  source, and its first contact's automation (a lead not contacted matches no automation);
- a **completion** (completed, on time, time to complete, automation rows): its assignee, its
  automation, and the source of its opportunity's lead (whenever that arrived);
- an **opportunity of the funnel**: its lead's owner and source (the owner only: the funnel
  reads no contacts), and, with ``automations``, an activity of one of them completed on it in
  the period;
- ``overdue_now``: the assignee, and with ``automations`` the open activities they created
  (one activity-statistics query each; ``"(manual)"`` counts none). It is not narrowed by
  source: an open activity has no lead fact.

**Weekly trend**, per ISO week the period touches (UTC weeks, Monday 00:00 to Monday 00:00,
labelled ``2026-W02``, the first and last clipped to the period): ``leads`` that arrived in
the week, of them ``contacted`` and ``won`` (whenever), ``conversion_rate = won / leads``,
``speed_to_lead_p50_seconds`` of the week's contacted leads; ``completed`` activities
completed in the week and their ``on_time_rate``. The filters apply as to the figures above.

**Cost.** Each figure reads the facts of its period through indexed queries
(:class:`~leadflow.ports.AnalyticsStore`; on SQL ``tests/test_analytics_explain.py`` checks
that none reads a facts table whole): time and memory grow with the facts in the period, not
with the store. What only needs sums is summed up in the store (SQL: ``GROUP BY``): the leads
of the period per rep, source or week (``lead_sums``: counts, response-time buckets,
percentiles; only the leads contacted later than a working day's clock length come back, for
the calendar's business-day deadline: ``late_contacts``; a dashboard asks for every grouping
and the late contacts in one read of the leads, ``lead_summary``), the completions per rep
(leaderboard) and per automation (``completion_groups``: on SQL from an index holding every
summed column, an exact median per key; each figure asks only for the parts it shows), per
week (``completion_buckets``)
and the won opportunities' conversions and last touches (``won_touches``), unless a source
filter (or reps and automations together) asks for the completions one by one. The status
changes of the period come back one by one under a filter. A dashboard's figures share their
reads. ``overdue_now`` is one activity-statistics query (one per automation with an
automation filter); the automation figure asks the activity store one statistics query per
automation (two under a rep filter).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime

from ..facts import groups_of, touches_of
from ..fields import ID_RE
from ..models import ActivityState
from ..ports import (
    ActivityRepository,
    AnalyticsStore,
    EnrollmentStore,
    RuleRepository,
    SequenceRepository,
)
from ..queries import ActivityFilter
from ..rules.calendar import WorkingCalendar
from ..sequences import Enrollment
from .analytics_automation import (
    NO_EFFECT_MAX_COMPLETION,
    NO_EFFECT_MIN_ACTIVITIES,
    AutomationRow,
    BranchRow,
    Created,
    Kind,
    automation_of,
    automation_rows,
)
from .analytics_deadlines import Deadlines
from .analytics_figures import (
    BUCKETS,
    MANUAL,
    NONE,
    Figure,
    RankBy,
    RepRow,
    SourceRow,
    SpeedToLead,
    SpeedToLeadReport,
    percentile,
    reps_from,
    reps_of,
    sources_from,
    sources_of,
    speed_of,
)
from .analytics_funnel import DEFAULT_STAGES, Funnel, FunnelStep, funnel_of, funnel_rows
from .analytics_period import WeekRow, trend_from, trend_of, trend_rows, weeks_of
from .analytics_reads import Reads
from .analytics_scope import Scope, Teams, scope_of
from .enrollment_pages import enrollments_of

__all__ = [
    "BUCKETS",
    "DEFAULT_STAGES",
    "MANUAL",
    "NONE",
    "NO_EFFECT_MAX_COMPLETION",
    "NO_EFFECT_MIN_ACTIVITIES",
    "Analytics",
    "AutomationRow",
    "BranchRow",
    "Dashboard",
    "Funnel",
    "FunnelStep",
    "RankBy",
    "RepRow",
    "Scope",
    "SourceRow",
    "SpeedToLead",
    "SpeedToLeadReport",
    "Teams",
    "WeekRow",
    "automation_of",
    "funnel_of",
    "percentile",
    "reps_of",
    "sources_of",
    "speed_of",
    "trend_of",
    "weeks_of",
]

# --------------------------------------------------------------------------- dashboard


class Dashboard(Figure):
    """Every figure of one period, as the report shows them."""

    start: datetime
    end: datetime
    as_of: datetime
    speed_to_lead: SpeedToLeadReport
    sources: list[SourceRow]
    leaderboard: list[RepRow]
    funnel: Funnel | None
    automation: list[AutomationRow]
    trend: list[WeekRow]


# --------------------------------------------------------------------------- reading


class Analytics:
    """Reads the facts of a period from the stores and computes the figures above.

    Every figure takes the filters ``reps``, ``teams``, ``sources`` and ``automations`` (see
    "Filters" above; None takes all). ``teams`` is who is in which team (rep id -> team name,
    or a callable answering it), for the ``teams`` filter; ``rules`` and ``sequences`` name the
    automations (their kind, and those that created activities nobody completed);
    ``enrollments`` give the sequences' goals and A/B branches."""

    def __init__(
        self,
        store: AnalyticsStore,
        activities: ActivityRepository,
        calendar: WorkingCalendar,
        *,
        won_status: str = "won",
        teams: Teams | None = None,
        rules: RuleRepository | None = None,
        sequences: SequenceRepository | None = None,
        enrollments: EnrollmentStore | None = None,
    ) -> None:
        self._store = store
        self._activities = activities
        self._calendar = calendar
        self._deadlines = Deadlines(calendar)  # its working windows, kept across queries
        self._teams = teams
        self._rules = rules
        self._sequences = sequences
        self._enrollments = enrollments
        self.won_status = won_status

    def scope(
        self,
        *,
        reps: Collection[str] | None = None,
        teams: Collection[str] | None = None,
        sources: Collection[str] | None = None,
        automations: Collection[str] | None = None,
    ) -> Scope:
        """The scope of the given filters, teams resolved to their reps."""
        return scope_of(
            reps=reps, teams=teams, sources=sources, automations=automations,
            directory=self._teams,
        )  # fmt: skip

    def _reads(
        self, start: datetime, end: datetime, filters: dict[str, Collection[str] | None]
    ) -> Reads:
        return Reads(
            self._store,
            self._calendar,
            self.won_status,
            start,
            end,
            self.scope(**filters),
            self._deadlines,
        )

    def _overdue(self, as_of: datetime, scope: Scope) -> dict[str, int]:
        # An automation id that is no id (the filter takes any name) created no activity.
        kinds = (
            (None,)
            if scope.automations is None
            else sorted(a for a in scope.automations if ID_RE.match(a))
        )
        overdue: Counter[str] = Counter()
        for automation in kinds:
            statistics = self._activities.statistics(
                ActivityFilter(
                    state=ActivityState.OVERDUE, as_of=as_of, automation_rule_id=automation
                ),
                as_of=as_of,
            )
            overdue.update(statistics.by_assignee)
        return {rep: n for rep, n in overdue.items() if scope.reps is None or rep in scope.reps}

    def speed_to_lead(
        self, start: datetime, end: datetime, **filters: Collection[str] | None
    ) -> SpeedToLeadReport:
        return self._reads(start, end, filters).speed

    def sources(
        self, start: datetime, end: datetime, **filters: Collection[str] | None
    ) -> list[SourceRow]:
        return self._sources(self._reads(start, end, filters))

    @staticmethod
    def _sources(reads: Reads) -> list[SourceRow]:
        by_source = reads.by_key("source")
        if by_source is not None:  # summed up in the store
            return sources_from(by_source)
        arrivals, contacts = reads.leads
        return sources_of(arrivals, contacts, reads.wins)

    def leaderboard(
        self,
        start: datetime,
        end: datetime,
        *,
        as_of: datetime,
        rank_by: RankBy = "completed",
        **filters: Collection[str] | None,
    ) -> list[RepRow]:
        return self._leaderboard(self._reads(start, end, filters), as_of, rank_by)

    def _leaderboard(self, reads: Reads, as_of: datetime, rank_by: RankBy) -> list[RepRow]:
        scope = reads.scope
        if scope.sources is None and scope.automations is None:
            # Summed up in the store (SQL: GROUP BY): one row per rep comes back.
            keys = None if scope.reps is None else {None if r == NONE else r for r in scope.reps}
            groups = self._store.completion_groups(  # no distinct opportunities: unused here
                reads.start, reads.end, by="assigned_to", keys=keys, opportunities=False
            )
        else:
            groups = groups_of(reads.completions, "assigned_to")
        overdue = self._overdue(as_of, scope)
        by_rep = reads.by_key("rep")
        if by_rep is not None:  # the leads summed up per rep in the store
            return reps_from(groups, by_rep, overdue, rank_by=rank_by)
        arrivals, contacts = reads.leads
        return reps_of(
            groups, reads.speed, arrivals, contacts, reads.wins, overdue, rank_by=rank_by
        )

    def funnel(
        self,
        start: datetime,
        end: datetime,
        *,
        stages: Sequence[str] = DEFAULT_STAGES,
        **filters: Collection[str] | None,
    ) -> Funnel:
        return self._funnel(self._reads(start, end, filters), stages)

    @staticmethod
    def _funnel(reads: Reads, stages: Sequence[str]) -> Funnel:
        scope = reads.scope
        if scope.everything:
            # Summed up in the store: one row per stage comes back.
            return funnel_rows(reads.store.stage_sums(reads.start, reads.end, stages))
        changes = reads.changes
        touched = (
            set() if scope.automations is None else {c.opportunity_id for c in reads.completions}
        )
        lead = reads.arrivals_of({c.opportunity_id for c in changes})
        changes = [
            c
            for c in changes
            if scope.takes_opportunity(lead.get(c.opportunity_id), c.opportunity_id in touched)
        ]
        return funnel_of(changes, stages)

    def _kinds(self) -> dict[str, Kind]:
        kinds: dict[str, Kind] = {MANUAL: "manual"}
        if self._rules is not None:
            kinds.update((rule.rule_id, "rule") for rule in self._rules.list())
        if self._sequences is not None:
            kinds.update((d.sequence_id, "sequence") for d in self._sequences.list())
        return kinds

    def _created(
        self, start: datetime, end: datetime, ids: Collection[str], scope: Scope
    ) -> dict[str, Created]:
        """Per automation, the activities it created in the period and how many of them are
        completed: one activity-statistics query each (its ``by_state``), two under a rep
        filter (all and the completed ones, each ``by_assignee``)."""
        created: dict[str, Created] = {}
        for automation in sorted(a for a in ids if ID_RE.match(a)):
            counts = []
            for state in (None,) if scope.reps is None else (None, ActivityState.COMPLETED):
                found = self._activities.statistics(
                    ActivityFilter(
                        automation_rule_id=automation,
                        created_from=start,
                        created_to=end,
                        state=state,
                    ),
                    as_of=end,
                )
                if scope.reps is None:
                    counts = [found.total, found.by_state.get(ActivityState.COMPLETED.value, 0)]
                else:
                    counts.append(
                        sum(n for rep, n in found.by_assignee.items() if rep in scope.reps)
                    )
            created[automation] = Created(counts[0], counts[1])
        return created

    def _enrolled(self, reads: Reads, sequences: Collection[str]) -> dict[str, list[Enrollment]]:
        """Per sequence, its enrollments enrolled in the period (of the opportunities the
        filters take, judged as the funnel's)."""
        if self._enrollments is None:
            return {}
        start, end, scope = reads.start, reads.end, reads.scope
        enrolled: dict[str, list[Enrollment]] = {}
        for sequence in sorted(sequences):
            found = []
            for e in enrollments_of(self._enrollments, sequence):  # oldest first
                if e.enrolled_at >= end:
                    break
                if start <= e.enrolled_at:
                    found.append(e)
            if found and (scope.reps is not None or scope.sources is not None):
                lead = reads.arrivals_of({e.opportunity_id for e in found})
                found = [
                    e for e in found if scope.takes_opportunity(lead.get(e.opportunity_id), True)
                ]
            if found:
                enrolled[sequence] = found
        return enrolled

    def automation(
        self, start: datetime, end: datetime, **filters: Collection[str] | None
    ) -> list[AutomationRow]:
        return self._automation(self._reads(start, end, filters))

    def _automation(self, reads: Reads) -> list[AutomationRow]:
        scope = reads.scope
        if scope.reps is None and scope.sources is None:
            # Summed up in the store: one row per automation comes back.
            groups = reads.summed(reads.start, reads.end)
            wanted = scope.automations
            keys = None if wanted is None else {None if a == MANUAL else a for a in wanted}
            touches = self._store.won_touches(reads.start, reads.end, self.won_status, keys=keys)
        else:
            groups = groups_of(reads.completions, "rule_id")
            touches = touches_of(reads.won_at, reads.completions)
        kinds = self._kinds()
        ids = set(kinds) | {group.key or MANUAL for group in groups}
        if scope.automations is not None:
            ids &= scope.automations
        enrollments = self._enrolled(reads, [i for i in ids if kinds.get(i) == "sequence"])
        on_enrolled = {
            sequence: [
                c
                for c in reads.completions_of({e.opportunity_id for e in found})
                if c.rule_id == sequence
            ]
            for sequence, found in enrollments.items()
        }
        return automation_rows(
            groups,
            touches,
            reads.won_at if enrollments else {},  # the A/B branches' wins
            created=self._created(reads.start, reads.end, ids, scope),
            enrollments=enrollments,
            enrolled_completions=on_enrolled,
            kinds=kinds,
            only=scope.automations,
        )

    def trend(
        self, start: datetime, end: datetime, **filters: Collection[str] | None
    ) -> list[WeekRow]:
        """The figures per ISO week of the period."""
        return self._trend(self._reads(start, end, filters))

    @staticmethod
    def _trend(reads: Reads) -> list[WeekRow]:
        start, end = reads.start, reads.end
        if reads.pushed is not None:  # the leads summed up per week in the store
            weeks = {sums.bucket: sums for sums in reads.lead_sums("bucket")}
            return trend_from(start, end, weeks, reads.weekly())
        arrivals, contacts = reads.leads
        return trend_rows(start, end, arrivals, contacts, reads.wins, reads.weekly())

    def dashboard(
        self,
        start: datetime,
        end: datetime,
        *,
        as_of: datetime,
        rank_by: RankBy = "completed",
        stages: Sequence[str] | None = DEFAULT_STAGES,
        **filters: Collection[str] | None,
    ) -> Dashboard:
        """Every figure of ``[start, end)`` under the filters (the funnel is left out when
        ``stages`` is None); the figures share their reads of the store."""
        reads = self._reads(start, end, filters)
        reads.summarize((None, "rep", "source", "bucket"))  # the leads read once for all
        return Dashboard(
            start=start,
            end=end,
            as_of=as_of,
            speed_to_lead=reads.speed,
            sources=self._sources(reads),
            leaderboard=self._leaderboard(reads, as_of, rank_by),
            funnel=None if stages is None else self._funnel(reads, stages),
            automation=self._automation(reads),
            trend=self._trend(reads),
        )
