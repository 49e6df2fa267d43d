"""Action handlers: the registry integrators extend, and the narrow context a handler sees.

A handler is a plain callable ``handler(context) -> str | None`` (the optional string is a short
note for logs and reports). It is registered with what it needs: a pydantic ``params`` model that
validates the action's settings (checked when a rule is loaded, so a bad rule never reaches a
worker) and whether it runs ``eager``-ly, when the event is handled, even if the action is
delayed (it then reads ``context.planned_at``). Built-in and integrator handlers are registered
the same way; the runtime never looks at an action type's name.

A handler must be idempotent in effect: a crash between doing the work and recording it makes
leadflow run the action again, so handlers key their writes on ``context.idempotency_key``.
Raising marks the attempt failed: :class:`~leadflow.PermanentError` (or bad input, or something
not found) parks the action at once with the reason; anything else is retried with backoff and
parked after the last attempt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

from ..errors import InvalidInputError, PermanentError, RuleValidationError
from ..models import Action, FollowUpRule
from ..records import ScheduledAction
from .context import ActionContext, ActionHandler
from .handlers import (
    BUILTINS,
    CONTAINED,
    create_activities,
    create_activity,
    send_email,
    send_notification,
    send_sms,
)

__all__ = [
    "ActionContext",
    "ActionHandler",
    "HandlerRegistry",
    "HandlerSpec",
    "settings_location",
]

_BLIND: frozenset[Any] = frozenset({send_notification, send_email, send_sms})
"""Built-in handlers that neither read activities (unless they assign ``least_loaded``) nor
cause events: :meth:`HandlerRegistry.run_batch` lets activities wait past them."""

_Prepared = tuple[ActionHandler, Any, bool, bool]
"""What :meth:`HandlerRegistry.run_batch` keeps of a prepared rule action: its handler, its
params, whether its activity waits (a built-in ``create_activity``), whether its handler is
blind (see :data:`_BLIND`)."""

_ACTION_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")

_M = TypeVar("_M", bound=BaseModel)

_SEED_SETTINGS = {
    "activityType": "activityType",
    "activity_type": "activityType",
    "subject": "subject",
    "description": "description",
    "assignTo": "assignTo",
    "assign_to": "assignTo",
    "template": "template",
}


def settings_location(index: int, loc: tuple[int | str, ...]) -> str:
    """Where a setting a params model refused lives in the rule document, in the one spelling
    every check uses: ``actions[0].subject`` for the seed's fields (``activityType``,
    ``subject``, ``description``, ``assignTo``, ``template``), ``actions[0].params.url`` for
    the others, list items as ``[2]``."""
    where = f"actions[{index}]"
    if not loc:
        return where + ".params"
    head, rest = loc[0], loc[1:]
    seed = _SEED_SETTINGS.get(head) if isinstance(head, str) else None
    where += f".{seed}" if seed is not None else f".params.{head}"
    for part in rest:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    return where


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A registered handler and what it declared."""

    action_type: str
    handler: ActionHandler
    params: type[BaseModel] | None = None
    eager: bool = False
    causes: tuple[str, ...] = ()
    """The event types running this handler may feed back into the rules (for lint's cycle
    check), e.g. ``("opportunity.status_changed",)`` for ``update_status``."""

    def parse(self, action: Action) -> Any:
        """The action's settings validated by the params model (None without one).
        Raises pydantic's ``ValidationError``."""
        if self.params is None:
            return None
        return self.params.model_validate(action.settings())


