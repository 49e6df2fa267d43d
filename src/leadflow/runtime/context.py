"""The narrow context an action handler sees: the stored action and its validated params, the
time, the stores and the host's integrations, the settings, ``emit`` and ``cascade``. Never the
:class:`~leadflow.LeadFlow` object."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import InvalidInputError, LeadflowError
from ..models import Action, Event
from ..ports import Integrations, Storage
from ..records import ScheduledAction
from .settings import FlowSettings

if TYPE_CHECKING:
    from .results import HandleResult

__all__ = ["ActionContext", "ActionHandler", "P"]

P = TypeVar("P")
"""The params model a handler is registered with (``None`` without one)."""


@dataclass(slots=True)
class ActionContext(Generic[P]):
    """What a handler gets: the stored action and its validated ``params``, the time, the
    stores and the host's integrations, the settings, and two ways back into leadflow:
    :meth:`emit` (one of leadflow's own events to the host's sink) and :meth:`cascade` (feed an
    event the action caused back into the rules, one level deeper).

    Generic in the params model, so a type checker checks handler code:
    ``def post(ctx: ActionContext[SlackParams]) -> str`` registered with
    ``params=SlackParams`` sees ``ctx.params.channel`` as a ``str``."""

    scheduled: ScheduledAction
    params: P
    now: datetime
    storage: Storage
    integrations: Integrations
    settings: FlowSettings
    _emit: Callable[[str, dict[str, Any]], None]
    _cascade: Callable[[Event, ActionContext[Any]], None]
    errors: list[LeadflowError] = field(default_factory=list)
    cascades: list[HandleResult] = field(default_factory=list)

    @property
    def action(self) -> Action:
        assert self.scheduled.action is not None, "a delivery has no action"
        return self.scheduled.action

    @property
    def event(self) -> Event:
        return self.scheduled.event

    @property
    def idempotency_key(self) -> str:
        return self.scheduled.idempotency_key

    @property
    def rule_id(self) -> str | None:
        return self.scheduled.rule_id

    @property
    def depth(self) -> int:
        return self.scheduled.depth

    @property
    def planned_at(self) -> datetime:
        """When the rule planned the action for: the event's time plus the action's delay."""
        return self.scheduled.planned_at

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        """Send one of leadflow's own events to the host's sink (a failing sink is logged)."""
        self._emit(name, payload)

    def cascade(self, event: Event) -> None:
        """Feed ``event`` (caused by this action) into the rules one cascade level deeper; the
        result lands in :attr:`cascades`, a depth-limit stop in :attr:`errors`."""
        self._cascade(event, self)

    def opportunity_id(self) -> str:
        """The event's opportunity; an action that needs one fails permanently without it."""
        value = self.scheduled.opportunity_id or self.event.opportunity_id
        if value is None:
            raise InvalidInputError(
                f"{self.scheduled.action_type} needs an opportunity, the event has no "
                "opportunityId",
                field="payload.opportunityId",
            )
        return value


ActionHandler = Callable[[ActionContext[Any]], "str | None"]
"""A registered handler, whatever its params model."""
