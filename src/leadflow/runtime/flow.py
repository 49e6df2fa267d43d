"""The ``LeadFlow`` facade: events in, follow-ups out, exactly once in effect.

A host builds one ``LeadFlow`` from a :class:`~leadflow.ports.Storage` and its
:class:`~leadflow.ports.Integrations`, feeds it domain events with :meth:`LeadFlow.handle`, calls
:meth:`LeadFlow.run_due` periodically (or lets the jobs do it), and serves its users through the
role-checked operations of :mod:`leadflow.access`, which sit on top of this class.

``LeadFlow`` is wiring: it builds the parts below from the storage, integrations and settings
and delegates to them (each can be used on its own):

* :class:`~.rulebook.RuleBook`: the active rules, compiled (``flow.rulebook``);
* :class:`~.planner.Planner`: event -> stored actions, running those due now (``flow.planner``);
* :class:`~.executor.Executor`: claim -> run -> acknowledge / retry / park, one loop for every
  kind of stored action (``flow.executor``); a rule's action runs through the handler registry,
  a completion's delivery through the :class:`~.outbox.Outbox` (``flow.outbox``);
* :class:`~.activity_writes.ActivityWrites`: record / complete / delete (``flow.activity_writes``);
* :class:`~.admin.RulesAdmin`: create / replace / delete / dry-run rules (``flow.rules``).

Exactly once in effect: every planned action is first stored under its idempotency key (event,
rule, action index); an action that runs now is stored already claimed by this worker, then run,
then marked done. Handling an event again finds the keys and does nothing; a crash between the
steps leaves a claimed action whose lease expires, and :meth:`run_due` runs it again; handlers
key their writes on the idempotency key, so the rerun creates nothing twice. Completions go
through an outbox entry stored before the write (see :func:`~.planning.delivery_action`).
:meth:`run_due` marks the successes of a batch done together, in one store call (and at the
latest when half the lease has passed): a crash in between reruns at most that batch, which
the keys make harmless.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from ..adapters import (
    InMemoryOpportunities,
    RecordingEventSink,
    RecordingMessenger,
    RecordingNotifier,
    StaticTeamDirectory,
)
from ..clock import SystemClock, ensure_utc
from ..documents import as_document
from ..errors import InvalidInputError, InvalidStateError, LeadflowError
from ..limits import DEFAULT_LIMITS
from ..models import Activity, Event, FollowUpRule, Outcome
from ..ports import Clock, Integrations, Storage
from ..records import ActionKind, ScheduledAction
from ..rules import EventTypes, OperatorRegistry, RuleEngine
from ..rules.calendar import WorkingCalendar
from ..rules.intake import read_event
from ..rules.vocabulary import Vocabulary
from ..stores.checks import checked_action_types
from .actions import HandlerRegistry
from .activity_writes import ActivityWrites
from .admin import RulesAdmin
from .emitter import Emitter
from .executor import Executor
from .fact_recorder import FactRecorder
from .outbox import Outbox
from .planner import Planner
from .results import CompletionResult, DueRunReport, HandleResult
from .rulebook import RuleBook
from .sequence_admin import SequencesAdmin
from .sequence_parts import EnrollParams
from .sequencer import Sequencer
from .settings import FlowSettings

__all__ = ["LeadFlow"]

log = logging.getLogger("leadflow")


def _event(item: object, now: datetime) -> Event:
    """``item`` as an event, or :class:`InvalidInputError` saying why it is not one."""
    if not isinstance(item, Mapping):
        raise InvalidInputError(
            f"expected an Event or a mapping, got {type(item).__name__}", field="event"
        )
    try:
        return read_event_document(_timed(item, now))
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(map(str, problem["loc"])) or "event"
        raise InvalidInputError(problem["msg"], field=where) from error


def _timed(item: Mapping[str, Any], now: datetime) -> Mapping[str, Any]:
    """An event document without a time happened now (the one envelope of every entry point:
    Python, HTTP, the command line)."""
    if "time" in item or "occurredAt" in item:
        return item
    return {**item, "time": now}


_TEMPLATE: Final = Event(id="template", type="template.event", time=DEFAULT_LIMITS.earliest)


def read_event_document(document: object) -> Event:
    """``Event.model_validate(document)``, read by the engine's intake
    (:func:`~leadflow.rules.intake.read_event`: the model's checks, the same values and the
    same refusals, held to the model by property tests) and built from the fields it checked
    without pydantic validating them a second time."""
    fields = read_event(document)  # type: ignore[arg-type]  # anything else: the model refuses
    if fields.model is not None:
        return fields.model
    event = _TEMPLATE._evolve(
        id=fields.id, type=fields.type, time=fields.time, payload=fields.payload, actor=fields.actor
    )
    object.__setattr__(event, "__pydantic_fields_set__", set(fields.fields_set))
    return event


def _rechecked(event: Event) -> Event:
    """A host's own :class:`Event`, its payload checked again: the event is immutable, but its
    payload is a dict the host holds and may have changed since the event was built. The
    actions planned for it are handed to the stores without their checks
    (:func:`~leadflow.stores.checks.handed_over`), so this is where a changed payload is
    refused (:class:`InvalidInputError` naming ``payload``)."""
    payload = as_document(event.payload, "payload")
    return event if payload is event.payload else event._evolve(payload=payload)


class LeadFlow:
    """Events in, follow-ups out. Build it explicitly; nothing is global.

    ``storage`` and ``integrations`` are the two port bundles; ``handlers`` (default: the
    built-ins), ``operators`` (default: a fresh built-in registry), ``calendar`` (business-time
    delays) and ``settings`` (retries, due grace, leases, retention...) are optional.
    """

    def __init__(
        self,
        storage: Storage,
        integrations: Integrations,
        *,
        clock: Clock | None = None,
        handlers: HandlerRegistry | None = None,
        operators: OperatorRegistry | None = None,
        event_types: EventTypes | Iterable[str] | None = None,
        calendar: WorkingCalendar | None = None,
        settings: FlowSettings | None = None,
    ) -> None:
        if not isinstance(storage, Storage):
            raise TypeError("storage must be a leadflow.ports.Storage bundle")
        if not isinstance(integrations, Integrations):
            raise TypeError("integrations must be a leadflow.ports.Integrations bundle")
        self.storage = storage
        self.integrations = integrations
        self.clock: Clock = clock or SystemClock()
        self.handlers = handlers if handlers is not None else HandlerRegistry.default()
        self.settings = settings or FlowSettings()
        self.worker_id = (
            self.settings.worker_id
            or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self.rulebook = RuleBook(
            storage.rules,
            clock=self.clock,
            operators=operators if operators is not None else OperatorRegistry.default(),
            event_types=event_types
            if isinstance(event_types, EventTypes)
            else EventTypes(event_types or ()),
            handlers=self.handlers,
            calendar=calendar or WorkingCalendar(),
            refresh=self.settings.rules_refresh,
        )
        self.emit = Emitter(integrations.events)
        self.executor = Executor(
            storage=storage,
            integrations=integrations,
            settings=self.settings,
            clock=self.clock,
            worker_id=self.worker_id,
            emit=self.emit,
        )
        self.sequencer: Sequencer | None = None
        if storage.sequences is not None and storage.enrollments is not None:
            self.sequencer = Sequencer(
                sequences=storage.sequences,
                enrollments=storage.enrollments,
                scheduled=storage.scheduled,
                counters=storage.counters,
                opportunities=integrations.opportunities,
                vocabulary=lambda: self.vocabulary,
                run=self.handlers.run,
                settings=self.settings,
                clock=self.clock,
                emit=self.emit,
                units=storage.unit_of_work,
            )
            if "enroll" not in self.handlers:
                self.handlers.register("enroll", self.sequencer.enroll_action, params=EnrollParams)
        self.planner = Planner(
            rulebook=self.rulebook,
            scheduled=storage.scheduled,
            handlers=self.handlers,
            executor=self.executor,
            settings=self.settings,
            clock=self.clock,
            units=storage.unit_of_work,
            emit=self.emit,
            sequencer=self.sequencer,
            facts=None if storage.analytics is None else FactRecorder(storage.analytics),
        )
        self.outbox = Outbox(
            activities=storage.activities,
            scheduled=storage.scheduled,
            executor=self.executor,
            handle=self.planner.handle,
            settings=self.settings,
            clock=self.clock,
        )
        self.executor.register_kind(
            ActionKind.RULE,
            self.handlers.run,
            batch=self.handlers.run_batch,
            batches=self.handlers.batches,
        )
        self.executor.register_kind(ActionKind.DELIVERY, self.outbox.deliver)
        if self.sequencer is not None:
            self.executor.register_kind(
                ActionKind.STEP, self.sequencer.run_step, batch=self.sequencer.start_steps
            )
        self.executor.cascade_to(self.planner.cascade)
        self.activity_writes = ActivityWrites(
            activities=storage.activities, outbox=self.outbox, emit=self.emit, clock=self.clock
        )
        self._sequences_admin: SequencesAdmin | None = None
        self.rules = RulesAdmin(
            rulebook=self.rulebook,
            rules=storage.rules,
            scheduled=storage.scheduled,
            settings=self.settings,
            clock=self.clock,
            emit=self.emit,
        )

    @property
    def sequences(self) -> SequencesAdmin:
        """Sequence administration (publish, pause, resume, archive, enroll, unenroll);
        :class:`~leadflow.errors.InvalidStateError` when the storage keeps no sequences."""
        if self.sequencer is None:
            raise InvalidStateError(
                "this flow's storage keeps no sequences (Storage.sequences and "
                "Storage.enrollments are None)"
            )
        if self._sequences_admin is None:
            self._sequences_admin = SequencesAdmin(
                sequencer=self.sequencer,
                handlers=self.handlers,
                settings=self.settings,
                clock=self.clock,
                analytics=self.storage.analytics,
            )
        return self._sequences_admin

    @classmethod
    def in_memory(
        cls,
        *,
        clock: Clock | None = None,
        rules: Iterable[FollowUpRule] = (),
        reps: Sequence[str] = (),
        handlers: HandlerRegistry | None = None,
        operators: OperatorRegistry | None = None,
        event_types: EventTypes | Iterable[str] | None = None,
        calendar: WorkingCalendar | None = None,
        settings: FlowSettings | None = None,
        storage: Storage | None = None,
    ) -> LeadFlow:
        """A flow on in-memory stores (or the given ``storage``) and recording integrations:
        tests, demos, prototypes. ``rules`` are checked and stored through
        :attr:`rules` (e.g. ``default_rules()``);
        ``reps`` fill the team directory."""
        if storage is None:
            from ..stores.memory import memory_storage

            storage = memory_storage()
        flow = cls(
            storage,
            Integrations(
                notifier=RecordingNotifier(),
                messenger=RecordingMessenger(),
                opportunities=InMemoryOpportunities(),
                team=StaticTeamDirectory(reps),
                events=RecordingEventSink(),
            ),
            clock=clock,
            handlers=handlers,
            operators=operators,
            event_types=event_types,
            calendar=calendar,
            settings=settings,
        )
        for rule in rules:
            flow.rules.create(rule)
        return flow

    # ------------------------------------------------------------------ delegation

    def engine(self) -> RuleEngine:
        """The compiled active rules (see :class:`~.rulebook.RuleBook`)."""
        return self.rulebook.engine()

    @property
    def vocabulary(self) -> Vocabulary:
        """What this flow's rules are written in: its operators, event types, action types
        (the handlers), calendar and limits, as one value (lint, the JSON Schema, explanations
        and backtests take it)."""
        return self.rulebook.vocabulary

    def now(self) -> datetime:
        return ensure_utc(self.clock.now(), "clock.now()")

    def handle(self, event: Event | Mapping[str, Any]) -> HandleResult:
        """Evaluate the active rules for ``event`` and carry out what they plan.

        Actions due now and actions whose handler is eager (``create_activity``) run at once;
        later ones are stored and run by :meth:`run_due`. Handling the same event (same ``id``)
        again does nothing twice. A rule whose actions cannot be planned for this event is
        reported in ``errors`` and the other rules still apply.
        """
        if isinstance(event, Event):
            event = _rechecked(event)
        else:
            if isinstance(event, Mapping):
                event = _timed(event, self.now())
            event = read_event_document(event)
        return self._handle_read(event)

    def _handle_read(self, event: Event) -> HandleResult:
        """:meth:`handle` for an event this flow's own reader built from a document (the
        backtest's driver reads each recorded event once, here, and nobody else holds it)."""
        return self.planner.handle(self.admit(event))

    def admit(self, event: Event) -> Event:
        """``event`` if this flow takes it, else :class:`InvalidInputError` naming the field:
        its type must be known (a seed type or one registered with ``event_types``; with the
        closest known name when it is not) unless ``settings.unknown_event_types`` is
        ``accept``, and an ``opportunity.*`` event must name its opportunity
        (``payload.opportunityId``): its actions would be parked later for want of one."""
        if self.settings.unknown_event_types == "refuse":
            problem = self.rulebook.event_types.problem(event.type)
            if problem is not None:
                raise InvalidInputError(problem, field="type")
        if event.type.startswith("opportunity.") and event.opportunity_id is None:
            raise InvalidInputError(
                f"a {event.type} event needs the opportunity's id", field="payload.opportunityId"
            )
        return event

    def handle_many(
        self, events: Iterable[Event | Mapping[str, Any]]
    ) -> list[HandleResult | LeadflowError]:
        """Handle a batch of events (an import, a backfill, a stream consumer's poll) as
        :meth:`handle` would one by one, in far fewer statements and commits.

        Returns one entry per event, in order: its :class:`HandleResult`, or the error that
        refused it, in which case nothing of that event was written and the others still
        apply. Every event is validated first: one that is not a valid event (a mapping
        ``Event`` refuses, anything else) is an :class:`~leadflow.InvalidInputError` in its
        slot. The same event twice (in one batch or across batches) is handled once: the
        second finds its keys (``duplicates``).

        On SQL the events go 500 per unit of work: their actions stored with one multi-row
        ``INSERT ... ON CONFLICT DO NOTHING``, the successes marked done with one ``UPDATE``
        (none where they go in done already: see ``docs/sql.md``), one commit; a store
        failure rolls the chunk back and its events are handled one by one (see
        :class:`~.planner.Planner`). A storage that is unreachable
        (:class:`~leadflow.UnavailableError`) stops the call: the chunks before it are
        committed, and handling the whole batch again is harmless."""
        if isinstance(events, str | bytes | Mapping):
            raise InvalidInputError("expected an iterable of events", field="events")
        refused: dict[int, LeadflowError] = {}
        valid: list[Event] = []
        now = self.now()
        count = 0
        for count, item in enumerate(events, 1):
            try:
                event = _rechecked(item) if isinstance(item, Event) else _event(item, now)
                valid.append(self.admit(event))
            except InvalidInputError as error:
                refused[count - 1] = error
        handled = iter(self.planner.handle_many(valid))
        return [refused[i] if i in refused else next(handled) for i in range(count)]

    def run_due(
        self,
        *,
        limit: int = 100,
        now: datetime | None = None,
        partition: int | None = None,
        action_types: Collection[str] | None = None,
    ) -> DueRunReport:
        """Claim and run the stored actions that are due (see :meth:`Executor.run_due`).

        Only what this flow can run is claimed: rule actions of the types its handlers run
        (:meth:`HandlerRegistry.runnable`), and outbox deliveries; actions of other types stay
        pending for a worker that has their handlers. ``action_types`` narrows that further
        (e.g. a worker for e-mail only); a type this flow does not run is
        :class:`InvalidInputError`."""
        runnable = self.handlers.runnable()
        wanted = checked_action_types(action_types)
        if wanted is None:
            wanted = runnable
        elif not wanted <= runnable:
            raise InvalidInputError(
                f"this flow does not run {', '.join(sorted(wanted - runnable))}",
                field="action_types",
            )
        return self.executor.run_due(limit=limit, now=now, partition=partition, action_types=wanted)

    def purge_finished(self, now: datetime | None = None) -> int:
        """Delete finished scheduled actions older than ``settings.retention``."""
        return self.executor.purge_finished(now)

    def retry_parked(self, action_id: str) -> ScheduledAction:
        """Put a parked action back in the queue, due now, with fresh attempts."""
        return self.executor.retry_parked(action_id)

    def record_activity(self, activity: Activity) -> Activity:
        """Store an activity a person recorded (see :meth:`ActivityWrites.record`)."""
        return self.activity_writes.record(activity)

    def complete_activity(
        self,
        activity_id: str,
        *,
        outcome: Outcome | str | None,
        completed_by: str | None,
        expected_version: int | None = None,
    ) -> CompletionResult:
        """Mark an activity done and feed ``activity.completed`` into the rules (see
        :meth:`ActivityWrites.complete`)."""
        return self.activity_writes.complete(
            activity_id,
            outcome=outcome,
            completed_by=completed_by,
            expected_version=expected_version,
        )

    def delete_activity(self, activity_id: str, *, actor: str | None) -> Activity:
        """Remove an activity; returns what was deleted."""
        return self.activity_writes.delete(activity_id, actor=actor)
