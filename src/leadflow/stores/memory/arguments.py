"""The argument checks the in-memory stores first defined, now in :mod:`leadflow.stores.checks`
(shared by every backend); imported from here by code written before the move."""

from __future__ import annotations

from ..checks import check_id, check_limit, check_model, check_type

__all__ = ["check_id", "check_limit", "check_model", "check_type"]
