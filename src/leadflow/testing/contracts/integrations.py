"""The integration contracts: what leadflow relies on from the host's adapters.

One contract per integration port: :class:`OpportunityGatewayContract`,
:class:`TeamDirectoryContract`, :class:`NotifierContract`, :class:`MessengerContract`,
and :class:`EventSinkContract` (the clock's and the scheduler's are in :mod:`.periodic`). Each is
an abstract class with a factory the host implements (``make_gateway``, ``make_notifier``...) and a
pytest fixture that calls it; where the contract needs data in the host's system, or needs to
see what reached it, there is a hook for that too (``add_opportunity``, ``delivered``,
``received``). Subclass one under a ``Test...`` name and pytest runs every test on the adapter.

What they hold an adapter to is what the runtime does with the answers (see
``docs/integrations.md``): an unknown opportunity is a :class:`~leadflow.NotFoundError` (the
action is parked at once; any other exception is retried), a notification or message carries an
idempotency key (a host drops the rare repeat), every port is called from several threads at
once, and times are aware and in UTC.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from ...errors import NotFoundError
from ...ports import (
    Contact,
    EventSink,
    Message,
    Messenger,
    Notification,
    Notifier,
    OpportunityGateway,
    TeamDirectory,
)
from .data import BASE_TIME, at, race

__all__ = [
    "EventSinkContract",
    "MessengerContract",
    "NotifierContract",
    "OpportunityGatewayContract",
    "TeamDirectoryContract",
]

THREADS = 8


def _template_data() -> dict[str, Any]:
    """Data as leadflow sends it: references, the triggering event's payload, job times."""
    return {
        "eventId": "evt-1",
        "eventType": "opportunity.created",
        "ruleId": "rule-1",
        "opportunityId": "opp-1",
        "idempotencyKey": "evt-1/rule-1/0",
        "event": {"opportunityId": "opp-1", "leadSource": "website", "tags": ["a", "b"]},
        "asOf": BASE_TIME,
        "activities": [{"activityId": "act-1", "dueDate": at(hours=1), "subject": "Call ü"}],
        "count": 1,
        "score": 0.5,
        "vip": False,
        "note": None,
    }


# --------------------------------------------------------------------------- opportunities


