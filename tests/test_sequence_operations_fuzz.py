"""Arbitrary JSON into every operation of ``Operations.sequences`` by principals of every role:
only documented errors escape (a :class:`~leadflow.LeadflowError` or pydantic's
``ValidationError``), a refused call writes nothing, and a read writes nothing even when it
succeeds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow import LeadflowError, Principal
from leadflow.access.sequence_operations import SequenceOperations

from .access_support import World
from .sequence_ops_support import SEQUENCE, full_snapshot, sequence_world
from .suite import examples
from .test_access_fuzz import PRINCIPAL, VALUE, mostly

IDS = mostly(
    st.sampled_from(
        ["nurture", "opp-alice", "opp-bob", "new-alice", "new-bob", "opp-gone", "$where", "",
         "auto-x", "x" * 129]
    )
)  # fmt: skip
STEP = st.sampled_from(SEQUENCE["steps"]) | st.fixed_dictionaries(
    {"id": VALUE | st.just("s"), "kind": st.sampled_from(["wait", "exit", "split"]) | VALUE},
    optional={"delay": VALUE, "variants": VALUE, "target": VALUE},
)
DEFINITION = mostly(
    st.fixed_dictionaries(
        {"name": st.just("fuzz") | VALUE, "steps": st.lists(STEP, max_size=3) | VALUE},
        optional={
            "sequenceId": IDS,
            "entry": st.just(SEQUENCE["entry"]) | VALUE,
            "goals": st.just(SEQUENCE["goals"]) | VALUE,
            "version": VALUE,
            "status": VALUE,
            "reenrollment": st.sampled_from(["never", "every_entry"]) | VALUE,
            "window": VALUE,
            "timezone": st.sampled_from(["Europe/Paris", "Mars/Base"]) | VALUE,
        },
    )
)
OPPORTUNITIES = mostly(st.lists(IDS, max_size=4)) | VALUE
IN_FLIGHT = mostly(st.sampled_from(["keep", "move", "end"]))
TIMES = mostly(st.sampled_from(["2026-01-01T00:00:00Z", "2027-01-01T00:00:00+00:00",
                                "2026-01-05T09:00:00", "never"])) | VALUE  # fmt: skip
LEAD_FILTER = mostly(
    st.fixed_dictionaries(
        {"arrivedFrom": TIMES, "arrivedBefore": TIMES},
        optional={
            "sources": mostly(st.lists(st.sampled_from(["website", "", "x" * 200]), max_size=3)),
            "owners": mostly(st.lists(IDS, max_size=3)),
            "extra": VALUE,
        },
    )
)
STATUS = mostly(st.sampled_from(["active", "draft"]))

Draw = Callable[[st.SearchStrategy[Any]], Any]
Entry = Callable[[World, Principal, Draw], Any]
READ_ONLY = {"get", "list", "report", "enrollments", "timeline"}
ENTRIES: dict[str, Entry] = {
    "create": lambda w, p, d: w.ops.sequences.create(p, d(DEFINITION), status=d(STATUS)),
    "publish": lambda w, p, d: w.ops.sequences.publish(
        p, d(IDS), d(st.none() | DEFINITION), in_flight=d(IN_FLIGHT), status=d(STATUS)
    ),
    "pause": lambda w, p, d: w.ops.sequences.pause(p, d(IDS)),
    "resume": lambda w, p, d: w.ops.sequences.resume(p, d(IDS)),
    "archive": lambda w, p, d: w.ops.sequences.archive(p, d(IDS)),
    "get": lambda w, p, d: w.ops.sequences.get(
        p, d(IDS), d(mostly(st.none() | st.integers())), running=d(mostly(st.booleans()))
    ),
    "list": lambda w, p, d: w.ops.sequences.list(p, running=d(mostly(st.booleans()))),
    "report": lambda w, p, d: w.ops.sequences.report(
        p, d(IDS), min_per_arm=d(mostly(st.integers(-1, 200_000)))
    ),
    "enroll": lambda w, p, d: w.ops.sequences.enroll(
        p, d(IDS), d(OPPORTUNITIES), dry_run=d(mostly(st.booleans()))
    ),
    "enroll_matching": lambda w, p, d: w.ops.sequences.enroll_matching(
        p, d(IDS), d(LEAD_FILTER), dry_run=d(mostly(st.booleans()))
    ),
    "unenroll": lambda w, p, d: w.ops.sequences.unenroll(p, d(IDS)),
    "enrollments": lambda w, p, d: w.ops.sequences.enrollments(p, d(IDS)),
    "timeline": lambda w, p, d: w.ops.sequences.timeline(p, d(IDS)),
}


def test_every_sequence_operation_is_fuzzed() -> None:
    public = {
        n for n, v in vars(SequenceOperations).items() if callable(v) and not n.startswith("_")
    }
    assert public == set(ENTRIES)


FUZZ = settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("name", sorted(ENTRIES))
@FUZZ
@given(data=st.data(), principal=PRINCIPAL)
def test_sequence_operations_take_arbitrary_json(
    name: str, data: st.DataObject, principal: Principal
) -> None:
    world = sequence_world()
    before = full_snapshot(world.flow)
    try:
        ENTRIES[name](world, principal, data.draw)
    except (LeadflowError, ValidationError) as exc:
        event(f"refused: {type(exc).__name__}")
        after = full_snapshot(world.flow)
        assert after == before, f"{name} refused ({type(exc).__name__}: {exc}) but wrote"
        return
    except Exception as exc:
        raise AssertionError(f"{name} raised an undocumented {type(exc).__name__}: {exc}") from exc
    event("done")
    if name in READ_ONLY:
        assert full_snapshot(world.flow) == before, f"{name} is a read but wrote"
