"""``memory-orchestrator health``: ping Redis and PostgreSQL; exit 0 healthy, 1 degraded, 2 unhealthy.

:func:`compute_health` builds the report (no printing) so the service and a later orchestrator-aware
version can reuse it; :func:`render_health` and :func:`health_exit_code` turn it into output.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

import psycopg
import redis.asyncio as aioredis
from pydantic import SecretStr

from ..config import MemoryConfig
from ..errors import MemoryError
from ..logging import mask_text
from ..providers.embedding_dim import configured_embedding_dim, describe_embedder
from ..stores import Stores
from ..stores.embedded import start_postgres_async, start_redis_async
from ..stores.migrations import SCHEMA_VERSION, current_version, inspect_dimension, mismatch_error
from ..types import HealthState, HealthStatus, MemoryType, Stopwatch
from ._common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PENDING,
    add_common_options,
    add_dsn_option,
    load_config,
    run_async,
)

EPILOG = """examples:
  memory-orchestrator health
  memory-orchestrator health --json | jq .status
  REDIS_URL=redis://cache:6379/0 DATABASE_URL=postgresql://... memory-orchestrator health
  memory-orchestrator health --dsn postgresql://user:PASSWORD@db:5432/postgres

exit status: 0 healthy, 1 degraded (Redis down or schema not migrated: PostgreSQL still holds the
record), 2 unhealthy (PostgreSQL down, or memory_vectors holds vectors of another dimension than the
configured embedder gives: the vector tier and `serve` refuse such a store)."""

UP, DOWN = "up", "down"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``health`` subcommand."""
    parser = subparsers.add_parser(
        "health",
        help="ping Redis and PostgreSQL; exit 0 healthy / 1 degraded / 2 unhealthy",
        description="Check the backends the memory tiers need, with latencies.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="connect timeout (default 3)")
    add_dsn_option(parser)
    add_common_options(parser)
    parser.set_defaults(handler=run)


def _error(exc: BaseException) -> str:
    return " ".join(mask_text(str(exc)).split()) or type(exc).__name__


async def _probe_postgres(dsn: str, connect_timeout: float, config: MemoryConfig) -> dict[str, Any]:
    """Connect directly (fast failure, no pool) and read the schema state, embedding dimension included."""
    watch = Stopwatch()
    try:
        conn = await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=max(1, round(connect_timeout)), prepare_threshold=None
        )
    except psycopg.Error as exc:
        return {"status": DOWN, "error": _error(exc)}
    try:
        async with conn:
            await conn.execute("SELECT 1")
            latency = watch.ms
            cur = await conn.execute("SELECT to_regtype('vector') IS NOT NULL")
            row = await cur.fetchone()
            has_vector = bool(row and row[0])
            cur = await conn.execute("SELECT count(*) > 0 FROM pg_available_extensions WHERE name = 'vector'")
            row = await cur.fetchone()
            vector_available = bool(row and row[0])
            version = await current_version(conn)
            dimension = await _probe_dimension(conn, config) if has_vector else {}
    except psycopg.Error as exc:
        return {"status": DOWN, "error": _error(exc)}
    return {
        "status": UP,
        "latency_ms": round(latency, 3),
        "pgvector": has_vector,
        "pgvector_available": vector_available,
        "schema_version": version,
        "schema_target": SCHEMA_VERSION,
        **dimension,
    }


async def _probe_dimension(conn: psycopg.AsyncConnection, config: MemoryConfig) -> dict[str, Any]:
    """memory_vectors.embedding against the configured embedder's dimension (when the vector tier is enabled)."""
    if MemoryType.VECTOR_DATABASE not in config.enabled_memories:
        return {}
    state = await inspect_dimension(conn, configured_embedding_dim(config))
    found: dict[str, Any] = {"embedding": state.have, "embedding_expected": state.want}
    if state.differs and state.rows:
        found["schema_error"] = mismatch_error(state, describe_embedder(config)).message
    elif state.differs:
        found["embedding_pending"] = True
    return found


async def _probe_redis_alone(config: MemoryConfig, connect_timeout: float) -> dict[str, Any]:
    """Ping Redis with a throw-away client (used when the Stores cannot be opened)."""
    url = config.secret("redis_url")
    try:
        if url:
            client = aioredis.Redis.from_url(
                url, socket_connect_timeout=connect_timeout, socket_timeout=connect_timeout
            )
        else:
            server = await start_redis_async(config.data_dir)
            client = aioredis.Redis(unix_socket_path=server.socket_path, socket_timeout=connect_timeout)
    except Exception as exc:
        return {"status": DOWN, "error": _error(exc)}
    watch = Stopwatch()
    try:
        await client.ping()
        return {"status": UP, "latency_ms": round(watch.ms, 3)}
    except Exception as exc:
        return {"status": DOWN, "error": _error(exc)}
    finally:
        await client.aclose()


def overall_status(redis: Mapping[str, Any], postgres: Mapping[str, Any]) -> HealthState:
    """unhealthy when PostgreSQL (the record) is down or holds vectors of another dimension; degraded when
    Redis is down or the schema is behind."""
    if postgres.get("status") != UP or postgres.get("schema_error"):
        return "unhealthy"
    if redis.get("status") != UP or postgres.get("schema_pending"):
        return "degraded"
    return "healthy"