class OpportunityGatewayContract(abc.ABC):
    """Every test an :class:`~leadflow.ports.OpportunityGateway` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_gateway` (a gateway over an empty
    system) and :meth:`add_opportunity` (put one opportunity where the gateway reads it).
    """

    @abc.abstractmethod
    def make_gateway(self) -> OpportunityGateway:
        """A gateway over a system with no opportunities."""

    @abc.abstractmethod
    def add_opportunity(
        self,
        gateway: OpportunityGateway,
        opportunity_id: str,
        *,
        owner: str | None = None,
        status: str = "new",
        email: str | None = None,
        phone: str | None = None,
    ) -> None:
        """Store an opportunity (its owner, status and contact) where ``gateway`` reads it."""

    @pytest.fixture
    def gateway(self) -> OpportunityGateway:
        return self.make_gateway()

    def test_is_an_opportunity_gateway(self, gateway: OpportunityGateway) -> None:
        assert isinstance(gateway, OpportunityGateway)

    def test_owner_is_the_stored_owner_or_none(self, gateway: OpportunityGateway) -> None:
        self.add_opportunity(gateway, "opp-1", owner="alice")
        self.add_opportunity(gateway, "opp-2")
        assert gateway.owner("opp-1") == "alice"
        assert gateway.owner("opp-2") is None

    def test_contact_is_the_stored_email_and_phone(self, gateway: OpportunityGateway) -> None:
        self.add_opportunity(gateway, "opp-1", email="buyer@example.com", phone="+15550100")
        self.add_opportunity(gateway, "opp-2", email="only@example.com")
        self.add_opportunity(gateway, "opp-3")
        both = gateway.contact("opp-1")
        assert isinstance(both, Contact)
        assert (both.email, both.phone) == ("buyer@example.com", "+15550100")
        email_only = gateway.contact("opp-2")
        assert email_only.email == "only@example.com" and not email_only.phone
        nothing = gateway.contact("opp-3")
        assert not nothing.email and not nothing.phone

    def test_an_unknown_opportunity_is_not_found(self, gateway: OpportunityGateway) -> None:
        # NotFoundError (not KeyError, not None) is what parks the action at once.
        self.add_opportunity(gateway, "opp-1", owner="alice")
        with pytest.raises(NotFoundError):
            gateway.owner("opp-unknown")
        with pytest.raises(NotFoundError):
            gateway.contact("opp-unknown")
        with pytest.raises(NotFoundError):
            gateway.update_status("opp-unknown", "contacted", actor="system")
        with pytest.raises(NotFoundError):
            gateway.assign_owner("opp-unknown", "bob", actor="system")
        with pytest.raises(NotFoundError):  # the failed writes created nothing
            gateway.owner("opp-unknown")
        assert gateway.owner("opp-1") == "alice"

    def test_update_status_returns_the_previous_status(self, gateway: OpportunityGateway) -> None:
        self.add_opportunity(gateway, "opp-1", status="new")
        self.add_opportunity(gateway, "opp-2", status="new")
        assert gateway.update_status("opp-1", "contacted", actor="system") == "new"
        assert gateway.update_status("opp-1", "qualified", actor=None) == "contacted"
        assert gateway.update_status("opp-2", "lost", actor="system") == "new"  # its own
        assert gateway.update_status("opp-1", "won", actor="system") == "qualified"

    def test_setting_the_current_status_changes_nothing(self, gateway: OpportunityGateway) -> None:
        # leadflow compares the answer with the new status: equal means "no change", so no
        # opportunity.status_changed is fed back into the rules.
        self.add_opportunity(gateway, "opp-1", status="contacted")
        assert gateway.update_status("opp-1", "contacted", actor="system") == "contacted"
        assert gateway.update_status("opp-1", "won", actor="system") == "contacted"

    def test_assign_owner_then_owner_reads_it_back(self, gateway: OpportunityGateway) -> None:
        self.add_opportunity(gateway, "opp-1", owner="alice", status="new")
        self.add_opportunity(gateway, "opp-2", owner="alice")
        self.add_opportunity(gateway, "opp-3")
        gateway.assign_owner("opp-1", "bob", actor="system")
        gateway.assign_owner("opp-3", "carol", actor=None)
        assert [gateway.owner(o) for o in ("opp-1", "opp-2", "opp-3")] == ["bob", "alice", "carol"]
        assert gateway.update_status("opp-1", "new", actor="system") == "new"  # status kept

    def test_status_changes_are_atomic_under_threads(self, gateway: OpportunityGateway) -> None:
        # Two workers changing one opportunity's status each get a distinct previous status
        # (the oldStatus of the status_changed event each one feeds into the rules).
        self.add_opportunity(gateway, "opp-1", status="new")
        statuses = [f"status-{n}" for n in range(THREADS)]
        results = race(
            THREADS, lambda n: gateway.update_status("opp-1", statuses[n], actor="system")
        )
        previous = [r for r in results if isinstance(r, str)]
        assert len(previous) == THREADS, results
        last = gateway.update_status("opp-1", "done", actor="system")
        assert isinstance(last, str), last
        assert sorted([*previous, last]) == sorted(["new", *statuses])


# --------------------------------------------------------------------------- team


class TeamDirectoryContract(abc.ABC):
    """Every test a :class:`~leadflow.ports.TeamDirectory` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_directory`.
    """

    REPS: ClassVar[tuple[str, ...]] = ("alice", "bob", "carol")

    @abc.abstractmethod
    def make_directory(self, reps: Sequence[str]) -> TeamDirectory:
        """A directory whose eligible sales reps are exactly ``reps``, in that order."""

    @pytest.fixture
    def team(self) -> TeamDirectory:
        return self.make_directory(self.REPS)

    def test_is_a_team_directory(self, team: TeamDirectory) -> None:
        assert isinstance(team, TeamDirectory)

    def test_lists_the_reps_in_a_stable_order(self, team: TeamDirectory) -> None:
        # Round robin takes reps[(turn - 1) % len(reps)]: the order must not change per call.
        first = team.sales_reps()
        assert list(first) == list(self.REPS)
        assert len(first) == len(self.REPS) and first[1] == self.REPS[1]
        assert all(isinstance(rep, str) for rep in first)
        assert [list(team.sales_reps()) for _ in range(3)] == [list(self.REPS)] * 3

    def test_an_empty_team_is_an_empty_sequence(self, team: TeamDirectory) -> None:
        empty = self.make_directory(())
        assert list(empty.sales_reps()) == []
        assert list(team.sales_reps()) == list(self.REPS)

    def test_reads_from_many_threads(self, team: TeamDirectory) -> None:
        results = race(THREADS, lambda _: list(team.sales_reps()))
        assert results == [list(self.REPS)] * THREADS


# --------------------------------------------------------------------------- notifications


def _notification(key: str, **fields: Any) -> Notification:
    values: dict[str, Any] = {
        "template": "urgent_lead",
        "recipients": ("alice",),
        "opportunity_id": "opp-1",
        "data": _template_data(),
    }
    values.update(fields)
    return Notification(key, **values)


def _sent_notification(n: Notification) -> tuple[str, str, tuple[str, ...], str | None]:
    return (n.key, n.template, tuple(n.recipients), n.opportunity_id)


