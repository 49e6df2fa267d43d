"""leadflow's errors as HTTP answers, one body shape for all of them.

=========================================================  ======
error                                                      status
=========================================================  ======
no principal (the host's dependency yielded ``None``)      401
:class:`~leadflow.PermissionDeniedError`                   403
:class:`~leadflow.NotFoundError`                           404
:class:`~leadflow.ConflictError` (stale write, duplicate,  409
open activity exists, invalid state)
:class:`~leadflow.InvalidInputError` (incl.                422
:class:`~leadflow.RuleValidationError`), pydantic
``ValidationError``, FastAPI's ``RequestValidationError``
:class:`~leadflow.UnavailableError`                        503
any other :class:`~leadflow.LeadflowError`                 500
=========================================================  ======

The body is :class:`ErrorBody`: ``detail`` (a message, or for 422 a list of ``{loc, msg, type}``
as FastAPI writes it), ``error`` (the error's class name) and ``field`` (the offending input,
dotted, when there is one). A 500 says nothing of the cause (it is logged).

:class:`LeadflowRoute` applies the mapping to every route of a router built with it, whatever
the app's exception handlers, so the router needs nothing from the host's app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from ...errors import (
    ConflictError,
    InvalidInputError,
    LeadflowError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)

__all__ = [
    "ERROR_RESPONSES",
    "ErrorBody",
    "ErrorItem",
    "LeadflowRoute",
    "NotAuthenticatedError",
    "error_body",
    "error_response",
    "status_of",
]

log = logging.getLogger("leadflow.http")

_SOURCES: Final = frozenset({"body", "query", "path", "header", "cookie"})


class NotAuthenticatedError(Exception):
    """Raised by the router when the host's principal dependency yields ``None`` (401)."""


class ErrorItem(BaseModel):
    """One problem with the input: where (``loc``), what (``msg``), its kind (``type``)."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer: ``detail`` (a message, or the list of input problems for 422),
    ``error`` (the error's class name) and ``field`` (the offending input, when known)."""

    detail: str | list[ErrorItem]
    error: str
    field: str | None = None


def status_of(exc: BaseException) -> int:
    """The HTTP status for an error (see the module's table)."""
    if isinstance(exc, NotAuthenticatedError):
        return 401
    if isinstance(exc, PermissionDeniedError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, InvalidInputError | ValidationError | RequestValidationError):
        return 422
    if isinstance(exc, UnavailableError):
        return 503
    return 500


def _items(errors: Sequence[Any]) -> list[ErrorItem]:
    return [
        ErrorItem(
            loc=[p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
            msg=str(e.get("msg", "")),
            type=str(e.get("type", "value_error")),
        )
        for e in errors
    ]


def _field(loc: Sequence[str | int]) -> str | None:
    parts = list(loc)
    if parts and parts[0] in _SOURCES:
        parts = parts[1:]
    return ".".join(str(p) for p in parts) or None


def _wire_name(field: str) -> str:
    """A library field name as the wire spells it (``activity_id`` -> ``activityId``)."""
    return ".".join(to_camel(part) if "_" in part else part for part in field.split("."))


def error_body(exc: BaseException) -> ErrorBody:
    """The body for ``exc`` (see :class:`ErrorBody`)."""
    name = type(exc).__name__
    if isinstance(exc, RequestValidationError | ValidationError):
        items = (
            _items(exc.errors())
            if isinstance(exc, RequestValidationError)
            else _items(exc.errors(include_url=False, include_context=False, include_input=False))
        )
        return ErrorBody(detail=items, error=name, field=_field(items[0].loc) if items else None)
    if isinstance(exc, InvalidInputError):
        field = _wire_name(exc.field) if exc.field else None
        item = ErrorItem(loc=[field] if field else [], msg=str(exc), type="invalid_input")
        return ErrorBody(detail=[item], error=name, field=field)
    if isinstance(exc, NotAuthenticatedError):
        return ErrorBody(detail="not authenticated", error=name)
    if status_of(exc) == 500:
        return ErrorBody(detail="internal error", error="InternalError")
    if isinstance(exc, UnavailableError):
        return ErrorBody(detail="storage unavailable, retry later", error=name)
    return ErrorBody(detail=str(exc), error=name)


def error_response(exc: BaseException) -> JSONResponse:
    """``exc`` as a JSON response with its status (401 with ``WWW-Authenticate: Bearer``, 503
    with ``Retry-After``). Unexpected errors are logged with their traceback."""
    status = status_of(exc)
    if status == 500:
        log.error("leadflow request failed", exc_info=exc)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    elif status == 503:
        headers["Retry-After"] = "5"
    body = error_body(exc).model_dump(mode="json", exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


_MAPPED: Final = (
    LeadflowError,
    ValidationError,
    RequestValidationError,
    NotAuthenticatedError,
)


class LeadflowRoute(APIRoute):
    """An ``APIRoute`` that answers leadflow's errors, pydantic's and FastAPI's validation
    errors with :func:`error_response`. ``HTTPException`` (e.g. a host's 401 or 429) and any
    other exception pass through to the app."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def mapped(request: Request) -> Response:
            try:
                return await handler(request)
            except _MAPPED as exc:
                return error_response(exc)

        return mapped


def _described(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    401: _described("no principal: the caller is not authenticated"),
    403: _described("the principal's role may not perform the operation"),
    404: _described("not found, or not visible to the principal"),
    409: _described("conflicts with the stored state (version, duplicate, state)"),
    422: _described("invalid input; `field` names it"),
}
"""The error answers every route documents in OpenAPI."""
