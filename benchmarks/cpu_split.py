"""Where a run's process (CPU) time goes, by layer: each layer's functions wrapped with a
timer that counts only the time spent in that layer itself (a call into another wrapped layer
pauses it), so the parts add up to what the wrapped functions took; the rest of the run is
the runtime's and the stores' own Python. Used by ``bench_handle_sql.py --split``.

The layers: the driver on PostgreSQL (psycopg's ``waiting.wait``, every exchange with the
server: building and sending the messages, waiting, reading the results; sqlite3's calls are
C methods that cannot be wrapped, so on SQLite the driver's statements are in the rest and
its commit, the file's sync included, in SQLAlchemy's ``commit``); SQLAlchemy's
connections and transactions (``Engine.connect``; ``Connection.begin``, ``commit``,
``rollback``, ``close``); SQLAlchemy statements (``Connection.execute``: compiling, binding,
results); the planner's ``_plan`` (the rules and the stored form of each action: the
runtime's generic part); then ``handle_many``'s parts: the batch stores' own Python
(``schedule_many`` / ``schedule_done``, ``add_many``, ``record_all``, the acknowledgement; on
SQLite the held rows' ``executemany`` runs in the unit's end, in the rest), building the
activities, ``activity.created``, the executor's contexts and runs, the events sent after the
commit (the batch runner and the other handlers, bound when the flow was built, are in the
rest).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["layer_split"]


def _layers() -> list[tuple[Any, str, str]]:
    from sqlalchemy.engine import base

    from leadflow.runtime import handlers
    from leadflow.runtime.emitter import Emitter
    from leadflow.runtime.executor import Executor
    from leadflow.runtime.fact_recorder import FactRecorder
    from leadflow.runtime.planner import Planner
    from leadflow.stores.sql.activities import SqlActivityRepository
    from leadflow.stores.sql.scheduled import SqlScheduledActionStore

    try:
        import psycopg.waiting
    except ImportError:  # SQLite only
        driver = []
    else:
        driver = [(psycopg.waiting, "wait", "driver (psycopg: messages, waits, results)")]
    return [
        *driver,
        (base.Engine, "connect", "SQLAlchemy: connections and transactions"),
        (base.Connection, "begin", "SQLAlchemy: connections and transactions"),
        (base.Connection, "commit", "SQLAlchemy: connections and transactions"),
        (base.Connection, "rollback", "SQLAlchemy: connections and transactions"),
        (base.Connection, "close", "SQLAlchemy: connections and transactions"),
        (base.Connection, "execute", "SQLAlchemy: statements (Core)"),
        (Planner, "_plan", "planning (rules, stored forms)"),
        # handle_many's parts (each exclusive of the layers above it calls).
        (SqlScheduledActionStore, "schedule_many", "storing the actions (the stores' Python)"),
        (SqlScheduledActionStore, "schedule_done", "storing the actions (the stores' Python)"),
        (SqlActivityRepository, "add_many", "storing the activities (the stores' Python)"),
        (handlers, "_activity", "building the activities (create_activity's values)"),
        (handlers, "_created", "activity.created (its document, the note)"),
        (Executor, "context", "the executor: contexts and runs"),
        (Executor, "_succeeded", "the executor: contexts and runs"),
        (FactRecorder, "record_all", "the facts (the stores' Python)"),
        (Planner, "_acknowledge", "the acknowledgement (the stores' Python)"),
        (Emitter, "_send", "leadflow's events to the sink (after the commit)"),
    ]


@contextmanager
def layer_split() -> Iterator[Counter[str]]:
    """Within the block, the process time of each layer (seconds, exclusive of the layers it
    calls), in the counter yielded; the wrapped functions are restored at its end."""
    spent: Counter[str] = Counter()
    stack: list[list[Any]] = []  # [label, started]
    clock = time.process_time
    saved: list[tuple[Any, str, Any]] = []

    def wrap(function: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            now = clock()
            if stack:
                spent[stack[-1][0]] += now - stack[-1][1]
            stack.append([label, now])
            try:
                return function(*args, **kwargs)
            finally:
                now = clock()
                done = stack.pop()
                spent[done[0]] += now - done[1]
                if stack:
                    stack[-1][1] = now

        return timed

    for owner, name, label in _layers():
        original = owner.__dict__[name]
        saved.append((owner, name, original))
        setattr(owner, name, wrap(original, label))
    try:
        yield spent
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