async def compute_health(config: MemoryConfig, *, connect_timeout: float = 3.0) -> HealthStatus:
    """Open Stores from ``config`` (no migration), ping Redis and PostgreSQL, and return the report."""
    watch = Stopwatch()
    cfg = config.model_copy(update={"auto_migrate": False})
    dsn = cfg.secret("database_url")
    embedded_pg = not dsn
    if embedded_pg:
        try:
            dsn = (await start_postgres_async(cfg.data_dir)).dsn
        except MemoryError as exc:
            dsn = None
            postgres: dict[str, Any] = {"status": DOWN, "error": _error(exc)}
    if dsn:
        postgres = await _probe_postgres(dsn, connect_timeout, cfg)
    postgres["backend"] = "embedded" if embedded_pg else "external"
    if postgres["status"] == UP:
        postgres["schema_pending"] = (
            not postgres["pgvector"]
            or postgres["schema_version"] < SCHEMA_VERSION
            or bool(postgres.get("embedding_pending"))
        )
        if not postgres["pgvector_available"]:
            postgres["hint"] = "the server has no pgvector (`vector` extension): install it, then migrate"
        elif postgres.get("schema_error"):
            postgres["hint"] = "see the error: the store's vectors and the configured embedder disagree"
        elif postgres.get("embedding_pending"):
            postgres["hint"] = (
                f"run `memory-orchestrator migrate`: memory_vectors is empty and becomes "
                f"{postgres['embedding_expected']} (was {postgres['embedding']}) for the configured embedder"
            )
        elif postgres["schema_pending"]:
            postgres["hint"] = "run `memory-orchestrator migrate`"
    redis: dict[str, Any]
    if dsn and postgres["status"] == UP and postgres["pgvector"]:
        # the pool registers pgvector on every connection, so it can only open once the extension exists
        with_dsn = cfg.model_copy(update={"database_url": SecretStr(dsn)})
        redis, postgres = await _probe_with_stores(with_dsn, connect_timeout, postgres)
    else:
        redis = await _probe_redis_alone(cfg, connect_timeout)
    redis["backend"] = "external" if cfg.secret("redis_url") else "embedded"
    status = overall_status(redis, postgres)
    return HealthStatus(
        status=status, latency_ms=round(watch.ms, 3), details={"redis": redis, "postgres": postgres}
    )


async def _probe_with_stores(
    cfg: MemoryConfig, connect_timeout: float, postgres: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Open the shared Stores and ping both backends through their pools."""
    try:
        stores = await Stores.open(cfg)
    except MemoryError as exc:
        return await _probe_redis_alone(cfg, connect_timeout), {**postgres, "status": DOWN, "error": _error(exc)}
    try:
        redis: dict[str, Any]
        try:
            redis = {"status": UP, "latency_ms": round(await stores.ping_redis(), 3)}
        except MemoryError as exc:
            redis = {"status": DOWN, "error": _error(exc)}
        try:
            postgres = {**postgres, "status": UP, "latency_ms": round(await stores.ping_postgres(), 3)}
        except MemoryError as exc:
            postgres = {**postgres, "status": DOWN, "error": _error(exc)}
        return redis, postgres
    finally:
        await stores.close()


def health_exit_code(report: Mapping[str, Any]) -> int:
    """0 healthy, 1 degraded, 2 unhealthy."""
    return {"healthy": EXIT_OK, "degraded": EXIT_PENDING}.get(str(report.get("status")), EXIT_ERROR)


def render_health(report: Mapping[str, Any], *, as_json: bool = False) -> str:
    """The report as JSON or as aligned text lines."""
    data = dict(report)
    if as_json:
        return json.dumps(data, indent=2, sort_keys=True, default=str)
    lines = [f"status: {data['status']} ({data.get('latency_ms', 0):.1f} ms)"]
    for name, detail in (data.get("details") or {}).items():
        if not isinstance(detail, Mapping):
            continue
        state = detail.get("status", "?")
        bits = [f"{detail['latency_ms']:.1f} ms"] if "latency_ms" in detail else []
        shown = ("backend", "schema_version", "pgvector", "embedding")
        bits += [f"{k}={detail[k]}" for k in shown if detail.get(k) is not None]
        if detail.get("error"):
            bits.append(f"error: {detail['error']}")
        if detail.get("schema_error"):
            bits.append(f"error: {detail['schema_error']}")
        if detail.get("hint"):
            bits.append(f"hint: {detail['hint']}")
        lines.append(f"  {name:<9} {state:<5} {'; '.join(bits)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Handle ``memory-orchestrator health``."""
    config = load_config(args, database_url=args.dsn)
    report = run_async(compute_health(config, connect_timeout=args.timeout))
    print(render_health(report, as_json=args.json))
    return health_exit_code(report)


__all__ = ["compute_health", "health_exit_code", "overall_status", "register", "render_health", "run"]
