"""Every grouping of a period's leads in one pass
(:meth:`~leadflow.ports.AnalyticsStore.lead_summary`): the checks every backend shares, and
the pass itself, over one row per lead the filters take.

A dashboard shows the leads per rep, per source, per week and all together, and the late
contacts for the working calendar: each of those was one read of the period's arrivals (their
first contacts and first wins joined to them). Here they come from one read: each lead goes to
its *leaf* (its rep, source and bucket together), which keeps the count and the leads' waits
and times to win; each grouping merges the leaves, sorts its groups' values once and counts
the ``within`` bounds and speed buckets by bisecting them. The values are those of
:func:`~leadflow.stores.analytics_leads.lead_sums_of` (one definition: the dataset tests compare
them): waits clamped at 0, nearest-rank percentiles, times to win not clamped.

Rows hold either datetimes (the memory stores, MongoDB, PostgreSQL) or integer microseconds
since the Unix epoch (SQLite, as it keeps them): the pass works in the rows' unit.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ..errors import InvalidInputError
from ..facts import SPEED_BOUNDS, LateContact, LeadSummary, LeadSums
from .analytics_leads import LEAD_GROUPINGS, LeadQuery, LeadRow, check_lead_query, rank

__all__ = ["SummaryRow", "check_lead_summary", "summary_of", "taken"]

SummaryRow = tuple[Any, str | None, str | None, Any, Any]
"""One lead the filters take: arrived at, source, rep (the arrival's owner, else the first
contact's assignee), first contacted at and first won at (None when there is none); the times
as datetimes or as integer microseconds since the Unix epoch."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO: Final = timedelta(microseconds=1)
_WITHIN: Final = (timedelta(minutes=5), timedelta(hours=1))


def check_lead_summary(
    start: object,
    end: object,
    *,
    day: object,
    status: object,
    groupings: object,
    origin: object = None,
    width: object = None,
    reps: object = None,
    sources: object = None,
    automations: object = None,
    late: object = False,
) -> tuple[tuple[str | None, ...], LeadQuery]:
    """The groupings (1 to 4 distinct of :data:`LEAD_GROUPINGS`, in that order) and the
    checked query (``by`` ``"bucket"`` when it is among them, else None), or
    :class:`InvalidInputError` naming the field: ``origin`` and ``width`` go with
    ``"bucket"`` only, ``late`` a bool, the rest as :func:`check_lead_query`."""
    if not isinstance(late, bool):
        raise InvalidInputError("expected True or False", field="late")
    if isinstance(groupings, str | bytes) or not isinstance(groupings, Collection):
        raise InvalidInputError("expected a collection of groupings", field="groupings")
    wanted = list(groupings)
    if not wanted or any(g not in LEAD_GROUPINGS for g in wanted):
        raise InvalidInputError("expected None, rep, source or bucket", field="groupings")
    if len(set(wanted)) != len(wanted):
        raise InvalidInputError("expected distinct groupings", field="groupings")
    query = check_lead_query(
        start, end, day=day, status=status, by="bucket" if "bucket" in wanted else None,
        origin=origin, width=width, reps=reps, sources=sources, automations=automations,
    )  # fmt: skip
    return tuple(g for g in LEAD_GROUPINGS if g in wanted), query


def taken(rows: Iterable[LeadRow], query: LeadQuery) -> Iterator[SummaryRow]:
    """The rows (one per lead of the period) of the leads ``query``'s filters take."""
    for arrived, source, rep, rule, contacted, won in rows:
        if query.takes(source, rep, rule, contacted is not None):
            yield arrived, source, rep, contacted, won


def _from_micros(value: int) -> float:
    return value / 1_000_000  # as timedelta.total_seconds: exact microseconds, one division


def _leaf_group(grouping: str | None, leaf: tuple[str | None, str | None, int]) -> Any:
    rep, source, bucket = leaf
    if grouping == "rep":
        return rep, 0
    if grouping == "source":
        return source, 0
    if grouping == "bucket":
        return None, bucket
    return None, 0


def summary_of(
    rows: Iterable[SummaryRow],
    query: LeadQuery,
    groupings: tuple[str | None, ...],
    *,
    late: bool = False,
    micros: bool = False,
) -> LeadSummary:
    """The store's ``lead_summary`` from one row per lead of the period the filters take
    (``micros``: its times in integer microseconds since the epoch, else datetimes)."""
    if micros:
        zero: Any = 0
        day: Any = query.day // _MICRO
        origin: Any = None if query.origin is None else (query.origin - _EPOCH) // _MICRO
        width: Any = None if query.width is None else query.width // _MICRO
        bounds: list[Any] = [int(b * 1_000_000) for b in SPEED_BOUNDS]
        within: list[Any] = [w // _MICRO for w in _WITHIN]
    else:
        zero, day, origin, width = timedelta(0), query.day, query.origin, query.width
        bounds = [timedelta(seconds=b) for b in SPEED_BOUNDS]
        within = list(_WITHIN)
    within.append(day)
    bucketed = "bucket" in groupings
    leaves: dict[tuple[str | None, str | None, int], tuple[list[int], list[Any], list[Any]]] = {}
    late_rows: list[tuple[str | None, str | None, Any, Any]] = []
    for arrived, source, rep, contacted, won in rows:
        leaf = (rep, source, (arrived - origin) // width if bucketed else 0)
        kept = leaves.get(leaf)
        if kept is None:
            kept = leaves[leaf] = ([0], [], [])
        kept[0][0] += 1
        if contacted is not None:
            waited = contacted - arrived
            if waited < zero:
                waited = zero
            elif late and waited > day:
                late_rows.append((rep, source, arrived, contacted))
            kept[1].append(waited)
        if won is not None:
            kept[2].append(won - arrived)
    seconds: Callable[[Any], float] = _from_micros if micros else timedelta.total_seconds
    sums: dict[str | None, list[LeadSums]] = {}
    for grouping in groupings:
        merged: dict[Any, tuple[list[int], list[Any], list[Any]]] = {}
        for leaf, (count, waits, wins) in leaves.items():
            group = _leaf_group(grouping, leaf)
            into = merged.get(group)
            if into is None:
                merged[group] = ([count[0]], list(waits), list(wins))
            else:
                into[0][0] += count[0]
                into[1].extend(waits)
                into[2].extend(wins)
        ordered = sorted(merged, key=lambda g: (g[0] is not None, g[0] or "", g[1]))
        found = sums[grouping] = []
        for key, bucket in ordered:
            count, waits, wins = merged[(key, bucket)]
            waits.sort()
            wins.sort()
            edges = [0, *(bisect_left(waits, b) for b in bounds), len(waits)]
            found.append(
                LeadSums(
                    key=key,
                    bucket=int(bucket),
                    leads=count[0],
                    contacted=len(waits),
                    won=len(wins),
                    within=(
                        bisect_right(waits, within[0]),
                        bisect_right(waits, within[1]),
                        bisect_right(waits, within[2]),
                    ),
                    buckets=tuple(edges[n + 1] - edges[n] for n in range(len(bounds) + 1)),
                    p50_seconds=seconds(waits[rank(len(waits), 50) - 1]) if waits else None,
                    p90_seconds=seconds(waits[rank(len(waits), 90) - 1]) if waits else None,
                    median_seconds_to_win=seconds(wins[rank(len(wins), 50) - 1]) if wins else None,
                )
            )
    if micros:  # the datetimes made only if the late contacts are read as such
        return LeadSummary(sums, late_micros=late_rows)
    return LeadSummary(sums, [LateContact(*row) for row in late_rows])
