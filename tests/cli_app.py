"""A host app for ``leadflow worker --app tests.cli_app:build`` in the CLI tests: the CLI's own
integrations, except a notifier that really "delivers" (a log line on ``leadflow.testapp``,
which the worker writes to stderr)."""

from __future__ import annotations

import dataclasses
import logging

from leadflow import LeadFlow
from leadflow.cli.integrations import log_integrations
from leadflow.ports import Notification, Storage

log = logging.getLogger("leadflow.testapp")


class _Notifier:
    def notify(self, notification: Notification) -> None:
        log.warning("app notified %s (%s)", notification.template, notification.key)


def build(storage: Storage) -> LeadFlow:
    return LeadFlow(storage, dataclasses.replace(log_integrations(), notifier=_Notifier()))
