"""``Stores``: the one Redis pool and one PostgreSQL pool a process shares between all tiers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
import redis.asyncio as aioredis
import structlog
from pgvector.psycopg import register_vector_async
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from .._json import loads as fast_loads
from ..background import BackgroundWorker
from ..config import MemoryConfig
from ..errors import BackendUnavailable
from ..types import Stopwatch
from . import embedded
from .batch import RedisBatcher
from .keys import KeyBuilder
from .migrations import DEFAULT_DIM, MigrationReport, migrate

log = structlog.get_logger("memory_implementations.stores")
T = TypeVar("T")


@dataclass
class Stores:
    """Connections shared by every tier: ``redis`` (redis.asyncio) and ``pg`` (psycopg AsyncConnectionPool)."""

    config: MemoryConfig
    redis: aioredis.Redis
    pg: AsyncConnectionPool
    dsn: str
    keys: KeyBuilder
    embedding_dim: int = DEFAULT_DIM
    embedded_redis: embedded.EmbeddedRedis | None = None
    embedded_postgres: embedded.EmbeddedPostgres | None = None
    migration: MigrationReport | None = None
    worker: BackgroundWorker = field(default_factory=BackgroundWorker)
    _shared: dict[str, Any] = field(default_factory=dict, repr=False)
    _closed: bool = field(default=False, repr=False)
    _batcher: RedisBatcher | None = field(default=None, repr=False)

    @property
    def redis_batch(self) -> RedisBatcher:
        """Auto-pipelining over ``redis``: reads issued concurrently by the tiers share one round trip."""
        if self._batcher is None:
            self._batcher = RedisBatcher(lambda: self.redis)
        return self._batcher

    def shared(self, name: str, factory: Callable[[], T]) -> T:
        """One object per name per Stores (e.g. the embedder), built by ``factory`` on first use."""
        if name not in self._shared:
            self._shared[name] = factory()
        return self._shared[name]

    @classmethod
    async def open(
        cls, config: MemoryConfig | dict[str, Any] | None = None, *, embedding_dim: int | None = None
    ) -> Stores:
        """Connect to Redis and PostgreSQL (starting the embedded servers when no URL is set) and migrate."""
        cfg = MemoryConfig.from_any(config)
        dim = embedding_dim or cfg.embedding_dim or DEFAULT_DIM
        emb_redis = emb_pg = None
        redis_url = cfg.secret("redis_url")
        dsn = cfg.secret("database_url")
        if not redis_url or not dsn:
            started = await asyncio.gather(
                embedded.start_redis_async(cfg.data_dir) if not redis_url else _none(),
                embedded.start_postgres_async(cfg.data_dir) if not dsn else _none(),
            )
            emb_redis, emb_pg = started
        if emb_pg is not None:
            dsn = emb_pg.dsn
        assert dsn is not None
        client = _redis_client(cfg, redis_url, emb_redis)
        report = None
        if cfg.auto_migrate:
            report = await migrate(dsn, embedding_dim=dim)
        pool = AsyncConnectionPool(
            dsn,
            min_size=cfg.pg_pool_min,
            max_size=cfg.pg_pool_max,
            open=False,
            kwargs={"autocommit": True, "prepare_threshold": None if cfg.pg_transaction_pooler else 5},
            configure=_configure_connection,
            name="memory_implementations",
        )
        try:
            await pool.open(wait=True, timeout=15)
        except Exception as exc:
            await client.aclose()
            raise BackendUnavailable(f"cannot open the PostgreSQL pool: {exc}", field="database_url") from exc
        stores = cls(
            config=cfg,
            redis=client,
            pg=pool,
            dsn=dsn,
            keys=KeyBuilder(cfg.key_prefix),
            embedding_dim=dim,
            embedded_redis=emb_redis,
            embedded_postgres=emb_pg,
            migration=report,
            worker=BackgroundWorker(cfg.background_concurrency),
        )
        log.info(
            "stores_open",
            redis=emb_redis.data_file if emb_redis else "external",
            postgres=emb_pg.data_dir if emb_pg else "external",
            embedding_dim=dim,
        )
        return stores

    async def ping_redis(self) -> float:
        """Round-trip a PING to Redis; return the latency in ms (raises BackendUnavailable)."""
        watch = Stopwatch()
        try:
            await self.redis.ping()
        except Exception as exc:
            raise BackendUnavailable(f"Redis did not answer PING: {exc}", field="redis_url") from exc
        return watch.ms

    async def ping_postgres(self) -> float:
        """Round-trip ``SELECT 1`` to PostgreSQL; return the latency in ms (raises BackendUnavailable)."""
        watch = Stopwatch()
        try:
            async with self.pg.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:
            raise BackendUnavailable(f"PostgreSQL did not answer: {exc}", field="database_url") from exc
        return watch.ms

    async def close(self) -> None:
        """Close both pools (embedded servers keep running until the process exits)."""
        if self._closed:
            return
        self._closed = True
        await self.worker.close()
        await self.redis.aclose()
        await self.pg.close()

    async def __aenter__(self) -> Stores:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _none() -> None:
    return None


async def _configure_connection(conn: psycopg.AsyncConnection) -> None:
    """Per pooled connection: pgvector types, and json/jsonb decoded by orjson when installed."""
    await register_vector_async(conn)
    set_json_loads(fast_loads, conn)


def _redis_client(cfg: MemoryConfig, url: str | None, emb: embedded.EmbeddedRedis | None) -> aioredis.Redis:
    common: dict[str, Any] = {
        "max_connections": cfg.redis_max_connections,
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 30,
        # fail fast when Redis is down (the default policy waits ~4.5 s per command): PostgreSQL is the
        # record, so a dead cache should cost milliseconds, not seconds
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), 2),
    }
    if emb is not None:
        return aioredis.Redis(unix_socket_path=emb.socket_path, **common)
    assert url is not None
    return aioredis.Redis.from_url(url, **common)


__all__ = ["Stores"]
