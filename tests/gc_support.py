"""What the tests of the stores' garbage-collector footprint share."""

from __future__ import annotations

import gc
from collections.abc import Callable


def tracked_after(build: Callable[[], object]) -> int:
    """How many more objects the garbage collector tracks once ``build`` ran. Everything that
    existed before is frozen (out of the collections and of ``gc.get_objects()``), so the
    count is what ``build`` left and the collections cost what it made, not the whole heap
    of a long test run."""
    gc.freeze()
    try:
        kept = build()
        gc.collect()
        gc.collect()  # nested tuples (chunks of pairs) are untracked over two passes
        grown = len(gc.get_objects())
        del kept
    finally:
        gc.unfreeze()
    return grown
