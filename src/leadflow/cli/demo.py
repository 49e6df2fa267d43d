"""``leadflow demo``: a small sales team over 30 simulated days, on the embedded store.

What it prints goes to stdout and is the same on every run of a fresh store with one seed; the
progress bar and the time taken go to stderr.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Final

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import stores
from ._base import LeadflowCommand, fail, logs
from .simulation import REPS, DayReport, DemoReport, Simulation
from .stores import OpenStore, Target, open_store, parse_target

__all__ = ["DEFAULT_STORE", "demo"]

DEFAULT_STORE: Final = "leadflow-demo.sqlite"
SQL_PREFIX: Final = "leadflow_demo_"  # the demo never touches a real deployment's tables
MONGO_PREFIX: Final = "demo_"
REPORT_FILE: Final = "leadflow-demo-report.html"
"""The analytics dashboard the demo ends by writing (next to its SQLite file)."""


def _remove_sqlite(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(path + suffix).unlink(missing_ok=True)


def _drop_demo_data(target: Target) -> None:
    """``--fresh`` on a server: drop the demo's own tables (``leadflow_demo_*`` and its
    Alembic version table) or collections (``demo_*``), and nothing else; the next open
    creates them again."""
    if target.kind == "sql":
        try:
            from sqlalchemy import MetaData, Table

            from ..stores.sql import SqlDatabase, sql_errors
        except ImportError:
            fail("SQL stores need the sql extra: pip install 'leadflow[sql]'")
        database = SqlDatabase(target.url, prefix=SQL_PREFIX)
        try:
            tables = database.tables
            version = Table(tables.version_table, MetaData(schema=tables.schema))
            with sql_errors("url"), database.engine.begin() as connection:
                tables.metadata.drop_all(connection, checkfirst=True)
                version.drop(connection, checkfirst=True)
        finally:
            database.close()
        return
    from ..stores.mongo import DEFAULT_COLLECTIONS

    mongo, close = stores.mongo_database(target.url)
    try:
        for name in DEFAULT_COLLECTIONS.values():
            mongo.drop_collection(MONGO_PREFIX + name)
    finally:
        close()


def _open(url: str | None, fresh: bool, out: Console) -> OpenStore:
    if url is None and importlib.util.find_spec("sqlalchemy") is None:
        out.print(
            "note: the sql extra is not installed, so this run keeps its data in memory only "
            "(pip install 'leadflow[sql]' to keep it in a SQLite file)"
        )
        url = "memory"
    target = parse_target(url or DEFAULT_STORE)
    if fresh:
        if target.kind == "memory":
            pass
        elif target.sqlite_path is not None:
            _remove_sqlite(target.sqlite_path)
        else:
            _drop_demo_data(target)
    prefix = MONGO_PREFIX if target.kind == "mongo" else SQL_PREFIX
    return open_store(target.url, prefix=prefix, relaxed_sqlite=True)


def _percent(value: float) -> str:
    return f"{value:.0%}"


def render(report: DemoReport, store: str, seed: int, out: Console) -> None:
    """Print what a run did (deterministic: no wall-clock times)."""
    out.print()
    out.print(
        f"[bold]Days {report.first_day}-{report.first_day + report.days - 1}[/bold] "
        f"({report.start:%a %Y-%m-%d} to {report.end:%a %Y-%m-%d}), seed {seed}, "
        f"{len(REPS)} reps ({', '.join(REPS)}), dispatcher dana, manager morgan"
    )
    leads = ", ".join(f"{n} {source}" for source, n in sorted(report.leads.items()))
    results = report.results
    out.print(
        f"{report.leads.total()} leads arrived ({leads}); {report.events} events handled; "
        f"{report.completions.total()} activities completed; {results['quotes']} quotes sent; "
        f"{results['won']} won, {results['lost']} lost, {results['negotiating']} went into "
        f"negotiation; {results['retries booked']} retries booked by the dispatcher"
    )
    if report.handle_errors:
        out.print(
            f"[red]{len(report.handle_errors)} handling error(s)[/red], first: "
            f"{report.handle_errors[0]}"
        )

    reps = Table(title="Per rep (every activity in the store)", title_justify="left")
    for name in ("rep", "activities", "completed", "open", "overdue now", "done", "won"):
        reps.add_column(name, justify="left" if name == "rep" else "right")
    for line in report.reps:
        reps.add_row(
            line.rep,
            str(line.activities),
            str(line.completed),
            str(line.open),
            str(line.overdue),
            _percent(line.completion_rate),
            str(line.won),
        )
    out.print(reps)

    outcomes = Table(title="Outcomes of completed activities", title_justify="left")
    outcomes.add_column("outcome")
    outcomes.add_column("this run", justify="right")
    outcomes.add_column("in the store", justify="right")
    for outcome in sorted(set(report.completions) | set(report.outcomes_all)):
        outcomes.add_row(
            outcome, str(report.completions[outcome]), str(report.outcomes_all.get(outcome, 0))
        )
    out.print(outcomes)

    sent = Table(title="Notifications sent (this run)", title_justify="left")
    sent.add_column("template")
    sent.add_column("sent", justify="right")
    for template, count in sorted(report.notifications.items()):
        sent.add_row(template, str(count))
    out.print(sent)

    if report.timeline_opportunity is not None:
        timeline = Table(title=f"Timeline of {report.timeline_opportunity}", title_justify="left")
        for name in ("when", "type", "subject", "rep", "outcome", "planned by"):
            timeline.add_column(name)
        for activity in report.timeline:
            when = activity.completed_date or activity.scheduled_date or activity.due_date
            rule = activity.metadata.automation_rule_id if activity.metadata else None
            timeline.add_row(
                f"{when:%a %m-%d %H:%M}" if when else "",
                activity.activity_type.value,
                activity.subject,
                activity.assigned_to or "",
                activity.outcome.value if activity.outcome else "(open)",
                (rule or "a person").removeprefix("default-"),
            )
        out.print(timeline)

    jobs = ", ".join(f"{name} {n}" for name, n in sorted(report.job_runs.items()))
    failed = f" ({report.job_failures} failed)" if report.job_failures else ""
    out.print(f"Periodic jobs run: {jobs}{failed}")
    if report.parked:
        parked = Table(title="Parked actions (waiting for a person)", title_justify="left")
        for name in ("action", "rule", "opportunity", "error"):
            parked.add_column(name)
        for action in report.parked:
            parked.add_row(
                action.action_type,
                action.rule_id or "",
                action.opportunity_id or "",
                (action.last_error or "")[:80],
            )
        out.print(parked)
    else:
        out.print("Parked actions: none")
    states = ", ".join(f"{n} {state}" for state, n in report.states_all.items())
    out.print(f"The store now holds {report.total_activities} activities ({states}).")
    if store != "memory":
        out.print(
            f"Run it again to continue with day {report.first_day + report.days}; "
            "--fresh starts over."
        )


@click.command("demo", cls=LeadflowCommand)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulation.")
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=30,
    show_default=True,
    help="How many days to simulate.",
)
@click.option(
    "--url",
    default=None,
    help=f"Where to keep the data: a SQLite file (default ./{DEFAULT_STORE}), "
    "postgresql+psycopg://..., mongodb://... or memory. The demo's tables are prefixed "
    f"{SQL_PREFIX!r}.",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Start over: delete the demo's SQLite file, or drop the demo's own tables / "
    "collections on PostgreSQL or MongoDB (nothing else is touched).",
)
def demo(seed: int, days: int, url: str | None, fresh: bool) -> None:
    """Simulate a small sales team for 30 days and show what leadflow did.

    It ends by writing the analytics dashboard of the simulated days (an HTML page next to the
    SQLite file, else in the current directory) and saying where.

    Four reps work leads that arrive over the days (website, referral, phone, trade show) on a
    simulated clock, with the default rules and the periodic jobs (reminders, overdue checks,
    stale leads, daily summaries). The data stays in the store: run it again and it continues
    where it stopped. The same seed on a fresh store prints the same story.
    """
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = 100  # the same layout whatever reads it
    err = Console(stderr=True, highlight=False)
    started = time.perf_counter()
    with logs(logging.CRITICAL, to_stderr=False):  # the report shows what failed
        _run(seed, days, url, fresh, out, err)
    err.print(f"finished in {time.perf_counter() - started:.1f} s")


def _run(seed: int, days: int, url: str | None, fresh: bool, out: Console, err: Console) -> None:
    store = _open(url, fresh, out)
    try:
        simulation = Simulation(store.storage, seed=seed)
        out.print(f"leadflow demo: store {store.target.shown}")
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=not err.is_terminal,
        )
        with progress:
            task = progress.add_task("simulating", total=days)

            def advance(day: DayReport) -> None:
                progress.update(
                    task,
                    advance=1,
                    description=f"day {day.number} {day.date:%a %m-%d}: {day.leads} lead(s)",
                )

            storage = simulation.storage
            earlier = storage.activities.statistics(None, as_of=simulation.clock.now()).total
            if earlier:
                out.print(
                    f"The store already holds {earlier} activities from earlier runs: "
                    "continuing where the clock stopped."
                )
            elif not storage.rules.list():
                out.print("A fresh store: the default rules are added.")
            report = simulation.run(days, on_day=advance)
        render(report, store.target.kind, seed, out)
        _dashboard(simulation, report, store.target.sqlite_path, err)
    finally:
        store.close()


def _dashboard(
    simulation: Simulation, report: DemoReport, sqlite_path: str | None, err: Console
) -> None:
    """The demo ends by writing the analytics dashboard of the days it simulated: next to the
    SQLite file, else in the current directory."""
    from .report import write_dashboard

    if report.days == 0:
        return
    folder = Path(sqlite_path).parent if sqlite_path else Path()
    page = folder / REPORT_FILE
    end = report.end + timedelta(days=1)
    as_of = min(simulation.clock.now(), end)
    # The simulated leads arrive without a status; reps move them to these.
    stages = ("negotiating", "won")
    if write_dashboard(
        simulation.storage, report.start, end, as_of=as_of, page=page, stages=stages
    ):
        last = report.first_day + report.days - 1
        err.print(f"analytics dashboard of days {report.first_day}-{last}: {page}")
