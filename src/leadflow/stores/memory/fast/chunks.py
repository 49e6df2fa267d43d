"""A sorted index the garbage collector does not have to walk.

The in-memory stores answer every query from ordered indexes of key tuples. Kept in
``sortedcontainers.SortedList`` (lists of about a thousand keys), each index adds one pointer per
stored key to a list the collector traverses on every full collection: at a million activities
and eleven indexes, a full collection took over 400 ms, stalling whatever ``handle()`` call it
landed in (issue 9). :class:`ChunkedIndex` keeps the same sorted keys in *tuples* of up to
``2 * load`` keys. A tuple that holds only untracked objects (our keys: tuples of strings,
numbers, datetimes and None) is untracked by CPython after the collector first sees it, so a full
collection visits one pointer per chunk instead of one per key.

It offers the part of ``SortedList``'s interface the stores use (``add``, ``remove``,
``irange``, iteration, ``len``) with the same semantics; ``tests/test_store_memory.py`` holds it
to ``SortedList`` on random operations. Changing a chunk builds a new tuple (a copy of at most
``2 * load`` pointers, each one's reference count touched). The default load, 64, keeps that
copy short (an insert costs about 1.4x ``SortedList.add``; with 512 it cost 3.5x).

**The chunks are kept in blocks**, tuples of up to ``2 * span`` chunks (with the last key of
each chunk in a tuple beside it), so the lists the collector does walk hold one pointer per
block: a million keys in chunks of about 96 are about 10,000 chunks but about 450 blocks
(span 16), and a full collection reads three pointers per block (the block, its chunks' last
keys, its own last key) instead of two per chunk. An insert then rebuilds the block's tuple
too (and the tuple of last keys when a chunk's last key changes): at 200,000 keys about 10%
more per insert at random places, about 1.7x (1.6 -> 2.7 us) when every key goes last.

**Added keys wait, and go in together.** ``add`` puts a key in a short list (at most
``buffer``, 64); the next read of the index, or the key that fills the list, puts
them all into the chunks, sorted: the keys bound for one chunk rebuild it (and its block) once.
Most indexes are time-ordered (creation, due and finish times), in full or per assignee or
rule, so their new keys go to one chunk each: 100,000 keys, half of them added after the other
half was in, 1.3 -> 0.6 us per key when every key goes last, 1.8 -> 1.2 us over 20 prefixes,
the same (2.5-2.9 us) at random places. The first read after a run of adds pays for the keys
waiting (at most 64 inserts).

**New keys are held until the collector has seen them.** CPython untracks a tuple in a young
collection only when its items are untracked already, and it looks at the young objects in an
order where an object referenced only from inside the young generation (a new row, referenced
by a new key; a new key, referenced by a new chunk) comes *after* what references it: each
collection untracks one level (the row, then the key, then the chunk), while the survivors are
promoted, so many chunks reached the oldest generation still tracked and each full collection
read every key of each of them (``docs/benchmarks.md``, "Growth"). So the indexes keep a
reference to every key they take (and the row maps of :mod:`.slots` to every row) in
:data:`_NEW`, a list outside the young generation, until the next collection ends (a
:data:`gc.callbacks` hook empties it): referenced from outside, new objects keep the order
they were made in (a row before its keys, a key before its chunk), and one young collection
untracks them all. The list holds at most :data:`_NEW_LIMIT` objects (a host that disables
the collector or raises its thresholds only loses the effect, never memory).
"""

from __future__ import annotations

import gc
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any, Final, Generic, TypeVar

__all__ = ["ChunkedIndex", "hold_new", "watch_collections"]

K = TypeVar("K")

_NEW: Final[list[object]] = []
"""Keys taken since the last collection (see the module docstring)."""
_NEW_LIMIT: Final = 100_000


def _collected(phase: str, info: dict[str, int]) -> None:
    """A :data:`gc.callbacks` hook: a collection has seen the new objects; let them go."""
    if phase == "stop":
        _NEW.clear()


def hold_new(item: object) -> None:
    """Keep ``item`` (a new key, row or chunk) referenced until the next collection ends (see
    the module docstring)."""
    new = _NEW
    new.append(item)
    if len(new) > _NEW_LIMIT:
        new.clear()


