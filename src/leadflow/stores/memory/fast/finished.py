"""Finished scheduled actions (done, cancelled) as rows the garbage collector stops walking.

The runtime finishes an action for nearly every handled event, and the fast store keeps every
finished action until :meth:`~.scheduled.FastScheduledActionStore.purge_finished` drops it.
Kept as models (an action, its event, its rule action and their dicts) each would be about
4 KB of objects the collector walks on every full collection (issue 9). Kept here as a *row*:
one flat tuple of the action's field values in the model's field order, then its event's, its
rule action's and that action's delay's, enumerations as their values, and the two free-form
documents (the event's payload, the action's params) pickled (their own values as they are: a
datetime in a payload stays a datetime). Every value in a row is then an atom (text, number,
datetime, bytes, None), and CPython stops tracking such a tuple at the first collection that
sees it.

Made from the action's own field values (read in one step each, no serializer): the store
finishes an action for nearly every event, and a JSON dump of its fields cost about 8x this.
A row comes back as a model only when a finished action is read, through pydantic validation
(the row's values are the model's own, so the model is equal to the one kept).
"""

from __future__ import annotations

import pickle
import types
import typing
from datetime import datetime
from enum import Enum
from operator import itemgetter
from typing import Any, Final

from pydantic import BaseModel

from ....models import Action, Delay, Event
from ....records import ScheduledAction, ScheduledActionState

__all__ = [
    "DUE_AT",
    "KEY",
    "STATE",
    "Documents",
    "Row",
    "documents",
    "documents_of",
    "freeze",
    "freeze_done",
    "thaw",
]

Row = tuple[Any, ...]
"""A finished action's fields (see the module docstring)."""

_PROTOCOL: Final = pickle.HIGHEST_PROTOCOL


def _enum_positions(model: type[BaseModel]) -> tuple[int, ...]:
    """Where the fields of ``model`` that hold an enumeration (or None) are, in field order."""
    positions = []
    for position, field in enumerate(model.model_fields.values()):
        annotation = field.annotation
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        kinds = typing.get_args(annotation) if union else (annotation,)
        if any(isinstance(kind, type) and issubclass(kind, Enum) for kind in kinds):
            positions.append(position)
    return tuple(positions)


class _Shape:
    """How one model's fields go into a row and come back."""

    def __init__(self, model: type[BaseModel], documents: tuple[str, ...] = ()) -> None:
        names = tuple(model.model_fields)
        self.model = model
        self.names = names
        self.values = itemgetter(*names)
        self.enums = _enum_positions(model)
        self.documents = tuple(names.index(name) for name in documents)

    def row(self, instance: BaseModel, pickled: bool = True) -> list[Any]:
        """``instance``'s values in a row's form; its documents as they are, or (not
        ``pickled``) left for the caller to fill in."""
        values = list(self.values(instance.__dict__))
        for position in self.enums:
            value = values[position]
            if value is not None:
                values[position] = value._value_  # .value: a descriptor's call each
        if not pickled:
            return values
        for position in self.documents:
            document = values[position]
            values[position] = pickle.dumps(document, _PROTOCOL) if document else None
        return values

    def fields(self, row: Row) -> dict[str, Any]:
        fields = dict(zip(self.names, row, strict=True))
        for position in self.documents:
            packed = row[position]
            fields[self.names[position]] = {} if packed is None else pickle.loads(packed)
        return fields


_ACTION: Final = _Shape(ScheduledAction)
_EVENT: Final = _Shape(Event, ("payload",))
_RULE_ACTION: Final = _Shape(Action, ("params",))
_DELAY: Final = _Shape(Delay)
_AT_EVENT: Final = _ACTION.names.index("event")
_AT_ACTION: Final = _ACTION.names.index("action")
_AT_DELAY: Final = _RULE_ACTION.names.index("delay")
_AT_PAYLOAD: Final = _EVENT.names.index("payload")
_AT_PARAMS: Final = _RULE_ACTION.names.index("params")
# The row's layout: the action's fields, then its event's, then its rule action's (delay in
# place), then the delay's; one flat tuple, so one pass of the collector untracks it.
_EVENT_AT: Final = len(_ACTION.names)
_RULE_ACTION_AT: Final = _EVENT_AT + len(_EVENT.names)
_DELAY_AT: Final = _RULE_ACTION_AT + len(_RULE_ACTION.names)
_END: Final = _DELAY_AT + len(_DELAY.names)
_NO_RULE_ACTION: Final = (None,) * (_END - _RULE_ACTION_AT)
if _ACTION.names[0] != "action_id":  # the store keeps the rows by their first value
    raise AssertionError("a finished action's row must begin with its id")
