"""Prometheus metrics for leadflow (the ``metrics`` extra: prometheus-client).

Nothing in leadflow imports this module; the host wires it::

    from leadflow.contrib.prometheus import LeadflowMetrics

    metrics = LeadflowMetrics()                        # registers on prometheus_client's REGISTRY
    storage = metrics.instrument(sql_storage(url))     # action outcomes and due lag, every path
    flow = LeadFlow(storage, integrations)
    result = flow.handle(event)
    metrics.observe_handle(result)                     # events handled, rules matched
    metrics.track_parked(storage)                      # a gauge read at scrape time

:func:`leadflow.contrib.celery.install` takes ``metrics=`` and calls ``observe_handle``,
``observe_due`` and ``observe_job`` itself.

Metrics (``leadflow_`` prefix by default):

==========================================  =========  ===================================
name                                        type       labels
==========================================  =========  ===================================
``leadflow_events_handled_total``           counter    ``event_type``
``leadflow_rules_matched_total``            counter    ``rule_id``
``leadflow_actions_total``                  counter    ``action_type``, ``outcome``
                                                       (``done``, ``failed``, ``parked``)
``leadflow_due_action_lag_seconds``         histogram  claim time minus due time
``leadflow_due_batches_total``              counter    ``full`` (``true`` / ``false``)
``leadflow_job_runs_total``                 counter    ``job``, ``status``
``leadflow_job_skips_total``                counter    ``job`` (slot taken, not due, late)
``leadflow_job_lateness_seconds``           histogram  ``job``
``leadflow_parked_actions``                 gauge      (after :meth:`track_parked`)
``leadflow_unhandled_due_actions``          gauge      ``action_type`` (after
                                                       :meth:`track_unhandled`)
==========================================  =========  ===================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..clock import SystemClock
from ..ports import Clock, ScheduledActionStore, Storage
from ..ports.periodic import JobRun, JobStatus
from ..records import ScheduledAction, ScheduledActionState
from ..runtime.health import unhandled_action_types
from ..runtime.results import DueRunReport, HandleResult

__all__ = ["LeadflowMetrics", "MeteredScheduledActions"]

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class LeadflowMetrics:
    """Leadflow's Prometheus metrics on ``registry`` (default: prometheus_client's global one;
    build one instance per registry and process, as for any prometheus-client metric)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, namespace: str = "leadflow"
    ) -> None:
        self.registry = registry if registry is not None else REGISTRY
        reg = self.registry
        self.events_handled = Counter(
            "events_handled", "Events handled", ["event_type"], namespace=namespace, registry=reg
        )
        self.rules_matched = Counter(
            "rules_matched", "Rule matches", ["rule_id"], namespace=namespace, registry=reg
        )
        self.actions = Counter(
            "actions",
            "Scheduled action runs by outcome (done, failed: retried later, parked)",
            ["action_type", "outcome"],
            namespace=namespace,
            registry=reg,
        )
        self.due_lag = Histogram(
            "due_action_lag_seconds",
            "How long after its due time an action was claimed",
            namespace=namespace,
            registry=reg,
            buckets=LAG_BUCKETS,
        )
        self.due_batches = Counter(
            "due_batches", "run_due batches", ["full"], namespace=namespace, registry=reg
        )
        self.job_runs = Counter(
            "job_runs", "Job slot runs", ["job", "status"], namespace=namespace, registry=reg
        )
        self.job_skips = Counter(
            "job_skips",
            "run_job calls that ran nothing: reason taken (another worker has the slot) or "
            "late (called beyond the slot's grace: a missed slot)",
            ["job", "reason"],
            namespace=namespace,
            registry=reg,
        )
        self.job_last_success = Gauge(
            "job_last_success_timestamp_seconds",
            "When this process last finished a run of the job successfully (Unix time)",
            ["job"],
            namespace=namespace,
            registry=reg,
        )
        self.job_lateness = Histogram(
            "job_lateness_seconds",
            "How long after its slot a job run started",
            ["job"],
            namespace=namespace,
            registry=reg,
            buckets=LAG_BUCKETS,
        )
        self._namespace = namespace

    # ------------------------------------------------------------------ observers

    def observe_handle(self, result: HandleResult) -> None:
        """Count one handled event (and its cascades) and the rules it matched."""
        pending = [result]
        while pending:
            current = pending.pop()
            self.events_handled.labels(current.event.type).inc()
            for rule_id in current.matched_rules:
                self.rules_matched.labels(rule_id).inc()
            pending.extend(current.cascades)

    def observe_due(self, report: DueRunReport, batch: int | None = None) -> None:
        """Count one ``run_due`` batch (action outcomes come from :meth:`instrument`)."""
        full = batch is not None and report.claimed >= batch
        self.due_batches.labels("true" if full else "false").inc()

    def observe_job(self, name: str, run: JobRun | None, reason: str = "taken") -> None:
        """Count one ``run_job`` call: a run by status (a success also sets the job's
        last-success time), or a skip when nothing ran, with its ``reason`` (``taken`` or
        ``late``)."""
        if run is None:
            self.job_skips.labels(name, reason).inc()
            return
        self.job_runs.labels(run.job, run.status.value).inc()
        self.job_lateness.labels(run.job).observe(max(run.lateness.total_seconds(), 0.0))
        if run.status is JobStatus.SUCCEEDED:
            finished = run.started_at + run.duration
            self.job_last_success.labels(run.job).set(finished.timestamp())

    def observe_action(self, action: ScheduledAction) -> None:
        """Count an action that reached ``done``, ``pending`` again (failed) or ``parked``."""
        outcome = {
            ScheduledActionState.DONE: "done",
            ScheduledActionState.PENDING: "failed",
            ScheduledActionState.PARKED: "parked",
        }.get(action.state)
        if outcome is not None:
            self.actions.labels(action.action_type, outcome).inc()

    # ------------------------------------------------------------------ wiring

    def instrument(self, storage: Storage) -> Storage:
        """``storage`` with its scheduled-action store observed: every claim records the due
        lag, every ``mark_done`` / ``mark_failed`` an outcome, whichever path ran the action
        (``handle``, ``run_due``, a job, an outbox delivery). Behaviour is unchanged."""
        metered = MeteredScheduledActions(storage.scheduled, self)
        return dataclasses.replace(storage, scheduled=metered)

    def track_parked(self, storage: Storage, *, limit: int = 10_000) -> Collector:
        """Register a gauge ``<namespace>_parked_actions`` counted from ``storage`` at each
        scrape (up to ``limit``); returns the collector (unregister it to stop)."""
        collector = _ParkedCollector(storage.scheduled, f"{self._namespace}_parked_actions", limit)
        self.registry.register(collector)
        return collector

    def track_unhandled(
        self,
        storage: Storage,
        runnable: Collection[str],
        *,
        clock: Clock | None = None,
        limit: int = 1000,
    ) -> Collector:
        """Register a gauge ``<namespace>_unhandled_due_actions`` with an ``action_type``
        label: the pending actions due by now of each type not in ``runnable`` (this worker's
        ``flow.handlers.runnable()``), counted at each scrape among the ``limit`` due soonest
        (:func:`leadflow.runtime.unhandled_action_types`). A value that stays above zero means
        no running worker handles that type. Returns the collector."""
        collector = _UnhandledCollector(
            storage.scheduled,
            frozenset(runnable),
            clock or SystemClock(),
            f"{self._namespace}_unhandled_due_actions",
            limit,
        )
        self.registry.register(collector)
        return collector


