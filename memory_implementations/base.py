"""``BaseMemory``: the one async interface every tier implements."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import structlog

from .config import MemoryConfig
from .errors import BackendUnavailable
from .logging import set_library_level
from .stores import Stores
from .tokens import Tokenizer, get_tokenizer
from .types import ContextRequest, HealthState, HealthStatus, MemoryContext, MemoryType, Message, StoredRef


class BaseMemory(ABC):
    """A memory tier: initialize, store, get_context, clear, health_check, close.

    Pass ``stores=`` to share one Redis and one PostgreSQL pool between tiers; otherwise the tier
    opens (and later closes) its own. Usable as ``async with Tier(config) as memory:``.
    """

    memory_type: ClassVar[MemoryType]
    backends: ClassVar[tuple[str, ...]] = ("redis", "postgres")

    def __init__(self, config: Mapping[str, Any] | MemoryConfig | None = None, *, stores: Stores | None = None) -> None:
        """Validate the configuration; no I/O happens until ``initialize``."""
        self.config = MemoryConfig.from_any(config)
        if "log_level" in self.config.model_fields_set:  # explicit only: by default the application decides
            set_library_level(self.config.log_level)
        self._stores = stores
        self._owns_stores = stores is None
        self._initialized = False
        self._init_lock = asyncio.Lock()
        self.log = structlog.get_logger(f"memory_implementations.{self.memory_type.value}")

    # lifecycle -------------------------------------------------------------------------------
    @property
    def stores(self) -> Stores:
        """The shared connections (after ``initialize``)."""
        if self._stores is None:
            raise BackendUnavailable(f"{type(self).__name__} is not initialized: await memory.initialize() first")
        return self._stores

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer used for budgets (``tokenizer_model``)."""
        return get_tokenizer(self.config.tokenizer_model)

    def embedding_dim(self) -> int | None:
        """Embedding dimension this tier needs the schema to have (None: no preference)."""
        return None

    def attach_stores(self, stores: Stores) -> None:
        """Use shared ``stores`` (before ``initialize``); the tier will not close them."""
        if self._stores is None:
            self._stores = stores
            self._owns_stores = False

    async def initialize(self) -> None:
        """Connect (or adopt shared stores), verify the schema, run tier set-up; idempotent."""
        if self._initialized:
            return
        async with self._init_lock:
            if self._initialized:
                return
            if self._stores is None:
                self._stores = await Stores.open(self.config, embedding_dim=self.embedding_dim())
            await self._setup()
            self._initialized = True

    async def _ensure(self) -> Stores:
        """Initialize on first use and return the stores."""
        if not self._initialized:
            await self.initialize()
        return self.stores

    async def _setup(self) -> None:  # noqa: B027 - optional hook
        """Tier-specific start-up (override)."""

    async def _teardown(self) -> None:  # noqa: B027 - optional hook
        """Tier-specific shutdown, e.g. draining background work (override)."""

    async def close(self) -> None:
        """Release resources; closes the stores only if this tier opened them."""
        await self._teardown()
        if self._owns_stores and self._stores is not None:
            await self._stores.close()
            self._stores = None
        self._initialized = False

    async def __aenter__(self) -> BaseMemory:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # the interface ---------------------------------------------------------------------------
    @abstractmethod
    async def store(self, item: Mapping[str, Any] | Message) -> StoredRef:
        """Store one item; returns once it is durable."""

    @abstractmethod
    async def get_context(
        self, query: Mapping[str, Any] | ContextRequest | None = None, *, max_tokens: int | None = None
    ) -> MemoryContext:
        """Return this tier's context for ``query`` within ``max_tokens``."""

    @abstractmethod
    async def clear(
        self, *, session_id: str | None = None, user_id: str | None = None, namespace: str | None = None
    ) -> int:
        """Delete matching data from Redis and PostgreSQL; return the number of records removed."""

    async def forget_user(self, user_id: str) -> int:
        """Delete everything this tier holds for ``user_id``."""
        return await self.clear(user_id=user_id)

    async def health_check(self) -> HealthStatus:
        """Ping this tier's backends; healthy when all answer, unhealthy when a required one does not."""
        try:
            stores = await self._ensure()
        except Exception as exc:
            return HealthStatus(status="unhealthy", details={"error": str(exc)})
        details: dict[str, Any] = {"memory_type": self.memory_type.value}
        status: HealthState = "healthy"
        total = 0.0
        for backend in self.backends:
            ping = stores.ping_redis if backend == "redis" else stores.ping_postgres
            try:
                ms = await ping()
                details[backend] = {"status": "healthy", "latency_ms": round(ms, 3)}
                total += ms
            except BackendUnavailable as exc:
                details[backend] = {"status": "unhealthy", "error": exc.message}
                status = "degraded" if backend == "redis" and "postgres" in self.backends else "unhealthy"
        details.update(await self._health_details())
        return HealthStatus(status=status, latency_ms=round(total, 3), details=details)

    async def _health_details(self) -> dict[str, Any]:
        """Extra tier-specific health details (override)."""
        return {}

    # helpers for tiers -----------------------------------------------------------------------
    def budget(self, max_tokens: int | None) -> int:
        """The token budget for one ``get_context`` call."""
        return max_tokens if max_tokens is not None else self.config.max_total_tokens


__all__ = ["BaseMemory"]
