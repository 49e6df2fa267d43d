"""The limits leadflow enforces at its edge, as data: one place, the same on every backend.

Input beyond a limit is refused with :class:`~leadflow.InvalidInputError` (or pydantic's
``ValidationError``) naming the field, before anything is written. The defaults keep every stored
document well inside what a real MongoDB accepts (16 MB, 100 levels of nesting) and what a SQL
JSON column holds, so the in-memory store never accepts what another backend would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what leadflow accepts.

    ``condition_depth``: nesting of ``all`` / ``any`` / ``not`` groups in one rule.
    ``conditions_per_rule``: condition nodes (leaves and groups) in one rule.
    ``operator_values``: items in any list-valued operator argument (``in``, ``between``...).
    ``document_depth``: nesting of dicts / lists in an event payload, activity metadata or a
    condition value. ``document_bytes``: their size as compact JSON.
    ``planned_per_event``: actions one event may plan across all matching rules.
    ``partitions``: how many partitions (shards) scheduled actions may be spread over; a
    partition number is in ``0 .. partitions - 1`` (read once, when leadflow is imported).
    ``earliest`` / ``latest``: the datetimes leadflow accepts anywhere, inclusive (so that adding
    a delay or converting a time zone can never overflow); a time computed from them (a due
    date) must land within them too.
    Integers in documents must fit in a signed 64-bit integer; keys are non-empty strings without
    NUL, not starting with ``$`` and without ``.`` (what MongoDB stores as is).

    Where they are enforced: the models (:mod:`leadflow.models`, with the document checks in
    :mod:`leadflow.documents`) for everything but ``planned_per_event``, which the runtime
    enforces when it plans an event's actions. The validators read :data:`DEFAULT_LIMITS` each
    time they run.
    """

    condition_depth: int = 20
    conditions_per_rule: int = 200
    operator_values: int = 1000
    document_depth: int = 32
    document_bytes: int = 1_000_000
    planned_per_event: int = 200
    partitions: int = 1024
    earliest: datetime = datetime(1900, 1, 1, tzinfo=UTC)
    latest: datetime = datetime(2999, 12, 31, tzinfo=UTC)


DEFAULT_LIMITS = Limits()
"""The limits in force (the model validators read these)."""
