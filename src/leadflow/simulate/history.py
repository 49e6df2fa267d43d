"""Reading a recorded event history: JSON Lines, one event document per line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from ..errors import InvalidInputError

__all__ = ["read_history"]


def read_history(source: str | Path | IO[str] | Iterable[str | Mapping[str, Any]]) -> Iterator[Any]:
    """The event documents of a history, lazily: ``source`` is a path to a JSON Lines file,
    an open text file, or an iterable of lines or documents. Blank lines are skipped.
    :class:`~leadflow.InvalidInputError` (field ``history``) names the line that is not JSON."""
    if isinstance(source, str | Path):
        with open(source, encoding="utf-8") as handle:
            yield from read_history(handle)
        return
    loads = json.loads
    for number, line in enumerate(source, 1):
        if isinstance(line, Mapping):
            yield line
            continue
        if not line or line.isspace():
            continue
        try:
            yield loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"line {number} is not JSON: {exc.msg}", field="history"
            ) from None
