"""What a claimed batch of sequence steps writes (issue 18's cost target), beyond what it does:
on SQL the send marks are one ``UPDATE`` of the flag (merged into the stored document by the
database) that carries none of the enrollment's record, its history included, and the marks,
the moves and their step records are one statement each for the batch; in memory a
visit the runtime stores is handed over, not validated again."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from sqlalchemy import event

from leadflow.records import ScheduledAction
from leadflow.sequences import EnrollmentState
from leadflow.stores.memory import memory_storage

from .sql_support import (
    fresh_storage,
    sql_file_or_server,  # noqa: F401 (the fixture `sql`)
)
from .test_sequence_batches import OPPORTUNITIES, _entered, _where


def test_on_sql_the_marks_are_one_update_of_the_flag_without_the_records(sql: Any) -> None:
    flow, messenger = _entered(sql)
    seen: list[tuple[str, Any]] = []

    def statement(conn: Any, cursor: Any, text: str, parameters: Any, *args: Any) -> None:
        seen.append((text, parameters))

    engine = sql.database.engine
    event.listen(engine, "before_cursor_execute", statement)
    try:
        report = flow.run_due()
    finally:
        event.remove(engine, "before_cursor_execute", statement)
    assert (report.claimed, report.succeeded) == (6, 6)
    assert len(messenger.sent) == 6
    marks = [(t, p) for t, p in seen if "enrollments" in t and ("json_patch" in t or "||" in t)]
    assert len(marks) == 1, seen  # one statement for the six marks
    sent = str(marks[0][1])
    assert sent.count("enr-") == 6, sent  # the six ids (and revisions)
    assert "first" not in sent  # the flag and the time, none of the record (no step history)
    for opp in OPPORTUNITIES:
        assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)


def test_in_memory_a_stored_visit_is_not_validated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    flow, messenger = _entered(memory_storage())
    validated: list[str] = []
    original = ScheduledAction.model_validate.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        validated.append(str(value.get("step_id") if isinstance(value, dict) else value))
        return original(cls, value, *args, **kwargs)

    monkeypatch.setattr(ScheduledAction, "model_validate", classmethod(counting))
    before = len(validated)
    assert flow.run_due().succeeded == 6 and len(messenger.sent) == 6
    # The claim and the acknowledgement copy (and validate) their records as for any action;
    # the six next visits the runtime stored are not among them.
    assert not any(step == "reply" for step in validated[before:]), validated
    for opp in OPPORTUNITIES:
        assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)


def test_on_sql_a_batch_writes_its_enrollments_with_one_statement_each(sql: Any) -> None:
    """The marks, the moves and the moves' step records: each one statement for the batch
    (no ``executemany``; on PostgreSQL the moves and their records one statement with the
    next visits), and no read of ``steps`` (the moves' ``UPDATE`` returns it)."""
    flow, messenger = _entered(sql)
    seen: list[tuple[str, bool]] = []

    def statement(conn: Any, cursor: Any, text: str, parameters: Any, context: Any,
                  many: bool) -> None:  # fmt: skip
        seen.append((" ".join(text.split()), many))

    engine = sql.database.engine
    event.listen(engine, "before_cursor_execute", statement)
    try:
        report = flow.run_due()
    finally:
        event.remove(engine, "before_cursor_execute", statement)
    assert (report.claimed, report.succeeded) == (6, 6) and len(messenger.sent) == 6

    def on(table: str, verb: str) -> list[tuple[str, bool]]:
        pattern = re.compile(rf"^{verb} (\S+\.)?leadflow_{table}\b")
        return [(text, many) for text, many in seen if pattern.match(text)]

    updates = on("enrollments", "UPDATE")
    inserts = on("enrollment_steps", "INSERT INTO")
    if sql.database.dialect == "postgresql":
        # The marks; the moves with their records and their next visits in one statement
        # (``move_to_visits``: its WITH queries).
        assert len(updates) == 1 and not updates[0][1], updates
        together = [(text, many) for text, many in seen if text.startswith("WITH v AS (INSERT")]
        assert len(together) == 1 and not together[0][1], together
        [(text, _)] = together
        assert "leadflow_scheduled_actions" in text and "UPDATE" in text
        assert "INSERT INTO" in text.split("leadflow_enrollment_steps")[0]
        assert not inserts
    else:
        assert len(updates) == 2 and not any(many for _, many in updates), updates
        assert len(inserts) == 1 and not inserts[0][1], inserts
    assert not [text for text, _ in seen if "leadflow_enrollments.steps" in text.split(" FROM ")[0]
                and text.startswith("SELECT")]  # fmt: skip
    for opp in OPPORTUNITIES:
        assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)


def test_on_sqlite_the_batch_statements_find_each_enrollment_by_its_key(tmp_path: Path) -> None:
    """SQLite's plan for the batch ``UPDATE``s: the array scanned once, each enrollment found
    by its primary key (not every active enrollment walked through the index on state, the
    array scanned for each)."""
    with fresh_storage("sqlite-file", tmp_path) as storage:
        store, engine = storage.enrollments, storage.database.engine
        for batch in (store._moves.statement, store._marks.statement):
            text = str(batch.compile(dialect=engine.dialect))
            with engine.connect() as connection:
                plan = connection.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN {text}", (None,) * text.count("?")
                ).all()
            details = [str(row[-1]) for row in plan]
            assert any("leadflow_enrollments" in d and "(enrollment_id=?)" in d for d in details)
            assert not any("state" in d for d in details), details
