"""``leadflow demo``: deterministic with a seed on a fresh store, and it keeps its data."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.test_cli import ROOT, one_error_line, run_cli


def _days(out: str) -> str:
    found = re.search(r"^Days (\d+-\d+) ", out, re.MULTILINE)
    assert found is not None, out
    return found.group(1)


def test_the_same_seed_on_a_fresh_store_prints_the_same_story(tmp_path: Path) -> None:
    first = run_cli("demo", "--days", "8", "--seed", "3", cwd=tmp_path).stdout
    again = run_cli("demo", "--days", "8", "--seed", "3", "--fresh", cwd=tmp_path).stdout
    assert first == again
    other = run_cli("demo", "--days", "8", "--seed", "4", "--fresh", cwd=tmp_path).stdout
    assert other != first
    assert (tmp_path / "leadflow-demo.sqlite").exists()
    assert "A fresh store" in first and _days(first) == "1-8"
    for part in ("Per rep", "alice", "Outcomes", "Notifications sent", "daily_summary",
                 "Timeline of opp-", "Periodic jobs run", "Parked actions: none"):  # fmt: skip
        assert part in first, part


def test_a_second_run_keeps_the_data_and_continues(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    first = run_cli("demo", "--days", "5", "--url", url).stdout
    total = re.search(r"The store now holds (\d+) activities", first)
    assert total is not None
    second = run_cli("demo", "--days", "5", "--url", url).stdout
    assert f"already holds {total.group(1)} activities from earlier runs" in second
    assert _days(second) == "6-10"
    assert "(Sat 2026-03-07 to Wed 2026-03-11)" in second
    later = re.search(r"The store now holds (\d+) activities", second)
    assert later is not None and int(later.group(1)) > int(total.group(1))


def test_the_memory_store_and_the_deterministic_story_agree(tmp_path: Path) -> None:
    on_file = run_cli("demo", "--days", "4", "--url", str(tmp_path / "d.sqlite")).stdout
    in_memory = run_cli("demo", "--days", "4", "--url", "memory").stdout
    assert "memory (nothing is kept)" in in_memory and "Run it again" not in in_memory
    story = on_file[on_file.index("\nDays ") :]
    assert (
        story.replace("Run it again to continue with day 5; --fresh starts over.\n", "")
        == (in_memory[in_memory.index("\nDays ") :])
    )


def test_fresh_refuses_to_wipe_a_server_store() -> None:
    line = one_error_line(
        run_cli("demo", "--fresh", "--url", "postgresql+psycopg://nobody@127.0.0.1:1/x", check=1)
    )
    assert "--fresh only deletes a SQLite file" in line


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
