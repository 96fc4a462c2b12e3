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

from .. import exit_guard
from .._json import loads as fast_loads
from ..background import BackgroundWorker
from ..config import MemoryConfig
from ..errors import BackendUnavailable, SchemaMismatch
from ..providers.embedding_dim import configured_embedding_dim, describe_embedder
from ..types import Stopwatch
from . import embedded
from .batch import RedisBatcher
from .keys import KeyBuilder
from .migrations import MigrationReport, dim_of, embedding_type, existing_embedding_type, migrate

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
    embedding_dim: int  # the dimension of memory_vectors.embedding in the database
    embedded_redis: embedded.EmbeddedRedis | None = None
    embedded_postgres: embedded.EmbeddedPostgres | None = None
    migration: MigrationReport | None = None
    worker: BackgroundWorker = field(default_factory=BackgroundWorker)
    _shared: dict[str, Any] = field(default_factory=dict, repr=False)
    _closed: bool = field(default=False, repr=False)
    _batcher: RedisBatcher | None = field(default=None, repr=False)
    # who fixed ``embedding_dim`` for this process (None: opened by tiers that never embed)
    _dim_owner: str | None = field(default=None, repr=False)
    _dim_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _teardown: asyncio.Task[None] | None = field(default=None, repr=False)

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
        """Connect to Redis and PostgreSQL (starting the embedded servers when no URL is set) and migrate.

        ``embedding_dim`` is the dimension of the embedder that will write memory_vectors; None (tiers
        that never embed) keeps the store's dimension (a new store gets the configured embedder's).
        """
        cfg = MemoryConfig.from_any(config)
        owner = _describe_dim(cfg, embedding_dim) if embedding_dim else None
        emb_redis = emb_pg = None
        redis_url = cfg.secret("redis_url")
        dsn = cfg.secret("database_url")
        if not redis_url or not dsn:
            started = await asyncio.gather(
                embedded.start_redis_async(cfg.data_dir) if not redis_url else _none(),
                embedded.start_postgres_async(cfg.data_dir) if not dsn else _none(),
                return_exceptions=True,
            )
            got_redis, got_pg = started
            emb_redis = got_redis if isinstance(got_redis, embedded.EmbeddedRedis) else None
            emb_pg = got_pg if isinstance(got_pg, embedded.EmbeddedPostgres) else None
            failed = next((r for r in started if isinstance(r, BaseException)), None)
            if failed is not None:
                _stop_started(emb_redis)
                raise failed
        if emb_pg is not None:
            dsn = emb_pg.dsn
        assert dsn is not None
        client = _redis_client(cfg, redis_url, emb_redis)
        report = None
        if cfg.auto_migrate:
            try:
                report = await migrate(dsn, embedding_dim=embedding_dim, config=cfg, wanted_by=owner)
            except BaseException:
                await client.aclose()
                _stop_started(emb_redis)
                raise
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
            _stop_started(emb_redis)
            raise BackendUnavailable(f"cannot open the PostgreSQL pool: {exc}", field="database_url") from exc
        dim = dim_of(report.embedding_type) if report else await _table_dim(pool)
        dim = dim or embedding_dim or configured_embedding_dim(cfg)
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
            _dim_owner=owner if dim == embedding_dim else None,
        )
        exit_guard.watch(stores.worker)  # warns at exit about jobs dropped without close()
        stores._teardown = exit_guard.on_loop_teardown(stores._release_at_teardown)
        log.info(
            "stores_open",
            redis=emb_redis.data_file if emb_redis else "external",
            postgres=emb_pg.data_dir if emb_pg else "external",
            embedding_dim=dim,
        )
        return stores

    async def require_embedding_dim(self, dim: int, wanted_by: str) -> None:
        """Make memory_vectors hold ``dim``-dimensional vectors for ``wanted_by`` (SchemaMismatch when it cannot).

        An empty table is re-created at ``dim`` (unless ``auto_migrate`` is off); a table holding rows
        of another dimension, or a Stores whose dimension another embedder already relies on, is refused.
        """
        async with self._dim_lock:
            if dim == self.embedding_dim:
                self._dim_owner = self._dim_owner or wanted_by
                return
            have, want = embedding_type(self.embedding_dim), embedding_type(dim)
            if self._dim_owner is not None:
                raise SchemaMismatch(
                    f"{wanted_by} gives {dim}-dimensional vectors ({want}) but this process's shared store was "
                    f"opened for {self._dim_owner}, whose memory_vectors.embedding is {have}: one store has one "
                    f"embedding dimension. Use one embedder for every tier sharing these Stores, or open "
                    f"separate Stores. Nothing was changed.",
                    field="embedding_dim",
                )
            if not self.config.auto_migrate:
                raise SchemaMismatch(
                    f"memory_vectors.embedding is {have} but {wanted_by} needs {want} and auto_migrate is off: "
                    f"run `memory-orchestrator migrate --embedding-dim {dim}` (an empty table is re-created; one "
                    f"holding rows is refused). Nothing was changed.",
                    field="embedding_dim",
                )
            self.migration = await migrate(self.dsn, embedding_dim=dim, config=self.config, wanted_by=wanted_by)
            self.embedding_dim, self._dim_owner = dim, wanted_by
            log.info("embedding_dim_adopted", embedding_dim=dim, embedder=wanted_by)

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
        exit_guard.release(self.worker)
        if self._teardown is not None:
            self._teardown.cancel()
        await self.worker.close()
        await self.redis.aclose()
        await self.pg.close()

    async def _release_at_teardown(self) -> None:
        """The event loop ends and ``close()`` never ran: close the pools (their tasks would hang the exit)."""
        if self._closed:
            return
        await asyncio.gather(self.pg.close(timeout=2), self.redis.aclose(), return_exceptions=True)

    async def __aenter__(self) -> Stores:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _none() -> None:
    return None


def _stop_started(emb: embedded.EmbeddedRedis | None) -> None:
    """Stop an embedded Redis that this failed ``Stores.open`` started (one it reused is left alone)."""
    if emb is None or not emb.started:
        return
    try:
        emb.stop()
    except Exception as exc:  # the open's own error is the one to report
        log.warning("embedded_redis_stop_failed", error=str(exc))


def _describe_dim(cfg: MemoryConfig, dim: int) -> str:
    """Who asks for ``dim``: the configured embedder when it is its dimension."""
    if dim == configured_embedding_dim(cfg):
        return describe_embedder(cfg)
    return f"an embedder of {dim} dimensions"


async def _table_dim(pool: AsyncConnectionPool) -> int | None:
    """The dimension of memory_vectors.embedding (None when the table is absent or unreadable)."""
    try:
        async with pool.connection(timeout=5) as conn:
            return dim_of(await existing_embedding_type(conn))
    except psycopg.Error:
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
        # named, so that at exit the embedded server can tell this process's connections from others'
        return aioredis.Redis(unix_socket_path=emb.socket_path, client_name=embedded.CLIENT_NAME, **common)
    assert url is not None
    if url.startswith("unix://") and embedded.is_embedded_socket(url.removeprefix("unix://").split("?")[0]):
        common["client_name"] = embedded.CLIENT_NAME
    return aioredis.Redis.from_url(url, **common)


__all__ = ["Stores"]
