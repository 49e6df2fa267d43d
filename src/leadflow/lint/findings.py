"""What lint reports: :class:`Finding`, its text and JSON renderings, and the CI exit status."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["SEVERITIES", "Finding", "Severity", "exit_status", "render_json", "render_text"]

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
_RANK = {name: i for i, name in enumerate(SEVERITIES)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem lint found.

    ``severity``: ``error`` (the rule set must not go live), ``warning`` (almost surely a
    mistake), ``info`` (worth knowing). ``rule_id`` is the rule concerned (``None`` for a
    finding about the set as a whole), ``location`` where in the rule (``trigger.conditions[1]
    .value``, ``actions[0].subject``...), ``code`` a stable identifier (``unknown-field``,
    ``never-matches``, ``cycle``...), ``message`` what is wrong and ``hint`` how to fix it.
    """

    severity: Severity
    rule_id: str | None
    location: str
    code: str
    message: str
    hint: str = ""

    def sort_key(self) -> tuple[int, str, str, str, str]:
        return (_RANK[self.severity], self.rule_id or "", self.location, self.code, self.message)

    def to_dict(self) -> dict[str, Any]:
        """The finding as a JSON-ready mapping (``ruleId``, not ``rule_id``)."""
        data = asdict(self)
        data["ruleId"] = data.pop("rule_id")
        return data

    def __str__(self) -> str:
        where = f"{self.rule_id or '<rule set>'}"
        if self.location:
            where += f" {self.location}"
        text = f"{self.severity}: {where}: {self.message} [{self.code}]"
        return text + (f"\n    hint: {self.hint}" if self.hint else "")


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then warnings, then infos; by rule and location within a severity."""
    return sorted(set(findings), key=Finding.sort_key)


def render_text(findings: Sequence[Finding]) -> str:
    """One finding per line (with its hint underneath) and a closing count line."""
    lines = [str(f) for f in findings]
    counts = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}
    lines.append(
        f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info(s)"
    )
    return "\n".join(lines) + "\n"


def render_json(findings: Sequence[Finding], *, indent: int | None = 2) -> str:
    """``{"findings": [...], "counts": {"error": n, "warning": n, "info": n}}`` as JSON."""
    counts = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}
    return json.dumps(
        {"findings": [f.to_dict() for f in findings], "counts": counts},
        indent=indent,
        default=str,
    )


def exit_status(findings: Iterable[Finding], *, strict: bool = False) -> int:
    """The process exit status for CI: 1 when there is an error (or, with ``strict``, a
    warning), else 0."""
    worst = {f.severity for f in findings}
    if "error" in worst or (strict and "warning" in worst):
        return 1
    return 0
