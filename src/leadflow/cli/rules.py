"""``leadflow rules``: validate rule files, dry-run a rule against an event, print the JSON
Schema of the rule format.

A rule file is JSON: one rule object (the seed's camelCase format) or a list of them. Rules are
checked as a flow with the built-in operators and action types would load them: the model
(fields, types, limits) and then what only the flow knows (operators, action params, delays).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from ..errors import LeadflowError, RuleValidationError
from ..models import FollowUpRule
from ..runtime import LeadFlow
from ._base import LeadflowCommand, LeadflowGroup, fail, one_line

__all__ = ["load_documents", "problems_in", "rules"]


def _flow() -> LeadFlow:
    return LeadFlow.in_memory()


def load_documents(path: str) -> list[Any]:
    """The rule documents in the JSON file at ``path`` (one object or a list).
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
    fail(f"{path}: expected a rule object or a list of rules, not {type(data).__name__}")


def _name(document: Any, index: int, many: bool) -> str:
    rule_id = document.get("ruleId") if isinstance(document, Mapping) else None
    if isinstance(rule_id, str) and rule_id:
        return f"rule {rule_id!r}"
    return f"rule #{index + 1}" if many else "rule"


def _path(parts: tuple[int | str, ...], index: int, many: bool) -> str:
    prefix = f"[{index}]" if many else "$"
    text = prefix
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


_LOAD_ERRORS = frozenset(
    {"unknown-event-type", "unknown-operator", "bad-value", "unknown-action", "bad-params"}
)
"""The lint codes of problems that make a flow refuse a rule (not lint's opinions)."""


def _every_load_problem(
    rule: FollowUpRule, flow: LeadFlow, refused: RuleValidationError
) -> list[tuple[str, str]]:
    """Every reason ``flow`` refuses ``rule`` as (location, problem), not only the first one
    the flow stops at (``refused``): the single-rule lint checks, kept to what loading
    refuses, plus ``refused`` itself when they miss it (a limit, a calendar delay)."""
    from ..lint.checks import check_rule

    findings = check_rule(
        rule,
        operators=flow.rulebook.operators,
        event_types=flow.rulebook.event_types,
        handlers=flow.handlers,
        schema=None,
        calendar=flow.rulebook.calendar,
    )
    found = [
        (f.location or "rule", f.message + (f" ({f.hint})" if f.code.startswith("unknown") else ""))
        for f in findings
        if f.severity == "error" and (f.code in _LOAD_ERRORS or f.code == "invalid-rule")
    ]
    path = refused.location.split(" ", 1)[0]  # "trigger.conditions[0] (field 'x')"
    covered = any(where.startswith(path) or path.startswith(where) for where, _ in found)
    return found if covered else [*found, (refused.location, refused.problem)]


def problems_in(path: str, documents: list[Any], flow: LeadFlow) -> tuple[list[str], int]:
    """Located problems (``FILE: rule 'x': PATH: problem``) and the number of valid rules."""
    many = len(documents) != 1
    problems: list[str] = []
    seen: dict[str, int] = {}
    valid = 0
    for index, document in enumerate(documents):
        name = _name(document, index, many)
        try:
            rule = FollowUpRule.model_validate(document)
        except ValidationError as exc:
            for error in exc.errors():
                where = _path(tuple(error["loc"]), index, many)
                problems.append(f"{path}: {name}: {where}: {error['msg']}")
            continue
        try:
            flow.rules.check(rule)
        except RuleValidationError as exc:
            base = f"[{index}]" if many else "$"
            for location, problem in _every_load_problem(rule, flow, exc):
                problems.append(f"{path}: {name}: {base}.{location}: {problem}")
            continue
        except LeadflowError as exc:
            problems.append(f"{path}: {name}: {one_line(exc)}")
            continue
        if rule.rule_id in seen:
            problems.append(
                f"{path}: {name}: {_path(('ruleId',), index, many)}: the same id as rule "
                f"#{seen[rule.rule_id] + 1}"
            )
            continue
        seen[rule.rule_id] = index
        valid += 1
    return problems, valid


@click.group("rules", cls=LeadflowGroup)
def rules() -> None:
    """Check and try follow-up rules before loading them."""


