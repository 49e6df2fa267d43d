"""The ``leadflow`` command line, run as a user runs it: a subprocess, exit codes, stdout and
one-line errors on stderr. The demo has its own file (test_cli_demo.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from leadflow import Event, FollowUpRule, LeadFlow, ManualClock, ScheduledActionState

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str, cwd: Path | None = None, check: int | None = 0
) -> subprocess.CompletedProcess[str]:
    """``python -m leadflow.cli ARGS`` with the test's interpreter; asserts the exit code
    unless ``check`` is None."""
    env = {**os.environ, "COLUMNS": "100"}
    env.pop("LEADFLOW_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "leadflow.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    if check is not None:
        assert done.returncode == check, (done.returncode, done.stdout, done.stderr)
    return done


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single line an error printed on stderr."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert ": error: " in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------- the basics


@pytest.mark.parametrize(
    "command",
    [
        (),
        ("demo",),
        ("rules",),
        ("rules", "validate"),
        ("rules", "test"),
        ("rules", "schema"),
        ("rules", "lint"),
        ("sequences",),
        ("sequences", "validate"),
        ("sequences", "lint"),
        ("sequences", "schema"),
        ("simulate",),
        ("db",),
        ("db", "init"),
        ("db", "upgrade"),
        ("worker",),
        ("jobs",),
        ("jobs", "list"),
        ("jobs", "run"),
    ],
    ids=lambda c: " ".join(c) or "leadflow",
)
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    from leadflow.cli import cli

    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: leadflow" in result.output


def test_the_console_script_and_the_module_both_run() -> None:
    assert "leadflow" in run_cli("--version").stdout
    script = Path(sys.executable).with_name("leadflow")
    if script.exists():  # installed with the cli extra's console script
        done = subprocess.run([str(script), "--help"], capture_output=True, text=True)
        assert done.returncode == 0 and "demo" in done.stdout


@pytest.mark.parametrize("command", [(), ("db",), ("rules",), ("jobs",)], ids=repr)
def test_a_group_without_a_command_prints_its_help_and_exits_0(
    command: tuple[str, ...],
) -> None:
    done = run_cli(*command)
    assert done.stdout.startswith(f"Usage: {' '.join(('leadflow', *command))} ")
    assert "Commands:" in done.stdout and done.stderr == ""


def test_a_wrong_command_line_is_one_line_and_exit_2() -> None:
    line = one_error_line(run_cli("rules", "validate", check=2))
    assert line.startswith("leadflow rules validate: error: Missing argument 'FILE'")
    line = one_error_line(run_cli("demo", "--days", "0", check=2))
    assert "--days" in line
    one_error_line(run_cli("nope", check=2))


def test_importing_leadflow_loads_no_cli_library() -> None:
    code = (
        "import sys, leadflow; print([m for m in ('click', 'rich', 'typer') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- rules

WEBSITE_RULE: dict[str, Any] = {
    "ruleId": "web-call",
    "name": "Call website leads",
    "trigger": {
        "eventType": "opportunity.created",
        "conditions": [{"field": "leadSource", "operator": "equals", "value": "website"}],
    },
    "actions": [
        {
            "actionType": "create_activity",
            "delay": 1,
            "activityType": "call",
            "subject": "Call new website lead",
            "assignTo": "lead_owner",
        },
        {"actionType": "send_notification", "delay": 2, "template": "nudge"},
    ],
}


def _write(path: Path, data: Any) -> str:
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def test_rules_validate_accepts_valid_rules(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.json", WEBSITE_RULE)
    assert "1 rule(s), all valid" in run_cli("rules", "validate", one).stdout
    many = _write(tmp_path / "many.json", [WEBSITE_RULE, {**WEBSITE_RULE, "ruleId": "other"}])
    assert "2 rule(s), all valid" in run_cli("rules", "validate", many).stdout


def test_rules_validate_locates_every_problem(tmp_path: Path) -> None:
    bad_operator = json.loads(json.dumps(WEBSITE_RULE))
    bad_operator["ruleId"] = "bad-op"
    bad_operator["trigger"]["conditions"][0]["operator"] = "equalz"
    bad_delay = {**WEBSITE_RULE, "ruleId": "bad-delay"}
    bad_delay["actions"] = [{"actionType": "send_notification", "delay": -3, "template": "x"}]
    unknown_action = {**WEBSITE_RULE, "ruleId": "bad-type", "actions": [{"actionType": "fly"}]}
    twin = {**WEBSITE_RULE}
    path = _write(
        tmp_path / "rules.json", [WEBSITE_RULE, bad_operator, bad_delay, unknown_action, twin]
    )
    done = run_cli("rules", "validate", path, check=1)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 4, done.stdout
    assert lines[0].startswith(f"{path}: rule 'bad-op': [1].trigger.conditions[0]")
    assert "unknown operator 'equalz'" in lines[0]
    assert lines[1].startswith(f"{path}: rule 'bad-delay': [2].actions[0].delay")
    assert lines[2].startswith(f"{path}: rule 'bad-type': [3].actions[0].actionType")
    assert "fly" in lines[2]
    assert lines[3].startswith(f"{path}: rule 'web-call': [4].ruleId: the same id as rule #1")
    assert "4 of 5 rule(s)" in one_error_line(done)


def test_rules_validate_shows_every_problem_of_a_rule(tmp_path: Path) -> None:
    """Not only the first one, as a flow loading the rule would stop at: fixing a file should
    not take one run per mistake."""
    broken = json.loads(json.dumps(WEBSITE_RULE))
    broken["ruleId"] = "many-mistakes"
    broken["trigger"]["conditions"] = [
        {"field": "leadSource", "operator": "equalz", "value": "website"},
        {"field": "amount", "operator": "in", "value": 3},
    ]
    broken["actions"] = [
        {"actionType": "fly"},
        {"actionType": "send_notification", "delay": 1},  # no template
    ]
    path = _write(tmp_path / "rules.json", [WEBSITE_RULE, broken])
    done = run_cli("rules", "validate", path, check=1)
    lines = done.stdout.strip().splitlines()
    where = [line.split(": ")[2] for line in lines]
    assert all(line.startswith(f"{path}: rule 'many-mistakes': ") for line in lines), lines
    assert where == [
        "[1].trigger.conditions[0].operator",
        "[1].trigger.conditions[1].value",
        "[1].actions[0].actionType",
        "[1].actions[1].template",
    ], lines
    assert "unknown operator 'equalz'" in lines[0] and "'fly'" in lines[2]
    assert "1 of 2 rule(s)" in one_error_line(done)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "No such file"),
        ("{not json", "invalid JSON at line 1"),
        ("42", "expected a rule object or a list"),
    ],
)
def test_rules_validate_reports_an_unreadable_file_in_one_line(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "rules.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    line = one_error_line(run_cli("rules", "validate", str(path), check=1))
    assert problem in line and str(path) in line


def test_rules_test_explains_a_match_with_due_times(tmp_path: Path) -> None:
    path = _write(tmp_path / "rule.json", WEBSITE_RULE)
    event = {
        "type": "opportunity.created",
        "time": "2026-03-02T09:00:00Z",
        "payload": {"opportunityId": "o1", "leadSource": "website"},
    }
    out = run_cli("rules", "test", path, "--event", json.dumps(event)).stdout
    assert "rule 'web-call' (Call website leads): matched" in out
    assert "[yes] leadSource equals 'website' (saw 'website')" in out
    assert "plans create_activity 'Call new website lead': due 2026-03-02T10:00:00+00:00" in out
    assert "plans send_notification 'nudge': due 2026-03-02T11:00:00+00:00" in out


def test_rules_test_explains_a_miss_and_refuses_bad_input(tmp_path: Path) -> None:
    path = _write(tmp_path / "rule.json", WEBSITE_RULE)
    event = {"type": "opportunity.created", "payload": {"leadSource": "phone"}}
    out = run_cli("rules", "test", path, "--event", json.dumps(event)).stdout
    assert "did not match" in out and "(saw 'phone')" in out and "plans" not in out
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event), encoding="utf-8")
    assert "did not match" in run_cli("rules", "test", path, "--event", f"@{event_file}").stdout
    assert "invalid JSON" in one_error_line(run_cli("rules", "test", path, "--event", "{", check=1))
    line = one_error_line(run_cli("rules", "test", path, "--event", '{"payload": {}}', check=1))
    assert "eventType: Field required" in line  # the missing field is named
    line = one_error_line(run_cli("rules", "test", path, "--event", "{}", "--rule", "x", check=1))
    assert "no rule 'x'" in line


def test_rules_schema_prints_the_json_schema() -> None:
    schema = json.loads(run_cli("rules", "schema").stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(WEBSITE_RULE, schema)


# ---------------------------------------------------------------------------- db and jobs


def test_db_init_twice_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lf.sqlite'}"
    first = run_cli("db", "init", "--url", url).stdout
    assert "schema: revision (none) -> " in first and "added the 8 default rules" in first
    second = run_cli("db", "init", "--url", url).stdout
    assert "schema: at revision" in second and "none added" in second
    assert "already" in run_cli("db", "upgrade", "--url", url).stdout
    from leadflow.stores.sql import sql_storage

    storage = sql_storage(url, create=False)
    try:
        assert len(storage.rules.list()) == 8
    finally:
        storage.close()


def test_db_upgrade_creates_and_a_bare_path_is_a_sqlite_file(tmp_path: Path) -> None:
    out = run_cli("db", "upgrade", "--url", "lf.sqlite", cwd=tmp_path).stdout
    assert "schema: revision (none) -> " in out and "rules" not in out
    assert (tmp_path / "lf.sqlite").exists()


@pytest.mark.parametrize(
    ("url", "problem"),
    [("memory", "nothing to create"), ("redis://x", "unsupported URL scheme 'redis'")],
)
def test_db_refuses_urls_it_cannot_use(url: str, problem: str) -> None:
    assert problem in one_error_line(run_cli("db", "init", "--url", url, check=1))


def test_db_init_on_mongodb_with_mongomock(monkeypatch: pytest.MonkeyPatch) -> None:
    mongomock = pytest.importorskip("mongomock_ng")
    from leadflow.cli import cli, stores

    client = mongomock.MongoClient(tz_aware=True)
    monkeypatch.setattr(stores, "_mongo_database", lambda url: (client["crm"], lambda: None))
    runner = CliRunner()
    first = runner.invoke(cli, ["db", "init", "--url", "mongodb://localhost/crm"])
    assert first.exit_code == 0, first.output
    assert "indexes" in first.output and "added the 8 default rules" in first.output
    indexes = client["crm"]["leadActivities"].index_information()
    second = runner.invoke(cli, ["db", "init", "--url", "mongodb://localhost/crm"])
    assert second.exit_code == 0 and "none added" in second.output
    assert client["crm"]["leadActivities"].index_information() == indexes
    assert client["crm"]["followUpRules"].count_documents({}) == 8


def test_the_worker_needs_an_up_to_date_schema(tmp_path: Path) -> None:
    (tmp_path / "empty.sqlite").touch()  # a SQLite file without leadflow's tables
    line = one_error_line(run_cli("worker", "--url", str(tmp_path / "empty.sqlite"), check=1))
    assert "leadflow db upgrade" in line


@pytest.mark.parametrize(
    "command",
    [("worker",), ("jobs", "run", "cleanup")],
    ids=lambda c: " ".join(c),
)
@pytest.mark.parametrize("as_url", [True, False], ids=["sqlite-url", "bare-path"])
def test_commands_that_use_a_database_never_create_one(
    tmp_path: Path, command: tuple[str, ...], as_url: bool
) -> None:
    missing = tmp_path / "typo.sqlite"
    url = f"sqlite:///{missing}" if as_url else str(missing)
    line = one_error_line(run_cli(*command, "--url", url, check=1))
    assert f"no SQLite database at {missing}" in line
    assert "leadflow db init" in line
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_jobs_run_runs_one_job_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lf.sqlite'}"
    run_cli("db", "init", "--url", url)
    at = ("--at", "2026-03-02T02:05:00+00:00", "--log-level", "error")
    out = run_cli("jobs", "run", "cleanup", "--url", url, *at).stdout
    assert out.startswith("job cleanup ran slot 2026-03-02T02:00") and "purged=0" in out
    assert "nothing ran" in run_cli("jobs", "run", "cleanup", "--url", url, *at).stdout
    late = ("--at", "2026-03-02T15:00:00+00:00", "--log-level", "error")
    assert "nothing ran" in run_cli("jobs", "run", "daily_summary", "--url", url, *late).stdout
    line = one_error_line(run_cli("jobs", "run", "cleanup", "--url", url, "--at", "x", check=2))
    assert "--at" in line
    assert "'nope'" in one_error_line(run_cli("jobs", "run", "nope", "--url", url, check=2))
    assert "daily_summary" in run_cli("jobs", "list").stdout


# ---------------------------------------------------------------------------- the worker


def _nudge_rule() -> FollowUpRule:
    return FollowUpRule.model_validate(
        {
            "ruleId": "nudge",
            "name": "Nudge the owner",
            "trigger": {"eventType": "opportunity.created"},
            "actions": [{"actionType": "send_notification", "delay": 1, "template": "nudge"}],
        }
    )


class _Worker:
    """``leadflow worker`` in a process of its own, its stderr read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        import threading

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "leadflow.cli", "worker", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str) -> bool:
        deadline = time.monotonic() + 120  # a bound on a hung worker, not a timing test
        while time.monotonic() < deadline and self.process.poll() is None:
            if text in self.stderr:
                return True
            time.sleep(0.05)
        return text in self.stderr

    def stop(self) -> int:
        try:
            self.process.send_signal(signal.SIGTERM)
            code = self.process.wait(timeout=120)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=30)
        return code


