"""A real uvicorn server on a loopback port, in a background thread, for the service tests.

Test modules load the fixtures with ``pytest_plugins = ["service_fixtures"]`` and import the helpers
(:class:`LiveServer`, :class:`Keys`, :func:`metric_value` ...) directly. Keys are created through the
service's own ``KeyStore`` against the test PostgreSQL — no mocks. (PYTEST_DONT_REWRITE: the test
modules import this module before pytest registers it as a plugin.)
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from psycopg_pool import AsyncConnectionPool

from memory_implementations.service.app import create_app
from memory_implementations.service.auth import ApiKey, KeyStore
from memory_implementations.service.settings import ServiceSettings

STARTUP_TIMEOUT = 120.0


def free_port() -> int:
    """A TCP port nothing listens on right now (for 'dead backend' URLs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """``create_app(...)`` served by uvicorn on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, config: dict[str, Any] | None, settings: ServiceSettings, *, orchestrator: Any = None) -> None:
        """Build the app (the server starts in ``start``)."""
        self.app = create_app(config, settings=settings, orchestrator=orchestrator)
        self.settings = settings
        self.config = config
        self.port = 0
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> Any:
        """The app's ServiceState (for reading, e.g. readiness)."""
        return self.app.state.service

    def start(self) -> LiveServer:
        """Bind a free loopback port and serve until ``stop``; wait for the lifespan start-up."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the service did not start (lifespan start-up failed)")
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not start within the timeout")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit (runs the lifespan shutdown) and wait for the thread."""
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(60)

    def client(self, key: str | None = None, *, header: str = "bearer", **kwargs: Any) -> httpx.Client:
        """An httpx client for this server, sending ``key`` as a Bearer token or X-API-Key."""
        headers: dict[str, str] = dict(kwargs.pop("headers", {}) or {})
        if key is not None:
            if header == "bearer":
                headers["Authorization"] = f"Bearer {key}"
            else:
                headers["X-API-Key"] = key
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0, **kwargs)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll /health/ready until it answers 200."""
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while True:
                r = c.get("/health/ready")
                if r.status_code == 200:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"not ready: {r.status_code} {r.text}")
                time.sleep(0.2)


class Keys:
    """Creates and revokes real API keys in the test PostgreSQL (same code path as the CLI)."""

    def __init__(self, dsn: str, pepper: str | None = None) -> None:
        """Talk to ``dsn``."""
        self.dsn = dsn
        self.pepper = pepper

    async def _run(self, op: str, *args: Any, **kwargs: Any) -> Any:
        pool = AsyncConnectionPool(self.dsn, min_size=1, max_size=1, open=False, kwargs={"autocommit": True})
        await pool.open(wait=True, timeout=30)
        try:
            store = KeyStore(pool, pepper=self.pepper)
            return await getattr(store, op)(*args, **kwargs)
        finally:
            await pool.close()

    def create(self, *users: str, admin: bool = False, name: str = "test") -> tuple[str, ApiKey]:
        """A new key for ``users`` (or admin): ``(secret, record)``."""
        return asyncio.run(self._run("create", list(users), admin=admin, name=name))

    def revoke(self, ident: str) -> ApiKey:
        """Revoke by id or prefix."""
        return asyncio.run(self._run("revoke", ident))


def new_user() -> str:
    """A fresh tenant id."""
    return f"u-{uuid.uuid4().hex[:12]}"


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (parsed with prometheus_client)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != name:
                continue
            if labels and any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            total += float(sample.value)
    return total


@pytest.fixture(scope="session")
def service_config(base_config: dict[str, Any]) -> dict[str, Any]:
    """The test backends' config for the service's orchestrator."""
    return dict(base_config)


@pytest.fixture(scope="session")
def keys(pg_dsn: str, live: LiveServer) -> Keys:
    """Key factory (after ``live`` has migrated the schema)."""
    return Keys(pg_dsn)


@pytest.fixture(scope="session")
def live(service_config: dict[str, Any]) -> Iterator[LiveServer]:
    """The main server: auth on, key cache TTL 0 (revocation is immediate), 64 KiB body limit."""
    settings = ServiceSettings(
        key_cache_ttl_seconds=0, rate_limit_per_second=1000, rate_limit_burst=1000, max_body_bytes=64 * 1024
    )
    server = LiveServer(service_config, settings).start()
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture
def tenant(keys: Keys) -> tuple[str, str]:
    """A fresh user and a key bound to that user only: ``(user_id, key)``."""
    user = new_user()
    key, _ = keys.create(user)
    return user, key


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory for extra servers."""
    return tmp_path_factory.mktemp("svc")


__all__ = [
    "Keys",
    "LiveServer",
    "free_port",
    "keys",
    "live",
    "metric_value",
    "new_user",
    "service_config",
    "tenant",
    "tmp_root",
]
