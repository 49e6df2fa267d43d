"""The ``leadflow`` command line (the ``cli`` extra: click and rich).

=========================  ==============================================================
``leadflow demo``          a sales team over 30 simulated days, on a SQLite file
``leadflow rules ...``     ``validate FILE``, ``lint FILE``, ``test FILE --event JSON``, ``schema``
``leadflow sequences ...`` ``validate FILE...``, ``lint FILE...``, ``test FILE --event JSON``,
                           ``report ID --url URL``, ``schema``
``leadflow simulate``      replay an event history through rules and sequences (``--compare``
                           two rule sets, ``--compare-sequences`` two versions)
``leadflow db ...``        ``init`` / ``upgrade --url URL``: schema, indexes, default rules
``leadflow worker``        due actions and periodic jobs until SIGTERM
``leadflow jobs ...``      ``list``, ``run NAME --url URL``: one job once (cron)
``leadflow report``        the analytics dashboard of a store (text, ``--json``, ``--html``)
``leadflow backfill``      the analytic facts of the history before analytics (idempotent)
=========================  ==============================================================

Every command has ``--help``; an error is one line on stderr and a non-zero exit code (1: the
command failed, 2: the command line was wrong). ``python -m leadflow.cli`` works too.
Importing :mod:`leadflow` never imports this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from ._base import LeadflowGroup
from .backfill import backfill_command
from .db import db
from .demo import demo
from .report import report_command
from .rules import rules
from .sequences import sequences
from .simulate import simulate_command
from .worker import jobs, worker

__all__ = ["cli", "main"]


@click.group(
    "leadflow", cls=LeadflowGroup, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(package_name="leadflow", prog_name="leadflow")
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """leadflow: lead activity tracking and follow-up automation.

    Start with 'leadflow demo'.
    """
    ctx.obj = {"debug": debug}


for command in (
    demo,
    rules,
    sequences,
    simulate_command,
    db,
    worker,
    jobs,
    report_command,
    backfill_command,
):
    cli.add_command(command)


def main(args: Sequence[str] | None = None, *, prog_name: str = "leadflow") -> Any:
    """Run the command line (the console script's entry point); exits the process."""
    return cli.main(args=list(args) if args is not None else None, prog_name=prog_name)
