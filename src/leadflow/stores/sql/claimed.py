"""Claimed actions from their rows, without validating again what the store wrote itself.

A claim hands ``run_due`` up to a batch of rows the SQL store wrote from validated
:class:`~leadflow.records.ScheduledAction` values (its own ``schedule``/``schedule_many``),
whose columns its table constrains (types, ``NOT NULL``, the state and kind as text the store
wrote from its enums). Validating each again (pydantic over the whole action, the event's
payload walked for JSON-likeness) was the largest part of a claimed action's cost. So:

- the lifecycle columns are taken as they are (the column types already hand back aware UTC
  datetimes and integers); the state, kind and duplicate policy become their enums;
- the event is rebuilt from its document unvalidated, after a cheap structural check (the keys
  ``to_document`` writes, their Python types, an aware time): a document another writer
  changed into something else fails the check;
- the rule's action is validated once per distinct document in a claimed batch (the actions of
  one rule action share one), compared by value, never taken on trust from its key alone.

Whatever fails a check (a row another writer corrupted) is loaded by the validating path, which
refuses it as before. Only claims use this: the other reads are rare and keep validating.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from ...models import Action, Event
from ...records import ActionKind, DuplicatePolicy, ScheduledAction, ScheduledActionState

__all__ = ["claimed_actions"]

_set = object.__setattr__
_EVENT_KEYS: Final = frozenset({"eventId", "eventType", "occurredAt", "payload", "actor"})
_SET: Final = frozenset({"id", "type", "time", "payload"})
_SET_ACTOR: Final = _SET | {"actor"}
_FIELDS: Final = frozenset(ScheduledAction.model_fields)
"""The table's columns are the model's fields, one for one (``tables.py``)."""


class _Untrusted(Exception):
    """A row fails a structural check: load it by the validating path."""


def _event(document: Any) -> Event:
    """The event a store wrote (``Event.to_document``), rebuilt without validation once its
    shape is checked."""
    if type(document) is not dict or not document.keys() <= _EVENT_KEYS:
        raise _Untrusted
    event_id, event_type = document.get("eventId"), document.get("eventType")
    time, payload = document.get("occurredAt"), document.get("payload", {})
    actor = document.get("actor")
    if (
        type(event_id) is not str
        or type(event_type) is not str
        or type(time) is not datetime
        or time.tzinfo is not UTC
        or type(payload) is not dict
        or (actor is not None and type(actor) is not str)
    ):
        raise _Untrusted
    state = {"id": event_id, "type": event_type, "time": time, "payload": payload, "actor": actor}
    event = Event.__new__(Event)
    _set(event, "__dict__", state)
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_fields_set__", set(_SET if actor is None else _SET_ACTOR))
    _set(event, "__pydantic_private__", None)
    return event


def _trusted(state: dict[str, Any], actions: dict[Any, tuple[Any, Action]]) -> ScheduledAction:
    kind = ActionKind(state["kind"])
    document = state["action"]
    action: Action | None = None
    if document is not None:
        key = (state["rule_id"], state["rule_version"], state["action_index"], state["step_id"])
        seen = actions.get(key)
        if seen is not None and seen[0] == document:
            action = seen[1]
        else:
            action = Action.from_document(document)
            actions[key] = (document, action)
    if kind is ActionKind.RULE:
        whole = state["rule_id"] is not None and action is not None
    elif kind is ActionKind.DELIVERY:
        whole = action is None
    else:
        whole = None not in (state["enrollment_id"], state["step_id"], state["rule_id"])
    if not whole:  # what ScheduledAction's own check refuses
        raise _Untrusted
    state["kind"] = kind
    state["duplicates"] = DuplicatePolicy(state["duplicates"])
    state["state"] = ScheduledActionState(state["state"])
    state["event"] = _event(state["event"])
    state["action"] = action
    new = ScheduledAction.__new__(ScheduledAction)
    _set(new, "__dict__", state)
    _set(new, "__pydantic_extra__", None)
    _set(new, "__pydantic_fields_set__", set(_FIELDS))
    _set(new, "__pydantic_private__", None)
    return new


def claimed_actions(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    load: Callable[[Mapping[str, Any]], ScheduledAction],
) -> list[ScheduledAction]:
    """The actions of claimed ``rows`` (tuples of the table's ``columns``, all of them), each
    built from the store's own columns (see the module's docstring); a row that fails a check
    is given to ``load``, the store's validating loader."""
    names = tuple(columns)
    whole = frozenset(names) == _FIELDS and len(names) == len(_FIELDS)
    actions: dict[Any, tuple[Any, Action]] = {}
    out: list[ScheduledAction] = []
    for row in rows:
        state = dict(zip(names, row, strict=True))
        try:
            if not whole:
                raise _Untrusted
            out.append(_trusted(state, actions))
        except (_Untrusted, ValueError, KeyError):
            out.append(load(dict(zip(names, row, strict=True))))
    return out
