"""The short explanation kept on every automated activity: which rule matched which event, and
the actual values its conditions saw."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from ..models import Condition, Event, FollowUpRule
from ..rules import MISSING, describe, field_getter

__all__ = ["why"]


@functools.lru_cache(maxsize=1024)
def _getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    return field_getter(path)


def why(rule: FollowUpRule, event: Event) -> str:
    """``rule 'X' matched <type> <id>: leadSource equals 'website' (actual: 'website')``."""
    parts = []
    for node in rule.trigger.conditions:
        text = describe(node)
        if isinstance(node, Condition):
            actual = _getter(node.field)(event.payload)
            text += f" (actual: {'missing' if actual is MISSING else repr(actual)})"
        parts.append(text)
    conditions = "; ".join(parts) if parts else "no conditions"
    return f"rule {rule.name!r} matched {event.type} {event.id}: {conditions}"
