"""A hypothesis state machine for activity repositories: random writes and reads on the
backend, each answer checked against a plain dict (the reference semantics)."""

from __future__ import annotations

import unittest
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from ...errors import (
    DuplicateError,
    InvalidStateError,
    NotFoundError,
    OpenActivityExistsError,
    StaleWriteError,
)
from ...models import Activity, ActivityState, ActivityType, Outcome
from ...ports import ActivityRepository
from ...queries import ActivityFilter, ActivitySort
from .data import SORT_FIELDS, at, ids, make_activity, with_version
from .reference import (
    all_pages,
    matches,
    reference_last_times,
    reference_overdue,
    reference_pending,
    reference_scoped,
    reference_statistics,
    reference_timeline,
    sorted_like,
)

__all__ = ["activity_state_machine"]

# A narrow range of hours, so that equal times (boundaries, ties) come up often.
_TIMES = st.integers(min_value=0, max_value=12).map(lambda h: at(hours=h))
_MAYBE_TIME = st.none() | _TIMES
_OPPORTUNITIES = st.sampled_from(["opp-1", "opp-2", "opp-3"])
_USERS = st.none() | st.sampled_from(["u1", "u2"])


@st.composite
def _activity_fields(draw: st.DrawFn) -> dict[str, Any]:
    scheduled = draw(_MAYBE_TIME)
    due = draw(_MAYBE_TIME)
    if scheduled is not None and due is not None and due < scheduled:
        scheduled, due = due, scheduled
    completed = draw(st.none() | _TIMES)
    fields: dict[str, Any] = {
        "opportunity_id": draw(_OPPORTUNITIES),
        "customer_id": draw(st.none() | st.sampled_from(["c1", "c2"])),
        "assigned_to": draw(_USERS),
        "activity_type": draw(st.sampled_from(list(ActivityType))),
        "scheduled_date": scheduled,
        "due_date": due,
        "completed_date": completed,
        "outcome": draw(st.sampled_from(list(Outcome))) if completed is not None else None,
        "created_at": draw(st.none() | _TIMES),
        "updated_at": draw(_MAYBE_TIME),
        "metadata": draw(st.sampled_from([{}, {"automationRuleId": "rule-1"}])),
        "open_key": draw(st.none() | st.sampled_from(["k1", "k2"])),
    }
    return fields


@st.composite
def _filters(draw: st.DrawFn) -> ActivityFilter:
    data: dict[str, Any] = {}
    if draw(st.booleans()):
        data["opportunity_id"] = draw(_OPPORTUNITIES)
    if draw(st.booleans()):
        data["assigned_to"] = draw(st.sampled_from(["u1", "u2"]))
    if draw(st.booleans()):
        data["customer_id"] = draw(st.sampled_from(["c1", "c2"]))
    if draw(st.booleans()):
        data["state"] = draw(st.sampled_from(list(ActivityState)))
        data["as_of"] = draw(_TIMES)
    if draw(st.booleans()):
        data["activity_types"] = tuple(
            draw(st.lists(st.sampled_from(list(ActivityType)), min_size=1, max_size=3))
        )
    if draw(st.booleans()):
        data["automation_rule_id"] = "rule-1"
    for name in ("created", "due", "completed"):
        if draw(st.booleans()):
            data[f"{name}_from"] = draw(_TIMES)
        if draw(st.booleans()):
            data[f"{name}_to"] = draw(_TIMES)
    return ActivityFilter.model_validate(data)


_SORTS = st.builds(ActivitySort, field=st.sampled_from(SORT_FIELDS), descending=st.booleans())


