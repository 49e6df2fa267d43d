"""The sequence format as a JSON Schema (draft 2020-12), generated from a vocabulary as the rule
format's is (:func:`~leadflow.runtime.schema.rule_schema`): its operators, its event types and
one action shape per registered action type with the settings its params model declares. Steps
are a union discriminated by ``kind``.

A document the schema accepts can still be refused when loaded (a step reference to no step, a
loop that never waits, an operator's value of the wrong kind...): the model and
:func:`~leadflow.rules.check_sequence` are the authority; the schema is what an editor can check
as you type.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from ..fields import ID_PATTERN
from .schema import SCHEMA_DIALECT, _vocabulary_of, rule_schema

__all__ = ["STEP_KINDS", "sequence_schema"]

STEP_KINDS: Final = ("action", "wait", "wait_for_event", "branch", "split", "goto", "exit")

_STEP_ID: Final = {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]{0,63}$"}
_ID: Final = {"type": "string", "pattern": ID_PATTERN}
_DATETIME: Final = {"type": "string", "format": "date-time"}
_HHMM: Final = {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$"}
_DAY: Final = {"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}
_NAME: Final = {"type": "string", "maxLength": 200}
_CONDITIONS: Final = {
    "type": "array",
    "maxItems": 100,
    "items": {"$ref": "#/$defs/conditionNode"},
    "description": "all must hold; nest all / any / not groups for more",
}
_NO_DELAY: Final = {
    "description": "a step's action runs when the step is reached: put a wait step before it",
    "oneOf": [
        {"const": 0},
        {"type": "object", "properties": {"amount": {"const": 0}}, "required": ["amount"]},
    ],
}


def _obj(properties: dict[str, Any], required: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
        **extra,
    }


def _step(kind: str, description: str, properties: dict[str, Any], required: list[str]) -> Any:
    head = {"id": dict(_STEP_ID), "kind": {"const": kind}, "name": dict(_NAME)}
    return _obj(
        {**head, **properties},
        ["id", "kind", *required],
        title=kind,
        description=description,
    )


def _steps() -> dict[str, Any]:
    delay = {"$ref": "#/$defs/delay"}
    return {
        "action": _step(
            "action",
            "run an action handler with its settings",
            {
                "action": {
                    "allOf": [{"$ref": "#/$defs/action"}, {"properties": {"delay": _NO_DELAY}}]
                }
            },
            ["action"],
        ),
        "wait": _step(
            "wait",
            "wait for 'delay' or 'until' a local time of day (exactly one of them)",
            {"delay": delay, "until": {"$ref": "#/$defs/timeOfDay"}},
            [],
        )
        | {"oneOf": [{"required": ["delay"]}, {"required": ["until"]}]},
        "wait_for_event": _step(
            "wait_for_event",
            "wait for an event of the opportunity for at most 'timeout'; matched: 'then' "
            "(default: the next step); timed out: 'onTimeout' (default: the next step)",
            {
                "eventType": {"$ref": "#/$defs/eventType"},
                "conditions": dict(_CONDITIONS),
                "timeout": delay,
                "then": dict(_STEP_ID),
                "onTimeout": dict(_STEP_ID),
            },
            ["eventType", "timeout"],
        ),
        "branch": _step(
            "branch",
            "the first case whose conditions hold on the enrollment's context (entry.*, "
            "event.*, opportunity.*) decides; none: 'otherwise' (default: the next step)",
            {
                "cases": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 20,
                    "items": _obj(
                        {
                            "when": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 100,
                                "items": {"$ref": "#/$defs/conditionNode"},
                            },
                            "goto": dict(_STEP_ID),
                        },
                        ["when", "goto"],
                    ),
                },
                "otherwise": dict(_STEP_ID),
            },
            ["cases"],
        ),
        "split": _step(
            "split",
            "A/B/n: each enrollment takes one variant with probability weight / total",
            {
                "variants": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 10,
                    "items": _obj(
                        {
                            "name": {
                                "type": "string",
                                "pattern": r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$",
                            },
                            "weight": {"type": "integer", "minimum": 1, "maximum": 10_000},
                            "goto": dict(_STEP_ID),
                        },
                        ["name", "weight", "goto"],
                    ),
                }
            },
            ["variants"],
        ),
        "goto": _step("goto", "continue at 'target'", {"target": dict(_STEP_ID)}, ["target"]),
        "exit": _step("exit", "end the enrollment", {}, []),
    }


def sequence_schema(source: object) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a sequence definition document for a vocabulary (a
    :class:`~leadflow.rules.Vocabulary`, or a flow's or an ``Operations``' ``flow.vocabulary``).

    The conditions, delays and action shapes are the rule format's (one shape per registered
    action type, from its handler's params model); each step kind is one shape (``kind`` is
    required and picks it). Returns a new dict on every call."""
    vocabulary = _vocabulary_of(source)
    rules = rule_schema(vocabulary)
    defs: dict[str, Any] = {
        name: definition for name, definition in rules["$defs"].items() if name != "trigger"
    }
    defs["eventType"] = {"enum": vocabulary.event_types.names()}
    defs["timeOfDay"] = _obj(
        {
            "at": {**_HHMM, "description": "local wall time, HH:MM"},
            "nextDay": {"type": "boolean", "default": False},
            "businessDays": {"type": "boolean", "default": True},
        },
        ["at"],
    )
    steps = _steps()
    for kind in STEP_KINDS:
        defs[f"step.{kind}"] = steps[kind]
    defs["step"] = {
        "oneOf": [{"$ref": f"#/$defs/step.{kind}"} for kind in STEP_KINDS],
        "description": "one step; 'kind' says which",
    }
    event = {"eventType": {"$ref": "#/$defs/eventType"}, "conditions": dict(_CONDITIONS)}
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "leadflow sequence",
        "type": "object",
        "properties": {
            "sequenceId": dict(_ID),
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": {"type": "string", "maxLength": 2000},
            "version": {"type": "integer", "minimum": 1},
            "status": {"enum": ["draft", "active", "paused", "archived"], "default": "draft"},
            "entry": _obj(copy.deepcopy(event), ["eventType"]),
            "reenrollment": {
                "enum": ["never", "after_end", "every_entry"],
                "default": "after_end",
            },
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": {"$ref": "#/$defs/step"},
            },
            "goals": {
                "type": "array",
                "maxItems": 20,
                "items": _obj(
                    {"name": {"type": "string", "minLength": 1, "maxLength": 200}, **event},
                    ["name", "eventType"],
                ),
            },
            "window": _obj(
                {
                    "days": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 7,
                        "uniqueItems": True,
                        "items": _DAY,
                    },
                    "start": dict(_HHMM),
                    "end": dict(_HHMM),
                    "holidays": {"type": "boolean", "default": True},
                },
                [],
            ),
            "timezone": {"type": "string", "description": "an IANA time zone"},
            "dailyCap": {"type": "integer", "minimum": 1, "maximum": 1000},
            "createdBy": dict(_ID),
            "createdAt": dict(_DATETIME),
            "updatedAt": dict(_DATETIME),
        },
        "required": ["name", "steps"],
        "additionalProperties": False,
        "$defs": defs,
    }
