"""A sequence's enrollments read page by page: one listing of the enrollment store holds at
most 10,000, a sequence may have any number."""

from __future__ import annotations

from collections.abc import Iterator

from ..ports import EnrollmentStore
from ..sequences import Enrollment, EnrollmentState

__all__ = ["PAGE", "enrollments_of"]

PAGE = 1_000
"""Enrollments read per page."""


def enrollments_of(
    store: EnrollmentStore, sequence_id: str, state: EnrollmentState | None = None
) -> Iterator[Enrollment]:
    """Every enrollment of ``sequence_id`` (in ``state``, if given), oldest first
    (``enrolled_at``, id), read a page at a time. What the caller does to an enrollment
    between pages (ends, moves, releases it) does not make the pages skip or repeat one: each
    page starts after the last enrollment of the one before."""
    after: str | None = None
    while True:
        page = store.list(sequence_id=sequence_id, state=state, limit=PAGE, after=after)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].enrollment_id
