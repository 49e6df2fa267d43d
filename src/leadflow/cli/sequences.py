"""``leadflow sequences``: validate and lint sequence files, print the sequence format's JSON
Schema.

A sequence file is JSON: one sequence definition (camelCase) or a list of them. Sequences are
checked as a flow with the built-in operators and action types (and the event types given with
``--event-type``) would load them: the model (fields, step references, loops), then what only
the flow knows (event types, operators, handler settings, business-time waits).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from ..errors import InvalidInputError
from ..lint.findings import Finding
from ..rules import Vocabulary, sequence_problems
from ..runtime import LeadFlow
from ..sequences import SequenceDefinition
from ._base import LeadflowCommand, LeadflowGroup, fail

__all__ = ["load_documents", "sequences"]

_EVENT_TYPE = click.option(
    "--event-type",
    "event_types",
    multiple=True,
    metavar="TYPE",
    help="An event type your host sends beyond the seed's (repeat for more), e.g. email.replied.",
)


def _vocabulary(event_types: Sequence[str]) -> Vocabulary:
    try:
        return LeadFlow.in_memory(event_types=list(event_types)).vocabulary
    except InvalidInputError as exc:
        fail(f"--event-type: {exc}")


def load_documents(path: str) -> list[Any]:
    """The sequence documents in the JSON file at ``path`` (one object or a list).
    :class:`CliError` when the file cannot be read or is not JSON."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
    if isinstance(data, Mapping):
        return [data]
    if isinstance(data, list):
        return data
    fail(f"{path}: expected a sequence object or a list of sequences, not {type(data).__name__}")


def _name(document: Any, index: int, many: bool) -> str:
    sequence_id = document.get("sequenceId") if isinstance(document, Mapping) else None
    if isinstance(sequence_id, str) and sequence_id:
        return f"sequence {sequence_id!r}"
    return f"sequence #{index + 1}" if many else "sequence"


def _problems(
    path: str, documents: list[Any], vocabulary: Vocabulary, seen: dict[str, str]
) -> tuple[list[str], int]:
    """Located problems (``FILE: sequence 'x': PATH: problem``) and the number of valid
    sequences; ``seen`` maps the ids met so far (across files) to where."""
    from ..lint.sequences import invalid_findings

    many = len(documents) != 1
    lines: list[str] = []
    valid = 0
    for index, document in enumerate(documents):
        name = _name(document, index, many)
        base = f"[{index}]" if many else "$"
        try:
            definition = SequenceDefinition.model_validate(document)
        except ValidationError as exc:
            found: list[Finding] = invalid_findings(document, index, exc)
            lines.extend(f"{path}: {name}: {base}.{f.location}: {f.message}" for f in found)
            continue
        problems = sequence_problems(definition, vocabulary)
        for p in problems:
            hint = f" ({p.hint})" if p.code in ("unknown-operator", "unknown-action") else ""
            if p.code == "unknown-event-type":
                hint = " (or pass --event-type to accept a type your host sends)"
            lines.append(f"{path}: {name}: {base}.{p.location}: {p.problem}{hint}")
        if problems:
            continue
        sid = definition.sequence_id
        if sid in seen:
            lines.append(f"{path}: {name}: {base}.sequenceId: the same id as {seen[sid]}")
            continue
        seen[sid] = f"{path} {base}"
        valid += 1
    return lines, valid


@click.group("sequences", cls=LeadflowGroup)
def sequences() -> None:
    """Check multi-step sequences before loading them."""


@sequences.command("validate", cls=LeadflowCommand)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_EVENT_TYPE
def validate(files: tuple[str, ...], event_types: tuple[str, ...]) -> None:
    """Check the sequences in FILES (JSON: one sequence or a list in each).

    Prints one line per problem, every problem of every sequence: the file, the sequence, where
    in it (a JSON path, steps named by index and id) and what is wrong. Exits 1 if any sequence
    is invalid.
    """
    vocabulary = _vocabulary(event_types)
    loaded = [(file, load_documents(file)) for file in files]
    seen: dict[str, str] = {}
    total = invalid = 0
    for file, documents in loaded:
        lines, valid = _problems(file, documents, vocabulary, seen)
        for line in lines:
            click.echo(line)
        total += len(documents)
        invalid += len(documents) - valid
        if valid == len(documents):
            click.echo(f"{file}: {len(documents)} sequence(s), all valid")
    if invalid:
        where = files[0] if len(files) == 1 else f"{len(files)} files"
        fail(f"{invalid} of {total} sequence(s) in {where} are invalid")


@sequences.command("lint", cls=LeadflowCommand)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_EVENT_TYPE
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--strict", is_flag=True, help="Exit non-zero on warnings too.")
def lint_command(
    files: tuple[str, ...], event_types: tuple[str, ...], as_json: bool, strict: bool
) -> None:
    """Lint the sequences in FILES together before they go live: what loading refuses, and
    unreachable steps, goals that can never be met, waits a goal pre-empts, dead branches,
    pointless splits, two sequences messaging one contact at once. Exits 1 on errors (and on
    warnings with --strict), for CI."""
    from ..lint import exit_status, lint_sequences, render_json, render_text

    vocabulary = _vocabulary(event_types)
    documents = [document for file in files for document in load_documents(file)]
    findings = lint_sequences(documents, vocabulary=vocabulary)
    click.echo(render_json(findings) if as_json else render_text(findings), nl=False)
    status = exit_status(findings, strict=strict)
    if status:
        raise SystemExit(status)


@sequences.command("schema", cls=LeadflowCommand)
@_EVENT_TYPE
@click.option("--indent", type=click.IntRange(0, 8), default=2, show_default=True)
def schema(event_types: tuple[str, ...], indent: int) -> None:
    """Print the JSON Schema of the sequence format (for editors and CI checks).

    Generated from the built-in operators, event types and action types with their params.
    """
    from ..runtime.sequence_schema import sequence_schema

    document = sequence_schema(_vocabulary(event_types))
    click.echo(json.dumps(document, indent=indent or None))
