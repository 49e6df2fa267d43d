"""The unit-of-work ports: how a backend groups store calls into one atomic step
(:class:`UnitOfWork`), a backend that cannot (:class:`SeparateSteps`), and a block whose writes
may travel to the database together (:class:`DeferredUnits`). Re-exported by
:mod:`leadflow.ports.storage` and :mod:`leadflow.ports`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, runtime_checkable

from ..errors import ConflictError

__all__ = ["DeferredUnits", "DeferredWriteError", "SeparateSteps", "UnitOfWork"]


@runtime_checkable
class UnitOfWork(Protocol):
    """Groups the store calls made inside ``with storage.unit_of_work():`` into one atomic step,
    where the backend can.

    ``atomic`` says which: when true (the SQL stores), every write of the block is committed
    together when the block ends without an exception and none is when it raises (or the
    process dies first); reads inside see the block's own writes; the stores of one
    :class:`~leadflow.ports.Storage` share the block's transaction. The block runs on the
    calling thread's context (a ``contextvars`` variable): other threads, and blocks opened on
    them, are not part of it. A block opened inside another joins it (the outermost commits).
    When false (``SeparateSteps``: the memory and MongoDB stores), the block groups nothing:
    each call stays its own atomic step, visible at once, and a failure keeps what the calls
    before it wrote. The runtime is correct either way (its writes are keyed by idempotency
    keys and leased, see :mod:`leadflow.runtime.flow`); an atomic unit only saves commits and
    leaves nothing half-written.

    The contract suite is :class:`~leadflow.testing.contracts.UnitOfWorkContract`.
    """

    @property
    def atomic(self) -> bool:
        """Whether a block's writes are committed together (see above)."""
        ...

    @property
    def active(self) -> bool:
        """Whether the calling context is inside a block (always false when not ``atomic``)."""
        ...

    def __call__(self) -> AbstractContextManager[None]:
        """A block: ``with storage.unit_of_work(): ...``."""
        ...


class DeferredWriteError(ConflictError):
    """A write a :class:`DeferredUnits` block answered before sending it did not go in (its
    rows were there): the block is rolled back, nothing of it written."""


@runtime_checkable
class DeferredUnits(Protocol):
    """Optional, beside :class:`UnitOfWork` (the SQL stores): a block whose writes may be
    answered before they reach the database, so that they travel to it together (on
    PostgreSQL the writes of a block that only writes go as one statement, one round trip).

    In a ``with units.deferred():`` block a store may answer a write as if it succeeded (an
    insert of rows it takes to be new, which nothing but a rare collision could refuse: an
    activity without an open key) and check that it did when the writes are sent; with
    ``ahead`` also the writes that a repeated event or a held key refuses in the normal course
    (the runtime's planned actions, an activity holding an open key). If one did not go in,
    the block fails with :class:`DeferredWriteError` (a :class:`~leadflow.ConflictError`) and
    nothing of it is written. Only for a caller that can then do the work again in an
    ordinary block (the runtime's planner), where each write is answered as it is made; and
    ``ahead`` only when what ran in the block had no effect outside the stores (the writes of
    :data:`~leadflow.runtime.handlers.CONTAINED` handlers). A host's own blocks are ordinary
    ones (``units()``)."""

    def deferred(self, *, ahead: bool = False) -> AbstractContextManager[None]:
        """A block whose writes may be answered before they are sent (see above); a block
        opened inside another joins it as what it is."""
        ...


class SeparateSteps:
    """The :class:`UnitOfWork` of a backend whose calls cannot share a transaction: a block
    groups nothing (``atomic`` is false) and each store call stays its own atomic step."""

    __slots__ = ()

    @property
    def atomic(self) -> bool:
        return False

    @property
    def active(self) -> bool:
        return False

    def __call__(self) -> AbstractContextManager[None]:
        return _nothing()

    def __repr__(self) -> str:
        return "SeparateSteps()"


@contextmanager
def _nothing() -> Iterator[None]:
    yield