DUE_AT: Final = _ACTION.names.index("due_at")
STATE: Final = _ACTION.names.index("state")
"""Where a row holds its due time, its state (the value: ``"done"``) and its idempotency key."""
KEY: Final = _ACTION.names.index("idempotency_key")
_LEASE_EXPIRES_AT: Final = _ACTION.names.index("lease_expires_at")
_UPDATED_AT: Final = _ACTION.names.index("updated_at")
_FINISHED_AT: Final = _ACTION.names.index("finished_at")
_DONE: Final = ScheduledActionState.DONE.value  # as a row keeps a state


Documents = tuple[bytes | None, bytes | None]
"""An action's two documents as a row keeps them: its event's payload and its rule action's
params, each pickled (None when empty or absent)."""


def documents(action: ScheduledAction) -> Documents:
    """``action``'s documents as :func:`freeze` would keep them now: a snapshot of them."""
    payload, planned = action.event.payload, action.action
    params = None if planned is None else planned.params
    return (
        pickle.dumps(payload, _PROTOCOL) if payload else None,
        pickle.dumps(params, _PROTOCOL) if params else None,
    )


def freeze(action: ScheduledAction, taken: Documents | None = None) -> Row:
    """``action`` as a row (see the module docstring); with ``taken``, its documents as
    :func:`documents` took them earlier instead of as they are now."""
    return _frozen(_ACTION.row(action), action, taken)


def freeze_done(action: ScheduledAction, now: datetime, taken: Documents | None = None) -> Row:
    """The row of ``action`` marked done at ``now`` (state ``done``, no lease expiry,
    updated and finished at ``now``): ``freeze(action._evolve(state=DONE,
    lease_expires_at=None, updated_at=now, finished_at=now), taken)`` without the changed
    copy, which nobody would read (a store finishing a claimed action)."""
    values = _ACTION.row(action)
    values[STATE] = _DONE
    values[_LEASE_EXPIRES_AT] = None
    values[_UPDATED_AT] = values[_FINISHED_AT] = now
    return _frozen(values, action, taken)


def _frozen(values: list[Any], action: ScheduledAction, taken: Documents | None) -> Row:
    """The row of ``action`` whose own fields are ``values`` (in a row's form)."""
    values[_AT_EVENT] = values[_AT_ACTION] = None  # kept after the action's own fields
    values += _EVENT.row(action.event, taken is None)
    if taken is not None:
        values[_EVENT_AT + _AT_PAYLOAD] = taken[0]
    planned = action.action
    if planned is None:
        return (*values, *_NO_RULE_ACTION)
    rule_action = _RULE_ACTION.row(planned, taken is None)
    rule_action[_AT_DELAY] = None
    if taken is not None:
        rule_action[_AT_PARAMS] = taken[1]
    return (*values, *rule_action, *_DELAY.row(planned.delay))


def documents_of(taken: Documents) -> tuple[dict[str, Any], dict[str, Any]]:
    """The documents ``taken`` holds, as new dicts (the payload, the params)."""
    payload, params = taken
    return (
        {} if payload is None else pickle.loads(payload),
        {} if params is None else pickle.loads(params),
    )


def thaw(row: Row) -> ScheduledAction:
    """The action ``row`` was made from (equal to it), validated again."""
    fields = _ACTION.fields(row[:_EVENT_AT])
    fields["event"] = _EVENT.fields(row[_EVENT_AT:_RULE_ACTION_AT])
    if row[_RULE_ACTION_AT] is not None:  # an action type: there is a rule action
        rule_action = _RULE_ACTION.fields(row[_RULE_ACTION_AT:_DELAY_AT])
        rule_action["delay"] = _DELAY.fields(row[_DELAY_AT:_END])
        fields["action"] = rule_action
    return ScheduledAction.model_validate(fields)
