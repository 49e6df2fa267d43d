"""The lower bounds of the models' 64-bit integer fields hold (versions and revisions from 1,
counters, indexes and visits from 0), and the 64-bit range still bounds them from above.

``Int64`` carries its own range; a field that narrowed it with ``Field(ge=...)`` beside the type
lost its bound (pydantic keeps the last bound it reads for each side, and the type's came
after): ``Activity(version=0)``, ``ScheduledAction(attempts=-1)`` or ``StepRecord(visit=-1)``
validated. The fields now use ``PositiveInt64`` / ``NonNegativeInt64``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import pytest
from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel, ValidationError

import leadflow
from leadflow.sequences import StepRecord
from leadflow.testing.contracts.data import (
    at,
    make_activity,
    make_enrollment,
    make_rule,
    make_scheduled_action,
    make_sequence,
)

INT64_MAX = 2**63 - 1


def _step(**fields: Any) -> StepRecord:
    return StepRecord(visit=0, step_id="s", kind="wait", at=at(), outcome="waited", **fields)


CASES: list[tuple[str, Callable[[], BaseModel], str, int]] = [
    ("activity", lambda: make_activity("a1"), "version", 1),
    ("rule", lambda: make_rule("r1"), "version", 1),
    ("action", lambda: make_scheduled_action("k1"), "attempts", 0),
    ("action", lambda: make_scheduled_action("k1"), "action_index", 0),
    ("action", lambda: make_scheduled_action("k1"), "rule_version", 1),
    ("sequence", lambda: make_sequence("s1"), "version", 1),
    ("enrollment", lambda: make_enrollment("e1"), "sequence_version", 1),
    ("enrollment", lambda: make_enrollment("e1"), "visit", 0),
    ("enrollment", lambda: make_enrollment("e1"), "revision", 1),
    ("step record", _step, "visit", 0),
    ("step record", _step, "version", 1),
]


@pytest.mark.parametrize(("what", "build", "field", "lowest"), CASES)
def test_a_value_below_the_fields_bound_is_refused_naming_it(
    what: str, build: Callable[[], BaseModel], field: str, lowest: int
) -> None:
    model = build()
    kind = type(model)
    document = model.model_dump()
    for good in (lowest, lowest + 1, INT64_MAX):
        assert getattr(kind.model_validate({**document, field: good}), field) == good
    for bad in (lowest - 1, lowest - 10**6, INT64_MAX + 1):
        with pytest.raises(ValidationError) as refused:
            kind.model_validate({**document, field: bad})
        assert any(error["loc"][:1] == (field,) for error in refused.value.errors()), what


def _models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for info in pkgutil.walk_packages(leadflow.__path__, "leadflow."):
        if (
            ".contrib." in info.name
            or ".migrations" in info.name
            or info.name.endswith(".__main__")
        ):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # optional extras not installed
            continue
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseModel) and value.__module__.startswith("leadflow"):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


def test_no_field_of_any_model_declares_a_bound_twice() -> None:
    """A field with two lower (or two upper) bounds, or two length limits, keeps only one of
    them: which one depends on their order, not on which is narrower."""
    twice = []
    for model in _models():
        for name, info in model.model_fields.items():
            lower = [m for m in info.metadata if isinstance(m, Ge | Gt)]
            upper = [m for m in info.metadata if isinstance(m, Le | Lt)]
            shortest = [m for m in info.metadata if isinstance(m, MinLen)]
            longest = [m for m in info.metadata if isinstance(m, MaxLen)]
            if max(len(lower), len(upper), len(shortest), len(longest)) > 1:
                twice.append(f"{model.__name__}.{name}: {info.metadata}")
    assert not twice, twice
    assert len(_models()) > 20  # the walk found the models
