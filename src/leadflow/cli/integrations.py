"""The host integrations a command-line worker uses when no ``--app`` supplies the host's own:
notifications and messages are logged (nothing is delivered), the opportunity gateway knows no
owners or contacts, and the team is the ``--rep`` list.

Such a worker runs no action whose effect would only be logged: its handler registry holds
:data:`LOGGED_ACTION_TYPES` (:meth:`HandlerRegistry.hold`), so it still plans them (the rules
that use them apply as usual) but never claims or runs them; they stay pending for a worker
started with the host's ``--app``. It runs ``create_activity`` (its effect is in the store)
and the outbox deliveries.

A real deployment passes ``--app module:factory`` (see :func:`load_app`) so that notifications
reach people and ``lead_owner`` finds the owner.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import Any, Final

from ..ports import Contact, Integrations, Message, Notification, Storage
from ..runtime import HandlerRegistry, LeadFlow
from ._base import fail

__all__ = ["LOGGED_ACTION_TYPES", "build_flow", "load_app", "log_integrations"]

log = logging.getLogger("leadflow.cli")

LOGGED_ACTION_TYPES: Final = (
    "send_notification",
    "send_email",
    "send_sms",
    "update_status",
    "assign_sales_rep",
)
"""The built-in action types whose effect goes through an integration that, without ``--app``,
only logs (notifier, messenger, opportunity gateway): held, not run, by such a worker."""


class _LogNotifier:
    def notify(self, notification: Notification) -> None:
        log.info(
            "notification %s to %s (%s)",
            notification.template,
            ", ".join(notification.recipients) or "nobody",
            notification.key,
        )


class _LogMessenger:
    def send(self, message: Message) -> None:
        log.info("%s %s to %s (%s)", message.channel, message.template, message.to, message.key)


class _NoOpportunities:
    def owner(self, opportunity_id: str) -> str | None:
        return None

    def contact(self, opportunity_id: str) -> Contact:
        return Contact(None, None)

    def update_status(self, opportunity_id: str, status: str, *, actor: str | None) -> str | None:
        log.info("opportunity %s: status %s (not forwarded: no --app)", opportunity_id, status)
        return None

    def assign_owner(self, opportunity_id: str, user_id: str, *, actor: str | None) -> None:
        log.info("opportunity %s: owner %s (not forwarded: no --app)", opportunity_id, user_id)


class _Team:
    def __init__(self, reps: Sequence[str]) -> None:
        self._reps = tuple(reps)

    def sales_reps(self) -> Sequence[str]:
        return self._reps


class _LogEvents:
    def emit(self, name: str, payload: dict[str, Any]) -> None:
        log.debug("event %s", name)


def log_integrations(reps: Sequence[str] = ()) -> Integrations:
    """Integrations that log what they are asked to do (see the module's docstring)."""
    return Integrations(
        notifier=_LogNotifier(),
        messenger=_LogMessenger(),
        opportunities=_NoOpportunities(),
        team=_Team(reps),
        events=_LogEvents(),
    )


def load_app(spec: str) -> Any:
    """The object ``module:attribute`` names. :class:`CliError` when it cannot be found."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        fail(f"--app {spec!r}: expected module:attribute, e.g. myapp.leadflow:build_flow")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        fail(f"--app {spec!r}: cannot import {module_name!r}: {exc}")
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            fail(f"--app {spec!r}: {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target


def build_flow(storage: Storage, *, app: str | None, reps: Sequence[str]) -> LeadFlow:
    """The flow a worker runs: ``app`` (``module:factory``, called with the opened storage, or
    ``module:flow``, a LeadFlow) or one on ``storage`` with :func:`log_integrations`, holding
    :data:`LOGGED_ACTION_TYPES` (see the module's docstring)."""
    if app is None:
        handlers = HandlerRegistry.default()
        handlers.hold(*LOGGED_ACTION_TYPES)
        return LeadFlow(storage, log_integrations(reps), handlers=handlers)
    target = load_app(app)
    flow = target if isinstance(target, LeadFlow) else None
    if flow is None and callable(target):
        flow = target(storage)
    if not isinstance(flow, LeadFlow):
        fail(f"--app {app!r}: expected a LeadFlow or a callable(storage) returning one")
    return flow
