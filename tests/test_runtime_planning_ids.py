"""The ids the runtime derives stay what they were: a rerun (or another version of leadflow)
finds the activity an action already created."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.runtime import planning
from leadflow.runtime.planning import activity_id_for

from .suite import examples


def test_activity_ids_are_the_ones_earlier_versions_derived() -> None:
    assert activity_id_for("rule-1/e1/0") == "auto-62f9ebd8-8e73-53a1-897b-96cf9e7840b6"
    assert activity_id_for("welcome/opp-7/2") == "auto-f5905e9b-4086-5f8a-a01f-d2be9ae2c561"
    assert activity_id_for("é€/x") == "auto-af554bd2-d5a1-5722-a9a5-9b28f48ad09c"


@settings(max_examples=examples(300), deadline=None)
@given(key=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=400))
def test_an_activity_id_is_the_uuid5_of_its_key(key: str) -> None:
    expected = uuid.uuid5(planning._ACTIVITY_IDS, key)
    assert activity_id_for(key) == planning.AUTOMATION_PREFIX + str(expected)
