"""What a claimed batch of sequence steps writes to a SQL enrollment store, measured alone:
``get_heads``, ``mark_sending`` and ``move_many`` (one step record appended each) on batches of
50 enrollments, each call in its own transaction as the sequencer's units of work make them.
The rest of a step (the claim, the handler, the next visit, the runtime) is left out, so that
a change to these statements shows through the spread of the whole ``run_due`` on a loaded
machine (``benchmarks/bench_sequences.py``). Medians per enrollment, wall and CPU clocks.

Run: python benchmarks/bench_enrollment_writes.py [--backend sqlite|postgres] [--n N]
[--reps R]; ``postgres`` needs ``LEADFLOW_TEST_POSTGRES_URL`` (a schema of its own, dropped at
the end).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from leadflow.sequences import Enrollment, EnrollmentHead, StepRecord
from leadflow.stores.sql import sql_storage

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
BATCH = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--n", type=int, default=500, help="enrollments")
    parser.add_argument("--reps", type=int, default=5, help="steps each enrollment takes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        schema = None
        if args.backend == "postgres":
            url = os.environ.get("LEADFLOW_TEST_POSTGRES_URL")
            if not url:
                raise SystemExit("set LEADFLOW_TEST_POSTGRES_URL for --backend postgres")
            schema = f"bench_ew_{uuid.uuid4().hex[:12]}"
            storage = sql_storage(url, schema=schema, create=True)
        else:
            storage = sql_storage(f"sqlite:///{Path(tmp) / 'ew.db'}", create=True)
        try:
            run(storage, args.n, args.reps, args.backend)
        finally:
            if schema is not None:
                with storage.database.engine.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            storage.close()


def run(storage: object, n: int, reps: int, backend: str) -> None:
    store = storage.enrollments  # type: ignore[attr-defined]
    ids = [f"enr-{i:05d}" for i in range(n)]
    for i, enrollment_id in enumerate(ids):
        store.enroll(
            Enrollment(
                enrollment_id=enrollment_id, sequence_id="seq", sequence_version=1,
                opportunity_id=f"opp-{i}", visit=1, step_id="send",
                context={"entry": {"opportunityId": f"opp-{i}", "source": "web"}},
                enrolled_at=T0, updated_at=T0,
                history=[StepRecord(visit=0, step_id="send", kind="action", at=T0,
                                    outcome="scheduled", why="its first stop")] * 2,
            )
        )  # fmt: skip
    timings: dict[str, list[float]] = {"get_heads": [], "mark_sending": [], "move_many": []}
    cpu: dict[str, list[float]] = {name: [] for name in timings}

    def timed(name: str, call: object, *args: object, **kwargs: object) -> object:
        wall, used = time.perf_counter(), time.process_time()
        result = call(*args, **kwargs)  # type: ignore[operator]
        timings[name].append((time.perf_counter() - wall) / BATCH)
        cpu[name].append((time.process_time() - used) / BATCH)
        return result

    for rep in range(reps):
        at = T0 + timedelta(hours=rep + 1)
        for start in range(0, n, BATCH):
            batch = ids[start : start + BATCH]
            heads: dict[str, EnrollmentHead] = timed("get_heads", store.get_heads, batch)  # type: ignore[assignment]
            marks = [(i, heads[i].revision) for i in batch]
            done = timed("mark_sending", store.mark_sending, marks, at=at)
            assert all(done)  # type: ignore[attr-defined]
            moves = []
            for i in batch:
                head = heads[i]
                marked = head.model_copy(update={"sending": True, "revision": head.revision + 1,
                                                 "updated_at": at})  # fmt: skip
                moved = marked.model_copy(update={"visit": head.visit + 1, "sending": False,
                                                  "updated_at": at})  # fmt: skip
                record = StepRecord(visit=head.visit, step_id="send", kind="action", at=at,
                                    outcome="done", why=f"step {rep}")  # fmt: skip
                moves.append((moved, [record]))
            written = timed("move_many", store.move_many, moves)
            assert all(w is not None for w in written)  # type: ignore[attr-defined]
    print(f"backend {backend}, {n} enrollments x {reps} steps, batches of {BATCH} "
          "(medians per enrollment)")  # fmt: skip
    for name in timings:
        print(f"  {name:13s} wall {statistics.median(timings[name]) * 1e6:7.1f} us   "
              f"cpu {statistics.median(cpu[name]) * 1e6:7.1f} us")  # fmt: skip
    total = sum(statistics.median(timings[name]) for name in timings)
    print(f"  together      wall {total * 1e6:7.1f} us")


if __name__ == "__main__":
    main()
