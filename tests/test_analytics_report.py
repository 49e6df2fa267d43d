"""``leadflow report``: the dashboard of a store as text, JSON and a self-contained HTML page,
the page rendered by a real headless Chromium (skipped without one, as the backtest report's
browser test)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from leadflow.cli import cli
from leadflow.stores.sql import sql_storage

from .test_analytics_figures import END, START, load
from .test_simulate_browser import BROWSER, _png_pixels


@pytest.fixture
def url(tmp_path: Path) -> str:
    target = f"sqlite:///{tmp_path / 'facts.db'}"
    storage = sql_storage(target)
    try:
        load(storage)
    finally:
        storage.close()
    return target


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_report_prints_the_figures(url: str) -> None:
    output = _run("report", "--url", url, "--since", START.isoformat(), "--until", END.isoformat())
    assert "leads 5, contacted 4; speed to lead median 30.0 min" in output
    assert "source web: 2 leads, 2 contacted, 1 won" in output
    assert "1. alice: 3 completed, 2 wins" in output
    assert "funnel: new 3 -> contacted 2 -> qualified 1 -> proposal 0 -> won 2" in output


def test_the_report_as_json_and_html(url: str, tmp_path: Path) -> None:
    page = tmp_path / "dashboard.html"
    output = _run(
        "report", "--url", url, "--since", "2026-01-05T09:00", "--until", END.isoformat(),
        "--json", "--html", str(page), "--rank-by", "speed_to_lead_p50",
    )  # fmt: skip
    document = json.loads(output)
    assert document["speedToLead"]["overall"]["p90Seconds"] == 244800
    assert [r["rep"] for r in document["leaderboard"]] == ["alice", "bob", "carol", "dave"]
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    headings = ("funnel", "lead sources", "speed to lead", "trend over weeks", "leaderboard")
    for heading in (*headings, "automation"):
        assert f"<h2>{heading}" in html
    assert html.count("<svg") == 4  # funnel, sources, speed to lead, trend
    assert "2026-W02" in html


def test_bad_options_fail_with_one_line(url: str) -> None:
    for args in (
        ["--since", "yesterday"],
        ["--since", END.isoformat(), "--until", START.isoformat()],
        ["--rank-by", "charm"],
        ["--timezone", "Mars/Base"],
    ):
        result = CliRunner().invoke(cli, ["report", "--url", url, *args])
        assert result.exit_code != 0, args
        assert "Traceback" not in result.output


@pytest.mark.skipif(BROWSER is None, reason="needs a headless Chromium")
def test_the_dashboard_renders_in_a_headless_browser(url: str, tmp_path: Path) -> None:
    page = tmp_path / "dashboard.html"
    _run("report", "--url", url, "--since", START.isoformat(), "--until", END.isoformat(),
         "--html", str(page))  # fmt: skip
    shot = tmp_path / "shot.png"
    assert BROWSER is not None
    subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,900",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    width, height, pixels = _png_pixels(shot.read_bytes())
    assert (width, height) == (1200, 900)
    assert len(set(pixels)) > 16, "the screenshot is blank"


def test_the_demo_ends_by_writing_the_dashboard_next_to_its_store(tmp_path: Path) -> None:
    from .test_cli import run_cli

    store = tmp_path / "store" / "d.sqlite"
    store.parent.mkdir()
    done = run_cli("demo", "--days", "3", "--url", str(store), cwd=tmp_path)
    page = store.parent / "leadflow-demo-report.html"
    assert f"analytics dashboard of days 1-3: {page}" in done.stderr.replace("\n", "")
    html = page.read_text(encoding="utf-8")
    assert "<h2>trend over weeks" in html and "<h2>leaderboard" in html
    assert not (tmp_path / "leadflow-demo-report.html").exists()
    memory = run_cli("demo", "--days", "2", "--url", "memory", cwd=tmp_path)
    assert "leadflow-demo-report.html" in memory.stderr  # no file store: the current directory
    assert (tmp_path / "leadflow-demo-report.html").exists()


def test_the_backfill_command_is_idempotent(tmp_path: Path) -> None:
    from dataclasses import replace

    from .test_analytics_backfill import history, run

    target = f"sqlite:///{tmp_path / 'old.db'}"
    storage = sql_storage(target)
    try:
        run(replace(storage, analytics=None))
    finally:
        storage.close()
    lines = tmp_path / "history.jsonl"
    lines.write_text("\n".join(json.dumps(event) for event in history()), encoding="utf-8")
    first = _run("backfill", "--url", target, "--events", str(lines))
    assert "read 1 completed activities and 3 events" in first
    assert "recorded 2 lead arrivals, 2 status changes, 1 completions" in first
    again = _run("backfill", "--url", target, "--events", str(lines))
    assert "recorded 0 lead arrivals, 0 status changes, 0 completions" in again
    array = tmp_path / "history.json"
    array.write_text(json.dumps(history()), encoding="utf-8")
    assert "and 3 events" in _run("backfill", "--url", target, "--events", str(array))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "type": "opportunity.created", "payload": {}}', encoding="utf-8")
    failed = CliRunner().invoke(cli, ["backfill", "--url", target, "--events", str(bad)])
    assert failed.exit_code == 1 and "events[0].time" in failed.output
