"""Builders for service tests: a LeadFlow on in-memory or mongomock stores, a controlled clock."""

from __future__ import annotations

from typing import Any

from leadflow import LeadFlow, ManualClock, Principal, Role, default_rules
from leadflow.adapters import InMemoryOpportunities, StaticTeamDirectory
from leadflow.stores.memory import InMemoryAuditLog, InMemoryCounterStore

from .helpers import T0

ADMIN = Principal("admin-1", Role.ADMIN)
SUPER = Principal("root", Role.SUPER_ADMIN)
DISPATCHER = Principal("disp-1", Role.DISPATCHER)
ALICE = Principal("alice", Role.SALES)
BOB = Principal("bob", Role.SALES)


def build_flow(backend: str, *, rules: Any = None, **options: Any) -> LeadFlow:
    clock = options.pop("clock", None) or ManualClock(T0)
    rules = default_rules() if rules is None else rules
    if backend == "memory":
        flow = LeadFlow.in_memory(
            clock=clock, rule_set=rules, reps=["alice", "bob", "carol"], **options
        )
    else:
        import mongomock_ng

        from leadflow.stores.mongo import (
            MongoActivityRepository,
            MongoAuditLog,
            MongoCounterStore,
            MongoRuleRepository,
            MongoScheduledActionStore,
        )

        db = mongomock_ng.MongoClient(tz_aware=True)["leadflow_test"]
        parts: dict[str, Any] = {
            "activities": MongoActivityRepository(db),
            "rules": MongoRuleRepository(db),
            "scheduled": MongoScheduledActionStore(db),
            "counters": MongoCounterStore(db),
            "audit": MongoAuditLog(db),
        }
        for part in parts.values():
            if hasattr(part, "ensure_indexes"):
                part.ensure_indexes()
        parts.update(options)
        flow = LeadFlow.in_memory(
            clock=clock, rule_set=rules, reps=["alice", "bob", "carol"], **parts
        )
    assert isinstance(flow.opportunities, InMemoryOpportunities)
    assert isinstance(flow.team, StaticTeamDirectory)
    for opp, owner in [("opp-1", "alice"), ("opp-2", "bob"), ("opp-3", "alice"), ("opp-4", "bob")]:
        flow.opportunities.add(opp, owner=owner, email=f"{opp}@example.com", phone="+15550100")
    return flow


__all__ = [
    "ADMIN",
    "ALICE",
    "BOB",
    "DISPATCHER",
    "SUPER",
    "InMemoryAuditLog",
    "InMemoryCounterStore",
    "build_flow",
]