def watch_collections() -> None:
    """Have :func:`hold_new`'s objects let go at the end of each collection."""
    if _collected not in gc.callbacks:
        gc.callbacks.append(_collected)


S = TypeVar("S", list[Any], tuple[Any, ...])


def _parts(items: S, size: int) -> list[S]:
    """``items`` as it is if it has at most ``2 * size`` items, else cut, in order, in two
    or more parts of about ``1.5 * size`` items (a full chunk cut in halves, as before)."""
    if len(items) <= 2 * size:
        return [items]
    count = max(2, 2 * len(items) // (3 * size))  # parts of about 1.5 * size
    bounds = [len(items) * n // count for n in range(count + 1)]
    return [items[start:end] for start, end in pairwise(bounds)]


class ChunkedIndex(Generic[K]):
    """A sorted multiset of keys in immutable chunks, the chunks in immutable blocks (see the
    module docstring)."""

    __slots__ = (
        "_blocks",
        "_buffer",
        "_chunk_maxes",
        "_len",
        "_load",
        "_maxes",
        "_pending",
        "_span",
    )

    def __init__(self, load: int = 64, span: int = 16, buffer: int = 64) -> None:
        if load < 2 or span < 2 or buffer < 1:
            raise ValueError("load and span must be at least 2, buffer at least 1")
        self._load = load
        self._span = span
        self._buffer = buffer
        self._pending: list[K] = []  # added, not yet in the chunks (see add)
        self._blocks: list[tuple[tuple[K, ...], ...]] = []
        self._chunk_maxes: list[tuple[K, ...]] = []  # per block: the last key of each chunk
        self._maxes: list[K] = []  # the last key of each block
        self._len = 0
        watch_collections()

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[K]:
        self._flush()
        for block in list(self._blocks):
            for chunk in block:
                yield from chunk

    def first(self) -> K | None:
        """The smallest key, or None when empty."""
        self._flush()
        return self._blocks[0][0][0] if self._blocks else None

    def add(self, key: K) -> None:
        """Insert ``key`` after any equal keys.

        The key waits in a short list with the others added since the index was last read or
        changed otherwise, and goes into the chunks with them (:meth:`_flush`), at the latest
        when ``buffer`` keys wait: keys that go to one chunk (in a time-ordered index, all of
        them) then rebuild it once, not once each. Every read puts them in
        first (a removal takes a waiting key out where it can: :meth:`remove`)."""
        new = _NEW  # held until the next collection (see the module docstring)
        new.append(key)
        if len(new) > _NEW_LIMIT:
            new.clear()
        self._len += 1
        if self._buffer == 1:
            self._insert(key)
            return
        pending = self._pending
        pending.append(key)
        if len(pending) >= self._buffer:
            self._flush()

    def _flush(self) -> None:
        """Put the waiting keys into the chunks: sorted (equal keys in the order they came,
        after the equal keys in the chunks, as one ``add`` at a time would place them), each
        chunk that takes some rebuilt once, then any block grown too long split."""
        pending = self._pending
        if not pending:
            return
        keys = sorted(pending)  # type: ignore[type-var]
        pending.clear()
        if len(keys) == 1:
            self._insert(keys[0])
            return
        if not self._blocks:
            self._insert(keys[0])
            keys = keys[1:]
        maxes, all_chunk_maxes = self._maxes, self._chunk_maxes
        groups: list[tuple[int, int, list[K]]] = []
        for key in keys:  # the chunk each key goes to, as _insert finds it
            i = bisect_right(maxes, key)  # type: ignore[call-overload]
            if i == len(maxes):
                i -= 1
            chunk_maxes = all_chunk_maxes[i]
            j = bisect_right(chunk_maxes, key)
            if j == len(chunk_maxes):
                j -= 1
            if groups and groups[-1][0] == i and groups[-1][1] == j:
                groups[-1][2].append(key)
            else:
                groups.append((i, j, [key]))
        blocks, load, touched = self._blocks, self._load, set()
        for i, j, group in reversed(groups):  # from the end: earlier places stay where they are
            block, chunk_maxes = blocks[i], all_chunk_maxes[i]
            chunk = block[j]
            if len(group) == 1:
                key = group[0]
                k = bisect_right(chunk, key)  # type: ignore[call-overload]
                merged = (*chunk[:k], key, *chunk[k:])
            else:
                keys = list(chunk)
                k = 0
                for key in group:  # in order: each after the one before and its equals
                    k = bisect_right(keys, key, k)  # type: ignore[call-overload]
                    keys.insert(k, key)
                    k += 1
                merged = tuple(keys)
            if len(merged) <= 2 * load:
                blocks[i] = (*block[:j], merged, *block[j + 1 :])
                if merged[-1] is chunk[-1]:
                    continue
                ends: tuple[K, ...] = (merged[-1],)
            else:
                pieces = _parts(merged, load)
                blocks[i] = (*block[:j], *pieces, *block[j + 1 :])
                ends = tuple(piece[-1] for piece in pieces)
                touched.add(i)
            all_chunk_maxes[i] = chunk_maxes = (*chunk_maxes[:j], *ends, *chunk_maxes[j + 1 :])
            maxes[i] = chunk_maxes[-1]
        for i in sorted(touched, reverse=True):
            self._split(i)

    def _split(self, i: int) -> None:
        """Block ``i`` in blocks of ``span`` chunks if it has more than ``2 * span``."""
        block, span = self._blocks[i], self._span
        if len(block) <= 2 * span:
            return
        self._blocks[i : i + 1] = _parts(block, span)
        ends = _parts(self._chunk_maxes[i], span)
        self._chunk_maxes[i : i + 1] = ends
        self._maxes[i : i + 1] = [end[-1] for end in ends]

    def _insert(self, key: K) -> None:
        """One key into the chunks, after any equal keys."""
        blocks, maxes = self._blocks, self._maxes
        if not blocks:
            blocks.append(((key,),))
            self._chunk_maxes.append((key,))
            maxes.append(key)
            return
        i = bisect_right(maxes, key)  # type: ignore[call-overload]
        if i == len(maxes):
            i -= 1
        block, chunk_maxes = blocks[i], self._chunk_maxes[i]
        j = bisect_right(chunk_maxes, key)
        if j == len(chunk_maxes):
            j -= 1
        chunk = block[j]
        k = bisect_right(chunk, key)
        chunk = (*chunk[:k], key, *chunk[k:])
        if len(chunk) > 2 * self._load:
            half = len(chunk) // 2
            first, second = chunk[:half], chunk[half:]
            block = (*block[:j], first, second, *block[j + 1 :])
            chunk_maxes = (*chunk_maxes[:j], first[-1], second[-1], *chunk_maxes[j + 1 :])
            if len(block) > 2 * self._span:
                half = len(block) // 2
                ends = chunk_maxes[:half], chunk_maxes[half:]
                blocks[i : i + 1] = [block[:half], block[half:]]
                self._chunk_maxes[i : i + 1] = ends
                maxes[i : i + 1] = [ends[0][-1], ends[1][-1]]
                return
        else:
            block = (*block[:j], chunk, *block[j + 1 :])
            if k == len(chunk) - 1:  # the chunk's last key changed
                chunk_maxes = (*chunk_maxes[:j], key, *chunk_maxes[j + 1 :])
        blocks[i] = block
        self._chunk_maxes[i] = chunk_maxes
        maxes[i] = chunk_maxes[-1]

    def remove(self, key: K) -> None:
        """Remove one key equal to ``key``; ``ValueError`` if there is none.

        The keys still waiting are not put in first: one equal to ``key`` among them is taken
        out of the waiting list (equal keys are interchangeable), else the key is taken out of
        the chunks, and the waiting keys keep waiting (a removal between adds, as a completed
        activity's or a finished action's keys between new ones, no longer rebuilds the
        chunks for a handful of keys)."""
        pending = self._pending
        if pending:
            try:
                pending.remove(key)
            except ValueError:
                pass
            else:
                self._len -= 1
                return
        maxes = self._maxes
        i, j, k = self._place(key, bisect_left)
        if i < len(maxes):
            block, chunk_maxes = self._blocks[i], self._chunk_maxes[i]
            chunk = block[j]
            if chunk[k] == key:
                rest = (*chunk[:k], *chunk[k + 1 :])
                if rest:
                    block = (*block[:j], rest, *block[j + 1 :])
                    if k == len(rest):  # the chunk's last key went
                        chunk_maxes = (*chunk_maxes[:j], rest[-1], *chunk_maxes[j + 1 :])
                else:
                    block = (*block[:j], *block[j + 1 :])
                    chunk_maxes = (*chunk_maxes[:j], *chunk_maxes[j + 1 :])
                if block:
                    self._blocks[i] = block
                    self._chunk_maxes[i] = chunk_maxes
                    maxes[i] = chunk_maxes[-1]
                else:
                    del self._blocks[i]
                    del self._chunk_maxes[i]
                    del maxes[i]
                self._len -= 1
                return
        raise ValueError(f"{key!r} not in index")

    def replace(self, old: K, new: K) -> None:
        """Put ``new`` in the place of one key equal to ``old`` (``ValueError`` if there is
        none), in one chunk rebuilt instead of a removal and an insertion. ``new`` must sort
        where ``old`` does: no key of the index between them (the stores' keys that differ
        only in the row they end with, as a completed activity's in its creation index)."""
        hold_new(new)
        pending = self._pending
        for n, waiting in enumerate(pending):
            if waiting == old:
                pending[n] = new
                return
        maxes = self._maxes
        i, j, k = self._place(old, bisect_left)
        if i < len(maxes):
            block, chunk_maxes = self._blocks[i], self._chunk_maxes[i]
            chunk = block[j]
            if chunk[k] == old:
                self._blocks[i] = (*block[:j], (*chunk[:k], new, *chunk[k + 1 :]), *block[j + 1 :])
                if k == len(chunk) - 1:  # the chunk's last key
                    chunk_maxes = (*chunk_maxes[:j], new, *chunk_maxes[j + 1 :])
                    self._chunk_maxes[i] = chunk_maxes
                    maxes[i] = chunk_maxes[-1]
                return
        raise ValueError(f"{old!r} not in index")

    def _position(self, key: Any, right: bool) -> tuple[int, int, int]:
        """(block, chunk, offset) of the first key > ``key`` (``right``) or >= ``key``; the
        block is ``len(self._blocks)`` when there is none."""
        self._flush()
        return self._place(key, bisect_right if right else bisect_left)

    def _place(self, key: Any, search: Callable[..., int]) -> tuple[int, int, int]:
        """:meth:`_position` in the chunks only, the waiting keys left waiting (``search``:
        ``bisect_left`` or ``bisect_right``)."""
        i = search(self._maxes, key)
        if i == len(self._maxes):
            return i, 0, 0
        j = search(self._chunk_maxes[i], key)  # the block's last key qualifies, so j is in it
        return i, j, search(self._blocks[i][j], key)

    def ceiling(self, key: Any) -> K | None:
        """The smallest key >= ``key``, or None when there is none."""
        i, j, k = self._position(key, False)
        return None if i == len(self._blocks) else self._blocks[i][j][k]

    def irange(
        self,
        minimum: Any = None,
        maximum: Any = None,
        inclusive: tuple[bool, bool] = (True, True),
        reverse: bool = False,
    ) -> Iterator[K]:
        """The keys between ``minimum`` and ``maximum`` (None: unbounded), in order or
        ``reverse``d, as ``SortedList.irange``. The range is fixed when this is called: later
        changes to the index do not show in an iteration already begun."""
        self._flush()
        blocks = self._blocks
        end = (len(blocks), 0, 0)
        start = (0, 0, 0) if minimum is None else self._position(minimum, not inclusive[0])
        stop = end if maximum is None else self._position(maximum, inclusive[1])
        if stop <= start:
            return iter(())
        (i, j, k), (m, n, o) = start, stop
        parts: list[tuple[K, ...]]
        if (i, j) == (m, n):
            parts = [blocks[i][j][k:o]]
        else:
            parts = [blocks[i][j][k:]]
            if i == m:
                parts.extend(blocks[i][j + 1 : n])
            else:
                parts.extend(blocks[i][j + 1 :])
                for block in blocks[i + 1 : m]:
                    parts.extend(block)
                if m < len(blocks):
                    parts.extend(blocks[m][:n])
            if m < len(blocks) and o:
                parts.append(blocks[m][n][:o])
        if reverse:
            return (key for part in reversed(parts) for key in reversed(part))
        return (key for part in parts for key in part)
