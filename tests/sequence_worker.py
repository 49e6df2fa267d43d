"""The worker process of tests/test_sequences_crash.py: one leadflow instance on a SQL database
running ``run_due`` in a loop (the system clock), run as ``python -m tests.sequence_worker
CONFIG.json`` from the project's root.

Its sequences' action steps run one handler, ``seq_effect``, which records its effect in a
table of its own (``seq_effects``) keyed on the step's idempotency key
(``seq:<enrollment>:<visit>``): an upsert that keeps when the key was first applied
(``first_t``) and counts applications (``applied``), as tests/fault_worker.py's effects do.

With ``kill_after`` the worker's n-th handler run stops to be killed: ``kill_point``
``"after"`` once its effect is stored (the rerun reapplies the same key), ``"before"`` before
(its send began, nothing went out yet). It logs the JSON lines of tests/fault_worker.py
(``ready``, ``run``, ``done``, ``error``, ``recovered``, ``exit``) and ``mid-handler`` (the
key, enrollment and opportunity it stopped at) and stops when the stop file appears.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from leadflow import FlowSettings, HandlerRegistry, LeadFlow
from leadflow.ports import Storage
from leadflow.runtime.actions import ActionContext
from leadflow.runtime.settings import RetryPolicy

from .fault_worker import KILL_WAIT, DoneLogging, Log, describe, effects_engine

ACTION_TYPE = "seq_effect"
EFFECTS = "seq_effects"
EVENT_TYPES = ["email.replied"]

_CREATE = sa.text(
    f"CREATE TABLE IF NOT EXISTS {EFFECTS} (idem_key VARCHAR(400) PRIMARY KEY, "
    "worker VARCHAR(200) NOT NULL, enrollment_id VARCHAR(200) NOT NULL, "
    "visit INTEGER NOT NULL, step_id VARCHAR(200) NOT NULL, "
    "first_t DOUBLE PRECISION NOT NULL, applied INTEGER NOT NULL)"
)
_APPLY = sa.text(
    f"INSERT INTO {EFFECTS} (idem_key, worker, enrollment_id, visit, step_id, first_t, applied) "
    "VALUES (:key, :worker, :enrollment_id, :visit, :step_id, :t, 1) "
    f"ON CONFLICT (idem_key) DO UPDATE SET applied = {EFFECTS}.applied + 1"
)


@dataclasses.dataclass(frozen=True)
class Effect:
    key: str
    worker: str
    enrollment_id: str
    visit: int
    step_id: str
    first_t: float
    applied: int


def create_effects_table(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(_CREATE)


def read_effects(engine: sa.Engine) -> dict[str, Effect]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT idem_key, worker, enrollment_id, visit, step_id, first_t, applied "
                f"FROM {EFFECTS}"
            )
        ).all()
    return {
        str(r[0]): Effect(str(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]), float(r[5]),
                          int(r[6]))
        for r in rows
    }  # fmt: skip


def refuse(ctx: ActionContext[Any]) -> str:
    """The handler of the test's own flow, which feeds events and never runs steps."""
    raise AssertionError(f"the feeding flow ran {ctx.scheduled.idempotency_key}")


class Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.name = str(config["name"])
        self.log = Log(config["log"])
        self.effects = effects_engine(config["effects_url"])
        self.kill_after: int | None = config.get("kill_after")
        self.kill_point = str(config.get("kill_point", "after"))
        self.runs = 0
        self.errors = 0

    def effect(self, ctx: ActionContext[Any]) -> str:
        action = ctx.scheduled
        key = action.idempotency_key
        self.log.write("run", key=key, attempt=action.attempts, visit=action.action_index)
        self.runs += 1
        stop = self.kill_after is not None and self.runs == self.kill_after
        if stop and self.kill_point == "before":
            self.stopped(ctx)
        with self.effects.begin() as conn:
            conn.execute(
                _APPLY,
                {
                    "key": key,
                    "worker": self.name,
                    "enrollment_id": action.enrollment_id,
                    "visit": action.action_index,
                    "step_id": action.step_id,
                    "t": time.time(),
                },
            )
        if stop and self.kill_point == "after":
            self.stopped(ctx)
        return "effect stored"

    def stopped(self, ctx: ActionContext[Any]) -> None:
        """Wait here to be SIGKILLed (the step's send began: its "sending" write is stored)."""
        action = ctx.scheduled
        self.log.write(
            "mid-handler",
            key=action.idempotency_key,
            enrollment=action.enrollment_id,
            opportunity=action.opportunity_id,
            point=self.kill_point,
            pid=os.getpid(),
        )
        time.sleep(KILL_WAIT)

    def storage(self) -> Storage:
        from leadflow.stores.sql import sql_storage

        url = str(self.config["url"])
        target: Any = url if url.startswith("sqlite") else sa.create_engine(url, pool_pre_ping=True)
        storage = sql_storage(target)
        return dataclasses.replace(storage, scheduled=DoneLogging(storage.scheduled, self.log))

    def flow(self) -> LeadFlow:
        handlers = HandlerRegistry.default()
        handlers.register(ACTION_TYPE, self.effect)
        retry = timedelta(seconds=0.2)
        settings = FlowSettings(
            action_lease=timedelta(seconds=float(self.config.get("lease", 2.0))),
            retry=RetryPolicy(max_attempts=100, base=retry, cap=retry * 4),
            rules_refresh=timedelta(seconds=0.5),
            worker_id=f"{self.name}:{os.getpid()}",
        )
        return LeadFlow.in_memory(
            storage=self.storage(), handlers=handlers, settings=settings, event_types=EVENT_TYPES
        )

    def main(self) -> int:
        flow = self.flow()
        self.log.write("ready", pid=os.getpid())
        go = str(self.config["go"])
        while not os.path.exists(go):
            time.sleep(0.01)
        limit = int(self.config.get("limit", 5))
        poll = float(self.config.get("poll", 0.05))
        down = False
        while not os.path.exists(self.config["stop"]):
            try:
                report = flow.run_due(limit=limit)
            except Exception as exc:
                self.errors += 1
                self.log.write("error", phase="run_due", **describe(exc))
                down = True
                time.sleep(poll)
                continue
            if down:
                self.log.write("recovered")
                down = False
            if report.claimed == 0:
                time.sleep(poll)
        self.log.write("exit", runs=self.runs, errors=self.errors)
        return 0


if __name__ == "__main__":
    sys.exit(Worker(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))).main())
