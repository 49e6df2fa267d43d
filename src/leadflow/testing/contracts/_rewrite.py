"""Registers the contract modules for pytest's assertion rewriting: under pytest, a failed
contract assertion then shows the values compared, as in the backend's own test modules.
Imported first by the package, before any module it names."""

from __future__ import annotations

import pytest

_PACKAGE = __name__.rpartition(".")[0]

pytest.register_assert_rewrite(
    *(
        f"{_PACKAGE}.{module}"
        for module in (
            "activities",
            "analytics",
            "activity_listing",
            "activity_reports",
            "data",
            "integrations",
            "jobs",
            "machine",
            "reference",
            "rules",
            "scheduled",
            "scheduled_cleanup",
            "scheduled_partitions",
            "scheduled_types",
            "sequences",
            "support",
            "units",
        )
    )
)
