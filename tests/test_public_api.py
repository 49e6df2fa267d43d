from __future__ import annotations

import subprocess
import sys

import leadflow

PUBLIC = {
    "Action",
    "ActionContext",
    "Activity",
    "ActivityFilter",
    "ActivityMetadata",
    "ActivitySort",
    "ActivityPriority",
    "ActivityState",
    "ActivityStatistics",
    "ActivityType",
    "CascadeDepthError",
    "Condition",
    "ConditionGroup",
    "ConflictError",
    "Delay",
    "DuplicateError",
    "Event",
    "EventType",
    "EventTypes",
    "FlowSettings",
    "FollowUpRule",
    "HandleResult",
    "HandlerError",
    "HandlerRegistry",
    "Integrations",
    "InvalidInputError",
    "InvalidStateError",
    "JobRunner",
    "JobSettings",
    "LeadFlow",
    "LeadflowError",
    "LeadflowJobs",
    "ManualClock",
    "NotFoundError",
    "OpenActivityExistsError",
    "OperatorRegistry",
    "Operations",
    "Outcome",
    "Page",
    "PermanentError",
    "PermissionDeniedError",
    "Policy",
    "Principal",
    "RetryPolicy",
    "Role",
    "RuleEngine",
    "RuleValidationError",
    "ScheduledAction",
    "ScheduledActionState",
    "Scheduler",
    "StaleWriteError",
    "Storage",
    "StorageError",
    "SystemClock",
    "Trigger",
    "UnavailableError",
    "UnsafeQueryError",
    "WorkingCalendar",
    "__version__",
    "default_rules",
}
"""The deliberate public API: a change here is a change of the library's promise."""


def test_the_public_api_is_exactly_this() -> None:
    assert set(leadflow.__all__) == PUBLIC
    assert len(leadflow.__all__) == len(PUBLIC)  # no name listed twice
    assert 40 <= len(PUBLIC) <= 60
    for name in leadflow.__all__:
        assert getattr(leadflow, name) is not None, name


def test_backend_and_testing_names_live_in_their_own_modules() -> None:
    import leadflow.adapters
    import leadflow.ports
    import leadflow.stores.memory
    import leadflow.testing

    assert hasattr(leadflow.stores.memory, "memory_storage")
    assert hasattr(leadflow.testing, "RecordingNotifier")
    assert hasattr(leadflow.ports, "ActivityRepository")
    assert hasattr(leadflow.adapters, "CallbackEventSink")
    for hidden in ("InMemoryActivityRepository", "RecordingNotifier", "MongoActivityRepository"):
        assert not hasattr(leadflow, hidden), hidden


def test_import_is_light_and_side_effect_free() -> None:
    code = (
        "import sys, leadflow; "
        "heavy = [m for m in ('pymongo', 'apscheduler', 'holidays', 'pytest', 'hypothesis', "
        "'sqlalchemy', 'fastapi', 'celery', 'sortedcontainers', 'click', 'rich', 'typer', "
        "'prometheus_client', 'kombu', 'redis') "
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
