"""The leads of a period summed up (:meth:`~leadflow.ports.AnalyticsStore.lead_sums` and
:meth:`~leadflow.ports.AnalyticsStore.late_contacts`): the checks every backend shares, and the
sums made in Python for the stores that keep the facts in process memory (and, for now,
MongoDB), from one row per lead. SQL makes them in the database
(:mod:`leadflow.stores.sql.analytics_leads`)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from ..errors import InvalidInputError
from ..facts import SPEED_BOUNDS, Completion, LateContact, LeadArrival, LeadSums
from ..fields import ensure_utc
from .analytics_checks import check_period

__all__ = [
    "LEAD_GROUPINGS",
    "LeadQuery",
    "LeadRow",
    "check_lead_query",
    "late_of",
    "lead_sums_of",
    "rank",
    "rows_of",
]

LEAD_GROUPINGS: Final = (None, "rep", "source", "bucket")
"""What :meth:`~leadflow.ports.AnalyticsStore.lead_sums` groups the leads by."""

LeadRow = tuple[datetime, str | None, str | None, str | None, datetime | None, datetime | None]
"""One lead: arrived at, source, rep, its first contact's rule id, first contacted at, first
won at (the last three None when there is none)."""

_FIVE_MINUTES: Final = timedelta(minutes=5)
_HOUR: Final = timedelta(hours=1)
_ZERO: Final = timedelta(0)


@dataclass(frozen=True, slots=True)
class LeadQuery:
    """The checked arguments of a lead query (filters: None takes all; None in one: none)."""

    start: datetime
    end: datetime
    day: timedelta
    status: str = ""
    by: str | None = None
    origin: datetime | None = None
    width: timedelta | None = None
    reps: frozenset[str | None] | None = None
    sources: frozenset[str | None] | None = None
    automations: frozenset[str | None] | None = None

    def takes(self, source: str | None, rep: str | None, rule: str | None, contacted: bool) -> bool:
        """A lead is taken when its rep and source are among the wanted ones and, with an
        automation filter, it was contacted by an activity of one of them."""
        if self.reps is not None and rep not in self.reps:
            return False
        if self.sources is not None and source not in self.sources:
            return False
        return self.automations is None or (contacted and rule in self.automations)


def _names(values: object, field: str) -> frozenset[str | None] | None:
    if values is None:
        return None
    if isinstance(values, str | bytes) or not isinstance(values, Collection):
        raise InvalidInputError("expected a collection of names", field=field)
    if len(values) > 1000 or not all(v is None or isinstance(v, str) for v in values):
        raise InvalidInputError("expected at most 1,000 names or None", field=field)
    return frozenset(values)


def check_lead_query(
    start: object,
    end: object,
    *,
    day: object,
    status: object = "",
    by: object = None,
    origin: object = None,
    width: object = None,
    reps: object = None,
    sources: object = None,
    automations: object = None,
) -> LeadQuery:
    """The checked arguments, else :class:`InvalidInputError` naming the field: a period;
    ``day`` a positive timedelta; ``status`` a string; ``by`` one of :data:`LEAD_GROUPINGS`,
    ``"bucket"`` with ``width`` (a timedelta of at least a second) and ``origin`` (an aware
    datetime not after ``start``), the others without; each filter None or a collection of
    at most 1,000 names or None."""
    first, last = check_period(start, end)
    if not isinstance(day, timedelta) or day <= _ZERO:
        raise InvalidInputError("expected a positive timedelta", field="day")
    if not isinstance(status, str):
        raise InvalidInputError(f"expected a status, got {status!r}", field="status")
    if by not in LEAD_GROUPINGS:
        raise InvalidInputError("expected None, rep, source or bucket", field="by")
    if by == "bucket":
        if not isinstance(width, timedelta) or width < timedelta(seconds=1):
            raise InvalidInputError("expected a timedelta of at least a second", field="width")
        if not isinstance(origin, datetime):
            raise InvalidInputError("expected a datetime", field="origin")
        origin = ensure_utc(origin, "origin")
        if origin > first:
            raise InvalidInputError("origin must not be after start", field="origin")
    elif width is not None or origin is not None:
        raise InvalidInputError("width and origin go with by='bucket'", field="by")
    assert by is None or isinstance(by, str)
    return LeadQuery(
        first,
        last,
        day,
        status,
        by,
        origin,
        width,
        _names(reps, "reps"),
        _names(sources, "sources"),
        _names(automations, "automations"),
    )


def rank(n: int, p: int) -> int:
    """The nearest-rank position (1-based) of the ``p``-th percentile of ``n`` values:
    ``ceil(p / 100 * n)`` in integers (at least 1)."""
    return max(1, (p * n + 99) // 100)


def _sums(key: str | None, bucket: int, rows: list[LeadRow], day: timedelta) -> LeadSums:
    waits: list[float] = []
    to_win: list[float] = []
    within = [0, 0, 0]
    for arrived, _, _, _, contacted, won in rows:
        if contacted is not None:
            waited = max(_ZERO, contacted - arrived)
            waits.append(waited.total_seconds())
            within[0] += waited <= _FIVE_MINUTES
            within[1] += waited <= _HOUR
            within[2] += waited <= day
        if won is not None:
            to_win.append((won - arrived).total_seconds())
    buckets = [0] * (len(SPEED_BOUNDS) + 1)
    for waited_seconds in waits:
        n = 0
        while n < len(SPEED_BOUNDS) and waited_seconds >= SPEED_BOUNDS[n]:
            n += 1
        buckets[n] += 1
    waits.sort()
    to_win.sort()
    return LeadSums(
        key=key,
        bucket=bucket,
        leads=len(rows),
        contacted=len(waits),
        won=len(to_win),
        within=(within[0], within[1], within[2]),
        buckets=tuple(buckets),
        p50_seconds=waits[rank(len(waits), 50) - 1] if waits else None,
        p90_seconds=waits[rank(len(waits), 90) - 1] if waits else None,
        median_seconds_to_win=to_win[rank(len(to_win), 50) - 1] if to_win else None,
    )


def lead_sums_of(rows: Iterable[LeadRow], query: LeadQuery) -> list[LeadSums]:
    """The store's ``lead_sums`` from one row per lead that arrived in the period: those
    ``query`` takes, grouped, by ``(key, bucket)`` (None first); no group without a lead."""
    groups: dict[tuple[str | None, int], list[LeadRow]] = {}
    by, origin, width = query.by, query.origin, query.width
    for row in rows:
        arrived, source, rep, rule, contacted, _ = row
        if not query.takes(source, rep, rule, contacted is not None):
            continue
        if by == "rep":
            group: tuple[str | None, int] = (rep, 0)
        elif by == "source":
            group = (source, 0)
        elif by == "bucket":
            assert origin is not None and width is not None
            group = (None, (arrived - origin) // width)
        else:
            group = (None, 0)
        found = groups.get(group)
        if found is None:
            groups[group] = [row]
        else:
            found.append(row)
    ordered = sorted(groups, key=lambda g: (g[0] is not None, g[0] or "", g[1]))
    return [_sums(key, bucket, groups[(key, bucket)], query.day) for key, bucket in ordered]


def late_of(rows: Iterable[LeadRow], query: LeadQuery) -> list[LateContact]:
    """The store's ``late_contacts`` from one row per lead that arrived in the period: the
    leads ``query`` takes first contacted more than ``query.day`` after they arrived, by
    ``(arrived_at, contacted_at)``."""
    day = query.day
    return [
        LateContact(rep, source, arrived, contacted)
        for arrived, source, rep, rule, contacted, _ in rows
        if contacted is not None
        and contacted - arrived > day
        and query.takes(source, rep, rule, True)
    ]


def rows_of(
    arrivals: Iterable[LeadArrival],
    contacts: Iterable[Completion],
    wins: Mapping[str, datetime],
) -> list[LeadRow]:
    """One row per arrival, given the first contacts (whenever) and first wins of their
    opportunities."""
    first = {contact.opportunity_id: contact for contact in contacts}
    rows: list[LeadRow] = []
    for arrival in arrivals:
        opportunity = arrival.opportunity_id
        contact = first.get(opportunity)
        won = wins.get(opportunity)
        if contact is None:
            rows.append((arrival.arrived_at, arrival.source, arrival.owner, None, None, won))
        else:
            rep = arrival.owner if arrival.owner is not None else contact.assigned_to
            rows.append(
                (
                    arrival.arrived_at,
                    arrival.source,
                    rep,
                    contact.rule_id,
                    contact.completed_at,
                    won,
                )
            )
    return rows
