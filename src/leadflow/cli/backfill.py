"""``leadflow backfill``: record the analytic facts of a store's history from before it kept
them (:mod:`leadflow.runtime.analytics_backfill`): its completed activities, and a host's event
history from a file. Idempotent: run it again and nothing is recorded twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import LeadflowError
from ._base import LeadflowCommand, fail, one_line
from .options import store_options

__all__ = ["backfill_command"]


def _history(path: str) -> list[Any]:
    """The events of ``path``: a JSON array, or JSON lines (one event per line)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        if text.lstrip().startswith("["):
            found = json.loads(text)
            return found if isinstance(found, list) else [found]
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        fail(f"--events: not JSON (line {exc.lineno}): {exc.msg}")


@click.command("backfill", cls=LeadflowCommand)
@store_options(required=True)
@click.option(
    "--events",
    "events_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A host's event history: a JSON array or JSON lines of events, each with id, type, "
    "time and payload (opportunity.created, opportunity.status_changed, activity.completed).",
)
@click.option(
    "--no-activities",
    is_flag=True,
    help="Leave the store's completed activities out (record only --events).",
)
def backfill_command(
    url: str, prefix: str | None, schema: str | None, events_file: str | None, no_activities: bool
) -> None:
    """Record the analytic facts of the history before analytics: the store's completed
    activities and (--events) a host's event history. Idempotent."""
    from ..runtime.analytics_backfill import backfill
    from .stores import opened

    events = [] if events_file is None else _history(events_file)
    with opened(url, create=False, prefix=prefix, schema=schema) as store:
        storage = store.storage
        if storage.analytics is None:
            fail(f"the store at {store.target.shown} keeps no analytic facts")
        try:
            result = backfill(
                storage.analytics, None if no_activities else storage.activities, events=events
            )
        except LeadflowError as exc:
            fail(f"{one_line(exc)} (at {store.target.shown})")
    click.echo(
        f"read {result.activities_read} completed activities and {result.events_read} events; "
        f"recorded {result.arrivals} lead arrivals, {result.status_changes} status changes, "
        f"{result.completions} completions (facts already kept are not recorded again)"
    )
