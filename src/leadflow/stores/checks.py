"""Argument checks shared by the job-store backends (the same refusals on every backend)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Final

from ..errors import InvalidInputError
from ..records import SlotState

MAX_KEY: Final = 400


def checked_key(value: object, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_KEY:
        raise InvalidInputError(
            f"expected a non-empty string of at most {MAX_KEY} characters", field=field
        )
    return value


def checked_lease(value: object) -> timedelta:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise InvalidInputError("must be a positive timedelta", field="lease")
    return value


def checked_final(state: object) -> SlotState:
    if state not in (SlotState.SUCCEEDED, SlotState.FAILED):
        raise InvalidInputError("must be 'succeeded' or 'failed'", field="state")
    return SlotState(str(state))


def checked_counts(counts: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(counts, Mapping):
        raise InvalidInputError("expected a mapping of names to integers", field="counts")
    return {checked_key(k, "counts"): int(v) for k, v in counts.items()}