def _nudge_due(url: str) -> str:
    """Store the nudge rule and a notification it planned, due two hours ago; its id."""
    from leadflow.cli.integrations import log_integrations
    from leadflow.stores.sql import sql_storage

    storage = sql_storage(url, create=False)
    try:
        clock = ManualClock(datetime.now(UTC) - timedelta(hours=3))
        flow = LeadFlow(storage, log_integrations(), clock=clock)
        flow.rules.create(_nudge_rule())
        result = flow.handle(
            Event(type="opportunity.created", time=clock.now(), payload={"opportunityId": "o1"})
        )
        [action] = result.scheduled  # due two hours ago, waiting for a worker
        return action.action_id
    finally:
        storage.close()


def test_the_worker_runs_due_actions_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    from leadflow.stores.sql import sql_storage

    url = f"sqlite:///{tmp_path / 'lf.sqlite'}"
    run_cli("db", "init", "--url", url, "--no-rules")
    action_id = _nudge_due(url)
    storage = sql_storage(url, create=False)
    try:
        worker = _Worker("--url", url, "--app", "tests.cli_app:build")
        try:
            deadline = time.monotonic() + 120  # a bound on a hung worker, not a timing test
            state = ScheduledActionState.PENDING
            while time.monotonic() < deadline and worker.process.poll() is None:
                state = storage.scheduled.get(action_id).state
                if state is ScheduledActionState.DONE:
                    break
                time.sleep(0.1)
            assert state is ScheduledActionState.DONE
        finally:
            code = worker.stop()
        stderr = worker.stderr
        assert code == 0, stderr
        assert "app notified nudge" in stderr
        assert "does not run" not in stderr  # the app runs every type its rules use
        assert "received SIGTERM: stopping" in stderr and "stopped cleanly" in stderr
        assert storage.scheduled.list(ScheduledActionState.CLAIMED) == []
    finally:
        storage.close()