class MeteredScheduledActions:
    """A :class:`~leadflow.ports.ScheduledActionStore` that reports to :class:`LeadflowMetrics`
    and otherwise delegates every call unchanged."""

    def __init__(self, inner: ScheduledActionStore, metrics: LeadflowMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def claim_due(self, now: datetime, **kwargs: Any) -> list[ScheduledAction]:
        claimed = self._inner.claim_due(now, **kwargs)
        for action in claimed:
            self._metrics.due_lag.observe(max((now - action.due_at).total_seconds(), 0.0))
        return claimed

    def mark_done(self, action_id: str, *, worker: str, now: datetime) -> ScheduledAction:
        done = self._inner.mark_done(action_id, worker=worker, now=now)
        self._metrics.observe_action(done)
        return done

    def mark_done_many(
        self, action_ids: Any, *, worker: str, now: datetime
    ) -> list[ScheduledAction]:
        done = self._inner.mark_done_many(action_ids, worker=worker, now=now)
        for action in done:
            self._metrics.observe_action(action)
        return done

    def mark_failed(self, action_id: str, **kwargs: Any) -> ScheduledAction:
        updated = self._inner.mark_failed(action_id, **kwargs)
        self._metrics.observe_action(updated)
        return updated

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ParkedCollector(Collector):
    def __init__(self, store: ScheduledActionStore, name: str, limit: int) -> None:
        self._store = store
        self._name = name
        self._limit = limit

    def collect(self) -> Iterator[GaugeMetricFamily]:
        parked = self._store.list(ScheduledActionState.PARKED, limit=self._limit)
        yield GaugeMetricFamily(
            self._name,
            f"Parked scheduled actions (counted up to {self._limit})",
            value=len(parked),
        )


class _UnhandledCollector(Collector):
    def __init__(
        self,
        store: ScheduledActionStore,
        runnable: frozenset[str],
        clock: Clock,
        name: str,
        limit: int,
    ) -> None:
        self._store = store
        self._runnable = runnable
        self._clock = clock
        self._name = name
        self._limit = limit

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = unhandled_action_types(
            self._store, self._runnable, now=self._clock.now(), limit=self._limit
        )
        family = GaugeMetricFamily(
            self._name,
            "Due pending actions of types this worker does not run (among the "
            f"{self._limit} due soonest)",
            labels=["action_type"],
        )
        for action_type, count in counts.items():
            family.add_metric([action_type], count)
        yield family
