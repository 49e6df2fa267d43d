"""The store, chosen by URL: ``memory://``, ``sqlite:///file.db`` / ``postgresql://...`` (the
``sql`` extra), ``mongodb://host/dbname`` (the ``mongo`` extra)."""

from __future__ import annotations

from urllib.parse import urlsplit

from leadflow import InvalidInputError
from leadflow.ports import Storage

__all__ = ["storage_from_url"]


def storage_from_url(url: str) -> Storage:
    """A :class:`~leadflow.ports.Storage` for ``url``; :class:`InvalidInputError` for an unknown
    scheme. Drivers are imported only for the scheme used."""
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme == "memory":
        from leadflow.stores.memory import memory_storage

        return memory_storage()
    if scheme in ("sqlite", "postgresql", "postgres"):
        from leadflow.stores.sql import sql_storage  # type: ignore[import-not-found,unused-ignore]

        storage: Storage = sql_storage(url)
        return storage
    if scheme == "mongodb":
        import pymongo

        from leadflow.stores.mongo import mongo_storage

        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(url, tz_aware=True)
        name = urlsplit(url).path.lstrip("/") or "leadflow"
        return mongo_storage(client[name])
    raise InvalidInputError(
        f"unknown store URL scheme {scheme!r}: memory, sqlite, postgresql or mongodb",
        field="db_url",
    )
