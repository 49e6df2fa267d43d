"""Names and ids checked with Python's ``re`` end where the text ends: ``$`` there also matches
before a final newline, so ``"send_email\\n"`` passed for an action type, ``"nightly\\n"`` for a
job name and ``"lf_\\n"`` for a table prefix (the SQL store then made tables whose names end in
a newline). Every such pattern anchors with ``\\Z`` now; the JSON Schemas keep ``$`` (the end
of the text in JSON Schema's regular expressions)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from leadflow import HandlerRegistry, InvalidInputError, LeadFlow
from leadflow.fields import ID_PATTERN, ID_RE
from leadflow.runtime.schema import rule_schema
from leadflow.scheduling import Job
from leadflow.stores.sql import sql_storage
from leadflow.stores.sql.tables import checked_prefix


def _noop(ctx: object) -> None:
    return None


@pytest.mark.parametrize("ending", ["\n", "\r\n", " \n"])
def test_a_name_with_a_newline_at_its_end_is_refused_naming_the_field(ending: str) -> None:
    assert ID_RE.match("opp-1") and not ID_RE.match("opp-1" + ending)
    with pytest.raises(InvalidInputError) as refused:
        HandlerRegistry.default().register("send_later" + ending, lambda ctx: "")
    assert refused.value.field == "action_type"
    with pytest.raises(InvalidInputError) as refused:
        Job(name="nightly" + ending, cron="0 3 * * *", func=_noop)
    assert refused.value.field == "name"
    with pytest.raises(InvalidInputError) as refused:
        checked_prefix("lf_" + ending)
    assert refused.value.field == "prefix"
    with pytest.raises(InvalidInputError) as refused:
        sql_storage(sa.create_engine("sqlite://"), prefix="lf_" + ending)
    assert refused.value.field == "prefix"


def _patterns(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return found + [p for value in node.values() for p in _patterns(value)]
    if isinstance(node, list):
        return [p for value in node for p in _patterns(value)]
    return []


def test_the_json_schemas_keep_the_pattern_json_schema_reads() -> None:
    patterns = _patterns(rule_schema(LeadFlow.in_memory()))
    assert ID_PATTERN in patterns
    assert not [p for p in patterns if "\\Z" in p]
