"""The seed's eight default follow-up rules (``data/default_rules.json``) and an example
sequence built from the seed's defaults (``data/example_sequence.json``), shipped as data."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from ..models import FollowUpRule
from ..sequences.definition import SequenceDefinition

__all__ = ["EXAMPLE_SEQUENCE_EVENT_TYPES", "default_rules", "example_sequence"]

EXAMPLE_SEQUENCE_EVENT_TYPES: tuple[str, ...] = ("email.replied",)
"""The event types :func:`example_sequence` waits for beyond the seed's: ``email.replied``,
which the host's mail integration sends (with the ``opportunityId``) when a lead answers an
email. Register them with the flow (``LeadFlow(..., event_types=...)``, or
``Vocabulary.of(event_types=...)``)."""


def _data(name: str) -> Any:
    return json.loads(resources.files("leadflow").joinpath(f"data/{name}").read_text("utf-8"))


def default_rules() -> list[FollowUpRule]:
    """Fresh copies of the eight default rules (edit them freely; the file stays as shipped)."""
    return [FollowUpRule.model_validate(item) for item in _data("default_rules.json")]


def example_sequence() -> SequenceDefinition:
    """A fresh copy of the example sequence, from the seed's defaults: a new website lead is
    called within the hour; no answer (or no call logged within a business day): an email at
    09:00 the next business morning, local time; up to two business days for a reply
    (``email.replied``: see :data:`EXAMPLE_SEQUENCE_EVENT_TYPES`); then a second call. Won or
    lost ends it. It replaces the default rule ``default-website-lead-follow-up``: deactivate
    that rule when you activate the sequence."""
    return SequenceDefinition.model_validate(_data("example_sequence.json"))
