"""CPU time of other processes, read from ``/proc`` (Linux): what the benchmarks measure
beside their own process time (the PostgreSQL server, Celery workers, Redis).

Each reading is ``/proc/<pid>/stat`` (stat(5)): after the pid and the command's name in
parentheses (which may itself hold spaces and parentheses, hence the last ``)``), field 14 is
``utime``, 15 ``stime``, 16 ``cutime`` and 17 ``cstime`` (the reaped children's), in clock
ticks. Everything here returns None (or skips the process) where ``/proc`` cannot be read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Stat", "processes", "stat", "ticks_to_seconds"]

_UTIME = 11  # index of utime among the fields after the name (field 14 of stat(5))


class Stat:
    """One process's ``stat``: its name, its parent's pid, and its CPU ticks."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: list[str]) -> None:
        self.name = name
        self.fields = fields

    @property
    def parent(self) -> int:
        return int(self.fields[1])

    def ticks(self, *, children: bool = False) -> int:
        """User + system ticks, with ``children`` also those of its reaped children."""
        count = 4 if children else 2
        return sum(int(value) for value in self.fields[_UTIME : _UTIME + count])


def stat(pid: int) -> Stat | None:
    """Process ``pid``'s :class:`Stat`, or None (gone, or not readable)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    head, _, rest = text.rpartition(")")
    return Stat(head[head.index("(") + 1 :], rest.split())


def processes() -> Iterator[tuple[int, Stat]]:
    """Every process this one can read, with its :class:`Stat`."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = stat(int(entry.name))
            if found is not None:
                yield int(entry.name), found


def ticks_to_seconds(ticks: int) -> float:
    return ticks / os.sysconf("SC_CLK_TCK")
