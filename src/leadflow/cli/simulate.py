"""``leadflow simulate``: replay a recorded event history through a rule set and sequences (a
backtest), or compare two rule sets or two versions of sequences on it."""

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
@click.argument(
    "paths", nargs=-1, required=True, metavar="[RULES_FILE] HISTORY",
    type=click.Path(dir_okay=False),
)  # fmt: skip
@click.option("--compare", "other", type=click.Path(dir_okay=False), help="Another rule set.")
@click.option(
    "--sequences", "sequence_files", multiple=True, type=click.Path(dir_okay=False),
    metavar="FILE", help="Sequences to backtest (JSON: one or a list; repeatable).",
)  # fmt: skip
@click.option(
    "--compare-sequences", "other_sequence_files", multiple=True,
    type=click.Path(dir_okay=False), metavar="FILE",
    help="Other versions of the sequences, compared side by side (repeatable).",
)  # fmt: skip
@click.option(
    "--event-type", "event_types", multiple=True, metavar="TYPE",
    help="An event type your host sends beyond the seed's (repeatable), e.g. email.replied.",
)  # fmt: skip
@click.option(
    "--calendar-timezone", "calendar_zone", default=None, metavar="ZONE",
    help="The working calendar's time zone (business-day waits; default UTC).",
)  # fmt: skip
@click.option("--reps", default="", help="The team, comma-separated (for round robin).")
@click.option("--timezone", "zone", default="UTC", show_default=True, help="Days of the report.")
@click.option("--until", help="Stop the simulated clock at this ISO time.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Write an HTML report.")
def simulate_command(
    paths: tuple[str, ...],
    other: str | None,
    sequence_files: tuple[str, ...],
    other_sequence_files: tuple[str, ...],
    event_types: tuple[str, ...],
    calendar_zone: str | None,
    reps: str,
    zone: str,
    until: str | None,
    as_json: bool,
    html_out: str | None,
) -> None:
    """Replay HISTORY (JSON Lines, one event per line) through the rules in RULES_FILE and the
    sequences of --sequences, in the real runtime on a clock that follows the history, and
    report what would have happened: activities per rule, rep and day, notifications, actions
    pending and parked, cascade depth, the busiest rep-day, the events refused (counted per
    reason) and, per sequence and split variant, entries, sends, goals reached, completed,
    still active and the median time to goal. RULES_FILE may be left out with --sequences.
    --compare (another rule set) and --compare-sequences (other versions of the sequences)
    replay a second side alongside. Deterministic. Exits 1 when every event was refused (or
    the input cannot be read), 2 on a wrong command line."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from ..lint import load_rule_documents
    from ..rules import WorkingCalendar
    from ..simulate import SimulationSettings, compare, render_html, simulate
    from .sequences import load_documents

    if len(paths) > 2 or (len(paths) == 1 and not sequence_files):
        raise click.UsageError("give RULES_FILE HISTORY, or HISTORY alone with --sequences FILE")
    if other_sequence_files and not sequence_files:
        raise click.UsageError("--compare-sequences needs --sequences (the current versions)")
    rules_file, history = (None, paths[0]) if len(paths) == 1 else paths

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
        calendar = None
        if calendar_zone is not None:
            try:
                calendar = WorkingCalendar(calendar_zone)
            except (ZoneInfoNotFoundError, ValueError, LeadflowError):
                fail(f"unknown time zone {calendar_zone!r} (--calendar-timezone)")
        rules = load_rule_documents(rules_file) if rules_file is not None else []
        sequences = [d for file in sequence_files for d in load_documents(file)]
        others = [d for file in other_sequence_files for d in load_documents(file)]
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), transient=True, console=None
        ) as bar:
            task = bar.add_task("replaying events", total=None)

            def progress(done: int) -> None:
                bar.update(task, description=f"replayed {done:,} events")

            if other or others:
                result = compare(
                    rules, load_rule_documents(other) if other else rules, history,
                    sequences=sequences, other_sequences=others or None, settings=settings,
                    until=end, progress=progress, event_types=list(event_types), calendar=calendar,
                )  # fmt: skip
                report, comparison = result.after, result
            else:
                report = simulate(
                    rules, history, sequences=sequences, settings=settings, until=end,
                    progress=progress, event_types=list(event_types), calendar=calendar,
                )  # fmt: skip
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
