"""The reference service: leadflow's router behind JWT authentication and a per-user rate limit.

Run it (from the repository root)::

    LEADFLOW_JWT_SECRET=$(python -c "import secrets; print(secrets.token_hex(32))") \
        uvicorn --factory examples.service.app:create_app --port 8000

OpenAPI at ``/docs``; Prometheus metrics at ``/metrics`` (``LEADFLOW_METRICS=0`` to turn off); the
periodic jobs run in the app's process unless ``LEADFLOW_WORKER=off`` (then run
``python -m examples.service.worker``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from leadflow import (
    LeadFlow,
    LeadflowJobs,
    PermissionDeniedError,
    Principal,
    Role,
    default_rules,
)
from leadflow.adapters import CallbackEventSink, InMemoryOpportunities, StaticTeamDirectory
from leadflow.contrib.fastapi import (
    LeadflowRoute,
    NotAuthenticatedError,
    events_router,
    router,
)
from leadflow.ports import Clock, Integrations, Message, Notification
from leadflow.ports.periodic import JobRun

from .auth import principal_dependency
from .settings import ServiceSettings
from .storage import storage_from_url

__all__ = ["create_app"]

log = logging.getLogger("leadflow.service")


class LogNotifier:
    """In-app notifications, logged (a real host pushes them to its users)."""

    def notify(self, notification: Notification) -> None:
        log.info("notify %s %s", notification.template, notification.recipients)


class LogMessenger:
    """E-mail and SMS, logged (a real host hands them to its provider)."""

    def send(self, message: Message) -> None:
        log.info("send %s %s to %s", message.channel, message.template, message.to)


def _log_event(name: str, payload: dict[str, Any]) -> None:
    log.info("event %s", name)


def default_integrations(reps: tuple[str, ...]) -> Integrations:
    """Logging adapters and an in-memory opportunity table (fed by ``PUT /api/opportunities``);
    a real host passes adapters over its CRM, notifier and mail provider."""
    return Integrations(
        notifier=LogNotifier(),
        messenger=LogMessenger(),
        opportunities=InMemoryOpportunities(),
        team=StaticTeamDirectory(reps),
        events=CallbackEventSink(_log_event),
    )


class OpportunityIn(BaseModel):
    """What the stand-in CRM keeps of an opportunity."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")

    owner: str | None = Field(default=None, max_length=128)
    status: str = Field(default="new", min_length=1, max_length=100)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)


def _crm_router(opportunities: InMemoryOpportunities, current: Any, prefix: str) -> APIRouter:
    """``PUT {prefix}/opportunities/{id}``: the stand-in for the host's CRM (admins only)."""
    api = APIRouter(prefix=prefix, tags=["stand-in CRM"], route_class=LeadflowRoute)

    @api.put("/opportunities/{opportunityId}", status_code=204)
    def put_opportunity(
        opportunity_id: Annotated[str, Path(alias="opportunityId", pattern=r"^[A-Za-z0-9_.:@-]+$")],
        body: OpportunityIn,
        who: Principal | None = Depends(current),  # noqa: B008
    ) -> None:
        if who is None:
            raise NotAuthenticatedError
        if who.role not in (Role.SUPER_ADMIN, Role.ADMIN):
            raise PermissionDeniedError("only admins may change opportunities")
        opportunities.add(
            opportunity_id, owner=body.owner, status=body.status, email=body.email,
            phone=body.phone,
        )  # fmt: skip

    return api


class ServiceMetrics:
    """Prometheus metrics at ``/metrics`` (a registry of the app's own): leadflow's (actions
    by type and outcome, due-action lag, parked actions, job runs and last successes) and the
    process's (CPU, memory, open files)."""

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            GCCollector,
            PlatformCollector,
            ProcessCollector,
        )

        from leadflow.contrib.prometheus import LeadflowMetrics

        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.leadflow = LeadflowMetrics(self.registry)

    def on_run(self, run: JobRun) -> None:
        self.leadflow.observe_job(run.job, run)

    def scrape(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def build_flow(
    settings: ServiceSettings,
    *,
    clock: Clock | None = None,
    integrations: Integrations | None = None,
    metrics: ServiceMetrics | None = None,
) -> LeadFlow:
    """The flow on the store ``settings.db_url`` names (counted by ``metrics`` when given),
    with the seed's default rules stored once (several instances starting together store them
    once)."""
    storage = storage_from_url(settings.db_url)
    if metrics is not None:
        metrics.leadflow.track_parked(storage)
        storage = metrics.leadflow.instrument(storage)
    flow = LeadFlow(
        storage,
        integrations or default_integrations(settings.reps),
        clock=clock,
    )
    if settings.seed_default_rules and not flow.storage.rules.list():
        flow.rules.ensure_defaults(default_rules())  # race-safe across instances
    return flow


def create_app(
    settings: ServiceSettings | None = None,
    *,
    clock: Clock | None = None,
    integrations: Integrations | None = None,
) -> FastAPI:
    """The service. ``settings`` default to :meth:`ServiceSettings.from_env`; ``clock`` and
    ``integrations`` are for tests and hosts. ``app.state.flow`` is the flow; while the app
    runs, ``app.state.jobs`` is the job runner (None with ``worker="off"``)."""
    settings = settings or ServiceSettings.from_env()
    metrics = ServiceMetrics() if settings.metrics else None
    flow = build_flow(settings, clock=clock, integrations=integrations, metrics=metrics)
    current = principal_dependency(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        on_run = metrics.on_run if metrics is not None else None
        runner = LeadflowJobs(flow).runner(on_run=on_run) if settings.worker == "inline" else None
        app.state.jobs = runner
        if runner is not None:
            runner.start()
        try:
            yield
        finally:
            if runner is not None:
                runner.stop()

    app = FastAPI(title="leadflow reference service", lifespan=lifespan)
    app.state.flow = flow
    app.state.settings = settings
    app.include_router(router(flow, principal=current, prefix=settings.prefix))
    app.include_router(events_router(flow, principal=current, prefix=settings.prefix))
    if isinstance(flow.integrations.opportunities, InMemoryOpportunities):
        app.include_router(_crm_router(flow.integrations.opportunities, current, settings.prefix))
    if metrics is not None:
        app.state.metrics = metrics
        app.add_api_route(
            "/metrics", metrics.scrape, methods=["GET"], include_in_schema=False, tags=["ops"]
        )
    return app
