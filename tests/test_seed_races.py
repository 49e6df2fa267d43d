"""Seeding and migrating from many processes at once (issue 19): sixteen replicas starting
together on a fresh database used to crash one with ``DuplicateError`` (each created the default
rules in a loop), and concurrent ``db init`` both ran the migration. Here real processes each
call ``sql_storage(url)`` (which migrates) and ``flow.rules.ensure_defaults()`` at the same
moment, on a fresh SQLite file and on a fresh PostgreSQL schema: none fails, the eight default
rules are stored once, and exactly one process ran the migration (the one that logs
``schema migrated``; the others found the newest revision once they had the lock).

``LEADFLOW_TEST_SEED_REPLICAS`` sets how many replicas start at once: 4 by default (the README's
test command), 8 in CI (`.ci/run`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leadflow import DuplicateError, LeadFlow, default_rules
from leadflow.stores.memory import memory_storage

from .suite import count

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = count("LEADFLOW_TEST_SEED_REPLICAS", 4)

_REPLICA = r"""
import json, logging, sys, time
from pathlib import Path

from leadflow import LeadFlow
from leadflow.adapters import (
    InMemoryOpportunities, RecordingEventSink, RecordingMessenger, RecordingNotifier,
    StaticTeamDirectory,
)
from leadflow.ports import Integrations
from leadflow.stores.sql import sql_storage

url, schema, folder, me = sys.argv[1], sys.argv[2] or None, Path(sys.argv[3]), sys.argv[4]
migrated = []

class Seen(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("schema migrated"):
            migrated.append(record.getMessage())

logging.getLogger("leadflow.sql").addHandler(Seen())
logging.getLogger("leadflow.sql").setLevel(logging.INFO)
(folder / f"ready-{me}").touch()
deadline = time.monotonic() + 120  # a bound on a hung test, not a timing assertion
while not (folder / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.005)
storage = sql_storage(url, schema=schema)
integrations = Integrations(
    notifier=RecordingNotifier(), messenger=RecordingMessenger(),
    opportunities=InMemoryOpportunities(), team=StaticTeamDirectory(()),
    events=RecordingEventSink(),
)
created = LeadFlow(storage, integrations).rules.ensure_defaults()
print(json.dumps({"created": [r.rule_id for r in created], "migrated": migrated}))
storage.close()
"""


def _replicas(url: str, schema: str | None, folder: Path) -> list[dict[str, list[str]]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _REPLICA, url, schema or "", str(folder), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in range(PROCESSES)
    ]
    try:
        deadline = time.monotonic() + 120  # a bound on a hung test, not a timing assertion
        while len(list(folder.glob("ready-*"))) < PROCESSES and time.monotonic() < deadline:
            time.sleep(0.01)
        (folder / "go").touch()  # all of them at once
        results = []
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _check(results: list[dict[str, list[str]]]) -> None:
    created = [rule_id for result in results for rule_id in result["created"]]
    assert sorted(created) == sorted(rule.rule_id for rule in default_rules())  # each once
    migrations = [line for result in results for line in result["migrated"]]
    assert len(migrations) == 1, migrations
    assert migrations[0].startswith("schema migrated from (none) to ")


def test_replicas_seed_and_migrate_a_fresh_sqlite_file_once(tmp_path: Path) -> None:
    from leadflow.stores.sql import current_revision, head_revision, sql_storage

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    results = _replicas(url, None, tmp_path)
    _check(results)
    storage = sql_storage(url, create=False)
    try:
        assert len(storage.rules.list()) == 8
        assert current_revision(storage.database) == head_revision()
    finally:
        storage.close()


@pytest.mark.skipif(
    not os.environ.get("LEADFLOW_TEST_POSTGRES_URL"),
    reason="set LEADFLOW_TEST_POSTGRES_URL to run against PostgreSQL",
)
def test_replicas_seed_and_migrate_a_fresh_postgres_schema_once(tmp_path: Path) -> None:
    from leadflow.stores.sql import current_revision, head_revision, sql_storage

    from .sql_support import postgres_schema

    url = os.environ["LEADFLOW_TEST_POSTGRES_URL"]
    with postgres_schema() as (engine, schema):
        results = _replicas(url, schema, tmp_path)
        _check(results)
        storage = sql_storage(engine, schema=schema, create=False)
        assert len(storage.rules.list()) == 8
        assert current_revision(storage.database) == head_revision()


class _StaleList:
    """A rule repository whose ``list`` answers from before another replica seeded: what a
    replica sees when it reads just before a concurrent one creates the rules."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def list(self) -> list[object]:
        return []

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def test_ensure_defaults_counts_a_concurrent_creation_as_there() -> None:
    storage = memory_storage()
    first = LeadFlow.in_memory(storage=storage)
    assert len(first.rules.ensure_defaults()) == 8
    late = LeadFlow.in_memory(storage=storage)
    late.rules._rules = _StaleList(storage.rules)  # type: ignore[assignment]
    with pytest.raises(DuplicateError):  # what a plain create loop runs into
        late.rules.create(default_rules()[0])
    assert late.rules.ensure_defaults() == []
    assert len(storage.rules.list()) == 8


def test_ensure_defaults_keeps_stored_rules_and_takes_a_custom_list() -> None:
    flow = LeadFlow.in_memory()
    [first, *rest] = default_rules()
    flow.rules.create(first.model_copy(update={"name": "edited by an admin"}))
    created = flow.rules.ensure_defaults()
    assert [r.rule_id for r in created] == [r.rule_id for r in rest]
    assert flow.storage.rules.get(first.rule_id).name == "edited by an admin"
    assert flow.rules.ensure_defaults(rest[:1]) == []
