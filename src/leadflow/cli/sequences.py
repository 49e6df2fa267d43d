"""``leadflow sequences``: validate and lint sequence files, dry-run one against sample events,
print a stored sequence's A/B report, print the sequence format's JSON Schema.

A sequence file is JSON: one sequence definition (camelCase) or a list of them. Sequences are
checked as a flow with the built-in operators and action types (and the event types given with
``--event-type``) would load them: the model (fields, step references, loops), then what only
the flow knows (event types, operators, handler settings, business-time waits).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

import click
from pydantic import ValidationError

from ..errors import InvalidInputError, LeadflowError, NotFoundError
from ..lint.findings import Finding
from ..rules import Vocabulary, sequence_problems
from ..runtime import LeadFlow
from ..sequences import SequenceDefinition
from ._base import LeadflowCommand, LeadflowGroup, fail, one_line
from .options import store_options

__all__ = ["load_documents", "sequences"]

_EVENT_TYPE = click.option(
    "--event-type",
    "event_types",
    multiple=True,
    metavar="TYPE",
    help="An event type your host sends beyond the seed's (repeat for more), e.g. email.replied.",
)


_CALENDAR = click.option(
    "--calendar-timezone",
    "calendar_zone",
    default=None,
    metavar="ZONE",
    help="The working calendar's time zone, for business-day waits (default UTC).",
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


# ---------------------------------------------------------------------- test

TEST_HORIZON = timedelta(days=30)
"""How far past the last sample event ``sequences test`` runs the clock by default."""


def _sample_events(texts: Sequence[str]) -> list[Any]:
    """The events of each ``--event``: a JSON object, or ``@FILE`` holding an object, a list
    of them, or JSON Lines."""
    from ..simulate import read_history

    out: list[Any] = []
    for text in texts:
        source = "--event"
        if text.startswith("@"):
            source = text[1:]
            try:
                text = Path(source).read_text(encoding="utf-8")
            except OSError as exc:
                fail(f"{source}: {exc.strerror or exc}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if source == "--event":
                fail(f"--event: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
            try:
                data = list(read_history(text.splitlines()))
            except InvalidInputError as bad:
                fail(f"{source}: {bad}")
        items = data if isinstance(data, list) else [data]
        for item in items:
            if not isinstance(item, Mapping):
                fail(
                    f"{source}: expected an event object such as "
                    '{"type": "opportunity.created", "time": "...", "payload": {...}}'
                )
            out.append(item)
    return out


def _timed(events: list[Any]) -> list[dict[str, Any]]:
    """Each event with a time: one without takes the previous event's (the first: now)."""
    out: list[dict[str, Any]] = []
    previous: Any = datetime.now(UTC).replace(microsecond=0).isoformat()
    for event in events:
        has = any(k in event for k in ("time", "occurredAt", "timestamp"))
        item = dict(event) if has else {**event, "time": previous}
        previous = item.get("time", item.get("occurredAt", item.get("timestamp", previous)))
        out.append(item)
    return out


def _calendar(zone: str | None) -> Any:
    from ..rules import WorkingCalendar

    if zone is None:
        return None
    try:
        return WorkingCalendar(zone)
    except (ZoneInfoNotFoundError, ValueError, LeadflowError):
        fail(f"unknown time zone {zone!r} (--calendar-timezone)")


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).isoformat() if at is not None else "(no time)"


