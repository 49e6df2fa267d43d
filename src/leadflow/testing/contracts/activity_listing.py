"""The listing part of the activity contract: filters, sort orders and cursor pagination.

Mixed into :class:`~leadflow.testing.contracts.ActivityRepositoryContract`; the ``store``
fixture comes from there.
"""

from __future__ import annotations

from typing import Any

import pytest

from ...errors import InvalidInputError
from ...models import Activity, ActivityType, Outcome
from ...ports import ActivityRepository
from ...queries import ActivityFilter, ActivitySort, SortField, encode_cursor
from .data import SORT_FIELDS, at, ids, make_activity
from .reference import all_pages, matches, reference_statistics, sorted_like

__all__ = ["ActivityListingTests"]


class ActivityListingTests:
    """:meth:`ActivityRepository.list`: every filter, every sort order, every page size."""

    # ------------------------------------------------------------------ list: filters

    @pytest.fixture
    def filtered(self, store: ActivityRepository) -> list[Activity]:
        """Activities that differ in every filterable field."""
        data = [
            make_activity(
                "f1",
                opportunity_id="opp-1",
                customer_id="c1",
                assigned_to="u1",
                activity_type=ActivityType.CALL,
                created_at=at(hours=0),
                scheduled_date=at(hours=1),
                due_date=at(hours=2),
                metadata={"automationRuleId": "rule-1"},
            ),
            make_activity(
                "f2",
                opportunity_id="opp-1",
                customer_id="c1",
                assigned_to="u2",
                activity_type=ActivityType.EMAIL,
                created_at=at(hours=1),
                due_date=at(days=2),
                completed_date=at(hours=5),
                outcome=Outcome.SUCCESSFUL,
            ),
            make_activity(
                "f3",
                opportunity_id="opp-2",
                customer_id="c2",
                assigned_to="u1",
                activity_type=ActivityType.MEETING,
                created_at=at(hours=2),
                scheduled_date=at(days=1),
                due_date=at(days=1, hours=1),
                metadata={"automationRuleId": "rule-2"},
            ),
            make_activity(
                "f4",
                opportunity_id="opp-2",
                activity_type=ActivityType.NOTE,
                created_at=at(hours=3),
                completed_date=at(hours=3),
                outcome=Outcome.NO_ANSWER,
                metadata={"automationRuleId": "rule-1"},
            ),
            make_activity(
                "f5",
                opportunity_id="opp-3",
                customer_id="c2",
                assigned_to="u2",
                activity_type=ActivityType.CALL,
                created_at=at(hours=4),
                scheduled_date=at(hours=3),
                completed_date=at(hours=6),
            ),
            make_activity(
                "f6", opportunity_id="opp-3", activity_type=ActivityType.CALL, created_at=None
            ),
        ]
        for a in data:
            store.add(a)
        return data

    @pytest.mark.parametrize(
        ("criteria", "expected"),
        [
            ({}, ["f6", "f1", "f2", "f3", "f4", "f5"]),
            ({"opportunity_id": "opp-2"}, ["f3", "f4"]),
            ({"opportunity_id": "opp-404"}, []),
            ({"customer_id": "c2"}, ["f3", "f5"]),
            ({"assigned_to": "u1"}, ["f1", "f3"]),
            ({"activity_types": ("call",)}, ["f6", "f1", "f5"]),
            ({"activity_types": ("email", "note")}, ["f2", "f4"]),
            ({"outcomes": ("successful", "no_answer")}, ["f2", "f4"]),
            ({"outcomes": ("converted",)}, []),
            ({"automation_rule_id": "rule-1"}, ["f1", "f4"]),
            ({"state": "completed"}, ["f2", "f4", "f5"]),
            ({"state": "overdue", "as_of": at(days=1)}, ["f1"]),
            ({"state": "pending", "as_of": at(days=1)}, ["f6", "f3"]),
            ({"state": "overdue", "as_of": at(days=1, hours=1)}, ["f1"]),
            ({"state": "overdue", "as_of": at(days=1, hours=1, minutes=1)}, ["f1", "f3"]),
            ({"created_from": at(hours=1)}, ["f2", "f3", "f4", "f5"]),
            ({"created_to": at(hours=1)}, ["f1"]),
            ({"created_from": at(hours=1), "created_to": at(hours=3)}, ["f2", "f3"]),
            ({"due_from": at(hours=2), "due_to": at(days=2)}, ["f1", "f3"]),
            ({"due_to": at(days=3)}, ["f1", "f2", "f3"]),
            ({"scheduled_from": at(hours=1), "scheduled_to": at(hours=3)}, ["f1"]),
            ({"scheduled_from": at(hours=3)}, ["f3", "f5"]),
            ({"completed_from": at(hours=5)}, ["f2", "f5"]),
            ({"completed_to": at(hours=5)}, ["f4"]),
            ({"opportunity_id": "opp-1", "assigned_to": "u2"}, ["f2"]),
            ({"customer_id": "c2", "state": "completed"}, ["f5"]),
            ({"assigned_to": "u1", "activity_types": ("meeting",), "due_from": at()}, ["f3"]),
            ({"automation_rule_id": "rule-1", "state": "completed"}, ["f4"]),
            ({"assigned_to": "u1", "created_from": at(hours=1)}, ["f3"]),
            ({"assigned_to": "u2", "created_to": at(hours=4)}, ["f2"]),
            ({"automation_rule_id": "rule-1", "created_to": at(hours=3)}, ["f1"]),
            ({"customer_id": "c1", "created_from": at(hours=1)}, ["f2"]),
        ],
    )
    def test_filter(
        self,
        store: ActivityRepository,
        filtered: list[Activity],
        criteria: dict[str, Any],
        expected: list[str],
    ) -> None:
        f = ActivityFilter.model_validate(criteria)
        matching = [a for a in filtered if matches(a, f)]
        assert expected == ids(sorted_like(matching, ActivitySort()))
        assert ids(store.list(f).items) == expected
        assert ids(all_pages(store, f)) == expected
        by_due = ActivitySort(field="due_date", descending=True)
        assert ids(store.list(f, sort=by_due).items) == ids(sorted_like(matching, by_due))
        as_of = at(days=1)
        assert store.statistics(f, as_of=as_of) == reference_statistics(filtered, f, as_of)

    # ------------------------------------------------------------------ list: sorting

    @pytest.fixture
    def sortable(self, store: ActivityRepository) -> list[Activity]:
        """Activities with ties and gaps in every sortable field."""
        data = [
            make_activity(
                "s1",
                created_at=at(hours=2),
                updated_at=at(hours=5),
                due_date=at(hours=3),
                scheduled_date=at(hours=1),
            ),
            make_activity(
                "s2",
                created_at=at(hours=1),
                updated_at=None,
                due_date=at(hours=3),
                completed_date=at(hours=4),
            ),
            make_activity("s3", created_at=None, updated_at=at(hours=1), due_date=None),
            make_activity(
                "s4",
                created_at=at(hours=1),
                updated_at=at(hours=5),
                due_date=at(hours=1),
                scheduled_date=at(hours=1),
                completed_date=at(hours=2),
            ),
            make_activity("s5", created_at=at(hours=3), updated_at=None, scheduled_date=at()),
            make_activity("s0", created_at=None, completed_date=at(hours=4)),
        ]
        for a in data:
            store.add(a)
        return data

    @pytest.mark.parametrize("descending", [False, True])
    @pytest.mark.parametrize("field", SORT_FIELDS)
    def test_sort(
        self,
        store: ActivityRepository,
        sortable: list[Activity],
        field: SortField,
        descending: bool,
    ) -> None:
        sort = ActivitySort(field=field, descending=descending)
        expected = ids(sorted_like(sortable, sort))
        assert ids(store.list(sort=sort).items) == expected
        for limit in (1, 2, 4, 6, 7):
            assert ids(all_pages(store, sort=sort, limit=limit)) == expected

    def test_missing_values_sort_first_ascending_and_last_descending(
        self, store: ActivityRepository, sortable: list[Activity]
    ) -> None:
        up = store.list(sort=ActivitySort(field="due_date")).items
        down = store.list(sort=ActivitySort(field="due_date", descending=True)).items
        assert ids(up) == ["s0", "s3", "s5", "s4", "s1", "s2"]
        assert ids(down) == ["s2", "s1", "s4", "s5", "s3", "s0"]

    # ------------------------------------------------------------------ list: pagination

    def test_pages_end_with_no_cursor(self, store: ActivityRepository) -> None:
        for n in range(4):
            store.add(make_activity(f"p{n}", created_at=at(hours=n)))
        first = store.list(limit=2)
        assert ids(first.items) == ["p0", "p1"]
        assert first.next_cursor is not None
        second = store.list(limit=2, cursor=first.next_cursor)
        assert ids(second.items) == ["p2", "p3"]
        assert second.next_cursor is None
        whole = store.list(limit=4)
        assert whole.next_cursor is None

    @pytest.mark.parametrize("descending", [False, True])
    def test_rows_added_between_pages_do_not_disturb_pagination(
        self, store: ActivityRepository, descending: bool
    ) -> None:
        originals = [f"p{n:02d}" for n in range(10)]
        for n, activity_id in enumerate(originals):
            store.add(make_activity(activity_id, created_at=at(hours=n)))
        sort = ActivitySort(descending=descending)
        seen: list[str] = []
        cursor: str | None = None
        added = 0
        while True:
            page = store.list(sort=sort, limit=3, cursor=cursor)
            seen.extend(ids(page.items))
            # New rows before, between and after the existing ones, same times included.
            for hours in (-1, 4, 4, 20):
                store.add(make_activity(f"new{added:02d}", created_at=at(hours=hours)))
                added += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        old = [i for i in seen if i in originals]
        assert old == (originals[::-1] if descending else originals)
        assert len(seen) == len(set(seen))

    def test_cursor_for_another_sort_is_refused(self, store: ActivityRepository) -> None:
        for n in range(3):
            store.add(make_activity(f"p{n}", created_at=at(hours=n)))
        page = store.list(limit=1)
        assert page.next_cursor is not None
        with pytest.raises(InvalidInputError):
            store.list(sort=ActivitySort(descending=True), cursor=page.next_cursor)
        with pytest.raises(InvalidInputError):
            store.list(sort=ActivitySort(field="due_date"), cursor=page.next_cursor)
        with pytest.raises(InvalidInputError):
            store.list(cursor="not a cursor")

    def test_a_cursor_is_a_position_not_a_row(self, store: ActivityRepository) -> None:
        for n in range(4):
            store.add(make_activity(f"p{n}", created_at=at(hours=n)))
        page = store.list(limit=2)
        store.delete("p1")  # the row the cursor points after
        assert ids(store.list(limit=2, cursor=page.next_cursor).items) == ["p2", "p3"]
        cursor = encode_cursor(ActivitySort(), at(hours=1, minutes=30), "zzz")
        assert ids(store.list(cursor=cursor).items) == ["p2", "p3"]
