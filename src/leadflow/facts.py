"""The analytic facts leadflow keeps as events arrive (issue 20), and how an event yields them.

leadflow sees every event a host hands it (``LeadFlow.handle``) and every completion it makes
(the outbox feeds ``activity.completed`` back into the rules); the analytics need a few facts of
them after the event is gone. Three kinds, each a frozen record keyed so that recording it
twice is harmless:

- :class:`LeadArrival`, from ``opportunity.created``: the opportunity, when it arrived (the
  event's time), its lead source (``payload.leadSource``, else ``payload.source``) and owner
  (``payload.assignedTo``, else ``payload.ownerId``) when the payload names them. Keyed by the
  opportunity: an opportunity arrives once (the first arrival recorded wins).
- :class:`StatusChange`, from ``opportunity.status_changed`` (``oldStatus`` -> ``newStatus``,
  else ``status``) and from an ``opportunity.created`` that names a ``status`` (from none).
  Keyed by the event id.
- :class:`Completion`, from ``activity.completed``: the completed activity's type, assignee,
  creation, due and completion dates, outcome and the rule that created it
  (``metadata.automationRuleId``). Keyed by the activity id (an activity completes once).

:func:`facts_of` is the pure function from an event to its facts; values the payload holds in
the wrong shape (a number for a source, a malformed date) are left out, never refused: the
event itself was already admitted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, NamedTuple, TypeVar

from pydantic import ConfigDict, StringConstraints, ValidationError

from .activity_models import ActivityType, Outcome
from .documents import check_datetime
from .errors import InvalidInputError
from .fields import ID_RE, Id, Text, UtcDatetime, _Model
from .models import Event

__all__ = [
    "CONTACT_TYPES",
    "SPEED_BOUNDS",
    "Completion",
    "CompletionGroup",
    "LateContact",
    "LateMicros",
    "LeadArrival",
    "LeadSummary",
    "LeadSums",
    "StatusChange",
    "Touches",
    "facts_of",
    "groups_of",
    "rebuilt",
    "total_of",
    "touches_of",
    "trimmed",
]

Label = Annotated[Text, StringConstraints(min_length=1, max_length=128)]
"""A lead source or a status: 1-128 characters of text."""

CONTACT_TYPES: Final[tuple[ActivityType, ...]] = (
    ActivityType.CALL,
    ActivityType.EMAIL,
    ActivityType.MEETING,
)
"""The activity types that count as contacting a lead (speed to lead, ``contacted``)."""

SPEED_BOUNDS: Final[tuple[float, ...]] = (300.0, 3600.0, 14400.0, 86400.0, 604800.0)
"""The upper bounds (seconds, each not included) of the speed-to-lead distribution's buckets
but the last, which has none: under 5 min, 5-60 min, 1-4 h, 4-24 h, 1-7 days, 7 days and more
(named in :data:`leadflow.runtime.analytics.BUCKETS`)."""


class _Fact(_Model):
    model_config = ConfigDict(frozen=True)


class LeadArrival(_Fact):
    """A lead arrived: ``opportunity.created`` at ``arrived_at``."""

    event_id: Id
    opportunity_id: Id
    arrived_at: UtcDatetime
    source: Label | None = None
    owner: Id | None = None


class StatusChange(_Fact):
    """An opportunity's status changed from ``from_status`` (None: unknown or new) to
    ``to_status`` at ``changed_at``."""

    event_id: Id
    opportunity_id: Id
    changed_at: UtcDatetime
    from_status: Label | None = None
    to_status: Label


class Completion(_Fact):
    """An activity was completed at ``completed_at``."""

    activity_id: Id
    opportunity_id: Id
    activity_type: ActivityType
    completed_at: UtcDatetime
    assigned_to: Id | None = None
    created_at: UtcDatetime | None = None
    due_at: UtcDatetime | None = None
    outcome: Outcome | None = None
    rule_id: Id | None = None


Facts = tuple[LeadArrival | None, StatusChange | None, Completion | None]

_F = TypeVar("_F", LeadArrival, StatusChange, Completion)
_set = object.__setattr__


def rebuilt(kind: type[_F], values: dict[str, Any]) -> _F:
    """A fact of ``kind`` from ``values`` a store read back (every field, of its type):
    ``kind.model_construct(**values)`` without its walk over the fields, which made reading
    a period's facts cost several times what the database took. ``values`` becomes the
    fact's own."""
    fact = kind.__new__(kind)
    _set(fact, "__dict__", values)
    _set(fact, "__pydantic_fields_set__", set(values))
    _set(fact, "__pydantic_extra__", None)
    _set(fact, "__pydantic_private__", None)
    return fact


