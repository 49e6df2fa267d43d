"""Follow-up rules in MongoDB: :class:`~leadflow.ports.RuleRepository` on one collection, and
its change stamp in a second one.

The stamp is one document (``{_id: "rules", value: n}``) in ``<rules collection>Stamp``, bumped
with ``$inc`` (upsert) after every write that changed a rule, so it never moves before the rule
it counts is visible; concurrent writers each add their own 1. Without a multi-document
transaction the bump is a second operation: a process that dies between a rule write and its
bump leaves the stamp behind until the next rule change (processes that start later still load
the new rule).
"""

from __future__ import annotations

import builtins
from typing import ClassVar

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from ...errors import DuplicateError, NotFoundError, StaleWriteError
from ...models import FollowUpRule
from ..checks import check_version
from .common import (
    Document,
    MongoStore,
    MongoTarget,
    bind,
    checked_document,
    valid_id,
)
from .driver import translated

__all__ = ["MongoRuleRepository"]


class MongoRuleRepository(MongoStore):
    """:class:`~leadflow.ports.RuleRepository` on a MongoDB collection; the change stamp is
    kept in the collection ``stamp_collection`` (default: the rules collection's name followed
    by ``Stamp``, e.g. ``followUpRulesStamp``) of the same database."""

    DEFAULT_COLLECTION = "followUpRules"
    INDEXES = (
        IndexModel([("ruleId", ASCENDING)], name="ruleId_unique", unique=True),
        # list_active: the seed's isActive + priority, in application order.
        IndexModel(
            [("isActive", ASCENDING), ("priority", DESCENDING), ("ruleId", ASCENDING)],
            name="isActive_priority",
        ),
        # list: every rule in application order.
        IndexModel([("priority", DESCENDING), ("ruleId", ASCENDING)], name="priority"),
    )
    _ORDER: ClassVar[list[tuple[str, int]]] = [("priority", DESCENDING), ("ruleId", ASCENDING)]

    _STAMP: ClassVar[dict[str, str]] = {"_id": "rules"}

    def __init__(
        self,
        target: MongoTarget,
        *,
        collection: str = DEFAULT_COLLECTION,
        stamp_collection: str | None = None,
    ) -> None:
        super().__init__(target, collection=collection)
        # A collection given as the target: the stamp goes to its database.
        database = target.database if hasattr(type(target), "find_one") else target
        name = stamp_collection or f"{self._collection.name}Stamp"
        self._stamps: Collection[Document] = bind(database, name)

    @property
    def stamp_collection(self) -> Collection[Document]:
        """The collection holding the change stamp (for host-side maintenance)."""
        return self._stamps

    def _bump(self) -> None:
        self._stamps.update_one(self._STAMP, {"$inc": {"value": 1}}, upsert=True)

    @translated("rules")
    def stamp(self) -> int:
        """The stamp document's count (0 before the first write): one read by ``_id``."""
        document = self._stamps.find_one(self._STAMP)
        return 0 if document is None else int(document["value"])

    @translated("rule")
    def create(self, rule: FollowUpRule) -> FollowUpRule:
        document = checked_document(rule, FollowUpRule, "rule", version=1)
        try:
            self._collection.insert_one(document)
        except DuplicateKeyError as exc:
            raise DuplicateError(f"rule {document['ruleId']!r} already exists") from exc
        self._bump()
        return FollowUpRule.from_document(document)

    @translated("rule_id")
    def get(self, rule_id: str) -> FollowUpRule:
        rule_id = valid_id("rule_id", rule_id)
        document = self._collection.find_one({"ruleId": rule_id})
        if document is None:
            raise NotFoundError(f"no rule {rule_id!r}")
        return FollowUpRule.from_document(document)

    @translated("rules")
    def list(self) -> builtins.list[FollowUpRule]:
        return [FollowUpRule.from_document(d) for d in self._collection.find({}, sort=self._ORDER)]

    @translated("rules")
    def list_active(self) -> builtins.list[FollowUpRule]:
        cursor = self._collection.find({"isActive": True}, sort=self._ORDER)
        return [FollowUpRule.from_document(d) for d in cursor]

    @translated("rule")
    def update(self, rule: FollowUpRule) -> FollowUpRule:
        version = check_version(getattr(rule, "version", None), "version")
        document = checked_document(rule, FollowUpRule, "rule", version=version + 1)
        rule_id = valid_id("rule_id", document["ruleId"])
        result = self._collection.replace_one({"ruleId": rule_id, "version": version}, document)
        if result.matched_count == 0:
            self.get(rule_id)
            raise StaleWriteError(
                f"rule {rule_id!r} changed since version {version}; re-read and retry"
            )
        self._bump()
        return FollowUpRule.from_document(document)

    @translated("rule_id")
    def delete(self, rule_id: str) -> None:
        rule_id = valid_id("rule_id", rule_id)
        if self._collection.delete_one({"ruleId": rule_id}).deleted_count == 0:
            raise NotFoundError(f"no rule {rule_id!r}")
        self._bump()