class NotifierContract(abc.ABC):
    """Every test a :class:`~leadflow.ports.Notifier` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_notifier` and :meth:`delivered`
    (read back what reached the host's system). ``deduplicates`` says what the adapter does
    with a second notification whose key was delivered already: drop it (the default, and
    what a host should do: leadflow delivers at least once) or deliver it again (a recorder
    that keeps every call, such as :class:`~leadflow.testing.RecordingNotifier`); the
    contract checks the adapter does what it says.
    """

    deduplicates: ClassVar[bool] = True

    @abc.abstractmethod
    def make_notifier(self) -> Notifier:
        """A notifier that has delivered nothing yet."""

    @abc.abstractmethod
    def delivered(self, notifier: Notifier) -> Sequence[Notification]:
        """What reached the host's system so far, oldest first, as :class:`Notification`
        values (``key``, ``template``, ``recipients`` and ``opportunity_id`` as given)."""

    @pytest.fixture
    def notifier(self) -> Notifier:
        return self.make_notifier()

    def _keys(self, notifier: Notifier) -> list[str]:
        return [n.key for n in self.delivered(notifier)]

    def test_is_a_notifier(self, notifier: Notifier) -> None:
        assert isinstance(notifier, Notifier)
        assert list(self.delivered(notifier)) == []

    def test_delivers_each_notification_as_given(self, notifier: Notifier) -> None:
        from_a_rule = _notification("evt-1/rule-1/0")
        from_a_job = _notification(
            "daily_summary:2026-01-05:bob",
            template="daily_summary",
            recipients=("bob",),
            opportunity_id=None,
            data={"key": "daily_summary:2026-01-05:bob", "asOf": BASE_TIME, "pending": 2},
        )
        notifier.notify(from_a_rule)
        notifier.notify(from_a_job)
        assert [_sent_notification(n) for n in self.delivered(notifier)] == [
            _sent_notification(from_a_rule),
            _sent_notification(from_a_job),
        ]

    def test_no_recipients_is_for_the_host_to_route(self, notifier: Notifier) -> None:
        # Unassigned overdue activities, an opportunity without owner: recipients is empty.
        unrouted = _notification("overdue_activities:2026-01-05T10:00:-", recipients=())
        notifier.notify(unrouted)
        assert [_sent_notification(n) for n in self.delivered(notifier)] == [
            _sent_notification(unrouted)
        ]

    def test_the_notification_is_left_unchanged(self, notifier: Notifier) -> None:
        # The same payload goes to the event sink next: the notifier must not change it.
        sent = _notification("evt-1/rule-1/0")
        before = copy.deepcopy(sent.data)
        notifier.notify(sent)
        assert sent.data == before

    def test_a_repeated_key_is_delivered_as_declared(self, notifier: Notifier) -> None:
        # A crash after the send and before leadflow records it sends it again, same key.
        notifier.notify(_notification("evt-1/rule-1/0"))
        notifier.notify(_notification("evt-1/rule-1/0"))
        expected = 1 if self.deduplicates else 2
        assert self._keys(notifier) == ["evt-1/rule-1/0"] * expected

    def test_distinct_keys_are_distinct_notifications(self, notifier: Notifier) -> None:
        # Deduplicate on the key, never on the content: two days' identical summaries are two.
        for day in ("2026-01-05", "2026-01-06"):
            key = f"daily_summary:{day}:bob"
            notifier.notify(_notification(key, template="daily_summary", data={"pending": 1}))
        assert self._keys(notifier) == [
            "daily_summary:2026-01-05:bob",
            "daily_summary:2026-01-06:bob",
        ]

    def test_notify_from_many_threads(self, notifier: Notifier) -> None:
        def work(n: int) -> None:
            for i in range(5):
                notifier.notify(_notification(f"evt-{n}/rule-1/{i}"))

        assert race(THREADS, work) == [None] * THREADS
        expected = [f"evt-{n}/rule-1/{i}" for n in range(THREADS) for i in range(5)]
        assert sorted(self._keys(notifier)) == sorted(expected)


# --------------------------------------------------------------------------- messages


def _message(key: str, **fields: Any) -> Message:
    values: dict[str, Any] = {
        "channel": "email",
        "to": "buyer@example.com",
        "template": "welcome",
        "data": _template_data(),
    }
    values.update(fields)
    return Message(key, **values)


def _sent_message(m: Message) -> tuple[str, str, str, str]:
    return (m.key, m.channel, m.to, m.template)