_NONE: Final[Facts] = (None, None, None)


def facts_of(event: Event) -> Facts:
    """The facts ``event`` yields: (arrival, status change, completion), each None when the
    event yields none of that kind."""
    opportunity = event.opportunity_id
    if opportunity is None or not ID_RE.match(opportunity):
        return _NONE
    if event.type == "opportunity.created":
        arrival = rebuilt(
            LeadArrival,
            {
                "event_id": event.id,
                "opportunity_id": opportunity,
                "arrived_at": event.time,
                "source": _label(event.get("leadSource", "lead_source", "source")),
                "owner": _id(event.get("assignedTo", "assigned_to", "ownerId", "owner_id")),
            },
        )
        status = _label(event.get("status", "newStatus"))
        change = None if status is None else _change(event, opportunity, None, status)
        return arrival, change, None
    if event.type == "opportunity.status_changed":
        status = _label(event.get("newStatus", "new_status", "status"))
        if status is None:
            return _NONE
        previous = _label(event.get("oldStatus", "old_status"))
        return None, _change(event, opportunity, previous, status), None
    if event.type == "activity.completed":
        return None, None, _completion(event.payload)
    return _NONE


def _change(event: Event, opportunity: str, previous: str | None, status: str) -> StatusChange:
    return rebuilt(
        StatusChange,
        {
            "event_id": event.id,
            "opportunity_id": opportunity,
            "changed_at": event.time,
            "from_status": previous,
            "to_status": status,
        },
    )


def _completion(payload: dict[str, Any]) -> Completion | None:
    metadata = payload.get("metadata")
    rule = metadata.get("automationRuleId") if isinstance(metadata, dict) else None
    outcome = payload.get("outcome")
    values: dict[str, Any] = {
        "activity_id": payload.get("activityId"),
        "opportunity_id": payload.get("opportunityId"),
        "activity_type": payload.get("activityType"),
        "completed_at": _time(payload.get("completedDate")),
        "assigned_to": _id(payload.get("assignedTo")),
        "created_at": _time(payload.get("createdAt")),
        "due_at": _time(payload.get("dueDate")),
        "outcome": outcome if type(outcome) is str and outcome in _OUTCOMES else None,
        "rule_id": _id(rule),
    }
    if any(values[name] is None for name in _REQUIRED):
        return None  # what the model says, refusing it: no payload of a completion
    if _plain_completion(values):
        # Every value one the model takes as it is (its enumerations by their values): made
        # directly, as model_validate would make it (tests/test_analytics_facts.py).
        values["activity_type"] = _ACTIVITY_TYPES[values["activity_type"]]
        values["outcome"] = _OUTCOME_OF[values["outcome"]]
        return rebuilt(Completion, values)
    try:
        return Completion.model_validate(values)
    except ValidationError:
        return None


def _plain_completion(values: dict[str, Any]) -> bool:
    """Whether :func:`_completion`'s ``values`` are ones :class:`Completion` takes as they are
    (the ids of the id pattern, the type and outcome known values as text, the times in UTC:
    ``_time`` checked their limits; the assignee and rule went through ``_id``)."""
    for name in ("activity_id", "opportunity_id"):
        value = values[name]
        if type(value) is not str or not ID_RE.match(value):
            return False
    if type(values["activity_type"]) is not str or values["activity_type"] not in _ACTIVITY_TYPES:
        return False
    completed = values["completed_at"]
    if completed is None or completed.tzinfo is not UTC:
        return False
    return all(values[name] is None or values[name].tzinfo is UTC for name in _OPTIONAL_TIMES)


_OUTCOMES: Final = frozenset(str(outcome) for outcome in Outcome)
_OUTCOME_OF: Final[dict[str | None, Outcome | None]] = {None: None} | {
    str(outcome): outcome for outcome in Outcome
}
_ACTIVITY_TYPES: Final = {str(kind): kind for kind in ActivityType}
_OPTIONAL_TIMES: Final = ("created_at", "due_at")
_REQUIRED: Final = tuple(
    name for name, field in Completion.model_fields.items() if field.is_required()
)


