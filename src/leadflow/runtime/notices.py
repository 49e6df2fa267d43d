"""What the periodic jobs' notifications share: an activity as a notification item, activities
grouped by assignee, and sending one notification to the notifier and the event sink."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..documents import copy_document
from ..models import Activity
from ..ports import Notification
from ..ports.periodic import JobContext

if TYPE_CHECKING:
    from .flow import LeadFlow

__all__ = ["activity_item", "by_assignee", "send_notice"]

log = logging.getLogger("leadflow.scheduling")


def activity_item(activity: Activity) -> dict[str, Any]:
    """An activity as one item of a job's notification."""
    return {
        "activityId": activity.activity_id,
        "opportunityId": activity.opportunity_id,
        "customerId": activity.customer_id,
        "activityType": activity.activity_type.value,
        "subject": activity.subject,
        "dueDate": activity.due_date,
        "assignedTo": activity.assigned_to,
    }


def by_assignee(activities: Iterable[Activity]) -> dict[str | None, list[Activity]]:
    """Activities grouped by assignee: assignees in name order, the unassigned last."""
    groups: dict[str | None, list[Activity]] = {}
    for activity in activities:
        groups.setdefault(activity.assigned_to, []).append(activity)
    return dict(sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or "")))


def send_notice(
    flow: LeadFlow,
    template: str,
    key: str,
    recipient: str | None,
    payload: dict[str, Any],
    ctx: JobContext,
    *,
    notify: bool,
) -> bool:
    """The notifier (when ``notify``), then the event sink. False if the notifier raised."""
    if notify:
        try:
            # The notifier gets its own copy: what it does to it never reaches the sink.
            flow.integrations.notifier.notify(
                Notification(
                    key,
                    template,
                    (recipient,) if recipient else (),
                    None,
                    copy_document(payload),
                )
            )
        except Exception:
            log.exception(
                "notifier failed for %s",
                key,
                extra={"job": ctx.job.name, "slot": ctx.slot, "notification_key": key},
            )
            return False
    flow.emit(f"notification.{template}", payload)
    return True