def test_a_worker_without_app_leaves_notifications_pending_and_says_so(tmp_path: Path) -> None:
    """Without --app, notifications would only be logged: the worker does not claim them, warns
    at start-up about the rules that plan them, and its metrics count them as unhandled; a
    worker with the host's --app then delivers them."""
    import re
    import urllib.request

    pytest.importorskip("prometheus_client")
    from leadflow.stores.sql import sql_storage

    url = f"sqlite:///{tmp_path / 'lf.sqlite'}"
    run_cli("db", "init", "--url", url, "--no-rules")
    action_id = _nudge_due(url)
    storage = sql_storage(url, create=False)
    try:
        worker = _Worker("--url", url, "--metrics-port", "0")
        try:
            assert worker.wait_for("job due_actions ran"), worker.stderr
            [address] = re.findall(r"metrics at (\S+)", worker.stderr)
            port = address.rsplit(":", 1)[1].split("/")[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as got:
                body = got.read().decode("utf-8")
        finally:
            code = worker.stop()
        assert code == 0, worker.stderr
        [warning] = [line for line in worker.lines if "does not run" in line]
        assert "WARNING" in warning and "send_notification" in warning and "nudge" in warning
        pending = storage.scheduled.get(action_id)
        assert (pending.state, pending.attempts) == (ScheduledActionState.PENDING, 0)
        assert "notification nudge" not in worker.stderr  # nothing was only logged
        assert re.search(
            r'^leadflow_unhandled_due_actions\{action_type="send_notification"\} 1\.0$',
            body,
            re.M,
        ), body

        # The host's app then delivers them. The first worker took this minute's due_actions
        # slot, so a second worker would wait for the next minute (up to 60 s): run the next
        # minute's slot at once instead (the worker delivering with --app has its own test).
        slot = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M%z")
        app = ("--app", "tests.cli_app:build")
        done = run_cli("jobs", "run", "due_actions", "--url", url, *app, "--at", slot)
        assert "app notified nudge" in done.stderr, done.stderr
        assert storage.scheduled.get(action_id).state is ScheduledActionState.DONE
    finally:
        storage.close()


def test_the_worker_logs_each_job_run_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In-process, with the log records captured: every job run is one record (the job
    runner's), not one more from the command."""
    import logging
    import threading

    from leadflow.cli import cli

    url = f"sqlite:///{tmp_path / 'lf.sqlite'}"
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "init", "--url", url, "--no-rules"]).exit_code == 0

    def ran(name: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith(f"job {name} ran slot")]

    def started() -> bool:
        return any(" started on " in r.getMessage() for r in caplog.records)

    def stop_once_due_actions_ran() -> None:
        # due_actions (every minute, 10 minutes' grace) runs at start at any hour; the daily
        # jobs run at start only within their grace, so the test does not wait for them.
        deadline = time.monotonic() + 120  # a bound on a hung worker, not a timing test
        while time.monotonic() < deadline and not (ran("due_actions") and started()):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's own handler catches it

    caplog.set_level(logging.INFO, logger="leadflow")
    stopper = threading.Thread(target=stop_once_due_actions_ran, daemon=True)
    stopper.start()
    result = runner.invoke(cli, ["worker", "--url", url])
    stopper.join(timeout=5)
    assert result.exit_code == 0, result.output
    # Each run is one record: no slot of any job is logged twice (a slow machine may run the
    # frequent due_actions job more than once before the worker is stopped).
    assert ran("due_actions")
    for name in (
        "due_actions",
        "overdue_check",
        "upcoming_reminders",
        "stale_opportunities",
        "cleanup",
        "daily_summary",
    ):
        slots = [r.getMessage().split(" ")[4] for r in ran(name)]  # "job N ran slot S in..."
        assert len(slots) == len(set(slots)), [r.getMessage() for r in ran(name)]
    assert any("stopped cleanly" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------- PostgreSQL

POSTGRES_URL = os.environ.get("LEADFLOW_TEST_POSTGRES_URL")
on_postgres = pytest.mark.skipif(
    POSTGRES_URL is None, reason="set LEADFLOW_TEST_POSTGRES_URL to run against PostgreSQL"
)


def _plain_postgres_url() -> str:
    """The test server's URL as a hosting provider writes it: postgres://, no driver."""
    from sqlalchemy import make_url

    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL).set(drivername="postgres")
    return url.render_as_string(hide_password=False)