def _label(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value if 0 < len(value) <= 128 and "\x00" not in value else None


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) and ID_RE.match(value) else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        return None
    try:
        check_datetime(value, "time")
    except InvalidInputError:
        return None
    return value


@dataclass(frozen=True, slots=True)
class CompletionGroup:
    """The completions of one assignee (or one automation) in a period, summed up where they
    are kept (:meth:`~leadflow.ports.AnalyticsStore.completion_groups`): ``key`` is the
    assignee / rule id (None: none); ``with_due`` those with a due date, ``on_time`` those of
    them completed at or before it; ``median_seconds_to_complete`` the nearest-rank median of
    ``completed_at - created_at`` over those with a creation date; ``opportunities`` the
    distinct opportunities they were on; ``outcomes`` how many had each outcome (those
    without one left out), by outcome."""

    key: str | None
    completed: int
    with_due: int
    on_time: int
    median_seconds_to_complete: float | None
    opportunities: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def trimmed(
    groups: list[CompletionGroup], *, median: bool, opportunities: bool
) -> list[CompletionGroup]:
    """``groups`` without the parts a caller left out of ``completion_groups``: the median
    (None) unless ``median``, the distinct opportunities (0) unless ``opportunities``."""
    if median and opportunities:
        return groups
    return [
        replace(
            group,
            median_seconds_to_complete=group.median_seconds_to_complete if median else None,
            opportunities=group.opportunities if opportunities else 0,
        )
        for group in groups
    ]


def groups_of(completions: Iterable[Completion], by: str) -> list[CompletionGroup]:
    """:class:`CompletionGroup` per ``by`` (``"assigned_to"`` or ``"rule_id"``) of
    ``completions``, by key (None first)."""
    # One pass, a few running sums per key: the in-memory stores sum a period's completions
    # (50,000 a quarter at the scale) here.
    sums: GroupSums = {}
    for completion in completions:
        key = getattr(completion, by)
        found = sums.get(key)
        if found is None:
            found = sums[key] = ([0, 0, 0], [], set(), Counter())
        counts, times, opportunities, outcomes = found
        counts[0] += 1
        due = completion.due_at
        if due is not None:
            counts[1] += 1
            counts[2] += completion.completed_at <= due
        if completion.created_at is not None:
            times.append((completion.completed_at - completion.created_at).total_seconds())
        opportunities.add(completion.opportunity_id)
        if completion.outcome is not None:
            outcomes[completion.outcome] += 1
    return groups_from_sums(sums)


GroupSums = dict[str | None, tuple[list[int], list[float], set[str], Counter[Any]]]
"""Running sums per group key: ([completed, with a due date, on time], seconds to complete,
opportunities, outcomes)."""