class HandlerRegistry:
    """Maps action types to handlers. :meth:`default` holds the built-ins; a registry is a plain
    value: build one per flow, extend it before building the flow."""

    def __init__(self, specs: Mapping[str, HandlerSpec] | None = None) -> None:
        self._specs: dict[str, HandlerSpec] = dict(specs or {})
        self._held: set[str] = set()
        self._parsed: dict[tuple[Hashable, str], tuple[Action, Any]] = {}

    @classmethod
    def default(cls) -> HandlerRegistry:
        """A fresh registry with the built-in action types."""
        registry = cls()
        for action_type, handler, params, eager, causes in BUILTINS:
            registry.register(action_type, handler, params=params, eager=eager, causes=causes)
        return registry

    @overload
    def register(
        self,
        action_type: str,
        handler: Callable[[ActionContext[_M]], str | None],
        *,
        params: type[_M],
        eager: bool = False,
        replace: bool = False,
        causes: Iterable[str] = (),
    ) -> None: ...

    @overload
    def register(
        self,
        action_type: str,
        handler: Callable[[ActionContext[None]], str | None],
        *,
        params: None = None,
        eager: bool = False,
        replace: bool = False,
        causes: Iterable[str] = (),
    ) -> None: ...

    def register(
        self,
        action_type: str,
        handler: ActionHandler,
        *,
        params: type[BaseModel] | None = None,
        eager: bool = False,
        replace: bool = False,
        causes: Iterable[str] = (),
    ) -> None:
        """Handle ``action_type`` with ``handler``. ``params`` validates each action's settings
        (``Action.settings()``) when a rule is loaded; ``eager`` runs the handler when the event
        is handled even if the action is delayed; ``causes`` names the event types the handler
        may feed back into the rules (lint draws its cycle graph from them).
        :class:`InvalidInputError` for a malformed type name or a taken one (unless
        ``replace``), or a ``causes`` that is not a list of strings."""
        if not isinstance(action_type, str) or not _ACTION_TYPE_RE.match(action_type):
            raise InvalidInputError(
                f"invalid action type {action_type!r}: use lower_snake_case", field="action_type"
            )
        if not callable(handler):
            raise InvalidInputError("the handler must be callable", field="handler")
        if params is not None and not (isinstance(params, type) and issubclass(params, BaseModel)):
            raise InvalidInputError("params must be a pydantic model class", field="params")
        if action_type in self._specs and not replace:
            raise InvalidInputError(
                f"a handler for {action_type!r} exists (pass replace=True)", field="action_type"
            )
        if isinstance(causes, str) or not all(isinstance(c, str) for c in causes):
            raise InvalidInputError("causes must be a list of event types", field="causes")
        self._specs[action_type] = HandlerSpec(
            action_type, handler, params, bool(eager), tuple(causes)
        )

    def hold(self, *action_types: str) -> None:
        """Keep these registered types for planning (rules using them are checked and plan
        their actions as before) but do not run them here: a flow on this registry stores
        their actions pending even when due now, and its :meth:`~leadflow.LeadFlow.run_due`
        does not claim them, so they wait for a worker whose registry runs them. For a worker
        that lacks the integrations a handler needs (``leadflow worker`` without ``--app``).
        :class:`InvalidInputError` for a type with no handler here."""
        for action_type in action_types:
            if action_type not in self._specs:
                raise InvalidInputError(
                    f"no handler is registered for {action_type!r}", field="action_types"
                )
        self._held.update(action_types)

    def runs(self, action_type: str) -> bool:
        """Whether this registry runs ``action_type`` (registered and not held)."""
        return action_type in self._specs and action_type not in self._held

    def contained(self, action_type: str) -> bool:
        """Whether ``action_type``'s handler is a built-in whose every effect is a store write
        (:data:`~leadflow.runtime.handlers.CONTAINED`; a replaced one is not)."""
        spec = self._specs.get(action_type)
        return spec is not None and spec.handler in CONTAINED

    def leaves_actions(self, action_type: str) -> bool:
        """Whether ``action_type``'s handler reads no stored action and feeds no event back
        into the rules: a built-in message or ``create_activity`` (a replaced one is not), run
        here. ``handle_many`` stores a chunk whose run-now actions all are so with them
        already acknowledged (:class:`~leadflow.ports.AcknowledgedScheduling`)."""
        spec = self._specs.get(action_type)
        return (
            spec is not None
            and action_type not in self._held
            and (spec.handler in _BLIND or spec.handler is create_activity)
        )

    def runnable(self) -> frozenset[str]:
        """The action types this registry runs: every registered type not held (see
        :meth:`hold`). What a flow's :meth:`~leadflow.LeadFlow.run_due` claims by default."""
        return frozenset(self._specs.keys() - self._held)

    def parse(self, spec: HandlerSpec, action: Action, *, key: Hashable) -> Any:
        """``spec.parse(action)``, reused for the same ``key`` (e.g. rule id and action index)
        while the action is unchanged (compared by value) when the params model is frozen: a
        hot rule's settings are not validated again on every run."""
        frozen = spec.params is not None and spec.params.model_config.get("frozen", False)
        slot = (key, spec.action_type)
        cached = self._parsed.get(slot) if frozen else None
        if cached is not None and (cached[0] is action or cached[0] == action):
            return cached[1]
        params = spec.parse(action)
        if frozen:
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            self._parsed[slot] = (action, params)
        return params

    def get(self, action_type: str) -> HandlerSpec | None:
        return self._specs.get(action_type)

    def run(self, ctx: ActionContext[Any]) -> str | None:
        """Run a rule's action (the executor's runner for ``ActionKind.RULE``): its handler
        with its params validated (once per rule action while unchanged). No handler for the
        type is a :class:`PermanentError` (parked at once, with the reason)."""
        return self._prepared(ctx).handler(ctx)

    def _prepared(self, ctx: ActionContext[Any]) -> HandlerSpec:
        """The spec that runs ``ctx``'s action, its params parsed into ``ctx.params``."""
        action = ctx.scheduled.action
        assert action is not None, "a rule action carries its action"
        spec = self._specs.get(action.action_type)
        if spec is None:
            raise PermanentError(f"no handler is registered for action type {action.action_type!r}")
        if action.action_type in self._held:
            raise PermanentError(f"action type {action.action_type!r} is held: not run here")
        key = (ctx.scheduled.rule_id, ctx.scheduled.action_index)
        ctx.params = self.parse(spec, action, key=key)
        return spec

    def batches(self, action: ScheduledAction) -> bool:
        """Whether ``run_due`` hands ``action`` to :meth:`run_batch` with its neighbours: a
        built-in ``create_activity`` (the others run one by one, as they always have)."""
        rule_action = action.action
        if rule_action is None or rule_action.action_type in self._held:
            return False
        spec = self._specs.get(rule_action.action_type)
        return spec is not None and spec.handler is create_activity

    def run_batch(self, contexts: Sequence[ActionContext[Any]]) -> list[str | Exception | None]:
        """The executor's batch runner for ``ActionKind.RULE``: each action as :meth:`run`
        would, in order (each one's note or the exception that failed it), except that the
        activities of the built-in ``create_activity`` are stored together
        (:func:`~.handlers.create_activities`: one ``add_many`` on SQL). Those waiting are
        stored before any handler that might read activities or cause events runs (every one
        but the built-in messages, and those that assign ``least_loaded``), so that handler
        sees what :meth:`run` one by one would have written by then."""
        outcomes: list[str | Exception | None] = [None] * len(contexts)
        waiting: list[int] = []

        def store_waiting() -> None:
            if not waiting:
                return
            try:
                notes: Sequence[str | Exception] = create_activities([contexts[i] for i in waiting])
            except Exception as exc:  # the store failed: each of them failed
                notes = [exc] * len(waiting)
            for i, note in zip(waiting, notes, strict=True):
                outcomes[i] = note
            waiting.clear()

        # A rule action's spec and parsed params, prepared once for the batch: every event a
        # rule matched holds the same Action object (the compiled rule's).
        prepared: dict[tuple[str | None, int | None], tuple[Action, _Prepared]] = {}
        for i, ctx in enumerate(contexts):
            scheduled = ctx.scheduled
            slot = (scheduled.rule_id, scheduled.action_index)
            kept = prepared.get(slot)
            if kept is not None and kept[0] is scheduled.action:
                handler, ctx.params, waits, blind = kept[1]
            else:
                try:
                    spec = self._prepared(ctx)
                except Exception as exc:
                    outcomes[i] = exc
                    continue
                handler = spec.handler
                loaded = getattr(ctx.params, "assign_to", None) == "least_loaded"
                waits = handler is create_activity and not loaded
                blind = not loaded and handler in _BLIND
                if self._reused(spec) and scheduled.action is not None:
                    prepared[slot] = (scheduled.action, (handler, ctx.params, waits, blind))
            if waits:
                waiting.append(i)
                continue
            if not blind:
                store_waiting()
            try:
                outcomes[i] = handler(ctx)
            except Exception as exc:
                outcomes[i] = exc
        store_waiting()
        return outcomes

    @staticmethod
    def _reused(spec: HandlerSpec) -> bool:
        """Whether :meth:`parse` gives one params value to every run of a rule action
        (a frozen params model, or none): then :meth:`run_batch` prepares it once."""
        return spec.params is None or bool(spec.params.model_config.get("frozen", False))

    def __contains__(self, action_type: object) -> bool:
        return action_type in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._specs))

    def check(self, rule: FollowUpRule, *, unknown_types: bool = False) -> None:
        """Refuse a rule whose actions have no handler here or whose settings the handler's
        params model rejects (:class:`RuleValidationError` naming the action and field).
        With ``unknown_types`` an action type with no handler here passes (its settings are
        another worker's to check): how a flow loads stored rules, so that a worker without a
        host's handlers still plans their actions (pending, for a worker that runs them)
        instead of dropping them."""
        for i, action in enumerate(rule.actions):
            spec = self._specs.get(action.action_type)
            if spec is None:
                if unknown_types:
                    continue
                raise RuleValidationError(
                    rule.rule_id,
                    f"actions[{i}].actionType",
                    f"no handler is registered for {action.action_type!r} "
                    f"(known: {', '.join(self)})",
                )
            try:
                spec.parse(action)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise RuleValidationError(
                    rule.rule_id, settings_location(i, first["loc"]), first["msg"]
                ) from None
