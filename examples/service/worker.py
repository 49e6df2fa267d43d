"""The periodic jobs and due actions in their own process, until SIGTERM or Ctrl-C.

Run (from the repository root, with the service's environment)::

    LEADFLOW_WORKER=off uvicorn --factory examples.service.app:create_app   # the API
    python -m examples.service.worker                                       # the jobs
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from leadflow import LeadflowJobs

from .app import build_flow
from .settings import ServiceSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    flow = build_flow(ServiceSettings.from_env())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with LeadflowJobs(flow).runner():
        stop.wait()


if __name__ == "__main__":
    main()
