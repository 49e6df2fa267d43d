"""Lint sequence definitions before they go live: ``lint_sequences(definitions)``.

Findings have the rule lint's format (:class:`~leadflow.lint.Finding`): ``rule_id`` holds the
sequence's id, ``location`` the step and field (``steps[2] (check-reply).conditions[0]``).

Errors: a document that is not a sequence (``invalid-sequence``), two sequences with one id
(``duplicate-id``), whatever loading refuses (:func:`~leadflow.rules.sequence_problems`:
``unknown-event-type``, ``unknown-operator``, ``bad-value``, ``bad-condition``,
``bad-branch-field``, ``unknown-action``, ``bad-params``, ``bad-delay``), an entry that can never
match (``never-enrolls``), a goal that can never be met (``goal-never-met``), a wait whose every
matching event meets a goal first (``goal-preempts-wait``), a branch none of whose cases can
hold (``branch-never-taken``), a field or value the payload schema rules out where the schema
is strict (``unknown-field``, ``type-mismatch``).

Warnings: steps no path reaches from the first step (``unreachable-step``), a wait that never
matches and always times out (``wait-never-matches``), a wait that some goal events end first
(``goal-overlaps-wait``), one branch case that can never hold (``case-never-holds``), a field the
payload schema does not declare (``unknown-field``) or a value outside its declared ones
(``unknown-value``), a split whose variants go to the same step (``pointless-split``), two
sequences that enroll on one event and both message the contact at once (``messages-at-once``).

The satisfiability checks are :mod:`.logic`'s: sound and conservative (reported only when no
payload at all can satisfy the conditions). Branch fields are checked against the payload
schema of the entry's event type (``entry.*``) and the context's opportunity fields
(``opportunity.status`` and ``opportunity.owner``); ``event.*`` fields are not checked (the
latest matched event can be of several types).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..models import Condition, ConditionGroup, ConditionNode
from ..rules import OperatorRegistry, Vocabulary
from ..rules.compiler import describe
from ..rules.sequence_checks import condition_nodes, sequence_problems, step_location
from ..runtime.actions import HandlerRegistry
from ..sequences.definition import (
    BranchStep,
    SequenceDefinition,
    SplitStep,
    WaitForEventStep,
    successors,
)
from .checks import _type_findings, scalar_fields
from .findings import Finding, Severity, sort_findings
from .logic import conjunction, contradiction, implies, never_holds
from .schemas import PayloadSchema, PayloadSchemas
from .sequence_overlaps import MESSAGE_ACTIONS, overlap_findings

if TYPE_CHECKING:
    from ..runtime.flow import LeadFlow

__all__ = ["MESSAGE_ACTIONS", "invalid_findings", "lint_sequences"]

_OPPORTUNITY_FIELDS = ("status", "owner")

_FORMAT_HINT = (
    "the sequence format's JSON Schema says what goes where: 'leadflow sequences schema' "
    "prints it, leadflow.runtime.sequence_schema.sequence_schema(flow) returns it"
)


def _document_location(document: Any, loc: Sequence[int | str]) -> str:
    """A pydantic error location in the checks' spelling: ``steps[2] (reply).timeout``."""
    text = ""
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(part, int):
            text += f"[{part}]"
            if text.startswith("steps[") and text.count("[") == 1:
                steps = document.get("steps") if isinstance(document, Mapping) else None
                step = steps[part] if isinstance(steps, list) and part < len(steps) else None
                step_id = step.get("id") if isinstance(step, Mapping) else None
                if isinstance(step_id, str):
                    text += f" ({step_id})"
                kind = step.get("kind") if isinstance(step, Mapping) else None
                if i + 1 < len(parts) and parts[i + 1] == kind:
                    i += 1  # the union's tag: not a field of the document
        else:
            text += f".{part}" if text else str(part)
        i += 1
    return text


