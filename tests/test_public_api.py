from __future__ import annotations

import subprocess
import sys

import leadflow

REQUIRED = {
    # issue 2
    "Activity",
    "ActivityType",
    "Outcome",
    "FollowUpRule",
    "Condition",
    "Action",
    "Event",
    "RuleEngine",
    "default_rules",
    # issue 3
    "ActivityRepository",
    "RuleRepository",
    "ScheduledActionStore",
    "InMemoryActivityRepository",
    "InMemoryRuleRepository",
    "InMemoryScheduledActionStore",
    # issue 4
    "LeadFlow",
    "Principal",
    "Role",
    "HandlerRegistry",
    "Notifier",
    "Messenger",
    "OpportunityGateway",
    "TeamDirectory",
    "EventSink",
    # issue 5
    "Scheduler",
    "JobRunner",
    "LeadflowJobs",
    "APSchedulerAdapter",
}


def test_every_exported_name_exists_and_the_required_ones_are_exported() -> None:
    assert not REQUIRED - set(leadflow.__all__)
    for name in leadflow.__all__:
        assert getattr(leadflow, name) is not None, name


def test_import_is_light_and_side_effect_free() -> None:
    code = (
        "import sys, leadflow; "
        "heavy = [m for m in ('pymongo', 'apscheduler', 'holidays', 'pytest', 'hypothesis') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        leadflow.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as error:
        assert "NoSuchThing" in str(error)
    else:
        raise AssertionError("expected AttributeError")
