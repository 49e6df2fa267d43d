"""Rows by their first value, found in one dict lookup, that the garbage collector does not walk.

The fast stores keep their rows (activities, finished actions: tuples of atomic values) by id.
A plain ``dict`` of rows would be found in O(1), but CPython tracks a dict again as soon as a
still-tracked tuple is stored in it and untracks it only in a full collection, so every full
collection would walk a million entries. The stores used to keep them in a sorted index of the
rows themselves (a ``ChunkedIndex``: a binary search per lookup, a chunk rebuilt per insert,
about two to five microseconds per call, paid several times per handled event).

:class:`SlotRows` keeps each row in a *slot*: a position in fixed-size tuples of rows
(``_chunks``; the chunk still filling up is a short list), and the ids in a ``dict`` from id to
slot. That dict holds only strings and integers, so CPython never tracks it, however large; a
full chunk is a tuple of rows, untracked once its rows are. A lookup is one dict lookup and
one index; an insert appends to the filling chunk; a replacement rebuilds one chunk (``_SIZE``
pointers); a removal leaves ``None`` in its slot. Freed slots are not reused: once more than
half of the slots ever handed out are free (and at least ``_SIZE``), the rows are packed again
in one pass (amortized over the removals that freed them).

Offers the dict operations the stores use: ``get``, ``in``, ``[]``, ``put``
(the key is the row's first value, a row of the same key replaced), ``pop``, ``del``, ``len``,
``items`` (in no particular order). ``tests/test_store_memory.py`` holds it to a dict.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final, Generic, TypeVar

from .chunks import hold_new, watch_collections

__all__ = ["SlotRows"]

R = TypeVar("R", bound=tuple[Any, ...])

_SIZE: Final = 64
"""Rows per chunk."""


class SlotRows(Generic[R]):
    """Rows (tuples) by their first value, a string (see the module docstring)."""

    __slots__ = ("_chunks", "_filling", "_slots", "_used")

    def __init__(self) -> None:
        self._slots: dict[str, int] = {}  # id -> slot; strings and ints: never tracked
        self._chunks: list[tuple[R | None, ...]] = []  # full chunks
        self._filling: list[R | None] = []  # the chunk filling up (slots after the full ones)
        self._used = 0  # slots handed out (full chunks and the filling one)
        watch_collections()

    def _at(self, slot: int) -> R | None:
        chunk, offset = divmod(slot, _SIZE)
        if chunk < len(self._chunks):
            return self._chunks[chunk][offset]
        return self._filling[offset]

    def _set(self, slot: int, row: R | None) -> None:
        chunk, offset = divmod(slot, _SIZE)
        if chunk < len(self._chunks):
            old = self._chunks[chunk]
            self._chunks[chunk] = (*old[:offset], row, *old[offset + 1 :])
        else:
            self._filling[offset] = row

    def get(self, key: str, default: Any = None) -> Any:
        slot = self._slots.get(key)
        return default if slot is None else self._at(slot)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._slots

    def __getitem__(self, key: str) -> R:
        row = self._at(self._slots[key])
        assert row is not None  # a slot in the dict holds its row
        return row

    def put(self, row: R) -> None:
        """Store ``row`` under its first value, replacing the row stored under it."""
        hold_new(row)
        key = row[0]
        slot = self._slots.get(key)
        if slot is not None:
            self._set(slot, row)
            return
        filling = self._filling
        filling.append(row)
        # An exact str key: a str subclass (an enumeration) is a tracked object.
        self._slots[str.__str__(key)] = self._used
        self._used += 1
        if len(filling) == _SIZE:
            chunk = tuple(filling)
            hold_new(chunk)
            self._chunks.append(chunk)
            filling.clear()

    def pop(self, key: str) -> R:
        slot = self._slots.pop(key)  # KeyError when there is none
        row = self._at(slot)
        assert row is not None
        self._set(slot, None)
        free = self._used - len(self._slots)
        if free >= _SIZE and 2 * free > self._used:
            self._pack()
        return row

    def __delitem__(self, key: str) -> None:
        self.pop(key)

    def __len__(self) -> int:
        return len(self._slots)

    def items(self) -> Iterator[tuple[str, R]]:
        """Every (key, row), in no particular order."""
        return ((row[0], row) for row in self._rows())

    def _rows(self) -> list[R]:
        rows = [row for chunk in self._chunks for row in chunk if row is not None]
        rows += [row for row in self._filling if row is not None]
        return rows

    def _pack(self) -> None:
        """The rows in the first slots again, in the order they were in (one pass)."""
        rows = self._rows()
        self._slots.clear()
        self._chunks.clear()
        self._filling.clear()
        self._used = 0
        for row in rows:
            self.put(row)