def groups_from_sums(sums: GroupSums) -> list[CompletionGroup]:
    """The :class:`CompletionGroup` of each key of ``sums``, by key (None first): the figures
    :func:`groups_of` and the memory store's row sums share."""
    found_groups = []
    for key, (counts, times, opportunities, outcomes) in sorted(
        sums.items(), key=lambda item: (item[0] is not None, item[0] or "")
    ):
        times.sort()
        found_groups.append(
            CompletionGroup(
                key=key,
                completed=counts[0],
                with_due=counts[1],
                on_time=counts[2],
                median_seconds_to_complete=times[(len(times) + 1) // 2 - 1] if times else None,
                opportunities=len(opportunities),
                outcomes=dict(sorted((str(k), n) for k, n in outcomes.items())),
            )
        )
    return found_groups


def total_of(groups: Iterable[CompletionGroup]) -> CompletionGroup:
    """The counts of ``groups`` added up (key None; no median, no distinct opportunities:
    neither adds up)."""
    completed = with_due = on_time = 0
    outcomes: Counter[str] = Counter()
    for group in groups:
        completed += group.completed
        with_due += group.with_due
        on_time += group.on_time
        outcomes.update(group.outcomes)
    return CompletionGroup(
        None, completed, with_due, on_time, None, 0, dict(sorted(outcomes.items()))
    )


@dataclass(frozen=True, slots=True)
class Touches:
    """What the opportunities won in a period owe one automation
    (:meth:`~leadflow.ports.AnalyticsStore.won_touches`): ``key`` the rule id (None: no
    automation); ``converted`` the won opportunities with a completion of it in the period;
    ``wins`` those whose last touch is of it: the latest (by ``(completed_at, activity_id)``)
    of their completions in the period at or before their first change to won in it."""

    key: str | None
    converted: int
    wins: int


def touches_of(
    won_at: Mapping[str, datetime],
    completions: Iterable[Completion],
    keys: Collection[str | None] | None = None,
) -> list[Touches]:
    """:class:`Touches` per rule id, by key (None first), of the opportunities won at
    ``won_at`` (each one's first change to won in the period) given their completions in the
    period (others are ignored), of those whose rule id is one of ``keys`` when given."""
    by_opportunity: dict[str, list[Completion]] = {}
    for completion in completions:
        if completion.opportunity_id in won_at and (keys is None or completion.rule_id in keys):
            by_opportunity.setdefault(completion.opportunity_id, []).append(completion)
    converted: dict[str | None, set[str]] = {}
    wins: Counter[str | None] = Counter()
    for opportunity, found in by_opportunity.items():
        for completion in found:
            converted.setdefault(completion.rule_id, set()).add(opportunity)
        before = [c for c in found if c.completed_at <= won_at[opportunity]]
        if before:
            wins[max(before, key=lambda c: (c.completed_at, c.activity_id)).rule_id] += 1
    return [
        Touches(key, len(converted[key]), wins.get(key, 0))
        for key in sorted(converted, key=lambda key: (key is not None, key or ""))
    ]


@dataclass(frozen=True, slots=True)
class StageSums:
    """One stage of the funnel over a period's status changes
    (:meth:`~leadflow.ports.AnalyticsStore.stage_sums`): ``reached`` the opportunities with a
    change to it, ``advanced`` those of them with a change to the next stage too (0 for the
    last), ``still_in`` those whose latest change is to it, ``median_stay_seconds`` the
    nearest-rank median length of the ended stays in it. An opportunity's changes, in
    ``(changed_at, event_id)`` order, make stays: a change to another status than the
    current stay's ends it and starts the next."""

    stage: str
    reached: int
    advanced: int
    still_in: int
    median_stay_seconds: float | None


def stage_sums_of(changes: Iterable[StatusChange], stages: Sequence[str]) -> list[StageSums]:
    """:class:`StageSums` of each of ``stages`` (in order; checked by the caller) over
    ``changes``."""
    paths: dict[str, list[StatusChange]] = {}
    for change in changes:
        paths.setdefault(change.opportunity_id, []).append(change)
    for path in paths.values():
        path.sort(key=lambda change: (change.changed_at, change.event_id))
    return stage_sums_of_paths(
        ((c.opportunity_id, c.to_status, c.changed_at) for path in paths.values() for c in path),
        stages,
        timedelta.total_seconds,
    )


def stage_sums_of_paths(
    paths: Iterable[tuple[str, str, Any]],
    stages: Sequence[str],
    seconds: Callable[[Any], float],
) -> list[StageSums]:
    """:class:`StageSums` of each of ``stages`` (in order; checked by the caller) over a
    period's status changes given as ``(opportunity_id, to_status, changed_at)``, each
    opportunity's together and in ``(changed_at, event_id)`` order: one pass, each
    opportunity's path walked as it comes. ``seconds`` turns a difference of two
    ``changed_at`` into seconds (the stores pass datetimes, or integer microseconds)."""
    seen: dict[str, set[str]] = {stage: set() for stage in stages}
    stays: dict[str, list[float]] = {stage: [] for stage in stages}
    still: Counter[str] = Counter()
    opportunity: str | None = None
    status, since = "", None
    for on, to, at in paths:
        found = seen.get(to)
        if found is not None:
            found.add(on)
        if on != opportunity:
            if opportunity is not None:
                still[status] += 1
            opportunity, status, since = on, to, at
        elif to != status:  # ends the stay in status
            if status in stays:
                stays[status].append(seconds(at - since))
            status, since = to, at
    if opportunity is not None:
        still[status] += 1
    found_stages = []
    for n, stage in enumerate(stages):
        following = seen[stages[n + 1]] if n + 1 < len(stages) else set()
        times = sorted(stays[stage])
        found_stages.append(
            StageSums(
                stage=stage,
                reached=len(seen[stage]),
                advanced=len(seen[stage] & following),
                still_in=still.get(stage, 0),
                median_stay_seconds=times[(len(times) + 1) // 2 - 1] if times else None,
            )
        )
    return found_stages


# ------------------------------------------------------------------ the leads of a period summed


@dataclass(frozen=True, slots=True)
class LeadSums:
    """The leads that arrived in a period (one group of them), summed up where the facts are
    kept (:meth:`~leadflow.ports.AnalyticsStore.lead_sums`). A lead's *wait* is from its
    arrival to its first contact (its earliest completion of a :data:`CONTACT_TYPES`, whenever;
    0 when that came first); its *win* the first change of its opportunity to the won status,
    whenever.

    ``key`` is the group's rep (the arrival's owner, else the first contact's assignee) or
    source (None: none), None for all the leads or buckets of time; ``bucket`` the bucket's
    number (0 otherwise). ``contacted`` counts the leads with a first contact, ``won`` those
    with a win; ``within`` the contacted leads waiting at most 5 minutes, 1 hour and ``day``
    (the clock length of a working day); ``buckets`` the contacted leads per bucket of
    :data:`SPEED_BOUNDS`; ``p50_seconds`` / ``p90_seconds`` the nearest-rank percentiles of
    the waits, ``median_seconds_to_win`` that of arrival to win (not clamped) over the won."""

    key: str | None
    bucket: int
    leads: int
    contacted: int
    won: int
    within: tuple[int, int, int]
    buckets: tuple[int, ...]
    p50_seconds: float | None
    p90_seconds: float | None
    median_seconds_to_win: float | None


class LateContact(NamedTuple):
    """A lead first contacted later than a working day's clock length after it arrived
    (:meth:`~leadflow.ports.AnalyticsStore.late_contacts`): whether it was within one
    business day is the working calendar's to say."""

    rep: str | None
    source: str | None
    arrived_at: datetime
    contacted_at: datetime


LateMicros = tuple[str | None, str | None, int, int]
"""A :class:`LateContact` with its times as integer microseconds since the Unix epoch."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO: Final = timedelta(microseconds=1)


class LeadSummary:
    """Every grouping of a period's leads asked for, from one read of them
    (:meth:`~leadflow.ports.AnalyticsStore.lead_summary`): ``sums`` per grouping (None,
    ``"rep"``, ``"source"``, ``"bucket"``) as :meth:`~leadflow.ports.AnalyticsStore.lead_sums`
    gives it, ``late`` as :meth:`~leadflow.ports.AnalyticsStore.late_contacts` (empty unless
    asked for).

    A store that reads the times as integer microseconds (SQL) gives the late contacts so
    (``late_micros``): the datetimes of ``late`` are made only when it is read (tens of
    thousands a year at issue 20's scale; the runtime judges them in microseconds)."""

    __slots__ = ("_late", "_micros", "sums")

    def __init__(
        self,
        sums: dict[str | None, list[LeadSums]],
        late: list[LateContact] | None = None,
        *,
        late_micros: list[LateMicros] | None = None,
    ) -> None:
        self.sums = sums
        self._late = late if late is not None or late_micros is not None else []
        self._micros = late_micros

    @property
    def late(self) -> list[LateContact]:
        found = self._late
        if found is None:
            found = self._late = [
                LateContact(rep, source, _EPOCH + arrived * _MICRO, _EPOCH + contacted * _MICRO)
                for rep, source, arrived, contacted in self._micros or ()
            ]
        return found

    @property
    def late_micros(self) -> list[LateMicros]:
        """``late`` with the times as integer microseconds since the Unix epoch."""
        found = self._micros
        if found is None:
            found = self._micros = [
                (rep, source, (arrived - _EPOCH) // _MICRO, (contacted - _EPOCH) // _MICRO)
                for rep, source, arrived, contacted in self._late or ()
            ]
        return found

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LeadSummary):
            return NotImplemented
        return self.sums == other.sums and self.late == other.late

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LeadSummary(sums={self.sums!r}, late={self.late!r})"
