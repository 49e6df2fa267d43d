"""The vocabulary rules are written in, as one value: the operators conditions may use, the
event types triggers may name, the action types actions may name (with what each declares: its
params model, eagerness and the events it causes), the working calendar business-time delays
count on, and the input limits.

Everything that reads or checks rules takes this one value: the runtime's rule book (which
compiles them), lint, the rule format's JSON Schema, the backtest and the explanations. A flow
builds it from its parts (``flow.vocabulary``); :meth:`Vocabulary.default` is the built-ins'.
The value is frozen: a different vocabulary is a new value (:meth:`Vocabulary.replace`). The
registries it holds can still be extended by their owner (``register``): the holders see the
change, since they hold the same registries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..limits import DEFAULT_LIMITS, Limits
from .calendar import WorkingCalendar
from .events import EventTypes
from .operators import OperatorRegistry

__all__ = ["ActionCatalog", "ActionDeclaration", "Vocabulary"]


class ActionDeclaration(Protocol):
    """What an action type declares when its handler is registered (the runtime's
    :class:`~leadflow.HandlerSpec` is one)."""

    @property
    def action_type(self) -> str: ...

    @property
    def params(self) -> Any:
        """The pydantic model validating the action's settings, or None."""
        ...

    @property
    def eager(self) -> bool: ...

    @property
    def causes(self) -> tuple[str, ...]: ...


class ActionCatalog(Protocol):
    """The action types known, by name (the runtime's :class:`~leadflow.HandlerRegistry` is
    one): iteration gives the names in order."""

    def get(self, action_type: str) -> ActionDeclaration | None: ...

    def __iter__(self) -> Iterator[str]: ...

    def __contains__(self, action_type: object) -> bool: ...


class _NoActions:
    """The catalog of a vocabulary without action types (the pure engine's)."""

    def get(self, action_type: str) -> ActionDeclaration | None:
        return None

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __contains__(self, action_type: object) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Operators, event types, action types, the working calendar and the limits, as one value.

    ``actions`` is None when the action types are not known here (the pure engine plans any
    action type; the runtime checks them against its handlers)."""

    operators: OperatorRegistry
    event_types: EventTypes
    calendar: WorkingCalendar
    actions: ActionCatalog | None = None
    limits: Limits = DEFAULT_LIMITS

    @classmethod
    def default(cls, *, actions: ActionCatalog | None = None) -> Vocabulary:
        """The built-ins: the built-in operators, the seed's event types, the Monday-Friday
        9-17 UTC calendar, the default limits (and ``actions`` when given)."""
        return cls(OperatorRegistry.default(), EventTypes(), WorkingCalendar(), actions)

    @classmethod
    def of(
        cls,
        *,
        operators: OperatorRegistry | None = None,
        event_types: EventTypes | Iterable[str] | None = None,
        calendar: WorkingCalendar | None = None,
        actions: ActionCatalog | None = None,
        limits: Limits | None = None,
    ) -> Vocabulary:
        """A vocabulary from the parts given, the built-ins for the others (``event_types``
        may be extra names beside the seed's)."""
        return cls(
            operators if operators is not None else OperatorRegistry.default(),
            event_types if isinstance(event_types, EventTypes) else EventTypes(event_types or ()),
            calendar if calendar is not None else WorkingCalendar(),
            actions,
            limits if limits is not None else DEFAULT_LIMITS,
        )

    def replace(self, **changes: Any) -> Vocabulary:
        """This vocabulary with some parts replaced (``operators=``, ``actions=``...)."""
        return dataclasses.replace(self, **changes)

    def action_types(self) -> ActionCatalog:
        """The action types known (empty when :attr:`actions` is None)."""
        return self.actions if self.actions is not None else _NoActions()
