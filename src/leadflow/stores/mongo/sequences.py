"""Sequences in MongoDB: :class:`~leadflow.ports.SequenceRepository` and
:class:`~leadflow.ports.EnrollmentStore`, one collection each.

**Definitions.** One document per version (a unique index on ``sequenceId`` + ``version``);
:meth:`MongoSequenceRepository.add` reads the highest stored version and inserts the next one,
and two publishers of one version meet on the unique index (the loser gets
:class:`~leadflow.DuplicateError`). The change stamp is one document
(``{_id: "sequences", value: n}``) in ``<collection>Stamp``, bumped with ``$inc`` after every
write, as the rules' stamp is (see :mod:`.rules`: a process that dies between a write and its
bump leaves the stamp behind until the next change).

**Enrollments.** The record's document; a unique index on ``sequenceId`` + ``opportunityId``
restricted to ``state: "active"`` (a partial index, MongoDB 3.2+) keeps one active enrollment
per pair, so of concurrent entries one insert wins and the others read the winner back.
:meth:`MongoEnrollmentStore.update` replaces the document only if its ``revision`` (and what
may not change) still matches: one single-document compare-and-set. A document stays well
under MongoDB's 16 MB: an enrollment keeps at most 200 step records and bounded documents.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Final

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from ...errors import (
    ConflictError,
    DuplicateError,
    InvalidInputError,
    NotFoundError,
    StaleWriteError,
)
from ...sequences import (
    Enrollment,
    EnrollmentHead,
    EnrollmentState,
    SequenceDefinition,
    SequenceStatus,
    StepRecord,
)
from ...sequences.enrollment import HISTORY_LIMIT
from ..checks import check_version, checked_version
from ..sequence_checks import (
    check_change,
    checked_batch,
    checked_ids,
    checked_marks,
    checked_moves,
    enum_member,
    head_of,
)
from .common import (
    Document,
    MongoStore,
    MongoTarget,
    bind,
    bson_precision,
    checked_document,
    ms,
    valid_id,
    valid_limit,
)
from .driver import translated

__all__ = ["MongoEnrollmentStore", "MongoSequenceRepository"]

_ACTIVE: Final = EnrollmentState.ACTIVE.value
_MAX_LIST: Final = 10_000
_ENROLL_ATTEMPTS: Final = 20
_HEAD_KEYS: Final = tuple(
    field.alias or name for name, field in EnrollmentHead.model_fields.items()
)
_NO_HISTORY: Final = {"history": 0}


class MongoSequenceRepository(MongoStore):
    """:class:`~leadflow.ports.SequenceRepository` on a MongoDB collection; the change stamp
    is kept in ``stamp_collection`` (default: the collection's name followed by ``Stamp``)."""

    DEFAULT_COLLECTION = "sequences"
    INDEXES = (
        # get (one version, or the highest), versions, list, and publishing one version once.
        IndexModel(
            [("sequenceId", ASCENDING), ("version", ASCENDING)],
            name="sequenceId_version_unique",
            unique=True,
        ),
    )
    _STAMP: ClassVar[dict[str, str]] = {"_id": "sequences"}

    def __init__(
        self,
        target: MongoTarget,
        *,
        collection: str = DEFAULT_COLLECTION,
        stamp_collection: str | None = None,
    ) -> None:
        super().__init__(target, collection=collection)
        database = target.database if hasattr(type(target), "find_one") else target
        name = stamp_collection or f"{self._collection.name}Stamp"
        self._stamps: Collection[Document] = bind(database, name)

    @property
    def stamp_collection(self) -> Collection[Document]:
        """The collection holding the change stamp (for host-side maintenance)."""
        return self._stamps

    def _bump(self) -> None:
        self._stamps.update_one(self._STAMP, {"$inc": {"value": 1}}, upsert=True)

    @translated("sequences")
    def stamp(self) -> int:
        """The stamp document's count (0 before the first write): one read by ``_id``."""
        document = self._stamps.find_one(self._STAMP)
        return 0 if document is None else int(document["value"])

    @translated("definition")
    def add(self, definition: SequenceDefinition) -> SequenceDefinition:
        document = checked_document(definition, SequenceDefinition, "definition")
        sequence_id = valid_id("sequence_id", document["sequenceId"])
        version = int(document["version"])
        highest_document = self._collection.find_one(
            {"sequenceId": sequence_id},
            projection={"version": True},
            sort=[("sequenceId", ASCENDING), ("version", -1)],
        )
        highest = 0 if highest_document is None else int(highest_document["version"])
        if version <= highest:
            raise DuplicateError(f"sequence {sequence_id!r} version {version} already exists")
        if version != highest + 1:
            raise StaleWriteError(
                f"sequence {sequence_id!r} is at version {highest}: the next version is "
                f"{highest + 1}, not {version}"
            )
        try:
            self._collection.insert_one(document)
        except DuplicateKeyError as exc:  # another publisher stored it first
            raise DuplicateError(
                f"sequence {sequence_id!r} version {version} already exists"
            ) from exc
        self._bump()
        return SequenceDefinition.from_document(document)

    @translated("sequence_id")
    def get(self, sequence_id: str, version: int | None = None) -> SequenceDefinition:
        sequence_id = valid_id("sequence_id", sequence_id)
        wanted = checked_version(version, "version")
        if wanted is None:
            document = self._collection.find_one(
                {"sequenceId": sequence_id}, sort=[("sequenceId", ASCENDING), ("version", -1)]
            )
            if document is None:
                raise NotFoundError(f"no sequence {sequence_id!r}")
        else:
            document = self._collection.find_one({"sequenceId": sequence_id, "version": wanted})
            if document is None:
                raise NotFoundError(f"sequence {sequence_id!r} has no version {wanted}")
        return SequenceDefinition.from_document(document)

    @translated("sequence_id")
    def versions(self, sequence_id: str) -> builtins.list[SequenceDefinition]:
        sequence_id = valid_id("sequence_id", sequence_id)
        cursor = self._collection.find(
            {"sequenceId": sequence_id}, sort=[("sequenceId", ASCENDING), ("version", ASCENDING)]
        )
        return [SequenceDefinition.from_document(d) for d in cursor]

    @translated("sequences")
    def list(self) -> builtins.list[SequenceDefinition]:
        """Every version in index order; the last of each sequence is its current one."""
        current: dict[str, Document] = {}
        for document in self._collection.find(
            {}, sort=[("sequenceId", ASCENDING), ("version", ASCENDING)]
        ):
            current[document["sequenceId"]] = document
        return [SequenceDefinition.from_document(d) for d in current.values()]

    @translated("status")
    def set_status(
        self, sequence_id: str, version: int, status: SequenceStatus
    ) -> SequenceDefinition:
        status = enum_member(SequenceStatus, status, "status")
        sequence_id = valid_id("sequence_id", sequence_id)
        wanted = check_version(version, "version")
        document = self._collection.find_one_and_update(
            {"sequenceId": sequence_id, "version": wanted},
            {"$set": {"status": status.value}},
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            raise NotFoundError(f"sequence {sequence_id!r} has no version {wanted}")
        self._bump()
        return SequenceDefinition.from_document(document)


def _optional_id(field: str, value: object) -> str | None:
    return None if value is None else valid_id(field, value)


class MongoEnrollmentStore(MongoStore):
    """:class:`~leadflow.ports.EnrollmentStore` on a MongoDB collection."""

    DEFAULT_COLLECTION = "sequenceEnrollments"
    INDEXES = (
        IndexModel([("enrollmentId", ASCENDING)], name="enrollmentId_unique", unique=True),
        # enroll: at most one active enrollment per sequence and opportunity.
        IndexModel(
            [("sequenceId", ASCENDING), ("opportunityId", ASCENDING)],
            name="sequenceId_opportunityId_active_unique",
            unique=True,
            partialFilterExpression={"state": _ACTIVE},
        ),
        # active_for and list(opportunity_id=...), oldest first.
        IndexModel(
            [("opportunityId", ASCENDING), ("enrolledAt", ASCENDING), ("enrollmentId", ASCENDING)],
            name="opportunityId_enrolledAt",
        ),
        IndexModel(
            [("sequenceId", ASCENDING), ("enrolledAt", ASCENDING), ("enrollmentId", ASCENDING)],
            name="sequenceId_enrolledAt",
        ),
        IndexModel(
            [("state", ASCENDING), ("enrolledAt", ASCENDING), ("enrollmentId", ASCENDING)],
            name="state_enrolledAt",
        ),
        IndexModel([("enrolledAt", ASCENDING), ("enrollmentId", ASCENDING)], name="enrolledAt"),
    )
    _ORDER: ClassVar[list[tuple[str, int]]] = [
        ("enrolledAt", ASCENDING),
        ("enrollmentId", ASCENDING),
    ]

    def __init__(self, target: MongoTarget, *, collection: str = DEFAULT_COLLECTION) -> None:
        super().__init__(target, collection=collection)

    @translated("enrollment")
    def enroll(self, enrollment: Enrollment) -> tuple[Enrollment, bool]:
        document = checked_document(enrollment, Enrollment, "enrollment", revision=1)
        if document["state"] != _ACTIVE:
            raise InvalidInputError("a new enrollment is active", field="state")
        by_id = {"enrollmentId": valid_id("enrollment_id", document["enrollmentId"])}
        by_pair = {
            "sequenceId": valid_id("sequence_id", document["sequenceId"]),
            "opportunityId": valid_id("opportunity_id", document["opportunityId"]),
            "state": _ACTIVE,
        }
        for _ in range(_ENROLL_ATTEMPTS):
            try:
                self._collection.insert_one(dict(document))
            except DuplicateKeyError:
                existing = self._collection.find_one(by_id) or self._collection.find_one(by_pair)
                if existing is not None:
                    return Enrollment.from_document(existing), False
                continue  # the active one ended in between: enroll again
            return Enrollment.from_document(document), True
        raise ConflictError(
            f"enrollment of {by_pair['opportunityId']!r} in {by_pair['sequenceId']!r} kept "
            "colliding with concurrent writes; retry"
        )

    @translated("enrollment_id")
    def get(self, enrollment_id: str) -> Enrollment:
        enrollment_id = valid_id("enrollment_id", enrollment_id)
        document = self._collection.find_one({"enrollmentId": enrollment_id})
        if document is None:
            raise NotFoundError(f"no enrollment {enrollment_id!r}")
        return Enrollment.from_document(document)

    def _replace(self, document: Document) -> tuple[Document, int, bool]:
        """The compare-and-set of :meth:`update` with a checked document: the document
        written (at ``revision + 1``), the revision it was read at, and whether it was
        written."""
        revision = int(document["revision"])
        document["revision"] = revision + 1
        expected: dict[str, Any] = {
            "enrollmentId": valid_id("enrollment_id", document["enrollmentId"]),
            "revision": revision,
            "sequenceId": valid_id("sequence_id", document["sequenceId"]),
            "opportunityId": valid_id("opportunity_id", document["opportunityId"]),
        }
        if document["state"] == _ACTIVE:  # an ended enrollment stays ended
            expected["state"] = _ACTIVE
        written = self._collection.replace_one(expected, document).matched_count == 1
        return document, revision, written

    @translated("enrollment")
    def update(self, enrollment: Enrollment) -> Enrollment:
        checked = checked_document(enrollment, Enrollment, "enrollment")
        document, revision, written = self._replace(checked)
        if written:
            return Enrollment.from_document(document)
        enrollment_id = document["enrollmentId"]
        stored = self._collection.find_one({"enrollmentId": enrollment_id})
        if stored is None:
            raise NotFoundError(f"no enrollment {enrollment_id!r}")
        check_change(
            Enrollment.from_document(stored),
            Enrollment.from_document({**document, "revision": revision}),
        )
        raise StaleWriteError(  # pragma: no cover - changed and read back in between
            f"enrollment {enrollment_id!r} changed meanwhile: re-read it"
        )

    # ------------------------------------------------------------------ batches

    @translated("enrollment_ids")
    def get_many(self, enrollment_ids: Sequence[str]) -> dict[str, Enrollment]:
        """See :class:`~leadflow.ports.sequences.EnrollmentBatches`: one ``find`` with
        ``$in``."""
        ids = checked_ids(enrollment_ids)
        if not ids:
            return {}
        cursor = self._collection.find({"enrollmentId": {"$in": ids}})
        found = (Enrollment.from_document(document) for document in cursor)
        return {enrollment.enrollment_id: enrollment for enrollment in found}

    @translated("enrollments")
    def update_many(self, enrollments: Sequence[Enrollment]) -> builtins.list[Enrollment | None]:
        """See :class:`~leadflow.ports.sequences.EnrollmentBatches`: the single-document
        compare-and-set of :meth:`update` for each, one after the other (without a
        transaction, a shared write could not say which of its documents it changed)."""
        documents = [  # every one checked before the first is written
            checked_document(enrollment, Enrollment, "enrollments")
            for enrollment in checked_batch(enrollments)
        ]
        stored: builtins.list[Enrollment | None] = []
        for checked in documents:
            document, _, written = self._replace(checked)
            stored.append(Enrollment.from_document(document) if written else None)
        return stored

    # ------------------------------------------------------------------ send marks

    @translated("marks")
    def mark_sending(
        self, marks: Sequence[tuple[str, int]], *, at: datetime
    ) -> builtins.list[bool]:
        """See :class:`~leadflow.ports.sequences.EnrollmentSendMarks`: for each, one
        single-document ``update_one`` that ``$set``s the flag, the change time (at BSON's
        millisecond precision) and the revision where the revision and the state still match,
        one after the other (as :meth:`update_many`)."""
        checked, at = checked_marks(marks, at)
        when = ms(at)
        return [
            self._collection.update_one(
                {"enrollmentId": enrollment_id, "revision": revision, "state": _ACTIVE},
                {"$set": {"sending": True, "updatedAt": when, "revision": revision + 1}},
            ).matched_count
            == 1
            for enrollment_id, revision in checked
        ]

    # ------------------------------------------------------------------ steps

    @translated("enrollment_ids")
    def get_heads(self, enrollment_ids: Sequence[str]) -> dict[str, EnrollmentHead]:
        """See :class:`~leadflow.ports.sequences.EnrollmentSteps`: one ``find`` with ``$in``
        and a projection that leaves the history out."""
        ids = checked_ids(enrollment_ids)
        if not ids:
            return {}
        cursor = self._collection.find({"enrollmentId": {"$in": ids}}, _NO_HISTORY)
        found = (EnrollmentHead.from_document(document) for document in cursor)
        return {head.enrollment_id: head for head in found}

    @translated("moves")
    def move_many(
        self, moves: Sequence[tuple[EnrollmentHead, Sequence[StepRecord]]]
    ) -> builtins.list[EnrollmentHead | None]:
        """See :class:`~leadflow.ports.sequences.EnrollmentSteps`: for each, one
        single-document ``update_one`` where the revision (and the rest :meth:`update`
        checks) still match, that ``$set``s the head's fields (``$unset`` those it has not)
        and ``$push``es the records onto the history with ``$each`` and ``$slice: -200``,
        one after the other (as :meth:`update_many`)."""
        checked = [  # every one checked before the first is written
            (checked_document(head_of(head), EnrollmentHead, "moves"),
             [bson_precision(record.to_document()) for record in records])
            for head, records in checked_moves(moves)
        ]  # fmt: skip
        stored: builtins.list[EnrollmentHead | None] = []
        for document, records in checked:
            revision = int(document["revision"])
            document["revision"] = revision + 1
            expected: dict[str, Any] = {
                "enrollmentId": document["enrollmentId"],
                "revision": revision,
                "sequenceId": document["sequenceId"],
                "opportunityId": document["opportunityId"],
            }
            if document["state"] == _ACTIVE:  # an ended enrollment stays ended
                expected["state"] = _ACTIVE
            change: Document = {"$set": document}
            unset = {key: "" for key in _HEAD_KEYS if key not in document}
            if unset:
                change["$unset"] = unset
            if records:
                change["$push"] = {"history": {"$each": records, "$slice": -HISTORY_LIMIT}}
            written = self._collection.update_one(expected, change).matched_count == 1
            stored.append(EnrollmentHead.from_document(document) if written else None)
        return stored

    @translated("opportunity_id")
    def active_for(self, opportunity_id: str) -> builtins.list[Enrollment]:
        opportunity_id = valid_id("opportunity_id", opportunity_id)
        cursor = self._collection.find(
            {"opportunityId": opportunity_id, "state": _ACTIVE}, sort=self._ORDER
        )
        return [Enrollment.from_document(d) for d in cursor]

    @translated("enrollments")
    def list(
        self,
        *,
        sequence_id: str | None = None,
        opportunity_id: str | None = None,
        state: EnrollmentState | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> builtins.list[Enrollment]:
        query: Document = {}
        start = _optional_id("after", after)
        if start is not None:  # the page after that enrollment, in the listing's order
            found = self._collection.find_one({"enrollmentId": start}, {"enrolledAt": 1})
            if found is None:
                raise NotFoundError(f"no enrollment {start!r}")
            since = found["enrolledAt"]
            query["$or"] = [
                {"enrolledAt": {"$gt": since}},
                {"enrolledAt": since, "enrollmentId": {"$gt": start}},
            ]
        sequence = _optional_id("sequence_id", sequence_id)
        if sequence is not None:
            query["sequenceId"] = sequence
        opportunity = _optional_id("opportunity_id", opportunity_id)
        if opportunity is not None:
            query["opportunityId"] = opportunity
        if state is not None:
            query["state"] = enum_member(EnrollmentState, state, "state").value
        limit = valid_limit(limit, _MAX_LIST)
        cursor = self._collection.find(query, sort=self._ORDER, limit=limit)
        return [Enrollment.from_document(d) for d in cursor]
