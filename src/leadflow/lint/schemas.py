"""Declared payload schemas: which fields an event type's payload has, and of what kind.

Payloads are free-form documents, so the engine cannot know that ``leadsource`` is a typo.
A :class:`PayloadSchema` declares the fields of one event type; lint checks every condition's
field against it (unknown names, with the closest known one suggested) and every operator and
value against the field's kind. :data:`SEED_PAYLOAD_SCHEMAS` covers the seed's event types;
hosts register theirs on a :class:`PayloadSchemas` registry (a copy of the seed's by default).

A schema is ``strict`` when the payload never carries other fields: an unknown field is then an
error; otherwise (the seed's schemas: hosts add their own fields) it is a warning.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic.alias_generators import to_camel

from ..models import ActivityType, Outcome, canonical_event_type

__all__ = [
    "SEED_PAYLOAD_SCHEMAS",
    "FieldKind",
    "FieldSpec",
    "PayloadSchema",
    "PayloadSchemas",
]

FieldKind = Literal["string", "number", "integer", "boolean", "datetime", "list", "object", "any"]
_KINDS = frozenset(("string", "number", "integer", "boolean", "datetime", "list", "object", "any"))


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One payload field: its ``kind`` and, when the field takes a closed set of values,
    ``values``. Below an ``object`` (or ``any``) field every sub-path is accepted."""

    kind: FieldKind
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown field kind {self.kind!r} (known: {sorted(_KINDS)})")


def _norm(name: str) -> str:
    """Field names compare as the engine reads them: camelCase and snake_case are one name."""
    return to_camel(name) if "_" in name else name


@dataclass(frozen=True, slots=True)
class PayloadSchema:
    """The declared fields of one event type's payload (names in camelCase or snake_case)."""

    event_type: str
    fields: Mapping[str, FieldSpec]
    strict: bool = False
    _index: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_type", canonical_event_type(self.event_type))
        for name in self.fields:
            self._index[_norm(name)] = name

    def lookup(self, path: str) -> tuple[str, FieldSpec] | None:
        """``(declared name, spec)`` of the field ``path`` reads (its first segment when the
        field is an object), or None when the schema has no such field."""
        head, _, rest = path.partition(".")
        name = self._index.get(_norm(head))
        if name is None:
            return None
        spec = self.fields[name]
        if rest and spec.kind not in ("object", "any", "list"):
            return None
        if rest:
            return name, FieldSpec("any")
        return name, spec

    def closest(self, path: str) -> str | None:
        """The declared field spelled most like ``path``'s first segment, or None."""
        head = path.partition(".")[0]
        found = difflib.get_close_matches(
            head.lower(), [n.lower() for n in self.fields], n=1, cutoff=0.6
        )
        if not found:
            return None
        return next(n for n in self.fields if n.lower() == found[0])


class PayloadSchemas:
    """Payload schemas by event type. ``PayloadSchemas()`` holds the seed's; :meth:`register`
    adds or replaces one. A plain value: copy it before changing a shared one."""

    def __init__(self, schemas: Iterable[PayloadSchema] | None = None) -> None:
        self._by_type: dict[str, PayloadSchema] = {}
        for schema in SEED_PAYLOAD_SCHEMAS if schemas is None else schemas:
            self._by_type[schema.event_type] = schema

    def register(
        self,
        event_type: str,
        fields: Mapping[str, FieldSpec | FieldKind],
        *,
        strict: bool = False,
    ) -> PayloadSchema:
        """Declare (or replace) the payload of ``event_type``; a field may be given as a bare
        kind (``"string"``). Returns the schema. ``ValueError`` for an unknown kind."""
        specs = {
            name: spec if isinstance(spec, FieldSpec) else FieldSpec(spec)
            for name, spec in fields.items()
        }
        schema = PayloadSchema(event_type, specs, strict)
        self._by_type[schema.event_type] = schema
        return schema

    def get(self, event_type: str) -> PayloadSchema | None:
        """The schema of ``event_type`` (any spelling), or None when none is declared."""
        try:
            return self._by_type.get(canonical_event_type(event_type))
        except ValueError:
            return None

    def copy(self) -> PayloadSchemas:
        return PayloadSchemas(self._by_type.values())

    def __contains__(self, event_type: object) -> bool:
        return isinstance(event_type, str) and self.get(event_type) is not None


_S = FieldSpec("string")
_N = FieldSpec("number")
_I = FieldSpec("integer")
_T = FieldSpec("datetime")
_O = FieldSpec("object")
_L = FieldSpec("list")

_OPPORTUNITY: dict[str, FieldSpec] = {
    "opportunityId": _S,
    "customerId": _S,
    "leadSource": _S,
    "priority": _S,
    "status": _S,
    "assignedTo": _S,
    "ownerId": _S,
    "estimatedValue": _N,
    "title": _S,
    "name": _S,
    "tags": _L,
    "metadata": _O,
    "createdAt": _T,
    "updatedAt": _T,
}

_ACTIVITY: dict[str, FieldSpec] = {
    "activityId": _S,
    "opportunityId": _S,
    "customerId": _S,
    "activityType": FieldSpec("string", tuple(t.value for t in ActivityType)),
    "subject": _S,
    "description": _S,
    "scheduledDate": _T,
    "dueDate": _T,
    "completedDate": _T,
    "assignedTo": _S,
    "completedBy": _S,
    "outcome": FieldSpec("string", tuple(o.value for o in Outcome)),
    "metadata": _O,
    "openKey": _S,
    "createdBy": _S,
    "updatedBy": _S,
    "createdAt": _T,
    "updatedAt": _T,
    "version": _I,
    "ruleId": _S,
}

SEED_PAYLOAD_SCHEMAS: tuple[PayloadSchema, ...] = (
    PayloadSchema("opportunity.created", _OPPORTUNITY),
    PayloadSchema("opportunity.status_changed", {**_OPPORTUNITY, "oldStatus": _S, "newStatus": _S}),
    PayloadSchema(
        "estimate.created",
        {
            "estimateId": _S,
            "opportunityId": _S,
            "customerId": _S,
            "amount": _N,
            "estimateValue": _N,
            "quoteValue": _N,
            "currency": _S,
            "status": _S,
            "sentAt": _T,
            "validUntil": _T,
            "metadata": _O,
        },
    ),
    PayloadSchema("activity.created", _ACTIVITY),
    PayloadSchema("activity.completed", _ACTIVITY),
    PayloadSchema(
        "activity.overdue",
        {
            "activityId": _S,
            "opportunityId": _S,
            "customerId": _S,
            "activityType": _ACTIVITY["activityType"],
            "subject": _S,
            "assignedTo": _S,
            "dueDate": _T,
            "threshold": _N,
            "level": _I,
            "overdueFor": _N,
            "overdueSeconds": _I,
            "asOf": _T,
        },
    ),
    PayloadSchema(
        "opportunity.stale_detected",
        {
            "opportunityId": _S,
            "lastActivityAt": _T,
            "staleSince": _T,
            "daysSinceLastActivity": _I,
        },
    ),
)
"""The seed's event payloads (not strict: hosts send more fields)."""
