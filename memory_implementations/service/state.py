"""The service's runtime state: the orchestrator, its readiness, the authenticator and the rate limiter."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import TYPE_CHECKING, Any

import structlog

from ..config import MemoryConfig
from ..errors import MemoryError
from ..logging import mask_text
from ..tokens import get_tokenizer
from ..types import MemoryType
from .auth import Authenticator, KeyCache, KeyStore, Principal
from .errors import RateLimited, ServiceUnavailable
from .metrics import ServiceMetrics
from .ratelimit import RateDecision, RateLimiter
from .settings import ServiceSettings
from .usage import ProviderUsage, instrument_embedder, provider_usage

if TYPE_CHECKING:
    from ..background import BackgroundWorker
    from ..orchestrator import MemoryOrchestrator
    from ..stores import Stores

log = structlog.get_logger("memory_implementations.service")
INIT_TIMEOUT_SECONDS = 60.0
WARMUP_TIMEOUT_SECONDS = 60.0


class ServiceState:
    """Everything one app instance owns; created by ``create_app`` and kept in ``app.state.service``."""

    def __init__(
        self,
        config: MemoryConfig,
        settings: ServiceSettings,
        *,
        orchestrator: MemoryOrchestrator | None = None,
    ) -> None:
        """Hold ``orchestrator`` (or build one from ``config`` at start-up)."""
        self.config = config
        self.settings = settings
        self.orchestrator: MemoryOrchestrator | None = orchestrator
        self.owns_orchestrator = orchestrator is None
        self.metrics = ServiceMetrics(worker=self._worker, usage=self._usage)
        self.ready = False
        self.init_error: str | None = None
        self.authenticator: Authenticator | None = None
        self.limiter: RateLimiter | None = None
        self.key_cache = KeyCache(settings.key_cache_ttl_seconds, settings.key_cache_max_entries)
        self._retry_task: asyncio.Task[None] | None = None
        self._init_lock = asyncio.Lock()

    # wiring ----------------------------------------------------------------------------------
    @property
    def stores(self) -> Stores | None:
        """The orchestrator's shared stores once initialised."""
        if self.orchestrator is None or not self.ready:
            return None
        return getattr(self.orchestrator, "stores", None)

    def _worker(self) -> BackgroundWorker | None:
        stores = self.stores
        return stores.worker if stores is not None else None

    def _usage(self) -> ProviderUsage | None:
        stores = self.stores
        return provider_usage(stores) if stores is not None else None

    # lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Initialise the orchestrator; if a backend is down, keep serving (503) and retry in the background."""
        if not self.settings.auth_enabled:
            log.warning(
                "AUTH_DISABLED_INSECURE",
                message="API key authentication is DISABLED (--insecure-dev / MEMORY_SERVICE_AUTH=disabled): "
                "anyone who can reach this port can read and delete every user's memory. Development only.",
            )
        if await self._try_initialize():
            return
        self._retry_task = asyncio.get_running_loop().create_task(self._retry_loop(), name="mi-service-init-retry")

    async def _try_initialize(self) -> bool:
        async with self._init_lock:
            if self.ready:
                return True
            try:
                if self.orchestrator is None:
                    from ..orchestrator import MemoryOrchestrator

                    self.orchestrator = MemoryOrchestrator(self.config)
                await asyncio.wait_for(self.orchestrator.initialize(), INIT_TIMEOUT_SECONDS)
                stores: Stores = self.orchestrator.stores
                self.authenticator = Authenticator(KeyStore(stores.pg, pepper=self.settings.key_pepper), self.key_cache)
                self.limiter = RateLimiter(
                    stores.redis,
                    stores.keys,
                    rate=self.settings.rate_limit_per_second,
                    burst=self.settings.rate_limit_burst,
                )
            except Exception as exc:  # any start-up failure: keep serving liveness, report it, retry
                self.init_error = mask_text(getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
                log.error("service_not_ready", error=self.init_error, retry_in_s=self.settings.init_retry_seconds)
                return False
            self.ready = True
            self.init_error = None
            await self._wire_and_warm(stores)
            if self.settings.gc_freeze:
                # start-up objects (modules, tokenizer tables, pools) never die: keep them out of every
                # later collection, which then traverses only request objects (shorter gen-2 pauses)
                gc.collect()
                gc.freeze()
            log.info("service_ready", auth="enabled" if self.settings.auth_enabled else "DISABLED")
            return True

    async def _wire_and_warm(self, stores: Stores) -> None:
        """Count embedding calls into the provider metrics, and load the embedding model before the first request."""
        assert self.orchestrator is not None
        vector = (getattr(self.orchestrator, "memories", {}) or {}).get(MemoryType.VECTOR_DATABASE)
        if vector is None:
            return
        try:
            embedder = vector.embedder
        except MemoryError:
            return
        tokenizer = get_tokenizer(self.config.tokenizer_model)
        instrument_embedder(embedder, provider_usage(stores), tokenizer.count)
        try:
            await asyncio.wait_for(embedder.embed(["warm-up"]), WARMUP_TIMEOUT_SECONDS)
        except Exception as exc:  # warming is an optimisation; the first request will load it instead
            log.warning("embedder_warmup_failed", error=describe_exc(exc))

    async def _retry_loop(self) -> None:
        while not self.ready:
            await asyncio.sleep(self.settings.init_retry_seconds)
            if await self._try_initialize():
                return

    async def stop(self) -> None:
        """Stop retrying and close the orchestrator if this app created it."""
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._retry_task
        if self.orchestrator is not None and (self.ready or self.owns_orchestrator):
            try:
                await self.orchestrator.close()
            except Exception as exc:  # closing must not mask the shutdown
                log.warning("orchestrator_close_failed", error=mask_text(str(exc)))
        self.ready = False
        log.info("service_stopped")

    # request helpers -------------------------------------------------------------------------
    def require_orchestrator(self) -> MemoryOrchestrator:
        """The ready orchestrator, or 503."""
        if not self.ready or self.orchestrator is None:
            detail = f": {self.init_error}" if self.init_error else ""
            raise ServiceUnavailable(f"the memory backends are not ready{detail}", field=None)
        return self.orchestrator

    def require_authenticator(self) -> Authenticator:
        """The authenticator (needs PostgreSQL), or 503."""
        self.require_orchestrator()
        assert self.authenticator is not None
        return self.authenticator

    async def check_rate(self, principal: Principal, client: str | None) -> RateDecision | None:
        """Take a token for ``principal`` (per client address in insecure mode); raise 429 when empty."""
        if not self.settings.rate_limit_enabled or self.limiter is None:
            return None
        caller = f"ip:{client or 'unknown'}" if principal.insecure else f"key:{principal.key_id}"
        try:
            decision = await self.limiter.hit(caller)
        except Exception as exc:  # Redis down: fail open, counted and logged
            self.metrics.rate_limit_errors.inc()
            log.warning("rate_limit_unavailable", error=mask_text(f"{type(exc).__name__}: {exc}"))
            return None
        if not decision.allowed:
            self.metrics.rate_limited.inc()
            raise RateLimited(
                f"rate limit exceeded for key {principal.label}: {self.settings.rate_limit_burst} requests burst, "
                f"{self.settings.rate_limit_per_second:g}/s sustained; retry after {decision.retry_after_seconds}s",
                headers=decision.headers(),
            )
        return decision


def describe_exc(exc: BaseException) -> str:
    """A one-line, secret-masked description of an error."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return mask_text(" ".join(str(text).split()))


def as_dict(value: Any) -> dict[str, Any]:
    """A health report (dict, Mapping or object with ``as_dict``/``to_dict``) as a plain dict."""
    for attr in ("to_dict", "as_dict"):
        fn = getattr(value, attr, None)
        if callable(fn):
            out = fn()
            if isinstance(out, dict):
                return out
    if isinstance(value, dict):
        return value
    try:
        return dict(value)
    except (TypeError, ValueError):
        return {"value": str(value)}


__all__ = ["ServiceState", "as_dict", "describe_exc"]
