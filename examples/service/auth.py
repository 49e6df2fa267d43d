"""Authentication (a JWT bearer token: ``sub`` is the user, ``role`` one of leadflow's roles)
and the per-user rate limit (the ``limits`` library's moving window), as one FastAPI
dependency that yields the caller's :class:`~leadflow.Principal`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import jwt
from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from leadflow import InvalidInputError, Principal, Role

from .settings import ServiceSettings

__all__ = ["issue_token", "principal_dependency"]

_bearer = HTTPBearer(auto_error=False)


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, detail=reason, headers={"WWW-Authenticate": "Bearer"})


def issue_token(
    settings: ServiceSettings, user_id: str, role: Role | str, *, ttl: float = 3600.0
) -> str:
    """A token for ``user_id`` with ``role`` (for tests and local use; production tokens come
    from the identity provider)."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "role": str(role), "iat": now, "exp": now + ttl}
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)


def principal_dependency(settings: ServiceSettings) -> Callable[..., Principal | None]:
    """The dependency the router is given: ``None`` without a token (the router answers 401),
    401 for a bad or expired token or an unknown role, 429 (with ``Retry-After``) beyond the
    rate limit for that user."""
    limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage))
    limit = parse(settings.rate_limit)

    def current_principal(
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Principal | None:
        if credentials is None:
            return None
        try:
            claims = jwt.decode(
                credentials.credentials,
                settings.jwt_secret,
                algorithms=[settings.jwt_algorithm],
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                options={"require": ["exp", "sub", "role"]},
            )
            principal = Principal(str(claims["sub"]), Role(claims["role"]))
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"invalid token: {exc}") from None
        except (ValueError, InvalidInputError):
            raise _unauthorized("invalid token: unknown role or malformed user id") from None
        if not limiter.hit(limit, "user", principal.user_id):
            reset = limiter.get_window_stats(limit, "user", principal.user_id).reset_time
            wait = max(1, math.ceil(reset - time.time()))
            raise HTTPException(
                429, detail=f"rate limit of {settings.rate_limit} exceeded",
                headers={"Retry-After": str(wait)},
            )  # fmt: skip
        return principal

    return current_principal
