"""FastAPI glue (the ``fastapi`` extra): the seed's endpoints as a router on the role-checked
operations, the error mapping, and the rule format's JSON Schema.

.. code-block:: python

    app.include_router(router(flow, principal=current_principal))

``current_principal`` is the host's dependency yielding a :class:`~leadflow.Principal` (or
``None``: 401). See docs/http.md.
"""

from __future__ import annotations

from ...runtime.schema import rule_schema
from .errors import (
    ERROR_RESPONSES,
    ErrorBody,
    ErrorItem,
    LeadflowRoute,
    NotAuthenticatedError,
    error_response,
    status_of,
)
from .routes import PrincipalDependency, events_router, router

__all__ = [
    "ERROR_RESPONSES",
    "ErrorBody",
    "ErrorItem",
    "LeadflowRoute",
    "NotAuthenticatedError",
    "PrincipalDependency",
    "error_response",
    "events_router",
    "router",
    "rule_schema",
    "status_of",
]
