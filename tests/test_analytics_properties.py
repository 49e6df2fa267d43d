"""Every public analytics entry point under arbitrary JSON: each answers, or refuses with a
documented leadflow error naming the field, and writes nothing (the facts and activities
are what they were)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow import (
    InvalidInputError,
    LeadFlow,
    ManualClock,
    Operations,
    PermissionDeniedError,
    Principal,
    Role,
)
from leadflow.stores.memory import memory_storage

from .test_analytics_figures import AS_OF, END, START, load

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)
_names = st.lists(st.sampled_from(["alice", "bob", "web", "east", "r-web", "(none)"]), max_size=3)
_filter = st.none() | _names | _json
_storage = memory_storage()
load(_storage)
_ops = Operations(LeadFlow.in_memory(clock=ManualClock(AS_OF), storage=_storage))
_METHODS = ("speed_to_lead", "sources", "leaderboard", "funnel", "automation", "trend", "dashboard")
_FILTERS = ("reps", "teams", "sources", "automations")


def _snapshot() -> tuple[Any, ...]:
    facts = _storage.analytics
    assert facts is not None
    far = (START - timedelta(days=30), END + timedelta(days=30))
    return (
        repr(facts),
        facts.arrivals(*far),
        facts.completions(*far),
        _storage.activities.statistics(None, as_of=AS_OF).total,
    )


_BEFORE = _snapshot()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(_METHODS),
    role=st.sampled_from([Role.ADMIN, Role.DISPATCHER, Role.SALES]),
    filters=st.fixed_dictionaries({}, optional=dict.fromkeys(_FILTERS, _filter)),
    start=st.sampled_from([START, END]) | _json,
    extra=st.fixed_dictionaries(
        {}, optional={"rank_by": st.sampled_from(["wins", "charm"]) | _json, "stages": _json}
    ),
)
def test_every_figure_answers_or_refuses_naming_the_field(
    method: str, role: Role, filters: dict[str, Any], start: Any, extra: dict[str, Any]
) -> None:
    call = getattr(_ops.analytics, method)
    options = dict(filters)
    if method in ("leaderboard", "dashboard") and "rank_by" in extra:
        options["rank_by"] = extra["rank_by"]
    if method in ("funnel", "dashboard") and "stages" in extra:
        options["stages"] = extra["stages"]
    try:
        call(Principal("bob", role), start, END, **options)
    except InvalidInputError as error:
        assert error.field in {"start", "end", "rank_by", "stages", *_FILTERS}, error
    except PermissionDeniedError:
        assert role is Role.SALES
    assert _snapshot() == _BEFORE
