"""The rule format as a JSON Schema (draft 2020-12), generated from what one flow has registered:
its operators (names and descriptions), its event types, and each action type with the params
model its handler declared. Editors use it to complete and check rule files; the router serves
it at ``GET /api/follow-up-rules/schema``.

This module imports nothing from FastAPI.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from pydantic import BaseModel

from ..fields import ID_PATTERN
from ..rules import OperatorRegistry, Vocabulary
from .flow import LeadFlow

__all__ = ["SCHEMA_DIALECT", "rule_schema"]

SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

# The Action fields that are settings (merged with ``params`` by ``Action.settings()``).
_SEED_SETTINGS: Final = ("activityType", "subject", "description", "assignTo", "template")
_ID: Final = {"type": "string", "pattern": ID_PATTERN}
_DATETIME: Final = {"type": "string", "format": "date-time"}
_SEGMENT: Final = r"(?:[A-Za-z_][A-Za-z0-9_]{0,63}|\d{1,6})"
_FIELD_PATH: Final = {
    "type": "string",
    "pattern": rf"^{_SEGMENT}(?:\.{_SEGMENT}){{0,9}}$",
    "description": "a dotted path into the event's payload (at most 10 segments)",
}
_DELAY: Final = {
    "description": "when the action is due after the event: a number of hours, or "
    "{amount, unit}; business units count working time on the flow's calendar",
    "oneOf": [
        {"type": "number", "minimum": 0},
        {
            "type": "object",
            "properties": {
                "amount": {"type": "number", "minimum": 0},
                "unit": {
                    "enum": ["minutes", "hours", "days", "business_hours", "business_days"],
                    "default": "hours",
                },
            },
            "additionalProperties": False,
        },
    ],
}


def _vocabulary_of(source: object) -> Vocabulary:
    # A vocabulary, a flow, or anything holding a flow as ``.flow`` (the access layer's
    # Operations), without importing the layer above.
    if isinstance(source, Vocabulary):
        return source
    flow = source if isinstance(source, LeadFlow) else getattr(source, "flow", None)
    if isinstance(flow, LeadFlow):
        return flow.vocabulary
    raise TypeError("expected a leadflow Vocabulary, LeadFlow or Operations")


def _operator(operators: OperatorRegistry, name: str) -> dict[str, Any]:
    operator = operators.get(name)
    description = operator.description if operator is not None else ""
    return {"const": name, "description": description} if description else {"const": name}


def _group(kind: str) -> dict[str, Any]:
    node = {"$ref": "#/$defs/conditionNode"}
    body: dict[str, Any] = node if kind == "not" else {"type": "array", "items": node}
    return {
        "type": "object",
        "properties": {kind: body},
        "required": [kind],
        "additionalProperties": False,
    }


def _params_parts(
    action_type: str, model: type[BaseModel] | None, defs: dict[str, Any]
) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """The top-level settings, the required ones among them, and the ``params`` schema of one
    action type, from its params model (``None``: anything goes)."""
    if model is None:
        top = {name: {"type": "string"} for name in _SEED_SETTINGS}
        return top, [], {"type": "object"}
    raw = model.model_json_schema(
        by_alias=True, mode="validation", ref_template=f"#/$defs/{action_type}.{{model}}"
    )
    for name, definition in raw.pop("$defs", {}).items():
        defs[f"{action_type}.{name}"] = definition
    properties: dict[str, Any] = raw.get("properties", {})
    required = set(raw.get("required", []))
    top = {k: v for k, v in properties.items() if k in _SEED_SETTINGS}
    rest = {k: v for k, v in properties.items() if k not in _SEED_SETTINGS}
    params: dict[str, Any] = {"type": "object", "properties": rest}
    rest_required = sorted(required & rest.keys())
    if rest_required:
        params["required"] = rest_required
    if raw.get("additionalProperties") is False:
        params["additionalProperties"] = False
    if model.__doc__:
        params["description"] = " ".join(model.__doc__.split())
    return top, sorted(required & top.keys()), params


def _action(
    action_type: str, model: type[BaseModel] | None, eager: bool, defs: dict[str, Any]
) -> dict[str, Any]:
    top, top_required, params = _params_parts(action_type, model, defs)
    schema: dict[str, Any] = {
        "type": "object",
        "title": action_type,
        "properties": {
            "actionType": {"const": action_type},
            "delay": {"$ref": "#/$defs/delay"},
            **top,
            "params": params,
        },
        "required": ["actionType", *top_required],
        "additionalProperties": False,
    }
    if params.get("required"):
        schema["required"].append("params")
    if eager:
        schema["description"] = "runs when the event is handled, even when delayed"
    return schema


def rule_schema(source: object) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a follow-up rule document for a vocabulary (a
    :class:`~leadflow.rules.Vocabulary`, or a flow's or an ``Operations``' ``flow.vocabulary``).

    It lists the vocabulary's operators (with their descriptions), its known event types and one
    shape per registered action type: the seed's settings (``subject``, ``template``...) at the
    top level where the handler's params model declares them, the other settings under
    ``params``, each with the model's types, bounds and required fields. Aliases of event
    types (``quote_sent``) are accepted by leadflow but not listed; rules are stored with the
    canonical names. Returns a new dict on every call (changing it changes nothing).

    A document the schema accepts can still be refused when loaded (e.g. an operator's value
    of the wrong kind, a delay the calendar cannot plan): the flow's own check is the
    authority; the schema is what an editor can check as you type.
    """
    vocabulary = _vocabulary_of(source)
    operators = vocabulary.operators
    defs: dict[str, Any] = {
        "delay": copy.deepcopy(_DELAY),
        "condition": {
            "type": "object",
            "properties": {
                "field": dict(_FIELD_PATH),
                "operator": {"oneOf": [_operator(operators, n) for n in operators.names()]},
                "value": {"description": "what the operator compares with (JSON)"},
                "ignoreCase": {"type": "boolean", "default": False},
            },
            "required": ["field", "operator"],
            "additionalProperties": False,
        },
        "all": _group("all"),
        "any": _group("any"),
        "not": _group("not"),
        "conditionNode": {
            "oneOf": [
                {"$ref": "#/$defs/condition"},
                {"$ref": "#/$defs/all"},
                {"$ref": "#/$defs/any"},
                {"$ref": "#/$defs/not"},
            ]
        },
        "trigger": {
            "type": "object",
            "properties": {
                "eventType": {"enum": vocabulary.event_types.names()},
                "conditions": {
                    "type": "array",
                    "maxItems": 100,
                    "items": {"$ref": "#/$defs/conditionNode"},
                    "description": "all must hold; nest all / any / not groups for more",
                },
            },
            "required": ["eventType"],
            "additionalProperties": False,
        },
    }
    actions = []
    catalog = vocabulary.action_types()
    for action_type in catalog:
        spec = catalog.get(action_type)
        assert spec is not None
        defs[f"action.{action_type}"] = _action(action_type, spec.params, spec.eager, defs)
        actions.append({"$ref": f"#/$defs/action.{action_type}"})
    defs["action"] = {"oneOf": actions}
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "leadflow follow-up rule",
        "type": "object",
        "properties": {
            "ruleId": dict(_ID),
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": {"type": "string", "maxLength": 2000},
            "trigger": {"$ref": "#/$defs/trigger"},
            "actions": {
                "type": "array",
                "minItems": 1,
                "maxItems": 20,
                "items": {"$ref": "#/$defs/action"},
            },
            "isActive": {"type": "boolean", "default": True},
            "priority": {"type": "integer", "minimum": -1_000_000, "maximum": 1_000_000},
            "stopProcessing": {"type": "boolean", "default": False},
            "allowDuplicates": {"type": "boolean", "default": False},
            "version": {"type": "integer", "minimum": 1},
            "createdBy": dict(_ID),
            "updatedBy": dict(_ID),
            "createdAt": dict(_DATETIME),
            "updatedAt": dict(_DATETIME),
        },
        "required": ["name", "trigger", "actions"],
        "additionalProperties": False,
        "$defs": defs,
    }
