# Depends() as a parameter default is how FastAPI declares a dependency whose callable is only
# known when the router is built (see routes.py).
# ruff: noqa: B008
"""The sequence routes (included by :func:`leadflow.contrib.fastapi.router`): sequences,
enrollments, the A/B report and the opportunity's timeline with its sequence steps, each on
one role-checked operation of ``Operations.sequences``.

=======  ==========================================  ===========================================
method   path                                        operation
=======  ==========================================  ===========================================
POST     ``/sequences``                              create (version 1; ``?status=draft``)
GET      ``/sequences``                              list (current versions)
GET      ``/sequences/schema``                       the sequence format's JSON Schema
GET      ``/sequences/{sequenceId}``                 get (``?version=``)
POST     ``/sequences/{sequenceId}/publish``         a new version (body: the definition, or none
                                                     to publish the current one again);
                                                     ``?inFlight=keep|move|end&status=``
POST     ``/sequences/{sequenceId}/pause``           pause (also ``resume``, ``archive``)
POST     ``/sequences/{sequenceId}/enrollments``     enroll, in bulk, ``dryRun`` writes nothing
POST     ``/sequences/{sequenceId}/enrollments/matching``  the leads a filter takes, ``dryRun``
DELETE   ``/enrollments/{enrollmentId}``             unenroll (answers the ended enrollment)
GET      ``/opportunities/{opportunityId}/enrollments``  the opportunity's enrollments, with
                                                     each step's history
GET      ``/opportunities/{opportunityId}/timeline``  activities and sequence steps, in time order
GET      ``/sequences/{sequenceId}/report``          totals and A/B results (``?minPerArm=``)
=======  ==========================================  ===========================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field

from ...access import Operations, Principal
from ...fields import Id
from ...runtime.sequence_admin import EnrollmentReport, InFlight
from ...runtime.sequence_matching import LeadFilter
from ...runtime.sequence_report import SequenceReport
from ...runtime.sequence_schema import sequence_schema
from ...runtime.sequence_timeline import TimelineEntry
from ...sequences import Enrollment, SequenceDefinition
from .bodies import _Wire

__all__ = [
    "EnrollIn",
    "EnrollmentOutcomeOut",
    "EnrollmentReportOut",
    "PublishQuery",
    "ReportQuery",
    "SequenceCreateQuery",
    "VersionQuery",
    "sequence_routes",
]

SequenceIdPath = Annotated[str, Path(alias="sequenceId")]
EnrollmentIdPath = Annotated[str, Path(alias="enrollmentId")]
OpportunityIdPath = Annotated[str, Path(alias="opportunityId")]


class SequenceCreateQuery(_Wire):
    """``status``: ``active`` (the default: it enrolls at once) or ``draft``."""

    status: Literal["active", "draft"] = "active"


class PublishQuery(SequenceCreateQuery):
    """``inFlight``: what the new version does to enrollments on older ones (``keep`` them on
    theirs, ``move`` them to the new one at the same step, ``end`` them)."""

    in_flight: InFlight = InFlight.KEEP


class ListQuery(_Wire):
    """``running``: each sequence's version that runs (the latest not a draft) instead of its
    latest."""

    running: bool = False


class VersionQuery(_Wire):
    """``version``: that one; ``running``: the version that runs (the latest not a draft)."""

    version: int | None = Field(default=None, ge=1)
    running: bool = False


class ReportQuery(_Wire):
    """``minPerArm``: the enrollments each variant needs before a verdict."""

    min_per_arm: int = Field(default=30, ge=1, le=100_000)


class EnrollIn(_Wire):
    """Opportunities to enroll (1 to 10,000); ``dryRun``: write nothing, say who would enter."""

    opportunity_ids: list[Id] = Field(min_length=1, max_length=10_000)
    dry_run: bool = False


class EnrollMatchingIn(LeadFilter):
    """The leads to enroll by filter (those leadflow saw arrive in ``[arrivedFrom,
    arrivedBefore)``, of ``sources`` / ``owners`` when given; at most 10,000); ``dryRun``:
    write nothing, say who would enter."""

    dry_run: bool = False


class EnrollmentOutcomeOut(_Wire):
    """What the enrollment did for one opportunity: ``enrolled``, ``reentered``,
    ``already_enrolled``, ``not_reenrolled``, or in a dry run ``would_enroll``."""

    opportunity_id: str
    enrollment_id: str | None
    what: str


class EnrollmentReportOut(_Wire):
    """A (bulk) enrollment, done or (``dryRun``) previewed."""

    sequence_id: str
    dry_run: bool
    entering: int
    outcomes: list[EnrollmentOutcomeOut]

    @classmethod
    def of(cls, report: EnrollmentReport) -> EnrollmentReportOut:
        return cls(
            sequence_id=report.sequence_id,
            dry_run=report.dry_run,
            entering=report.entering,
            outcomes=[
                EnrollmentOutcomeOut(
                    opportunity_id=opportunity_id,
                    enrollment_id=outcome.enrollment_id or None,
                    what=outcome.what,
                )
                for opportunity_id, outcome in report.outcomes.items()
            ],
        )


def sequence_routes(api: APIRouter, ops: Operations, current: Callable[..., Principal]) -> None:
    """Add the sequence routes (see the module docstring) to ``api``."""
    opts: dict[str, Any] = {"response_model_exclude_none": True}
    base = "/sequences"

    @api.post(base, status_code=201, response_model=SequenceDefinition,
              summary="Create a sequence (version 1)", **opts)  # fmt: skip
    def create_sequence(
        body: SequenceDefinition,
        query: Annotated[SequenceCreateQuery, Query()],
        who: Principal = Depends(current),
    ) -> Any:
        return ops.sequences.create(who, body, status=query.status)

    @api.get(base, response_model=list[SequenceDefinition],
             summary="List sequences (each one's current version, or ?running=true)",
             **opts)  # fmt: skip
    def list_sequences(
        query: Annotated[ListQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        return ops.sequences.list(who, running=query.running)

    @api.get(
        f"{base}/schema",
        response_model=dict[str, Any],
        summary="JSON Schema of the sequence format",
        description="Generated from this flow's operators, event types and action types. Any "
        "authenticated caller may read it.",
    )
    def get_sequence_schema(who: Principal = Depends(current)) -> Any:
        return sequence_schema(ops.flow)

    @api.get(f"{base}/{{sequenceId}}", response_model=SequenceDefinition,
             summary="One sequence (the current version, ?version= or ?running=true)",
             **opts)  # fmt: skip
    def get_sequence(
        sequence_id: SequenceIdPath,
        query: Annotated[VersionQuery, Query()],
        who: Principal = Depends(current),
    ) -> Any:
        return ops.sequences.get(who, sequence_id, query.version, running=query.running)

    @api.post(f"{base}/{{sequenceId}}/publish", response_model=SequenceDefinition,
              summary="Publish a new version", **opts)  # fmt: skip
    def publish_sequence(
        sequence_id: SequenceIdPath,
        query: Annotated[PublishQuery, Query()],
        body: SequenceDefinition | None = None,
        who: Principal = Depends(current),
    ) -> Any:
        return ops.sequences.publish(
            who, sequence_id, body, in_flight=query.in_flight, status=query.status
        )

    def status_route(change: Literal["pause", "resume", "archive"], summary: str) -> None:
        @api.post(f"{base}/{{sequenceId}}/{change}", response_model=SequenceDefinition,
                  summary=summary, name=f"{change}_sequence", **opts)  # fmt: skip
        def set_status(sequence_id: SequenceIdPath, who: Principal = Depends(current)) -> Any:
            return getattr(ops.sequences, change)(who, sequence_id)

    status_route("pause", "Pause (no entries; due steps held)")
    status_route("resume", "Resume (held steps run now)")
    status_route("archive", "Archive (no entries; active enrollments end)")

    @api.post(f"{base}/{{sequenceId}}/enrollments", response_model=EnrollmentReportOut,
              summary="Enroll opportunities (bulk, with a dry run)", **opts)  # fmt: skip
    def enroll(
        sequence_id: SequenceIdPath, body: EnrollIn, who: Principal = Depends(current)
    ) -> Any:
        report = ops.sequences.enroll(who, sequence_id, body.opportunity_ids, dry_run=body.dry_run)
        return EnrollmentReportOut.of(report)

    @api.post(f"{base}/{{sequenceId}}/enrollments/matching", response_model=EnrollmentReportOut,
              summary="Enroll the leads a filter takes (bulk, with a dry run)", **opts)  # fmt: skip
    def enroll_matching(
        sequence_id: SequenceIdPath, body: EnrollMatchingIn, who: Principal = Depends(current)
    ) -> Any:
        where = LeadFilter.model_validate(body.model_dump(exclude={"dry_run"}))
        report = ops.sequences.enroll_matching(who, sequence_id, where, dry_run=body.dry_run)
        return EnrollmentReportOut.of(report)

    @api.get(f"{base}/{{sequenceId}}/report", response_model=SequenceReport,
             summary="Totals and A/B results", **opts)  # fmt: skip
    def sequence_report(
        sequence_id: SequenceIdPath,
        query: Annotated[ReportQuery, Query()],
        who: Principal = Depends(current),
    ) -> Any:
        return ops.sequences.report(who, sequence_id, min_per_arm=query.min_per_arm)

    @api.delete("/enrollments/{enrollmentId}", response_model=Enrollment,
                summary="Unenroll (answers the ended enrollment)", **opts)  # fmt: skip
    def unenroll(enrollment_id: EnrollmentIdPath, who: Principal = Depends(current)) -> Any:
        return ops.sequences.unenroll(who, enrollment_id)

    @api.get("/opportunities/{opportunityId}/enrollments", response_model=list[Enrollment],
             summary="An opportunity's enrollments, with each step's history", **opts)  # fmt: skip
    def opportunity_enrollments(
        opportunity_id: OpportunityIdPath, who: Principal = Depends(current)
    ) -> Any:
        return ops.sequences.enrollments(who, opportunity_id)

    @api.get("/opportunities/{opportunityId}/timeline", response_model=list[TimelineEntry],
             summary="Activities and sequence steps, in time order", **opts)  # fmt: skip
    def opportunity_timeline(
        opportunity_id: OpportunityIdPath, who: Principal = Depends(current)
    ) -> Any:
        return ops.sequences.timeline(who, opportunity_id)
