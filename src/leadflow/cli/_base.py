"""What every command shares: the group that turns any error into one line on stderr and an exit
code, and the consoles the commands print to.

Exit codes: 0 done; 1 the command ran into a problem (bad input, a store error, invalid rules);
2 the command line itself was wrong (unknown option, missing argument); 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, Final, NoReturn

import click
from pydantic import ValidationError

from ..errors import LeadflowError

__all__ = [
    "EXIT_ERROR",
    "EXIT_USAGE",
    "CliError",
    "LeadflowCommand",
    "LeadflowGroup",
    "fail",
    "logs",
    "one_line",
]

EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class CliError(click.ClickException):
    """A problem the user can fix, reported as one line (exit code 1). ``where`` is the
    command path it happened in (filled in by :class:`LeadflowCommand`)."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where


@contextlib.contextmanager
def logs(level: int, *, to_stderr: bool = True) -> Iterator[None]:
    """For the duration of a command: leadflow's loggers at ``level``, written to stderr (one
    line per record) when ``to_stderr``; alembic's notes left out. Everything is put back
    afterwards, so running a command in-process (tests, docs) changes no logging set-up."""
    leadflow, alembic = logging.getLogger("leadflow"), logging.getLogger("alembic")
    saved = (leadflow.level, alembic.level)
    handler: logging.Handler | None = None
    if to_stderr:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        leadflow.addHandler(handler)
    leadflow.setLevel(level)
    alembic.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        if handler is not None:
            leadflow.removeHandler(handler)
        leadflow.setLevel(saved[0])
        alembic.setLevel(saved[1])


def fail(message: str) -> NoReturn:
    """Stop the command with ``message`` as its one-line error."""
    raise CliError(message)


def one_line(exc: BaseException) -> str:
    """An exception as one readable line: a pydantic error names its field; leadflow errors
    keep their message (which names the field)."""
    if isinstance(exc, ValidationError):
        problems = exc.errors()
        first = problems[0]
        where = ".".join(str(part) for part in first["loc"]) or exc.title
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return f"{where}: {first['msg']}{more}"
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class LeadflowCommand(click.Command):
    """A command whose failures become a :class:`CliError` naming the command: leadflow's own
    errors, pydantic validation errors (with the field), OS errors (with the file). Anything
    else is a bug: still one line, with the traceback under ``--debug``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            exc.where = exc.where or ctx.command_path
            raise
        except click.ClickException:
            raise
        except (LeadflowError, ValidationError, OSError, ValueError, ImportError) as exc:
            _trace(ctx)
            raise CliError(one_line(exc), where=ctx.command_path) from exc
        except Exception as exc:
            _trace(ctx)
            raise CliError(
                f"unexpected {type(exc).__name__}: {one_line(exc)} (--debug shows the traceback)",
                where=ctx.command_path,
            ) from exc


def _trace(ctx: click.Context) -> None:
    root = ctx.find_root()
    if isinstance(root.obj, dict) and root.obj.get("debug"):
        traceback.print_exc()


class LeadflowGroup(click.Group):
    """The command group: its commands are :class:`LeadflowCommand` s, and every error is one
    line on stderr (``leadflow rules validate: error: ...``) with a non-zero exit code."""

    command_class = LeadflowCommand
    group_class = type  # sub-groups are LeadflowGroups too

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """A group given no command shows its help on stdout and exits 0: asking what there
        is is not an error."""
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            click.echo(ctx.get_help())
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        name = prog_name or "leadflow"
        code = 0
        try:
            result = super().main(args, name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) and not isinstance(result, bool) else 0
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else name
            _error(where, f"{exc.format_message()} (see '{where} --help')")
            code = EXIT_USAGE
        except CliError as exc:
            _error(exc.where or name, exc.format_message())
            code = exc.exit_code
        except click.ClickException as exc:
            _error(name, exc.format_message())
            code = exc.exit_code
        except (click.Abort, KeyboardInterrupt):
            _error(name, "interrupted")
            code = EXIT_INTERRUPTED
        if standalone_mode:
            sys.exit(code)
        return code


def _error(where: str, message: str) -> None:
    click.echo(f"{where}: error: {message}", err=True)
