"""The service's settings, read from the environment (``LEADFLOW_*``) or given in code."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from leadflow import InvalidInputError

Worker = Literal["inline", "off"]


@dataclass(frozen=True)
class ServiceSettings:
    """What the reference service needs.

    ``db_url``: ``memory://`` (the default), ``sqlite:///leadflow.db`` or ``postgresql+psycopg://...``
    (the ``sql`` extra), ``mongodb://host/dbname``. ``jwt_secret``: the HS256 key the tokens are
    signed with (at least 32 bytes); or ``jwt_public_key`` with ``jwt_algorithm="RS256"``.
    ``rate_limit``: per user, in the ``limits`` notation; ``rate_limit_storage``: ``memory://``
    for one process, ``redis://host:6379`` when several share the limit. ``worker``:
    ``inline`` runs the periodic jobs (and due actions) in the app's process, ``off`` leaves
    them to ``python -m examples.service.worker``. ``metrics``: serve Prometheus metrics at
    ``/metrics`` (the ``metrics`` extra: prometheus-client).
    """

    jwt_secret: str = field(repr=False)
    db_url: str = "memory://"
    jwt_algorithm: str = "HS256"
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    rate_limit: str = "100/minute"
    rate_limit_storage: str = "memory://"
    worker: Worker = "inline"
    reps: tuple[str, ...] = ()
    seed_default_rules: bool = True
    prefix: str = "/api"
    metrics: bool = True

    def __post_init__(self) -> None:
        if self.jwt_algorithm.startswith("HS") and len(self.jwt_secret.encode()) < 32:
            raise InvalidInputError("use a secret of at least 32 bytes", field="jwt_secret")
        if self.worker not in ("inline", "off"):
            raise InvalidInputError("inline or off", field="worker")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        """Settings from ``LEADFLOW_JWT_SECRET`` (required), ``LEADFLOW_DB_URL``,
        ``LEADFLOW_JWT_ALGORITHM``, ``LEADFLOW_JWT_AUDIENCE``, ``LEADFLOW_JWT_ISSUER``,
        ``LEADFLOW_RATE_LIMIT``, ``LEADFLOW_RATE_LIMIT_STORAGE``, ``LEADFLOW_WORKER``,
        ``LEADFLOW_REPS`` (comma-separated user ids), ``LEADFLOW_SEED_RULES`` (``0`` to skip),
        ``LEADFLOW_METRICS`` (``0``: no ``/metrics``)."""
        env = os.environ if env is None else env
        secret = env.get("LEADFLOW_JWT_SECRET")
        if not secret:
            raise InvalidInputError("set LEADFLOW_JWT_SECRET", field="LEADFLOW_JWT_SECRET")
        worker = env.get("LEADFLOW_WORKER", "inline")
        return cls(
            jwt_secret=secret,
            db_url=env.get("LEADFLOW_DB_URL", "memory://"),
            jwt_algorithm=env.get("LEADFLOW_JWT_ALGORITHM", "HS256"),
            jwt_audience=env.get("LEADFLOW_JWT_AUDIENCE") or None,
            jwt_issuer=env.get("LEADFLOW_JWT_ISSUER") or None,
            rate_limit=env.get("LEADFLOW_RATE_LIMIT", "100/minute"),
            rate_limit_storage=env.get("LEADFLOW_RATE_LIMIT_STORAGE", "memory://"),
            worker="off" if worker == "off" else "inline",
            reps=tuple(r.strip() for r in env.get("LEADFLOW_REPS", "").split(",") if r.strip()),
            seed_default_rules=env.get("LEADFLOW_SEED_RULES", "1") != "0",
            metrics=env.get("LEADFLOW_METRICS", "1") != "0",
        )
