"""``create_app``: the FastAPI service over a MemoryOrchestrator (OpenAPI at ``/docs``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from ..config import MemoryConfig
from . import routes_context, routes_health, routes_kv, routes_memories, routes_sessions, routes_tiers
from .docs import install_docs
from .errors import install_error_handlers
from .middleware import BodyLimitMiddleware, ConcurrencyLimitMiddleware, RequestContextMiddleware
from .settings import ServiceSettings
from .state import ServiceState

if TYPE_CHECKING:
    from ..orchestrator import MemoryOrchestrator

API_DESCRIPTION = """Memory for LLM apps over HTTP: per-turn context (`POST /v1/context`), turn storage,
and direct access to each tier (vector memories, key-value, working memory, entities, summaries).

Authenticate with `Authorization: Bearer mi_<prefix>_<secret>` or `X-API-Key: mi_<prefix>_<secret>`
(create keys with `memory-orchestrator keys create --user <id>`). A key may only touch the users it
was created for (403 otherwise); admin keys touch any. Errors are
`{"error": {"code", "message", "field"}}`."""


def create_app(
    config: Mapping[str, Any] | MemoryConfig | None = None,
    *,
    orchestrator: MemoryOrchestrator | None = None,
    settings: ServiceSettings | None = None,
) -> FastAPI:
    """Build the app; its lifespan initialises ``orchestrator`` (built from ``config`` if not given) and closes it."""
    cfg = orchestrator.config if orchestrator is not None and config is None else MemoryConfig.from_any(config)
    svc_settings = settings if settings is not None else ServiceSettings.load()
    state = ServiceState(cfg, svc_settings, orchestrator=orchestrator)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="memory_implementations",
        version=_version(),
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs with local assets (no CDN)
        redoc_url=None,
    )
    app.state.service = state
    install_docs(app)
    install_error_handlers(app)
    for module in (routes_health, routes_context, routes_sessions, routes_memories, routes_kv, routes_tiers):
        app.include_router(module.router)
    # add_middleware wraps: the last added is outermost
    slots = svc_settings.max_concurrent_requests or cfg.pg_pool_max
    app.add_middleware(
        ConcurrencyLimitMiddleware, limit=slots, queue_timeout=svc_settings.queue_timeout_seconds, metrics=state.metrics
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=svc_settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics)
    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("memory_implementations")
    except Exception:
        return "0"


__all__ = ["create_app"]