class MessengerContract(abc.ABC):
    """Every test a :class:`~leadflow.ports.Messenger` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_messenger` and :meth:`delivered`
    (read back what the provider was asked to send). ``deduplicates`` as for
    :class:`NotifierContract`: drop a message whose key was sent already (the default), or
    send it again (a recorder such as :class:`~leadflow.testing.RecordingMessenger`).
    """

    deduplicates: ClassVar[bool] = True

    @abc.abstractmethod
    def make_messenger(self) -> Messenger:
        """A messenger that has sent nothing yet."""

    @abc.abstractmethod
    def delivered(self, messenger: Messenger) -> Sequence[Message]:
        """What the provider was asked to send so far, oldest first, as :class:`Message`
        values (``key``, ``channel``, ``to`` and ``template`` as given)."""

    @pytest.fixture
    def messenger(self) -> Messenger:
        return self.make_messenger()

    def _keys(self, messenger: Messenger) -> list[str]:
        return [m.key for m in self.delivered(messenger)]

    def test_is_a_messenger(self, messenger: Messenger) -> None:
        assert isinstance(messenger, Messenger)
        assert list(self.delivered(messenger)) == []

    def test_sends_email_and_sms_as_given(self, messenger: Messenger) -> None:
        email = _message("evt-1/rule-1/0")
        sms = _message("evt-1/rule-1/1", channel="sms", to="+15550100", template="reminder")
        messenger.send(email)
        messenger.send(sms)
        assert [_sent_message(m) for m in self.delivered(messenger)] == [
            _sent_message(email),
            _sent_message(sms),
        ]

    def test_the_message_is_left_unchanged(self, messenger: Messenger) -> None:
        sent = _message("evt-1/rule-1/0")
        before = copy.deepcopy(sent.data)
        messenger.send(sent)
        assert sent.data == before

    def test_a_repeated_key_is_sent_as_declared(self, messenger: Messenger) -> None:
        messenger.send(_message("evt-1/rule-1/0"))
        messenger.send(_message("evt-1/rule-1/0"))
        expected = 1 if self.deduplicates else 2
        assert self._keys(messenger) == ["evt-1/rule-1/0"] * expected

    def test_distinct_keys_are_distinct_messages(self, messenger: Messenger) -> None:
        # The same template to the same address from two events is two messages.
        messenger.send(_message("evt-1/rule-1/0", data={}))
        messenger.send(_message("evt-2/rule-1/0", data={}))
        assert self._keys(messenger) == ["evt-1/rule-1/0", "evt-2/rule-1/0"]

    def test_send_from_many_threads(self, messenger: Messenger) -> None:
        def work(n: int) -> None:
            for i in range(5):
                messenger.send(_message(f"evt-{n}/rule-1/{i}"))

        assert race(THREADS, work) == [None] * THREADS
        expected = [f"evt-{n}/rule-1/{i}" for n in range(THREADS) for i in range(5)]
        assert sorted(self._keys(messenger)) == sorted(expected)


# --------------------------------------------------------------------------- events


class EventSinkContract(abc.ABC):
    """Every test an :class:`~leadflow.ports.EventSink` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_sink` and :meth:`received` (what
    the host's listeners got).
    """

    @abc.abstractmethod
    def make_sink(self) -> EventSink:
        """A sink whose listeners have received nothing yet."""

    @abc.abstractmethod
    def received(self, sink: EventSink) -> Sequence[tuple[str, dict[str, Any]]]:
        """What the host's listeners received so far, oldest first, as ``(name, payload)``."""

    @pytest.fixture
    def sink(self) -> EventSink:
        return self.make_sink()

    def test_is_an_event_sink(self, sink: EventSink) -> None:
        assert isinstance(sink, EventSink)
        assert list(self.received(sink)) == []

    def test_every_event_arrives_in_order_with_its_payload(self, sink: EventSink) -> None:
        events: list[tuple[str, dict[str, Any]]] = [
            ("activity.created", {"activityId": "act-1", "dueDate": at(hours=1), "ruleId": None}),
            ("notification.urgent_lead", {**_template_data(), "recipients": ["alice"]}),
            ("rule.created", {"ruleId": "rule-1", "actor": "admin"}),
            ("rule.created", {"ruleId": "rule-2", "actor": "admin"}),  # same name: both
        ]
        for name, payload in events:
            sink.emit(name, payload)
        assert [(name, dict(payload)) for name, payload in self.received(sink)] == events

    def test_the_payload_is_left_unchanged(self, sink: EventSink) -> None:
        payload = {**_template_data(), "recipients": ["alice"]}
        before = copy.deepcopy(payload)
        sink.emit("notification.urgent_lead", payload)
        assert payload == before

    def test_emit_from_many_threads(self, sink: EventSink) -> None:
        def work(n: int) -> None:
            for i in range(5):
                sink.emit("activity.created", {"activityId": f"act-{n}-{i}"})

        assert race(THREADS, work) == [None] * THREADS
        got = sorted(payload["activityId"] for _, payload in self.received(sink))
        assert got == sorted(f"act-{n}-{i}" for n in range(THREADS) for i in range(5))
