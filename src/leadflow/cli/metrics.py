"""``leadflow worker --metrics-port N``: the worker's Prometheus metrics over HTTP (the
``metrics`` extra: prometheus-client), through :mod:`leadflow.contrib.prometheus`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..ports import Storage
from ..ports.periodic import JobRun
from ._base import fail

__all__ = ["WorkerMetrics", "serve_metrics"]

log = logging.getLogger("leadflow.cli")


@dataclass(slots=True)
class WorkerMetrics:
    """What :func:`serve_metrics` set up: ``storage`` is the instrumented storage to build the
    flow on (action outcomes and due lag are counted on every path), ``on_run`` counts job
    runs, ``url`` is where Prometheus scrapes."""

    storage: Storage
    metrics: Any  # leadflow.contrib.prometheus.LeadflowMetrics
    url: str

    def on_run(self, run: JobRun) -> None:
        self.metrics.observe_job(run.job, run)


@contextlib.contextmanager
def serve_metrics(storage: Storage, port: int, *, host: str = "0.0.0.0") -> Iterator[WorkerMetrics]:
    """Serve leadflow's metrics (and the process's: CPU, memory, open files) at
    ``http://host:port/metrics`` until the block ends; ``port`` 0 takes a free one (logged).
    A registry of its own, so nothing else in the process registers into it. A missing
    ``metrics`` extra or a port that cannot be bound is a one-line :class:`CliError`."""
    try:
        from prometheus_client import (
            CollectorRegistry,
            GCCollector,
            PlatformCollector,
            ProcessCollector,
            start_http_server,
        )

        from ..contrib.prometheus import LeadflowMetrics
    except ImportError:
        fail("--metrics-port needs the metrics extra: pip install 'leadflow[metrics]'")
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    metrics = LeadflowMetrics(registry)
    instrumented = metrics.instrument(storage)
    metrics.track_parked(storage)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        fail(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}")
    bound = server.server_port
    url = f"http://{host}:{bound}/metrics"
    log.info("metrics at %s", url)
    try:
        yield WorkerMetrics(instrumented, metrics, url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
