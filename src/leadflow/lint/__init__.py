"""Lint a rule set before it goes live: ``leadflow.lint.lint(rules)`` returns findings.

Per rule: unknown event types; unknown fields and operator/value kinds checked against the
payload schema declared for the event type (:mod:`.schemas`); unknown operators and values the
operator refuses; action params checked against each handler's params model; conditions that
can never all hold. Between rules: rules shadowed by a higher-priority stop-processing rule
whose conditions are broader, duplicate rules, two rules opening the same follow-up. Over the
set: every cycle of rules triggering each other through the events their actions cause.
Sequences: :func:`lint_sequences` (:mod:`.sequences`), same findings.
Render with :func:`render_text` / :func:`render_json`; :func:`exit_status` is the CI status.
See docs/lint.md.
"""

from __future__ import annotations

from .api import check_activation, first_error, lint, load_rule_documents, raise_on_errors
from .cycles import CauseEdge, cause_graph, find_cycles
from .findings import SEVERITIES, Finding, Severity, exit_status, render_json, render_text
from .schemas import SEED_PAYLOAD_SCHEMAS, FieldKind, FieldSpec, PayloadSchema, PayloadSchemas
from .sequences import MESSAGE_ACTIONS, lint_sequences

__all__ = [
    "MESSAGE_ACTIONS",
    "SEED_PAYLOAD_SCHEMAS",
    "SEVERITIES",
    "CauseEdge",
    "FieldKind",
    "FieldSpec",
    "Finding",
    "PayloadSchema",
    "PayloadSchemas",
    "Severity",
    "cause_graph",
    "check_activation",
    "exit_status",
    "find_cycles",
    "first_error",
    "lint",
    "lint_sequences",
    "load_rule_documents",
    "raise_on_errors",
    "render_json",
    "render_text",
]
