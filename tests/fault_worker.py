"""The worker process of the fault tests (tests/test_sql_faults.py): one leadflow instance on a
SQL database, run as ``python tests/fault_worker.py CONFIG.json``.

A worker builds ``LeadFlow(sql_storage(...), ...)`` with one extra action type, ``fault_effect``,
whose handler records its effect in a table of its own keyed on the idempotency key (an upsert
that counts applications in ``applied``: the effect is idempotent, the count shows re-runs).
In mode ``run`` it calls ``run_due`` in a loop; in mode ``handle`` it first handles a stream of
events, then runs what they planned. It stops when the stop file appears.

Everything the test checks afterwards is appended, one JSON object a line, to the worker's log
(written straight to the file, so a SIGKILL loses nothing already logged):
``run`` (the handler started: key, attempt), ``done`` (``mark_done`` returned: key, attempt),
``error`` (an exception escaped ``run_due`` / ``handle``: its type, whether it is a leadflow
``UnavailableError``), ``recovered`` (the first success after errors), ``mid-batch`` (the victim
stored an effect and now waits, claimed actions in hand, to be killed), ``handled`` and ``exit``.

The test imports the helpers here (log reading, the effects table); this file imports only
leadflow and SQLAlchemy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from leadflow import FlowSettings, HandlerRegistry, LeadFlow
from leadflow.errors import LeadflowError, UnavailableError
from leadflow.models import Event
from leadflow.ports import ScheduledActionStore, Storage
from leadflow.records import ScheduledAction
from leadflow.runtime.actions import ActionContext
from leadflow.runtime.settings import RetryPolicy

ACTION_TYPE = "fault_effect"
EFFECTS = "fault_effects"
KILL_WAIT = 120.0  # how long the victim waits to be killed before carrying on

_CREATE = sa.text(
    f"CREATE TABLE IF NOT EXISTS {EFFECTS} (idem_key VARCHAR(400) PRIMARY KEY, "
    "worker VARCHAR(200) NOT NULL, event_id VARCHAR(200) NOT NULL, "
    "action_index INTEGER NOT NULL, applied INTEGER NOT NULL)"
)
_APPLY = sa.text(
    f"INSERT INTO {EFFECTS} (idem_key, worker, event_id, action_index, applied) "
    "VALUES (:key, :worker, :event_id, :action_index, 1) "
    f"ON CONFLICT (idem_key) DO UPDATE SET applied = {EFFECTS}.applied + 1"
)


# --------------------------------------------------------------------------- shared helpers


def effects_engine(url: str) -> sa.Engine:
    """An engine for the effects table: pre-pinged (it lives through server restarts); on
    SQLite a long busy timeout and WAL, so four writers queue instead of failing."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2)


