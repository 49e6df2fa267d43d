"""Testing support: recording fakes of the integration ports, and the contract suites every
storage backend is held to (the ``testing`` extra: pytest, hypothesis).

The fakes import nothing extra; the contract classes are loaded from
:mod:`leadflow.testing.contracts` on first use.
"""

from __future__ import annotations

from typing import Any

from ..adapters import (
    InMemoryOpportunities,
    RecordingEventSink,
    RecordingMessenger,
    RecordingNotifier,
    StaticTeamDirectory,
)

_CONTRACTS = {
    "BASE_TIME",
    "ActivityRepositoryContract",
    "RuleRepositoryContract",
    "ScheduledActionStoreContract",
    "activity_state_machine",
    "at",
    "make_activity",
    "make_rule",
    "make_scheduled_action",
    "reference_statistics",
}


def __getattr__(name: str) -> Any:
    if name in _CONTRACTS:
        from . import contracts

        return getattr(contracts, name)
    raise AttributeError(f"module 'leadflow.testing' has no attribute {name!r}")


__all__ = [
    "BASE_TIME",
    "ActivityRepositoryContract",
    "InMemoryOpportunities",
    "RecordingEventSink",
    "RecordingMessenger",
    "RecordingNotifier",
    "RuleRepositoryContract",
    "ScheduledActionStoreContract",
    "StaticTeamDirectory",
    "activity_state_machine",
    "at",
    "make_activity",
    "make_rule",
    "make_scheduled_action",
    "reference_statistics",
]