def invalid_findings(document: Any, index: int, error: ValidationError) -> list[Finding]:
    """``invalid-sequence`` findings for a document the model refused, one per problem."""
    sid = document.get("sequenceId") if isinstance(document, Mapping) else None
    name = sid if isinstance(sid, str) else f"#{index + 1}"
    out = []
    for problem in error.errors():
        location = _document_location(document, problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        if not location:  # a whole-model check names its place at the start of its message
            head, sep, rest = message.partition(": ")
            if sep and (head.startswith("steps") or head.startswith("window")):
                location, message = head, rest
        out.append(Finding("error", name, location, "invalid-sequence", message, _FORMAT_HINT))
    return out


# --------------------------------------------------------------------------- one sequence


def _reachable(definition: SequenceDefinition) -> set[str]:
    steps = definition.steps
    index = {step.id: i for i, step in enumerate(steps)}
    seen = {steps[0].id}
    todo = [steps[0].id]
    while todo:
        for nxt in successors(steps, index[todo.pop()]):
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _dead(
    nodes: Sequence[ConditionNode], operators: OperatorRegistry, scalar: frozenset[str]
) -> str | None:
    """Why the conditions (a list: all must hold) can never hold, or None."""

    def dead(node: ConditionNode) -> str | None:
        if isinstance(node, Condition):
            return never_holds(node, operators) if node.operator in operators else None
        if node.kind == "all":
            for child in node.conditions:
                reason = dead(child)
                if reason is not None:
                    return reason
            return contradiction(conjunction(node.conditions), operators, scalar=scalar)
        if node.kind == "any":
            reasons = [dead(c) for c in node.conditions]
            if reasons and all(r is not None for r in reasons):
                return f"no alternative of ({describe(node)}) can hold"
        return None

    return dead(ConditionGroup(kind="all", conditions=list(nodes)))


def _closed_value(
    nodes: Sequence[ConditionNode], schema: PayloadSchema | None
) -> tuple[str, str] | None:
    """(field, value) when a top-level ``equals`` / ``in`` asks only for values a strict
    schema's closed list of values rules out (a schema that is not strict only warns:
    ``unknown-value``)."""
    if schema is None or not schema.strict:
        return None
    for leaf in conjunction(nodes):
        found = schema.lookup(leaf.field)
        if found is None or not found[1].values or leaf.ignore_case:
            continue
        wanted = [leaf.value] if leaf.operator == "equals" else leaf.value
        if leaf.operator not in ("equals", "in") or not isinstance(wanted, list) or not wanted:
            continue
        if all(isinstance(v, str) and v not in found[1].values for v in wanted):
            return leaf.field, str(wanted[0])
    return None


@dataclass
class _Linter:
    definition: SequenceDefinition
    operators: OperatorRegistry
    schemas: PayloadSchemas

    @property
    def sid(self) -> str:
        return self.definition.sequence_id

    def finding(
        self, severity: Severity, where: str, code: str, message: str, hint: str = ""
    ) -> Finding:
        return Finding(severity, self.sid, where, code, message, hint)

    def fields(
        self, nodes: Sequence[ConditionNode], prefix: str, schema: PayloadSchema | None, strip: str
    ) -> Iterator[Finding]:
        """Fields and values checked against ``schema`` (``strip``: the context prefix of a
        branch field, e.g. ``entry.``)."""
        if schema is None:
            return
        for where, node in condition_nodes(nodes, prefix):
            if not isinstance(node, Condition) or not node.field.startswith(strip):
                continue
            name = node.field.removeprefix(strip)
            found = schema.lookup(name)
            if found is None:
                suggestion = schema.closest(name)
                hint = f"did you mean {strip + suggestion!r}?" if suggestion else "check it"
                hint += f" (or declare the field in the payload schema of {schema.event_type})"
                yield self.finding(
                    "error" if schema.strict else "warning",
                    f"{where}.field",
                    "unknown-field",
                    f"{schema.event_type} payloads have no field {name!r}",
                    hint,
                )
                continue
            leaf = node.model_copy(update={"field": name})
            yield from _type_findings(self.sid, where, leaf, found[1], found[0])

    def never(self, nodes: Sequence[ConditionNode], schema: PayloadSchema | None) -> str | None:
        reason = _dead(nodes, self.operators, scalar_fields(schema))
        closed = _closed_value(nodes, schema) if reason is None else None
        if closed is not None and schema is not None:
            reason = f"{schema.event_type} payloads never have {closed[0]} {closed[1]!r}"
        return reason

    def entry(self) -> Iterator[Finding]:
        entry = self.definition.entry
        if entry is None:
            return
        schema = self.schemas.get(entry.event_type)
        yield from self.fields(entry.conditions, "entry.conditions", schema, "")
        reason = self.never(entry.conditions, schema)
        if reason is not None:
            yield self.finding(
                "error",
                "entry.conditions",
                "never-enrolls",
                f"the sequence never enrolls: {reason}",
                "fix the entry conditions",
            )

    def goals(self) -> Iterator[Finding]:
        for i, goal in enumerate(self.definition.goals):
            schema = self.schemas.get(goal.event_type)
            yield from self.fields(goal.conditions, f"goals[{i}].conditions", schema, "")
            reason = self.never(goal.conditions, schema)
            if reason is not None:
                yield self.finding(
                    "error",
                    f"goals[{i}].conditions",
                    "goal-never-met",
                    f"goal {goal.name!r} can never be met: {reason}",
                    "fix its conditions, or remove the goal",
                )

    def waits(self, index: int, step: WaitForEventStep) -> Iterator[Finding]:
        where = step_location(index, step)
        schema = self.schemas.get(step.event_type)
        yield from self.fields(step.conditions, f"{where}.conditions", schema, "")
        reason = self.never(step.conditions, schema)
        if reason is not None:
            yield self.finding(
                "warning",
                f"{where}.conditions",
                "wait-never-matches",
                f"no event can match, so the step always times out: {reason}",
                "fix the conditions, or use a wait step",
            )
            return
        premises = conjunction(step.conditions)
        for g, goal in enumerate(self.definition.goals):
            if goal.event_type != step.event_type:
                continue
            both = conjunction([*step.conditions, *goal.conditions])
            if contradiction(both, self.operators) is not None:
                continue
            if all(implies(premises, c, self.operators) for c in goal.conditions):
                yield self.finding(
                    "error",
                    f"{where}.eventType",
                    "goal-preempts-wait",
                    f"every {step.event_type} event this step waits for meets goal "
                    f"{goal.name!r} (goals[{g}]), which ends the enrollment first: the matched "
                    "exit can never be taken",
                    "wait for another event, or narrow the goal",
                )
            else:
                yield self.finding(
                    "warning",
                    f"{where}.eventType",
                    "goal-overlaps-wait",
                    f"a {step.event_type} event can match this step and goal {goal.name!r} "
                    f"(goals[{g}]): the goal ends the enrollment first, the step never sees it",
                    "make the step's conditions and the goal's exclusive",
                )

    def branch(self, index: int, step: BranchStep) -> Iterator[Finding]:
        where = step_location(index, step)
        entry = self.definition.entry
        schema = self.schemas.get(entry.event_type) if entry is not None else None
        dead = []
        for i, case in enumerate(step.cases):
            prefix = f"{where}.cases[{i}].when"
            yield from self.fields(case.when, prefix, schema, "entry.")
            for spot, node in condition_nodes(case.when, prefix):
                if isinstance(node, Condition) and node.field.startswith("opportunity."):
                    name = node.field.removeprefix("opportunity.")
                    if name not in _OPPORTUNITY_FIELDS:
                        yield self.finding(
                            "warning",
                            f"{spot}.field",
                            "unknown-field",
                            f"the context's opportunity has no field {name!r}",
                            "known: opportunity.status, opportunity.owner",
                        )
            reason = _dead(case.when, self.operators, frozenset())
            if reason is not None:
                dead.append((i, reason))
        if len(dead) == len(step.cases):
            yield self.finding(
                "error",
                f"{where}.cases",
                "branch-never-taken",
                f"no case can ever hold ({dead[0][1]}): the branch always goes to "
                f"{step.otherwise or 'the next step'}",
                "fix the cases, or replace the branch with a goto",
            )
            return
        for i, reason in dead:
            yield self.finding(
                "warning",
                f"{where}.cases[{i}].when",
                "case-never-holds",
                f"case {i} can never hold: {reason}",
                "fix its conditions, or remove the case",
            )

    def split(self, index: int, step: SplitStep) -> Iterator[Finding]:
        targets: dict[str, list[str]] = {}
        for variant in step.variants:
            targets.setdefault(variant.goto, []).append(variant.name)
        where = f"{step_location(index, step)}.variants"
        if len(targets) == 1:
            (target,) = targets
            yield self.finding(
                "warning",
                where,
                "pointless-split",
                f"every variant goes to {target!r}: the split decides nothing",
                "point the variants at different steps, or use a goto",
            )
            return
        for target, names in targets.items():
            if len(names) > 1:
                yield self.finding(
                    "warning",
                    where,
                    "pointless-split",
                    f"variants {', '.join(map(repr, names))} all go to {target!r}: their "
                    "results cannot differ",
                    "merge them into one variant (add up their weights)",
                )

    def run(self) -> Iterator[Finding]:
        reachable = _reachable(self.definition)
        yield from self.entry()
        yield from self.goals()
        for index, step in enumerate(self.definition.steps):
            if step.id not in reachable:
                yield self.finding(
                    "warning",
                    step_location(index, step),
                    "unreachable-step",
                    f"no path from the first step reaches step {step.id!r}",
                    "point a goto, branch, split or wait at it, or remove it",
                )
            if isinstance(step, WaitForEventStep):
                yield from self.waits(index, step)
            elif isinstance(step, BranchStep):
                yield from self.branch(index, step)
            elif isinstance(step, SplitStep):
                yield from self.split(index, step)


# --------------------------------------------------------------------------- the entry point


def _vocabulary(flow: LeadFlow | None, vocabulary: Vocabulary | None) -> Vocabulary:
    if vocabulary is None and flow is not None:
        vocabulary = flow.vocabulary
    if vocabulary is None:
        vocabulary = Vocabulary.default()
    if vocabulary.actions is None:
        vocabulary = vocabulary.replace(actions=HandlerRegistry.default())
    return vocabulary


def lint_sequences(
    definitions: Iterable[SequenceDefinition | Mapping[str, Any]],
    *,
    flow: LeadFlow | None = None,
    vocabulary: Vocabulary | None = None,
    payload_schemas: PayloadSchemas | None = None,
) -> list[Finding]:
    """Every finding about ``definitions`` (models or documents), errors first (see the module
    docstring for the codes).

    The vocabulary is ``vocabulary``, else ``flow.vocabulary``, else the built-ins'; one that
    knows no action types gets the built-in handlers'. ``payload_schemas`` defaults to the
    seed's. A document that is not a sequence gives ``invalid-sequence`` errors (one per
    problem) and is left out of the other checks. Pure: reads the arguments, changes nothing.
    """
    vocab = _vocabulary(flow, vocabulary)
    schemas = payload_schemas if payload_schemas is not None else PayloadSchemas()
    findings: list[Finding] = []
    loaded: list[SequenceDefinition] = []
    seen: set[str] = set()
    for index, item in enumerate(definitions):
        if isinstance(item, SequenceDefinition):
            definition = item
        else:
            try:
                definition = SequenceDefinition.model_validate(item)
            except ValidationError as exc:
                findings.extend(invalid_findings(item, index, exc))
                continue
        sid = definition.sequence_id
        if sid in seen:
            findings.append(
                Finding(
                    "error",
                    sid,
                    "sequenceId",
                    "duplicate-id",
                    "two sequences share this id",
                    "give each sequence its own sequenceId",
                )
            )
            continue
        seen.add(sid)
        loaded.append(definition)
        for problem in sequence_problems(definition, vocab):
            findings.append(
                Finding("error", sid, problem.location, problem.code, problem.problem, problem.hint)
            )
        findings.extend(_Linter(definition, vocab.operators, schemas).run())
    findings.extend(overlap_findings(loaded, vocab.operators))
    return sort_findings(findings)