def create_effects_table(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(_CREATE)


def read_effects(engine: sa.Engine) -> dict[str, tuple[str, int, int]]:
    """Every recorded effect: key -> (event_id, action_index, applied)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT idem_key, event_id, action_index, applied FROM {EFFECTS}")
        ).all()
    return {str(r[0]): (str(r[1]), int(r[2]), int(r[3])) for r in rows}


def count_effects(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {EFFECTS}")).scalar_one())


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """A worker's log lines (a half-written last line, from a kill, is skipped)."""
    out: list[dict[str, Any]] = []
    if not os.path.exists(path):
        return out
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class Log:
    """Append-only JSON lines, one ``write`` per line, unbuffered."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, ev: str, **fields: Any) -> None:
        line = json.dumps({"t": time.time(), "ev": ev, **fields}, default=str) + "\n"
        os.write(self._fd, line.encode())


def describe(exc: BaseException) -> dict[str, Any]:
    """What the test needs to know about an exception that escaped leadflow."""
    cause = exc.__cause__
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "leadflow": isinstance(exc, LeadflowError),
        "unavailable": isinstance(exc, UnavailableError),
        "cause": None if cause is None else f"{type(cause).__module__}.{type(cause).__qualname__}",
        "message": str(exc)[:300],
    }


def recovery_times(logs: list[dict[str, Any]], outages: list[tuple[float, float]]) -> list[Any]:
    """Per restart: seconds from the server accepting connections again to the last worker's
    first successful ``run_due`` (workers that saw no error in that outage are not counted)."""
    out: list[Any] = []
    bounds = [*(down for down, _ in outages[1:]), float("inf")]
    for (down, up), until in zip(outages, bounds, strict=True):
        back = []
        for worker in {e["worker"] for e in logs}:
            mine = [e for e in logs if e["worker"] == worker and down <= e["t"] < until]
            if any(e["ev"] == "error" for e in mine):
                first = [e["t"] for e in mine if e["ev"] == "recovered"]
                back.append(min(first) - up if first else None)
        known = [b for b in back if b is not None]
        out.append(round(max(known), 2) if known and len(known) == len(back) else back)
    return out


# --------------------------------------------------------------------------- the worker


class DoneLogging:
    """A scheduled-action store that logs every ``mark_done`` (and each action a
    ``mark_done_many`` finished) that returned (the test checks
    that no action runs again after it was marked done)."""

    def __init__(self, inner: ScheduledActionStore, log: Log) -> None:
        self._inner = inner
        self._log = log

    def mark_done(self, action_id: str, *, worker: str, now: datetime) -> ScheduledAction:
        done = self._inner.mark_done(action_id, worker=worker, now=now)
        self._log.write("done", key=done.idempotency_key, attempt=done.attempts)
        return done

    def mark_done_many(
        self, action_ids: Any, *, worker: str, now: datetime
    ) -> list[ScheduledAction]:
        done = self._inner.mark_done_many(action_ids, worker=worker, now=now)
        for action in done:
            self._log.write("done", key=action.idempotency_key, attempt=action.attempts)
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.name = str(config["name"])
        self.log = Log(config["log"])
        self.effects = effects_engine(config["effects_url"])
        self.kill_after: int | None = config.get("kill_after")
        self.runs = 0
        self.errors = 0
        self.unavailable = 0

    def effect(self, ctx: ActionContext) -> str:
        """The test action: store the effect once per idempotency key (re-runs only count)."""
        scheduled = ctx.scheduled
        self.log.write("run", key=scheduled.idempotency_key, attempt=scheduled.attempts)
        with self.effects.begin() as conn:
            conn.execute(
                _APPLY,
                {
                    "key": scheduled.idempotency_key,
                    "worker": self.name,
                    "event_id": scheduled.event.id,
                    "action_index": scheduled.action_index,
                },
            )
        self.runs += 1
        if self.kill_after is not None and self.runs == self.kill_after:
            # The effect is committed, the action is not marked done, and the rest of the
            # batch is claimed: the test SIGKILLs this process now.
            self.log.write("mid-batch", key=scheduled.idempotency_key, pid=os.getpid())
            time.sleep(KILL_WAIT)
        return "effect stored"

    def storage(self) -> Storage:
        from leadflow.stores.sql import sql_storage

        url = str(self.config["url"])
        target: Any = url
        if not url.startswith("sqlite"):
            target = sa.create_engine(url, pool_pre_ping=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                storage = sql_storage(target)
                break
            except UnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        return dataclasses.replace(storage, scheduled=DoneLogging(storage.scheduled, self.log))

    def flow(self) -> LeadFlow:
        handlers = HandlerRegistry.default()
        handlers.register(ACTION_TYPE, self.effect)
        retry_base = timedelta(seconds=float(self.config.get("retry_base", 0.2)))
        settings = FlowSettings(
            action_lease=timedelta(seconds=float(self.config.get("lease", 2.0))),
            retry=RetryPolicy(max_attempts=100, base=retry_base, cap=retry_base * 4),
            worker_id=f"{self.name}:{os.getpid()}",
        )
        return LeadFlow.in_memory(storage=self.storage(), handlers=handlers, settings=settings)

    def failed(self, exc: Exception, phase: str) -> None:
        self.errors += 1
        self.unavailable += isinstance(exc, UnavailableError)
        self.log.write("error", phase=phase, **describe(exc))

    def stopping(self) -> bool:
        return os.path.exists(self.config["stop"])

    def handle_stream(self, flow: LeadFlow) -> None:
        spec = self.config["events"]
        at = datetime.fromisoformat(spec["time"])
        executed = duplicates = 0
        for i in range(int(spec["count"])):
            event = Event(
                id=f"ev-{i:05d}",
                type="opportunity.created",
                time=at,
                payload={"opportunityId": f"opp-{i:05d}"},
            )
            while True:
                try:
                    result = flow.handle(event)
                    break
                except Exception as exc:
                    self.failed(exc, "handle")
                    time.sleep(0.05)
            executed += len(result.executed)
            duplicates += len(result.duplicates)
        self.log.write("handled", executed=executed, duplicates=duplicates)

    def main(self) -> int:
        flow = self.flow()
        self.log.write("ready", pid=os.getpid())
        go = self.config.get("go")
        while go and not os.path.exists(go):
            time.sleep(0.01)
        if self.config.get("mode") == "handle":
            self.handle_stream(flow)
        run_at = self.config.get("run_at")
        when = datetime.fromisoformat(run_at) if run_at else None
        limit = int(self.config.get("limit", 20))
        poll = float(self.config.get("poll", 0.05))
        down = False
        while not self.stopping():
            try:
                report = flow.run_due(limit=limit, now=when)
            except Exception as exc:
                self.failed(exc, "run_due")
                down = True
                time.sleep(poll)
                continue
            if down:
                self.log.write("recovered")
                down = False
            if report.claimed == 0:
                time.sleep(poll)
        self.log.write("exit", runs=self.runs, errors=self.errors, unavailable=self.unavailable)
        return 0


if __name__ == "__main__":
    sys.exit(Worker(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))).main())
