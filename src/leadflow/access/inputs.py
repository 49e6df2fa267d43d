"""Checks on what callers pass to the role-checked operations: ids, limits, documents,
metadata, rule changes, outcomes. Each refuses bad input with an :class:`InvalidInputError` naming
the field, before anything reaches a store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from ..documents import plain
from ..errors import InvalidInputError
from ..models import ID_RE, FollowUpRule, Outcome

AUTOMATION_METADATA: Final = frozenset(
    {"automationRuleId", "automationRuleName", "automationExplanation", "eventId"}
)
RULE_FIXED: Final = frozenset(
    {"ruleId", "version", "createdBy", "createdAt", "updatedBy", "updatedAt"}
)


def checked_id(value: object, field: str) -> str:
    """Refuse anything but a well-formed id (no dicts, no ``$`` operators) before it reaches a
    store."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise InvalidInputError(f"invalid id {str(value)[:80]!r}", field=field)
    return plain(value)


def limit_of(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise InvalidInputError("must be an integer in 1..1000", field="limit")
    return value


def as_model(model: Any, value: Any, field: str) -> Any:
    if value is None or isinstance(value, model):
        return value
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"expected a {model.__name__} or a mapping", field=field)
    return model.model_validate(dict(value))


def document_of(data: Any, field: str) -> dict[str, Any]:
    """A model or a mapping as a camelCase document (snake_case keys are accepted too)."""
    if isinstance(data, BaseModel):
        # Only what the caller set: defaults (a fresh id, version 1) are not the caller's choice.
        return dict(data.model_dump(by_alias=True, exclude_unset=True))
    if not isinstance(data, Mapping):
        raise InvalidInputError("expected an object (a mapping)", field=field)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise InvalidInputError("keys must be strings", field=field)
        out[to_camel(key) if "_" in key else key] = value
    return out


def metadata_of(value: object) -> object:
    """Activity metadata from a caller, refused if it holds an automation field (in either
    spelling); anything that is not a mapping or a model is left for validation to refuse."""
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True, exclude_unset=True)
    if isinstance(value, Mapping):
        for key in value:
            name = to_camel(key) if isinstance(key, str) and "_" in key else key
            if name in AUTOMATION_METADATA:
                raise InvalidInputError("set only by automation", field=f"metadata.{name}")
        return dict(value)
    return value


def rule_changes(changes: object) -> dict[str, Any]:
    if not isinstance(changes, Mapping):
        raise InvalidInputError("changes must be a mapping of rule fields", field="changes")
    known = {to_camel(name) for name in FollowUpRule.model_fields}
    out: dict[str, Any] = {}
    for key, value in changes.items():
        name = to_camel(str(key)) if "_" in str(key) else str(key)
        if name in RULE_FIXED:
            raise InvalidInputError("this field cannot be changed", field=str(key)[:80])
        if name not in known:
            raise InvalidInputError("unknown rule field", field=str(key)[:80])
        out[name] = value
    return out


def outcome_of(value: object) -> Outcome | None:
    if value is None or isinstance(value, Outcome):
        return value
    value = plain(value)
    if isinstance(value, str) and value in Outcome._value2member_map_:
        return Outcome(value)
    raise InvalidInputError(
        f"unknown outcome {str(value)[:80]!r} (one of {', '.join(o.value for o in Outcome)})",
        field="outcome",
    )
