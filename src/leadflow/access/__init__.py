"""Role-checked operations on top of the runtime: principals, the policy table, and the seed's
endpoints as methods (:class:`Operations`)."""

from __future__ import annotations

from .operations import Operations
from .policy import DEFAULT_POLICY, OPERATIONS, Policy, Principal, Role

__all__ = ["DEFAULT_POLICY", "OPERATIONS", "Operations", "Policy", "Principal", "Role"]
