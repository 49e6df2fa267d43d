"""``leadflow report``: the analytics dashboard of a store (every figure of
:mod:`leadflow.runtime.analytics`), as text, JSON or a self-contained HTML page."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from ..errors import LeadflowError
from ..ports import Storage
from ..runtime.analytics_funnel import DEFAULT_STAGES
from ._base import LeadflowCommand, fail, one_line
from .options import store_options

__all__ = ["report_command", "write_dashboard"]


def write_dashboard(
    storage: Storage,
    start: datetime,
    end: datetime,
    *,
    as_of: datetime,
    page: Path,
    stages: Sequence[str] = DEFAULT_STAGES,
) -> bool:
    """Write the HTML dashboard of ``storage`` over ``[start, end)`` (the default calendar and
    ranking, the funnel over ``stages``) to ``page``; False when the storage keeps no analytic
    facts."""
    from ..rules.calendar import WorkingCalendar
    from ..runtime.analytics import Analytics
    from ..runtime.analytics_html import dashboard_html

    if storage.analytics is None:
        return False
    analytics = Analytics(
        storage.analytics,
        storage.activities,
        WorkingCalendar(),
        rules=storage.rules,
        sequences=storage.sequences,
        enrollments=storage.enrollments,
    )
    dashboard = analytics.dashboard(start, end, as_of=as_of, stages=stages)
    page.write_text(dashboard_html(dashboard), encoding="utf-8")
    return True


def _moment(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option}: not an ISO date or time: {text!r}")
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@click.command("report", cls=LeadflowCommand)
@store_options(required=True)
@click.option(
    "--since", default=None, help="Start of the period (ISO; default: --days before --until)."
)
@click.option("--until", default=None, help="End of the period, excluded (ISO; default: now).")
@click.option(
    "--days",
    type=click.IntRange(1, 400),
    default=30,
    show_default=True,
    help="The period's length when --since is not given.",
)
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="The working calendar's zone (09:00-17:00, Monday to Friday).",
)
@click.option(
    "--rank-by",
    default="completed",
    show_default=True,
    help="The leaderboard's figure: completed, on_time_rate, median_time_to_complete, "
    "overdue_now, speed_to_lead_p50, wins.",
)
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the dashboard to this HTML file.",
)
def report_command(
    url: str,
    prefix: str | None,
    schema: str | None,
    since: str | None,
    until: str | None,
    days: int,
    timezone: str,
    rank_by: str,
    as_json: bool,
    html_file: str | None,
) -> None:
    """The analytics of the store at --url over a period: speed to lead, lead sources, the rep
    leaderboard, the funnel and what each automation earned (docs/analytics.md defines each
    figure). Reads only."""
    from ..access.analytics_operations import _rank
    from ..rules.calendar import WorkingCalendar
    from ..runtime.analytics import Analytics
    from ..runtime.analytics_html import dashboard_html
    from .stores import opened

    now = datetime.now(UTC)
    end = _moment(until, "--until") or now
    start = _moment(since, "--since") or end - timedelta(days=days)
    if not start < end:
        fail("--since must be before --until")
    try:
        calendar = WorkingCalendar(timezone)
        rank = _rank(rank_by)
    except LeadflowError as exc:
        fail(one_line(exc))
    with opened(url, create=False, prefix=prefix, schema=schema) as store:
        storage = store.storage
        if storage.analytics is None:
            fail(f"the store at {store.target.shown} keeps no analytic facts")
        analytics = Analytics(
            storage.analytics,
            storage.activities,
            calendar,
            rules=storage.rules,
            sequences=storage.sequences,
            enrollments=storage.enrollments,
        )
        try:
            dashboard = analytics.dashboard(start, end, as_of=min(now, end), rank_by=rank)
        except LeadflowError as exc:
            fail(f"{one_line(exc)} (at {store.target.shown})")
    if html_file is not None:
        Path(html_file).write_text(dashboard_html(dashboard), encoding="utf-8")
    if as_json:
        click.echo(dashboard.model_dump_json(indent=2, by_alias=True))
        return
    speed = dashboard.speed_to_lead.overall
    click.echo(f"analytics from {start.isoformat()} to {end.isoformat()}")
    click.echo(
        f"leads {speed.leads}, contacted {speed.contacted}; speed to lead median "
        f"{_minutes(speed.p50_seconds)}, p90 {_minutes(speed.p90_seconds)}"
    )
    for row in dashboard.sources:
        click.echo(
            f"  source {row.source}: {row.leads} leads, {row.contacted} contacted, {row.won} won"
        )
    for n, rep in enumerate(dashboard.leaderboard[:10], 1):
        click.echo(f"  {n}. {rep.rep}: {rep.completed} completed, {rep.wins} wins")
    if dashboard.funnel is not None:
        stages = zip(dashboard.funnel.stages, dashboard.funnel.reached, strict=True)
        click.echo("funnel: " + " -> ".join(f"{stage} {n}" for stage, n in stages))
    if html_file is not None:
        click.echo(f"dashboard written to {html_file}")


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"