@rules.command("validate", cls=LeadflowCommand)
@click.argument("file", type=click.Path(dir_okay=False))
def validate(file: str) -> None:
    """Check the rules in FILE (JSON: one rule or a list).

    Prints one line per problem, every problem of every rule: the file, the rule, where in it
    (a JSON path) and what is wrong. Exits 1 if any rule is invalid.
    """
    documents = load_documents(file)
    problems, valid = problems_in(file, documents, _flow())
    for problem in problems:
        click.echo(problem)
    total = len(documents)
    if problems:
        fail(f"{total - valid} of {total} rule(s) in {file} are invalid")
    click.echo(f"{file}: {total} rule(s), all valid")


def _event(text: str) -> Any:
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
        fail(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
    if not isinstance(data, Mapping):
        fail(
            f"{source}: expected an event object such as "
            '{"type": "opportunity.created", "payload": {...}}'
        )
    return data


@rules.command("test", cls=LeadflowCommand)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--event",
    "event_text",
    required=True,
    help='The sample event as JSON, e.g. \'{"type": "opportunity.created", "payload": '
    '{"leadSource": "website"}}\', or @FILE. Without "time" it is judged now.',
)
@click.option("--rule", "rule_id", default=None, help="Test only this rule of the file.")
def test(file: str, event_text: str, rule_id: str | None) -> None:
    """Dry-run the rules in FILE against one event: nothing is stored, nothing runs.

    For each rule: whether it matched and why (each condition with the value it saw), and the
    actions it would plan with their due times.
    """
    documents = load_documents(file)
    sample = _event(event_text)
    flow = _flow()
    problems, _ = problems_in(file, documents, flow)
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        fail(f"{file} has invalid rules: run 'leadflow rules validate {file}'")
    candidates = [FollowUpRule.model_validate(d) for d in documents]
    if rule_id is not None:
        candidates = [r for r in candidates if r.rule_id == rule_id]
        if not candidates:
            fail(f"{file} has no rule {rule_id!r}")
    for rule in candidates:
        result = flow.rules.dry_run(rule, sample)
        verdict = "matched" if result.matched else "did not match"
        click.echo(f"rule {rule.rule_id!r} ({rule.name}): {verdict}")
        click.echo(f"  why: {result.reason}")
        for explanation in result.evaluation.explanations or ():
            for outcome in explanation.conditions:
                mark = "yes" if outcome.passed else "no "
                click.echo(f"  [{mark}] {outcome.condition} (saw {outcome.actual!r})")
        event = result.evaluation.event
        for planned in result.planned:
            action = planned.action
            what = action.subject or action.template or ""
            when = "now" if not planned.delayed else f"{planned.due_at.isoformat()}"
            detail = f" '{what}'" if what else ""
            click.echo(f"  plans {action.action_type}{detail}: due {when}")
        if result.matched and not result.planned:
            click.echo("  plans nothing")
        click.echo(f"  (event {event.type} at {event.time.isoformat()})")


@rules.command("schema", cls=LeadflowCommand)
@click.option("--indent", type=click.IntRange(0, 8), default=2, show_default=True)
def schema(indent: int) -> None:
    """Print the JSON Schema of the rule format (for editors and CI checks).

    Generated from the built-in operators, event types and action types with their params.
    """
    from ..runtime.schema import rule_schema

    click.echo(json.dumps(rule_schema(_flow()), indent=indent or None, sort_keys=False))


@rules.command("lint", cls=LeadflowCommand)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--strict", is_flag=True, help="Exit non-zero on warnings too.")
def lint_command(file: str, as_json: bool, strict: bool) -> None:
    """Lint the rule set in FILE before it goes live: unknown events and fields, rules that can
    never match or are shadowed, duplicates, loops between rules. Exits 1 on errors (and on
    warnings with --strict), for CI."""
    from ..lint import exit_status, lint, load_rule_documents, render_json, render_text

    try:
        findings = lint(load_rule_documents(file), flow=_flow())
    except (LeadflowError, ValidationError, OSError) as exc:
        fail(f"{file}: {one_line(exc)}")
    click.echo(render_json(findings) if as_json else render_text(findings), nl=False)
    status = exit_status(findings, strict=strict)
    if status:
        raise SystemExit(status)
