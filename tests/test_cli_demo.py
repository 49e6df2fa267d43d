"""``leadflow demo``: deterministic with a seed on a fresh store, and it keeps its data."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.test_cli import POSTGRES_URL, ROOT, on_postgres, one_error_line, run_cli


def _days(out: str) -> str:
    found = re.search(r"^Days (\d+-\d+) ", out, re.MULTILINE)
    assert found is not None, out
    return found.group(1)


def test_the_same_seed_on_a_fresh_store_prints_the_same_story(tmp_path: Path) -> None:
    first = run_cli("demo", "--days", "3", "--seed", "3", cwd=tmp_path).stdout
    again = run_cli("demo", "--days", "3", "--seed", "3", "--fresh", cwd=tmp_path).stdout
    assert first == again
    other = run_cli("demo", "--days", "3", "--seed", "4", "--fresh", cwd=tmp_path).stdout
    assert other != first
    assert (tmp_path / "leadflow-demo.sqlite").exists()
    assert "A fresh store" in first and _days(first) == "1-3"
    for part in ("Per rep", "alice", "Outcomes", "Notifications sent", "daily_summary",
                 "Timeline of opp-", "Periodic jobs run", "Parked actions: none"):  # fmt: skip
        assert part in first, part


def test_a_second_run_keeps_the_data_and_continues(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    first = run_cli("demo", "--days", "2", "--url", url).stdout
    total = re.search(r"The store now holds (\d+) activities", first)
    assert total is not None
    second = run_cli("demo", "--days", "2", "--url", url).stdout
    assert f"already holds {total.group(1)} activities from earlier runs" in second
    assert _days(second) == "3-4"
    assert "(Wed 2026-03-04 to Thu 2026-03-05)" in second
    later = re.search(r"The store now holds (\d+) activities", second)
    assert later is not None and int(later.group(1)) > int(total.group(1))


def test_the_memory_store_and_the_deterministic_story_agree(tmp_path: Path) -> None:
    on_file = run_cli("demo", "--days", "2", "--url", str(tmp_path / "d.sqlite")).stdout
    in_memory = run_cli("demo", "--days", "2", "--url", "memory", cwd=tmp_path).stdout
    assert "memory (nothing is kept)" in in_memory and "Run it again" not in in_memory
    story = on_file[on_file.index("\nDays ") :]
    story = story.replace("Run it again to continue with day 3; --fresh starts over.\n", "")
    # The same lines; activities of one timeline with equal times are ordered by their ids,
    # which are random, so those rows may come in another order.
    assert sorted(story.splitlines()) == sorted(
        in_memory[in_memory.index("\nDays ") :].splitlines()
    )


def _held(out: str) -> str:
    found = re.search(r"^The store now holds .*$", out, re.MULTILINE)
    assert found is not None, out
    return found.group(0)


@contextmanager
def _postgres_database() -> Iterator[str]:
    """A database of its own on the test server (the demo's tables go in its public schema),
    dropped afterwards."""
    from sqlalchemy import create_engine, make_url, text

    assert POSTGRES_URL is not None
    name = f"lf_demo_{uuid.uuid4().hex[:10]}"
    server = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(POSTGRES_URL).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            with server.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        server.dispose()


@on_postgres
def test_fresh_on_postgresql_drops_only_the_demos_tables(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect, text

    with _postgres_database() as url:
        run_cli("db", "init", "--url", url)  # a real deployment's tables, next to the demo's
        engine = create_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(text("CREATE TABLE crm_contacts (id int)"))
            first = run_cli("demo", "--days", "3", "--seed", "3", "--url", url, cwd=tmp_path).stdout
            assert "A fresh store" in first
            second = run_cli(
                "demo", "--days", "3", "--seed", "3", "--url", url, cwd=tmp_path
            ).stdout
            assert _days(second) == "4-6"  # without --fresh it goes on
            again = run_cli(
                "demo", "--days", "3", "--seed", "3", "--url", url, "--fresh", cwd=tmp_path
            ).stdout
            assert "A fresh store" in again and _days(again) == "1-3"  # started over
            assert _held(again) == _held(first)
            names = set(inspect(engine).get_table_names())
            assert "crm_contacts" in names and "leadflow_activities" in names
            assert "leadflow_demo_activities" in names
            with engine.connect() as connection:
                rules = connection.execute(text("SELECT count(*) FROM leadflow_rules")).scalar()
            assert rules == 8  # leadflow's own tables were left alone
        finally:
            engine.dispose()


def test_fresh_on_mongodb_drops_only_the_demos_collections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mongomock = pytest.importorskip("mongomock_ng")
    from click.testing import CliRunner

    from leadflow.cli import cli, stores

    client = mongomock.MongoClient(tz_aware=True)
    monkeypatch.setattr(stores, "_mongo_database", lambda url: (client["crm"], lambda: None))
    client["crm"]["leadActivities"].insert_one({"activityId": "a-real-one"})
    runner = CliRunner()
    args = ["demo", "--days", "2", "--url", "mongodb://localhost/crm"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    again = runner.invoke(cli, [*args, "--fresh"])
    assert again.exit_code == 0, again.output
    # Started over: the same days and totals (rows with equal times may come in another order)
    assert "A fresh store" in again.stdout and _days(again.stdout) == "1-2"
    assert _held(again.stdout) == _held(first.stdout)
    assert client["crm"]["leadActivities"].count_documents({}) == 1  # not the demo's


def test_fresh_on_an_unreachable_server_is_one_line() -> None:
    line = one_error_line(
        run_cli("demo", "--fresh", "--url", "postgresql+psycopg://nobody@127.0.0.1:1/x", check=1)
    )
    assert "leadflow demo: error:" in line


def test_the_example_script_runs_the_demo(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--days", "2", "--url", "memory"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Days 1-2" in done.stdout
