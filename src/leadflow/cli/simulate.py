"""``leadflow simulate``: replay a recorded event history through a rule set (a backtest), or
compare two rule sets on it."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from pydantic import ValidationError

from ..errors import LeadflowError
from ._base import LeadflowCommand, fail, one_line

__all__ = ["simulate_command"]


@click.command("simulate", cls=LeadflowCommand)
@click.argument("rules_file", type=click.Path(dir_okay=False))
@click.argument("history", type=click.Path(dir_okay=False))
@click.option("--compare", "other", type=click.Path(dir_okay=False), help="Another rule set.")
@click.option("--reps", default="", help="The team, comma-separated (for round robin).")
@click.option("--timezone", "zone", default="UTC", show_default=True, help="Days of the report.")
@click.option("--until", help="Stop the simulated clock at this ISO time.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Write an HTML report.")
def simulate_command(
    rules_file: str,
    history: str,
    other: str | None,
    reps: str,
    zone: str,
    until: str | None,
    as_json: bool,
    html_out: str | None,
) -> None:
    """Replay HISTORY (JSON Lines, one event per line) through the rules in RULES_FILE, in the
    real runtime on a clock that follows the history, and report what would have happened:
    activities per rule, rep and day, notifications, actions pending and parked, cascade depth,
    the busiest rep-day, and the events refused (counted per reason). Deterministic. Exits 1
    when every event was refused (or the input cannot be read), 2 on a wrong command line."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from ..lint import load_rule_documents
    from ..simulate import SimulationSettings, compare, render_html, simulate

    try:
        timezone = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"unknown time zone {zone!r}")
    try:
        end = datetime.fromisoformat(until) if until else None
        if end is not None and end.tzinfo is None:
            fail("--until needs a time zone (e.g. 2026-03-01T00:00+00:00)")
        settings = SimulationSettings(
            reps=tuple(r for r in reps.split(",") if r), timezone=timezone
        )
        rules = load_rule_documents(rules_file)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), transient=True, console=None
        ) as bar:
            task = bar.add_task("replaying events", total=None)

            def progress(done: int) -> None:
                bar.update(task, description=f"replayed {done:,} events")

            if other:
                result = compare(
                    rules, load_rule_documents(other), history, settings=settings,
                    until=end, progress=progress,
                )  # fmt: skip
                report, comparison = result.after, result
            else:
                report = simulate(rules, history, settings=settings, until=end, progress=progress)
                comparison = None
    except (LeadflowError, ValidationError, OSError, ValueError) as exc:
        fail(one_line(exc))
    if html_out:
        Path(html_out).write_text(render_html(report, comparison), encoding="utf-8")
        click.echo(f"HTML report written to {html_out}", err=True)
    shown = comparison if comparison is not None else report
    click.echo(shown.to_json() if as_json else shown.to_text())
    sys.stdout.flush()
    if report.events == 0 and report.events_refused:
        fail(
            f"every one of the {report.events_refused} event(s) in {history} was refused, so "
            "nothing was replayed (the reasons are in the report)"
        )
