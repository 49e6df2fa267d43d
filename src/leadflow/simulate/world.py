"""What a backtest plugs into the real :class:`~leadflow.LeadFlow`: the opportunities as the
history tells them, an event sink that counts, a stand-in for host handlers with side effects,
and a view of the handler registry that watches what the runtime runs (without changing it).

Nothing here decides what an action does: the handlers are the runtime's (or the host's).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from ..errors import CascadeDepthError
from ..ports import Contact
from ..records import ActionKind
from ..runtime import ActionContext, HandlerRegistry

__all__ = ["HistoryOpportunities", "RecordedCall", "RecordingHandler"]

PLACEHOLDER_DOMAIN: Final = "backtest.invalid"
"""The e-mail domain of the placeholder contact of an opportunity the history gives none for."""
PLACEHOLDER_PHONE: Final = "+00 000 000"


class HistoryOpportunities:
    """An :class:`~leadflow.ports.OpportunityGateway` fed from the history.

    :meth:`record` takes the facts of each recorded event: ``assignedTo`` / ``ownerId`` of an
    ``opportunity.*`` event make that user the owner, its ``status`` / ``newStatus`` the status,
    ``email`` / ``phone`` (and ``timezone``, the customer's IANA zone for sequences' local-time
    waits) the contact. Every opportunity exists (an id the history never introduced has no
    owner and no status); one without a recorded contact gets a placeholder
    (``<id>@backtest.invalid``) so that e-mail and SMS actions run and are counted.
    :meth:`fields` gives sequence branches ``opportunity.status`` and ``opportunity.owner``.
    ``status_changes`` and ``assignments`` count what the runtime changed.
    """

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}
        self.statuses: dict[str, str] = {}
        self.contacts: dict[str, Contact] = {}
        self.status_changes = 0
        self.assignments = 0

    def record(self, event_type: str, payload: Mapping[str, Any]) -> str | None:
        """Take the facts of one recorded event; returns its opportunity id (or None)."""
        opportunity = payload.get("opportunityId", payload.get("opportunity_id"))
        if not isinstance(opportunity, str):
            return None
        if event_type.startswith("opportunity."):
            owner = payload.get("assignedTo", payload.get("ownerId"))
            if isinstance(owner, str):
                self.owners[opportunity] = owner
            status = payload.get("newStatus", payload.get("status"))
            if isinstance(status, str):
                self.statuses[opportunity] = status
        email, phone, zone = payload.get("email"), payload.get("phone"), payload.get("timezone")
        if isinstance(email, str) or isinstance(phone, str) or isinstance(zone, str):
            known = self.contacts.get(opportunity, Contact())
            self.contacts[opportunity] = Contact(
                email if isinstance(email, str) else known.email,
                phone if isinstance(phone, str) else known.phone,
                zone if isinstance(zone, str) else known.timezone,
            )
        return opportunity

    def fields(self, opportunity_id: str) -> dict[str, Any]:
        """What a sequence branch reads as ``opportunity.<field>``: the recorded status and
        owner (those the history gave)."""
        out: dict[str, Any] = {}
        if opportunity_id in self.statuses:
            out["status"] = self.statuses[opportunity_id]
        if opportunity_id in self.owners:
            out["owner"] = self.owners[opportunity_id]
        return out

    def owner(self, opportunity_id: str) -> str | None:
        return self.owners.get(opportunity_id)

    def contact(self, opportunity_id: str) -> Contact:
        found = self.contacts.get(opportunity_id)
        if found is not None and (found.email is not None or found.phone is not None):
            return found
        zone = found.timezone if found is not None else None
        return Contact(f"{opportunity_id}@{PLACEHOLDER_DOMAIN}", PLACEHOLDER_PHONE, zone)

    def update_status(self, opportunity_id: str, status: str, *, actor: str | None) -> str | None:
        previous = self.statuses.get(opportunity_id)
        self.statuses[opportunity_id] = status
        if previous != status:
            self.status_changes += 1
        return previous

    def assign_owner(self, opportunity_id: str, user_id: str, *, actor: str | None) -> None:
        self.owners[opportunity_id] = user_id
        self.assignments += 1


class CountingEventSink:
    """An :class:`~leadflow.ports.EventSink` that counts leadflow's own events by name (a year
    of history emits millions; their contents are in the stores and the recording adapters),
    and keeps the ids of the enrollments made (``sequence.enrolled``), oldest first, for the
    report's sequence figures."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.enrollments: list[str] = []

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        self.counts[name] += 1
        if name == "sequence.enrolled":
            enrollment_id = payload.get("enrollmentId")
            if isinstance(enrollment_id, str):
                self.enrollments.append(enrollment_id)


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One action a :class:`RecordingHandler` stood in for."""

    action_type: str
    rule_id: str | None
    opportunity_id: str | None
    at: datetime
    params: Any


@dataclass(slots=True)
class RecordingHandler:
    """A stand-in for a host handler with side effects (a helpdesk ticket, a webhook): register
    it in the backtest's registry under the handler's action type (with the same ``params``
    model) and it records each call in :attr:`calls` instead of acting. See docs/simulate.md."""

    calls: list[RecordedCall] = field(default_factory=list)

    def __call__(self, ctx: ActionContext[Any]) -> str:
        self.calls.append(
            RecordedCall(
                ctx.scheduled.action_type,
                ctx.rule_id,
                ctx.scheduled.opportunity_id or ctx.event.opportunity_id,
                ctx.now,
                ctx.params,
            )
        )
        return "recorded (backtest stand-in)"


@dataclass(slots=True)
class Observations:
    """What the watched registry saw the runtime do."""

    matched: Counter[str] = field(default_factory=Counter)
    runs: Counter[str] = field(default_factory=Counter)  # successful runs per action type
    created_runs: Counter[str] = field(default_factory=Counter)  # create_activity runs per rule
    sends: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """Sequence action steps run: (enrollment id, step id, action type) -> runs."""
    max_depth: int = 0
    cascades_stopped: int = 0
    current: Counter[str] | None = None  # matches of the event being fed (compare's examples)

    def matched_rules(self, rule_ids: list[str], depth: int) -> None:
        self.matched.update(rule_ids)
        if self.current is not None:
            self.current.update(rule_ids)
        if depth > self.max_depth:
            self.max_depth = depth


def watched(registry: HandlerRegistry, seen: Observations) -> HandlerRegistry:
    """A registry with ``registry``'s handlers, params models and flags, each run wrapped to
    note into ``seen`` that it ran and the cascades it caused (rules matched one level deeper,
    a cascade the depth limit stopped). The handlers themselves run unchanged."""
    out = HandlerRegistry()
    for action_type in registry:
        spec = registry.get(action_type)
        assert spec is not None
        out.register(
            action_type,
            _wrap(spec.handler, action_type, seen),
            params=spec.params,
            eager=spec.eager,
            causes=spec.causes,
        )
    return out


def _wrap(
    handler: Callable[[ActionContext[Any]], str | None], action_type: str, seen: Observations
) -> Callable[[ActionContext[Any]], str | None]:
    def run(ctx: ActionContext[Any]) -> str | None:
        try:
            note = handler(ctx)
        finally:
            for result in ctx.cascades:
                seen.matched_rules(result.matched_rules, ctx.depth + 1)
            for error in ctx.errors:
                if isinstance(error, CascadeDepthError):
                    seen.cascades_stopped += 1
            if seen.max_depth < ctx.depth:
                seen.max_depth = ctx.depth
        seen.runs[action_type] += 1
        scheduled = ctx.scheduled
        if scheduled.kind is ActionKind.STEP and scheduled.enrollment_id is not None:
            seen.sends[(scheduled.enrollment_id, scheduled.step_id or "-", action_type)] += 1
        if action_type == "create_activity" and ctx.rule_id is not None:
            seen.created_runs[ctx.rule_id] += 1
        return note

    return run