@sequences.command("test", cls=LeadflowCommand)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--event",
    "event_texts",
    multiple=True,
    required=True,
    help='A sample event as JSON, e.g. \'{"type": "opportunity.created", "time": '
    '"2026-03-02T09:00:00Z", "payload": {"opportunityId": "o1"}}\', or @FILE (an event, a '
    "list or JSON Lines). Repeat for more, in time order; one without a time takes the "
    "previous one's (the first: now).",
)
@click.option("--sequence", "sequence_id", default=None, help="The sequence of FILE to test.")
@click.option(
    "--until",
    default=None,
    help="Run the steps due up to this ISO time (default: 30 days after the last event).",
)
@_EVENT_TYPE
@_CALENDAR
def test_command(
    file: str,
    event_texts: tuple[str, ...],
    sequence_id: str | None,
    until: str | None,
    event_types: tuple[str, ...],
    calendar_zone: str | None,
) -> None:
    """Dry-run one sequence of FILE against sample events on a simulated clock, in the real
    runtime on memory storage (nothing is kept, nothing is sent): for each event, what it did
    to the sequence (enrolled, matched a wait, reached a goal); then, per enrollment, every
    step in time order with what it did or would do, when, and why; the step due next when the
    clock stops. No further events come: waits run to their timeouts. Exits 1 when the file
    holds invalid sequences or an event is refused."""
    from ..runtime.sequence_timeline import read_step_entries
    from ..simulate import SimulationSettings, Simulator

    vocabulary = _vocabulary(event_types)
    documents = load_documents(file)
    lines, valid = _problems(file, documents, vocabulary, {})
    if valid != len(documents):
        for line in lines:
            click.echo(line, err=True)
        fail(f"{file} has invalid sequences: run 'leadflow sequences validate {file}'")
    definitions = [SequenceDefinition.model_validate(d) for d in documents]
    if sequence_id is not None:
        definitions = [d for d in definitions if d.sequence_id == sequence_id]
        if not definitions:
            fail(f"{file} has no sequence {sequence_id!r}")
    if len(definitions) != 1:
        ids = ", ".join(d.sequence_id for d in definitions)
        fail(f"{file} holds {len(definitions)} sequences ({ids}): pick one with --sequence ID")
    [definition] = definitions
    events = _timed(_sample_events(event_texts))
    end = _until(until)
    simulator = Simulator(
        [],
        sequences=[definition],
        event_types=list(event_types),
        calendar=_calendar(calendar_zone),
        settings=SimulationSettings(stale_every=None),
    )
    click.echo(f"sequence {definition.sequence_id!r} ({definition.name})")
    refused = 0
    for number, event in enumerate(events, 1):
        before = simulator.report.events_refused
        simulator.feed(event)
        kind = event.get("type", event.get("eventType", "?"))
        ident = event.get("id", event.get("eventId", f"event-{number}"))
        if simulator.report.events_refused > before:
            refused += 1
            reason = simulator.report.refused_examples[-1] if refused <= 5 else "refused"
            click.echo(f"event {ident} ({kind}): refused: {reason}")
            continue
        result = simulator.last_result
        outcomes = [o for o in (result.sequences if result else []) if
                    o.sequence_id == definition.sequence_id]  # fmt: skip
        said = ", ".join(o.what + (f" ({o.detail})" if o.detail else "") for o in outcomes)
        at = simulator.now
        click.echo(f"event {ident} ({kind}) at {_when(at)}: {said or 'no effect on the sequence'}")
    if simulator.now is not None:
        stop = end if end is not None else simulator.now + TEST_HORIZON
        simulator.finish(stop)
    store = simulator.flow.storage.enrollments
    assert store is not None
    enrollments = store.list(sequence_id=definition.sequence_id, limit=10_000)
    if not enrollments:
        click.echo("no event entered the sequence")
    for enrollment in enrollments:
        click.echo(
            f"opportunity {enrollment.opportunity_id}: entered at {_when(enrollment.enrolled_at)}"
            f" (event {enrollment.entry_event_id})"
        )
        entries = read_step_entries([enrollment], simulator.flow.storage.scheduled)
        entries.sort(key=lambda e: (e.at or datetime.max.replace(tzinfo=UTC), e.visit,
                                    e.state == "ended"))  # fmt: skip
        for entry in entries:
            what = entry.step_kind + (f" {entry.action_type}" if entry.action_type else "")
            state = entry.state + (
                f" ({entry.outcome})" if entry.outcome and entry.outcome != entry.state else ""
            )
            if entry.state == "ended":
                click.echo(f"  {_when(entry.at)}  end: {entry.outcome}: {entry.why}")
                continue
            click.echo(f"  {_when(entry.at)}  {entry.step_id} [{what}] {state}: {entry.why}")
    figures = simulator.report.sequences.get(definition.sequence_id)
    if figures is not None:
        click.echo(f"in all: {figures.summary()}")
    if simulator.now is not None:
        click.echo(f"(clock stopped at {_when(simulator.now)})")
    if refused:
        fail(f"{refused} of {len(events)} event(s) refused")


def _until(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--until: not an ISO time: {text!r}")
    if at.tzinfo is None:
        fail("--until needs a time zone (e.g. 2026-03-01T00:00+00:00)")
    return at


# ---------------------------------------------------------------------- report


@sequences.command("report", cls=LeadflowCommand)
@click.argument("sequence_id")
@store_options(required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--min-per-arm",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Enrollments every arm needs before a verdict.",
)
@click.option(
    "--confidence",
    type=click.FloatRange(0.5, 1, max_open=True),
    default=0.95,
    show_default=True,
    help="The confidence a verdict needs.",
)
def report_command(
    sequence_id: str,
    url: str,
    prefix: str | None,
    schema: str | None,
    as_json: bool,
    min_per_arm: int,
    confidence: float,
) -> None:
    """Print the A/B report of SEQUENCE_ID from the store at --url: its enrollments by state
    and, per split step and variant, the enrollments that took it, those that reached a goal,
    the conversion rate, the median time to the goal and the verdict (a pooled two-proportion
    z-test). Reads only. Exits 1 for an unknown sequence or a store without sequences."""
    from ..runtime.sequence_report import report_for
    from ..simulate.report import hours
    from .stores import opened

    with opened(url, create=False, prefix=prefix, schema=schema) as store:
        storage = store.storage
        if storage.sequences is None or storage.enrollments is None:
            fail(f"the store at {store.target.shown} keeps no sequences")
        try:
            report = report_for(
                storage.sequences,
                storage.enrollments,
                sequence_id,
                min_per_arm=min_per_arm,
                confidence=confidence,
            )
        except NotFoundError as exc:
            fail(f"{one_line(exc)} (at {store.target.shown})")
    if as_json:
        click.echo(report.model_dump_json(indent=2))
        return
    totals = report.totals
    click.echo(f"sequence {report.sequence_id!r} ({report.name}, v{report.version})")
    click.echo(
        f"enrolled {totals.enrolled}: active {totals.active}, completed {totals.completed}, "
        f"goal reached {totals.goal_reached}, unenrolled {totals.unenrolled}, "
        f"ended {totals.ended}"
    )
    if not report.complete:
        click.echo("(the oldest 10,000 enrollments only)")
    if not report.splits:
        click.echo("no split steps")
    for split in report.splits:
        click.echo(f"split {split.step_id!r}: {split.verdict}")
        for arm in split.variants:
            rate = f"{arm.conversion_rate:.1%}" if arm.conversion_rate is not None else "-"
            test = f", p={arm.p_value:.3g}" if arm.p_value is not None else ""
            best = " (best)" if arm.name == split.best else ""
            click.echo(
                f"  {arm.name}{best}: {arm.enrolled} enrolled, {arm.goal_reached} reached a "
                f"goal ({rate}), median time to goal {hours(arm.median_seconds_to_goal)}{test}"
            )
