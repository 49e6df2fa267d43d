"""Column makers the SQL tables share."""

from __future__ import annotations

from typing import Final

from sqlalchemy import Column, String

__all__ = ["ID_LENGTH", "id_column"]

ID_LENGTH: Final = 128
"""The longest id a table holds (the ids' documented limit)."""


def id_column(name: str, *, nullable: bool = True) -> Column[str]:
    """An id column: text of at most :data:`ID_LENGTH` characters."""
    return Column(name, String(ID_LENGTH), nullable=nullable)