def activity_state_machine(
    factory: Callable[[], ActivityRepository],
    *,
    max_examples: int = 100,
    steps: int = 40,
) -> type[unittest.TestCase]:
    """A hypothesis state machine that drives a repository made by ``factory`` (fresh and empty
    on each call) with random writes and queries, checking each answer against a plain dict.

    Assign the result to a ``Test...`` name in a test module to run it.
    """

    class ActivityRepositoryMachine(RuleBasedStateMachine):
        activity_ids = Bundle("activity_ids")

        def __init__(self) -> None:
            super().__init__()
            self.store = factory()
            self.model: dict[str, Activity] = {}
            self.serial = 0

        def holder(self, open_key: str | None) -> str | None:
            """The open activity holding ``open_key`` in the model, if any."""
            for a in self.model.values():
                if open_key is not None and a.open_key == open_key and a.completed_date is None:
                    return a.activity_id
            return None

        @rule(target=activity_ids, fields=_activity_fields())
        def add(self, fields: dict[str, Any]) -> str:
            self.serial += 1
            activity = make_activity(f"h{self.serial:03d}", **fields)
            if self.holder(activity.open_key) is not None:
                with pytest.raises(OpenActivityExistsError):
                    self.store.add(activity)
            else:
                assert self.store.add(activity) == activity
                self.model[activity.activity_id] = activity
            return activity.activity_id

        @rule(activity_id=activity_ids, open_key=st.none() | st.sampled_from(["k1", "k2"]))
        def add_again(self, activity_id: str, open_key: str | None) -> None:
            activity = make_activity(activity_id, open_key=open_key)
            if activity_id in self.model:
                with pytest.raises(DuplicateError):
                    self.store.add(activity)
            elif self.holder(open_key) is not None:
                with pytest.raises(OpenActivityExistsError):
                    self.store.add(activity)
            else:
                assert self.store.add(activity) == activity
                self.model[activity_id] = activity

        @rule(activity_id=activity_ids, fields=_activity_fields(), stale=st.booleans())
        def update(self, activity_id: str, fields: dict[str, Any], stale: bool) -> None:
            current = self.model.get(activity_id)
            version = current.version if current is not None else 1
            if stale:
                version += 1
            if current is not None and current.open_key is not None:
                # Whether an update may reopen or close a key holder is not part of the
                # contract: keep such an activity as open or done as it is.
                fields["completed_date"] = current.completed_date
                if current.completed_date is None:
                    fields["outcome"] = None
            fields["open_key"] = current.open_key if current is not None else None
            changed = make_activity(activity_id, version=version, **fields)
            if current is None:
                with pytest.raises(NotFoundError):
                    self.store.update(changed)
            elif stale:
                with pytest.raises(StaleWriteError):
                    self.store.update(changed)
            else:
                expected = with_version(changed, version + 1)
                assert self.store.update(changed) == expected
                self.model[activity_id] = expected

        @rule(
            activity_id=activity_ids,
            outcome=st.none() | st.sampled_from(list(Outcome)),
            when=_TIMES,
            version=st.none() | st.integers(min_value=1, max_value=3),
        )
        def complete(
            self, activity_id: str, outcome: Outcome | None, when: datetime, version: int | None
        ) -> None:
            current = self.model.get(activity_id)

            def call() -> Activity:
                return self.store.complete(
                    activity_id,
                    outcome=outcome,
                    completed_by="u1",
                    completed_at=when,
                    expected_version=version,
                )

            if current is None:
                with pytest.raises(NotFoundError):
                    call()
            elif current.completed_date is not None:
                with pytest.raises(InvalidStateError):
                    call()
            elif version is not None and version != current.version:
                with pytest.raises(StaleWriteError):
                    call()
            else:
                expected = current.model_copy(
                    update={
                        "completed_date": when,
                        "outcome": outcome,
                        "completed_by": "u1",
                        "updated_at": when,
                        "updated_by": "u1",
                        "version": current.version + 1,
                    }
                )
                assert call() == expected
                self.model[activity_id] = expected

        @rule(activity_id=activity_ids)
        def delete(self, activity_id: str) -> None:
            if activity_id in self.model:
                self.store.delete(activity_id)
                del self.model[activity_id]
            else:
                with pytest.raises(NotFoundError):
                    self.store.delete(activity_id)

        @rule(before=_TIMES)
        def purge(self, before: datetime) -> None:
            doomed = [
                i
                for i, a in self.model.items()
                if a.completed_date is not None and a.completed_date < before
            ]
            assert self.store.purge_completed(before) == len(doomed)
            for i in doomed:
                del self.model[i]

        @rule(activity_id=activity_ids)
        def get(self, activity_id: str) -> None:
            if activity_id in self.model:
                assert self.store.get(activity_id) == self.model[activity_id]
            else:
                with pytest.raises(NotFoundError):
                    self.store.get(activity_id)

        @rule(f=st.none() | _filters(), sort=_SORTS, limit=st.integers(1, 4))
        def list_pages(self, f: ActivityFilter | None, sort: ActivitySort, limit: int) -> None:
            expected = sorted_like(
                (a for a in self.model.values() if f is None or matches(a, f)), sort
            )
            assert all_pages(self.store, f, sort, limit) == expected

        @rule(f=st.none() | _filters(), as_of=_TIMES)
        def statistics(self, f: ActivityFilter | None, as_of: datetime) -> None:
            expected = reference_statistics(self.model.values(), f, as_of)
            assert self.store.statistics(f, as_of=as_of) == expected

        @rule(as_of=_TIMES, user=_USERS, limit=st.integers(1, 5))
        def follow_ups(self, as_of: datetime, user: str | None, limit: int) -> None:
            activities = self.model.values()
            assert ids(self.store.overdue(as_of, assigned_to=user, limit=limit)) == (
                reference_overdue(activities, as_of, user, limit)
            )
            assert ids(self.store.pending(as_of, assigned_to=user, limit=limit)) == (
                reference_pending(activities, as_of, user, limit)
            )

        @rule(opportunity_id=_OPPORTUNITIES, user=_USERS)
        def per_opportunity(self, opportunity_id: str, user: str | None) -> None:
            mine = reference_scoped(
                (a for a in self.model.values() if a.opportunity_id == opportunity_id), user
            )
            assert self.store.for_opportunity(opportunity_id, assigned_to=user) == (
                sorted_like(mine, ActivitySort())
            )
            assert self.store.timeline(opportunity_id, assigned_to=user) == (
                reference_timeline(mine)
            )

        @rule(customer_id=st.sampled_from(["c1", "c2"]), user=_USERS)
        def per_customer(self, customer_id: str, user: str | None) -> None:
            mine = reference_scoped(
                (a for a in self.model.values() if a.customer_id == customer_id), user
            )
            assert self.store.for_customer(customer_id, assigned_to=user) == (
                sorted_like(mine, ActivitySort())
            )

        @rule(since=_TIMES)
        def staleness(self, since: datetime) -> None:
            last = reference_last_times(self.model.values())
            stale = sorted((t, o) for o, t in last.items() if t < since)
            assert self.store.stale_opportunities(since) == stale
            for n, key in enumerate(stale[:3]):
                assert self.store.stale_opportunities(since, after=key) == stale[n + 1 :]

        @invariant()
        def last_times_agree(self) -> None:
            expected = reference_last_times(self.model.values())
            assert self.store.last_activity_times() == expected

    # Each read of ``.TestCase`` makes a new class: configure the one returned.
    case = ActivityRepositoryMachine.TestCase
    case.settings = settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    return case
