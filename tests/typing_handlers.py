"""Checked by mypy in CI (``.ci/run``), not run by pytest: a handler's context is typed by the
params model it is registered with. Each ``type: ignore`` marks an error mypy must report (with
``--strict`` an ignore that no longer matches an error fails the check)."""

from __future__ import annotations

from pydantic import BaseModel

from leadflow import ActionContext, HandlerRegistry


class WebhookParams(BaseModel):
    url: str


class OtherParams(BaseModel):
    n: int


def post(ctx: ActionContext[WebhookParams]) -> str:
    return ctx.params.url


def misreads(ctx: ActionContext[WebhookParams]) -> str:
    return str(ctx.params.nope)  # type: ignore[attr-defined]


def untyped(ctx: ActionContext[None]) -> None:
    return None


registry = HandlerRegistry.default()
registry.register("post", post, params=WebhookParams)
registry.register("plain", untyped)
registry.register("mismatch", post, params=OtherParams)  # type: ignore[arg-type]
