"""Bulk enrollment by filter: which opportunities a :class:`LeadFilter` takes.

leadflow does not own the host's opportunities; what it knows of them is what their events
told it. The filter is over the leads it saw arrive: the ``opportunity.created`` facts the
analytics store keeps (:meth:`~leadflow.ports.AnalyticsStore.arrivals`), in a period, of
given sources and owners (the owner at arrival). The opportunities it takes are then enrolled
as a list of ids would be (the re-enrollment policy, the dry run, the role checks and the
audit of :meth:`~leadflow.runtime.sequence_admin.SequencesAdmin.enroll`). A filter that
takes more than :data:`MAX_MATCHING` is refused, naming ``arrivedBefore``: narrow the period
(or enroll by ids, which the host's own filter may give)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from ..errors import InvalidInputError, InvalidStateError
from ..facts import Label
from ..fields import Id, UtcDatetime, _Model
from ..ports import AnalyticsStore

__all__ = ["MAX_MATCHING", "LeadFilter", "leads_matching"]

MAX_MATCHING = 10_000
"""The most opportunities one enrollment by filter takes (as one by ids)."""


class LeadFilter(_Model):
    """The leads that arrived in ``[arrivedFrom, arrivedBefore)``, of one of ``sources`` and
    one of ``owners`` when given (an arrival without a source or owner matches no such
    list)."""

    arrived_from: UtcDatetime
    arrived_before: UtcDatetime
    sources: list[Label] | None = Field(default=None, min_length=1, max_length=100)
    owners: list[Id] | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _a_period(self) -> Self:
        if self.arrived_before <= self.arrived_from:
            raise ValueError("arrivedBefore must be after arrivedFrom")
        return self


def leads_matching(analytics: AnalyticsStore | None, where: LeadFilter) -> list[str]:
    """The opportunity ids ``where`` takes, oldest arrival first (:class:`~leadflow.
    InvalidStateError` without an analytics store; :class:`~leadflow.InvalidInputError` past
    :data:`MAX_MATCHING`)."""
    if analytics is None:
        raise InvalidStateError(
            "this flow keeps no lead arrivals (Storage.analytics is None): enroll by ids"
        )
    arrivals = analytics.arrivals(
        where.arrived_from,
        where.arrived_before,
        sources=where.sources,
        owners=where.owners,
        limit=MAX_MATCHING + 1,
    )
    if len(arrivals) > MAX_MATCHING:
        raise InvalidInputError(
            f"more than {MAX_MATCHING:,} leads match: narrow the period", field="arrivedBefore"
        )
    return list(dict.fromkeys(arrival.opportunity_id for arrival in arrivals))