@on_postgres
def test_db_init_takes_a_plain_postgres_url() -> None:
    from .sql_support import postgres_schema

    with postgres_schema() as (_engine, schema):
        url = _plain_postgres_url()
        out = run_cli("db", "init", "--url", url, "--schema", schema).stdout
        assert "schema: revision (none) -> " in out and "added the 8 default rules" in out
        postgresql = url.replace("postgres://", "postgresql://", 1)
        assert "already" in run_cli("db", "upgrade", "--url", postgresql, "--schema", schema).stdout


# ---------------------------------------------------------------------------- metrics


def test_the_worker_serves_prometheus_metrics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--metrics-port: the worker's endpoint answers a scrape with leadflow's metrics."""
    import logging
    import re
    import threading
    import urllib.request

    pytest.importorskip("prometheus_client")
    from leadflow.cli import cli

    url = f"sqlite:///{tmp_path / 'lf.sqlite'}"
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "init", "--url", url, "--no-rules"]).exit_code == 0
    scraped: list[str] = []

    def messages() -> list[str]:
        return [r.getMessage() for r in caplog.records]

    # due_actions runs at start at any hour (the daily jobs only within their grace); its
    # counter is bumped just after its log record, so the scrape is repeated until it shows.
    counted = re.compile(
        r'^leadflow_job_runs_total\{job="due_actions",status="succeeded"\} [1-9]', re.M
    )

    def scrape_then_stop() -> None:
        try:
            deadline = time.monotonic() + 120  # a bound on a hung worker, not a timing test
            while time.monotonic() < deadline and not any(
                m.startswith("metrics at ") for m in messages()
            ):
                time.sleep(0.05)
            [address] = [m.split()[-1] for m in messages() if m.startswith("metrics at ")]
            port = address.rsplit(":", 1)[1].split("/")[0]
            local = f"http://127.0.0.1:{port}/metrics"
            while True:
                with urllib.request.urlopen(local, timeout=30) as response:
                    body = response.read().decode("utf-8")
                if counted.search(body) or time.monotonic() > deadline:
                    scraped.append(body)
                    break
                time.sleep(0.05)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    caplog.set_level(logging.INFO, logger="leadflow")
    scraper = threading.Thread(target=scrape_then_stop, daemon=True)
    scraper.start()
    result = runner.invoke(cli, ["worker", "--url", url, "--metrics-port", "0"])
    scraper.join(timeout=30)
    assert result.exit_code == 0, result.output
    [body] = scraped
    assert counted.search(body), body
    assert re.search(r"^leadflow_parked_actions 0\.0$", body, re.M)
    assert "leadflow_due_action_lag_seconds_bucket" in body
    assert "process_cpu_seconds_total" in body or "python_info" in body


def test_worker_metrics_without_the_extra_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.cli import cli

    url = f"sqlite:///{tmp_path / 'lf.sqlite'}"
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "init", "--url", url, "--no-rules"]).exit_code == 0
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    result = runner.invoke(cli, ["worker", "--url", url, "--metrics-port", "9464"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "leadflow worker: error: --metrics-port needs the metrics extra: "
        "pip install 'leadflow[metrics]'"
    )
