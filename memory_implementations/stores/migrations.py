"""Applies ``database_migrations.sql``: versioned, idempotent, under an advisory lock.

On plain PostgreSQL (no Supabase ``auth`` schema) it first installs a small emulation of
``auth.uid()`` / ``auth.jwt()`` and Supabase's API roles, so the same RLS policies hold everywhere.
Needs a direct or session connection (Supabase port 5432): the transaction pooler has no session
advisory locks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import psycopg
import structlog

from ..errors import BackendUnavailable, ExtensionMissing, SchemaMismatch

log = structlog.get_logger("memory_implementations.migrations")

SCHEMA_VERSION = 3
DEFAULT_DIM = 1536
HNSW_VECTOR_MAX_DIM = 2000
_LOCK_ID = 0x6D656D6F7279  # "memory"

PGVECTOR_HELP = (
    "the PostgreSQL server has no pgvector: the `vector` extension is missing. Install it on the server "
    "(Debian/Ubuntu: apt install postgresql-<major>-pgvector; macOS: brew install pgvector; from source: "
    "https://github.com/pgvector/pgvector), or on Supabase enable it under Database -> Extensions -> vector. "
    "Or leave database_url unset to use the embedded PostgreSQL, which ships pgvector."
)


@dataclass(slots=True)
class MigrationReport:
    """What a migration run found and did."""

    current_version: int
    target_version: int
    applied: bool = False
    auth_emulated: bool = False
    embedding_type: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def pending(self) -> list[int]:
        """Versions not yet applied."""
        return list(range(self.current_version + 1, self.target_version + 1))


def sql_text(name: str = "database_migrations.sql") -> str:
    """The text of a bundled SQL file."""
    try:
        return resources.files("memory_implementations").joinpath("sql", name).read_text(encoding="utf-8")
    except (OSError, TypeError):
        # e.g. a stale editable install that maps the package as a namespace package
        return (Path(__file__).resolve().parent.parent / "sql" / name).read_text(encoding="utf-8")


def embedding_type(dim: int) -> str:
    """Column type for ``dim``: ``vector(dim)`` up to HNSW's 2,000-dimension limit, ``halfvec(dim)`` above."""
    if dim < 1 or dim > 16000:
        raise SchemaMismatch(f"embedding_dim must be between 1 and 16000, got {dim}", field="embedding_dim")
    return f"vector({dim})" if dim <= HNSW_VECTOR_MAX_DIM else f"halfvec({dim})"


def render_migrations(dim: int = DEFAULT_DIM) -> str:
    """The migration script with its embedding type set for ``dim``."""
    text = sql_text()
    if dim == DEFAULT_DIM:
        return text
    col = embedding_type(dim)
    text = re.sub(r"\bvector\(1536\)", col, text)
    if col.startswith("halfvec"):
        text = text.replace("vector_cosine_ops", "halfvec_cosine_ops")
    return text


async def _scalar(conn: psycopg.AsyncConnection, query: str, params: tuple[object, ...] = ()) -> object:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return row[0] if row else None


async def current_version(conn: psycopg.AsyncConnection) -> int:
    """Highest applied schema version (0 when nothing is applied)."""
    if not await _scalar(conn, "SELECT to_regclass('public.memory_schema_version') IS NOT NULL"):
        return 0
    value = await _scalar(conn, "SELECT coalesce(max(version), 0) FROM memory_schema_version")
    return int(str(value)) if value else 0


async def existing_embedding_type(conn: psycopg.AsyncConnection) -> str | None:
    """The embedding column's type in an existing store, e.g. ``vector(384)``; None when absent."""
    value = await _scalar(
        conn,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass('public.memory_vectors') AND attname = 'embedding' AND NOT attisdropped",
    )
    return str(value) if value else None


async def _check_pgvector(conn: psycopg.AsyncConnection) -> None:
    if await _scalar(conn, "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"):
        return
    raise ExtensionMissing(PGVECTOR_HELP, field="database_url")


async def _check_dimension(conn: psycopg.AsyncConnection, dim: int) -> str:
    want = embedding_type(dim)
    have = await existing_embedding_type(conn)
    if have is not None and have != want:
        rows = await _scalar(conn, "SELECT count(*) FROM memory_vectors")
        raise SchemaMismatch(
            f"embedding_dim mismatch: the store's memory_vectors.embedding is {have} ({rows} rows) but the "
            f"configuration asks for {want}. Nothing was changed. To keep the data, use the embedding model "
            f"and embedding_dim the store was built with; to switch models, re-embed into a new database "
            f"(or drop memory_vectors after exporting it) and run `memory-orchestrator migrate --embedding-dim {dim}`.",
            field="embedding_dim",
        )
    return want


async def migrate(dsn: str, *, embedding_dim: int | None = DEFAULT_DIM, check: bool = False) -> MigrationReport:
    """Apply pending migrations to ``dsn`` (or, with ``check``, only report what is pending).

    ``embedding_dim=None`` keeps the dimension of an existing store (``DEFAULT_DIM`` for a new one).
    """
    try:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, prepare_threshold=None)
    except psycopg.Error as exc:
        raise BackendUnavailable(
            f"cannot connect to PostgreSQL for migrations: {_one_line(exc)}", field="database_url"
        ) from exc
    try:
        return await _migrate(conn, embedding_dim, check)
    except psycopg.Error as exc:
        raise BackendUnavailable(f"migration failed: {_one_line(exc)}", field="database_url") from exc
    finally:
        await conn.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


async def _resolve_dim(conn: psycopg.AsyncConnection, embedding_dim: int | None) -> int:
    if embedding_dim is not None:
        return embedding_dim
    have = await existing_embedding_type(conn)
    match = re.fullmatch(r"(?:vector|halfvec)\((\d+)\)", have or "")
    return int(match.group(1)) if match else DEFAULT_DIM


async def _migrate(conn: psycopg.AsyncConnection, embedding_dim: int | None, check: bool) -> MigrationReport:
    """The body of :func:`migrate` on an open autocommit connection."""
    await _check_pgvector(conn)
    await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
    try:
        report = MigrationReport(current_version=await current_version(conn), target_version=SCHEMA_VERSION)
        dim = await _resolve_dim(conn, embedding_dim)
        report.embedding_type = await _check_dimension(conn, dim)
        has_auth = bool(await _scalar(conn, "SELECT to_regprocedure('auth.uid()') IS NOT NULL"))
        if check:
            if not has_auth:
                report.notes.append("auth.uid() is absent: the Supabase auth emulation would be installed")
            return report
        async with conn.transaction():
            if not has_auth:
                await conn.execute(sql_text("supabase_auth_emulation.sql").encode())
                report.auth_emulated = True
            await conn.execute(render_migrations(dim).encode())
            if report.auth_emulated or await _scalar(conn, "SELECT to_regrole('service_role') IS NOT NULL"):
                await conn.execute(sql_text("supabase_grants.sql").encode())
        report.applied = report.current_version < SCHEMA_VERSION
        report.current_version = await current_version(conn)
        log.info(
            "migrations_applied",
            version=report.current_version,
            embedding=report.embedding_type,
            auth_emulated=report.auth_emulated,
            applied=report.applied,
        )
        return report
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
        except psycopg.Error:  # a broken connection releases its session locks when it closes
            log.warning("migration_unlock_failed")


__all__ = ["SCHEMA_VERSION", "MigrationReport", "embedding_type", "migrate", "render_migrations", "sql_text"]
