"""Follow-up rules in SQL: :class:`~leadflow.ports.RuleRepository` on one table.

A rule is stored as its document (JSON / JSONB) beside the columns its queries use
(``is_active``, ``priority``, ``version``); the version column is the truth, so an update is one
``UPDATE ... WHERE version = ...``.

Every write that changes a rule also bumps the ``rules`` row of ``<prefix>stamps`` (an upsert
adding 1) in the same transaction, so the change stamp and the rules always commit together:
concurrent writers queue on that row for the moment of their commit, each adding its own 1.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, delete, exc, insert, select, true, update
from sqlalchemy.dialects import postgresql, sqlite

from ...errors import DuplicateError, NotFoundError, StaleWriteError
from ...models import FollowUpRule
from ..checks import an_id, check_id, check_model
from .database import SqlDatabase
from .errors import sql_errors, translated

__all__ = ["SqlRuleRepository"]

_STAMP = "rules"  # the row of <prefix>stamps this repository bumps


def _values(rule: FollowUpRule, version: int) -> dict[str, Any]:
    document = rule.to_document()
    document["version"] = version
    return {
        "rule_id": rule.rule_id,
        "is_active": rule.is_active,
        "priority": rule.priority,
        "version": version,
        "document": document,
    }


def _load(row: Mapping[Any, Any]) -> FollowUpRule:
    return FollowUpRule.from_document({**row["document"], "version": row["version"]})


class SqlRuleRepository:
    """:class:`~leadflow.ports.RuleRepository` on the ``<prefix>rules`` table of ``database``."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._t = database.tables.rules
        stamps = database.tables.stamps
        upsert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
        self._bump = (
            upsert(stamps)
            .values(name=_STAMP, value=1)
            .on_conflict_do_update(
                index_elements=[stamps.c.name], set_={"value": stamps.c.value + 1}
            )
        )
        self._read_stamp = select(stamps.c.value).where(stamps.c.name == _STAMP)

    def create(self, rule: FollowUpRule) -> FollowUpRule:
        checked = check_model(rule, FollowUpRule, "rule")
        values = _values(checked, 1)
        with sql_errors("rule"):
            try:
                with self._db.write() as connection:
                    connection.execute(insert(self._t).values(values))
                    connection.execute(self._bump)
            except exc.IntegrityError as error:
                raise DuplicateError(f"rule {checked.rule_id!r} already exists") from error
        return _load(values)

    @translated("rules")
    def stamp(self) -> int:
        """The ``rules`` row of ``<prefix>stamps`` (0 if it is missing): one primary-key read."""
        with self._db.read() as connection:
            value = connection.execute(self._read_stamp).scalar()
        return 0 if value is None else int(value)

    def _fetch(self, statement: Select[Any]) -> builtins.list[FollowUpRule]:
        with self._db.read() as connection:
            rows = connection.execute(statement).mappings().all()
        return [_load(row) for row in rows]

    def _ordered(self) -> Select[Any]:
        c = self._t.c
        return select(c.document, c.version).order_by(c.priority.desc(), c.rule_id)

    @translated("rule_id")
    def get(self, rule_id: str) -> FollowUpRule:
        rule_id = an_id(rule_id, "rule_id")
        c = self._t.c
        found = self._fetch(select(c.document, c.version).where(c.rule_id == rule_id))
        if not found:
            raise NotFoundError(f"no rule {rule_id!r}")
        return found[0]

    @translated("rules")
    def list(self) -> builtins.list[FollowUpRule]:
        return self._fetch(self._ordered())

    @translated("rules")
    def list_active(self) -> builtins.list[FollowUpRule]:
        return self._fetch(self._ordered().where(self._t.c.is_active == true()))

    @translated("rule")
    def update(self, rule: FollowUpRule) -> FollowUpRule:
        checked = check_model(rule, FollowUpRule, "rule")
        values = _values(checked, checked.version + 1)
        c = self._t.c
        statement = (
            update(self._t)
            .where(c.rule_id == checked.rule_id, c.version == checked.version)
            .values(values)
        )
        with self._db.write() as connection:
            if connection.execute(statement).rowcount == 0:
                found = connection.execute(select(c.version).where(c.rule_id == checked.rule_id))
                if found.first() is None:
                    raise NotFoundError(f"no rule {checked.rule_id!r}")
                raise StaleWriteError(
                    f"rule {checked.rule_id!r} changed since version {checked.version}; "
                    "re-read and retry"
                )
            connection.execute(self._bump)
        return _load(values)

    @translated("rule_id")
    def delete(self, rule_id: str) -> None:
        check_id(rule_id, "rule_id")
        with self._db.write() as connection:
            result = connection.execute(delete(self._t).where(self._t.c.rule_id == rule_id))
            if result.rowcount == 0:
                raise NotFoundError(f"no rule {rule_id!r}")
            connection.execute(self._bump)
