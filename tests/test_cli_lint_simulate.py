"""``leadflow rules lint`` and ``leadflow simulate`` from the outside."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from leadflow import default_rules
from leadflow.cli import cli


def _rules(path: Path, documents: list[dict[str, object]]) -> str:
    path.write_text(json.dumps(documents, default=str), encoding="utf-8")
    return str(path)


def _history(path: Path, count: int) -> str:
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            out.write(
                json.dumps(
                    {
                        "eventId": f"e{n}",
                        "eventType": "opportunity.created",
                        "occurredAt": f"2026-03-02T{9 + n // 60:02d}:{n % 60:02d}:00+00:00",
                        "payload": {"opportunityId": f"o{n}", "leadSource": "website"},
                    }
                )
                + "\n"
            )
    return str(path)


def test_lint_passes_the_default_rules_and_fails_a_contradiction(tmp_path: Path) -> None:
    good = _rules(tmp_path / "good.json", [r.to_document() for r in default_rules()])
    result = CliRunner().invoke(cli, ["rules", "lint", good])
    assert result.exit_code == 0, result.output
    never = {
        "ruleId": "never",
        "name": "Never",
        "trigger": {
            "eventType": "opportunity.created",
            "conditions": [
                {"field": "leadSource", "operator": "equals", "value": "web"},
                {"field": "leadSource", "operator": "equals", "value": "phone"},
            ],
        },
        "actions": [{"actionType": "send_notification", "template": "t"}],
    }
    bad = _rules(tmp_path / "bad.json", [never])
    result = CliRunner().invoke(cli, ["rules", "lint", bad, "--json"])
    assert result.exit_code == 1
    findings = json.loads(result.output)["findings"]
    assert any(f["ruleId"] == "never" and f["severity"] == "error" for f in findings), findings


def test_lint_names_a_missing_file_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["rules", "lint", str(tmp_path / "nope.json")])
    assert result.exit_code == 1
    assert "nope.json" in result.output


def test_simulate_reports_and_writes_html(tmp_path: Path) -> None:
    rules = _rules(tmp_path / "rules.json", [r.to_document() for r in default_rules()])
    history = _history(tmp_path / "history.jsonl", 30)
    html = tmp_path / "report.html"
    args = ["simulate", rules, history, "--reps", "a,b", "--json", "--html", str(html)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["activitiesPerRule"]["default-website-lead-follow-up"] == 30
    assert "<svg" in html.read_text(encoding="utf-8")
    again = CliRunner().invoke(cli, args)
    assert again.output == result.output  # deterministic


def test_simulate_shows_why_events_were_refused_and_fails_when_all_were(
    tmp_path: Path,
) -> None:
    rules = _rules(tmp_path / "rules.json", [r.to_document() for r in default_rules()])
    wrong = tmp_path / "wrong.jsonl"  # a history in some other format: nothing is an event
    wrong.write_text(
        "".join(json.dumps({"name": "lead", "at": f"2026-03-02T09:0{n}"}) + "\n" for n in range(3)),
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["simulate", rules, str(wrong)])
    assert result.exit_code == 1, result.output
    assert "events refused, per reason:" in result.stdout
    assert "3  " in result.stdout  # the three share one reason, counted together
    assert "every one of the 3 event(s)" in result.stderr
    mixed = tmp_path / "mixed.jsonl"
    good = Path(_history(tmp_path / "good.jsonl", 2)).read_text(encoding="utf-8")
    mixed.write_text(good + wrong.read_text(encoding="utf-8"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["simulate", rules, str(mixed)])
    assert result.exit_code == 0, result.output  # some were replayed: a report, with reasons
    assert "(3 refused)" in result.stdout and "events refused, per reason:" in result.stdout


def test_simulate_compares_two_rule_sets(tmp_path: Path) -> None:
    rules = [r.to_document() for r in default_rules()]
    fewer = [r for r in rules if r["ruleId"] != "default-website-lead-follow-up"]
    history = _history(tmp_path / "history.jsonl", 10)
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            _rules(tmp_path / "a.json", rules),
            history,
            "--compare",
            _rules(tmp_path / "b.json", fewer),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "default-website-lead-follow-up" in result.output
