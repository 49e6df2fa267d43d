"""The exceptions leadflow raises.

Every error a caller can act on derives from :class:`LeadflowError`::

    LeadflowError
     ├── InvalidInputError (ValueError)        bad argument, filter, id or event; names the field
     │    ├── RuleValidationError              unloadable rule; names rule and condition
     │    └── UnsafeQueryError                 a value that would act as a MongoDB operator
     ├── NotFoundError (LookupError)           no such object (or not visible to you)
     ├── ConflictError                         the write collides with the stored state
     │    ├── StaleWriteError                  optimistic concurrency: the version moved on
     │    ├── DuplicateError                   the id is taken
     │    ├── OpenActivityExistsError          another open activity holds the same open key
     │    └── InvalidStateError                e.g. completing an activity twice
     ├── PermissionDeniedError (PermissionError)  the principal's role does not allow the operation
     ├── CascadeDepthError                     rules keep triggering each other
     ├── HandlerError                          an action handler failed (wraps the cause)
     │    └── PermanentError                   retrying cannot help: park the action at once
     └── StorageError                          the backend failed (wraps the driver's error)
          └── UnavailableError                 the backend cannot be reached; retry later

pydantic's ``ValidationError`` is raised as is for malformed models; it names the field too.
"""

from __future__ import annotations


class LeadflowError(Exception):
    """Base class of every error leadflow raises on purpose."""


class InvalidInputError(LeadflowError, ValueError):
    """An argument is malformed. ``field`` names the offending input when there is one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class RuleValidationError(InvalidInputError):
    """A rule cannot be loaded: the message names the rule, where in it, and the problem."""

    def __init__(self, rule_id: str, location: str, problem: str) -> None:
        self.rule_id = rule_id
        self.location = location
        self.problem = problem
        Exception.__init__(self, f"rule {rule_id!r}, {location}: {problem}")
        self.field = location


class UnsafeQueryError(InvalidInputError):
    """A caller-supplied value would be interpreted by the database as an operator."""


class NotFoundError(LeadflowError, LookupError):
    """The object does not exist, or the caller may not know that it exists."""


class ConflictError(LeadflowError):
    """The write conflicts with what is stored."""


class StaleWriteError(ConflictError):
    """The object changed since it was read (its version moved on); re-read and retry."""


class DuplicateError(ConflictError):
    """An object with this id already exists."""


class OpenActivityExistsError(ConflictError):
    """Another open (not completed) activity holds the same ``open_key``: at most one open
    activity per key (e.g. one open automated follow-up per opportunity and rule)."""


class InvalidStateError(ConflictError):
    """The object's state does not allow the operation (e.g. completing a completed activity)."""


class PermissionDeniedError(LeadflowError, PermissionError):
    """The principal's role does not allow the operation."""


class CascadeDepthError(LeadflowError):
    """Events caused by rules kept triggering more rules beyond the configured depth."""


class HandlerError(LeadflowError):
    """An action handler raised; the original exception is the ``__cause__``."""


class PermanentError(HandlerError):
    """Raised by an action handler when retrying cannot help (an unknown opportunity, params
    that make no sense): the action is parked at once with this message as the reason.

    Handlers raising :class:`InvalidInputError` or :class:`NotFoundError` are treated the same
    way; any other exception is transient and retried with backoff.
    """


class StorageError(LeadflowError):
    """The storage backend failed in a way leadflow cannot describe better; the driver's
    exception is the ``__cause__``."""


class UnavailableError(StorageError):
    """The storage backend cannot be reached (connection lost, server restarting, timeout).
    Nothing was written, or the write is safe to repeat; retry later."""
