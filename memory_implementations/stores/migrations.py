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

from ..config import MemoryConfig
from ..errors import BackendUnavailable, ExtensionMissing, SchemaMismatch
from ..providers.embedding_dim import configured_embedding_dim

log = structlog.get_logger("memory_implementations.migrations")

SCHEMA_VERSION = 3
DEFAULT_DIM = 1536  # the dimension database_migrations.sql is written with (psql -f on Supabase)
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
    retyped_from: str | None = None  # the empty memory_vectors' former embedding type (re-typed, or to be with check)
    notes: list[str] = field(default_factory=list)

    @property
    def pending(self) -> list[int]:
        """Versions not yet applied."""
        return list(range(self.current_version + 1, self.target_version + 1))

    @property
    def up_to_date(self) -> bool:
        """No version pending and the embedding column already has the wanted type."""
        return not self.pending and self.retyped_from is None


@dataclass(frozen=True, slots=True)
class DimensionState:
    """The embedding column a store has (``have``, None when memory_vectors is absent) and the one wanted."""

    have: str | None
    want: str
    rows: int  # rows in memory_vectors when ``have`` differs from ``want`` (else 0, not counted)

    @property
    def differs(self) -> bool:
        """memory_vectors exists with another embedding type."""
        return self.have is not None and self.have != self.want


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


def dim_of(type_name: str | None) -> int | None:
    """The dimension in ``vector(384)`` / ``halfvec(3072)``; None for anything else."""
    match = re.fullmatch(r"(?:vector|halfvec)\((\d+)\)", type_name or "")
    return int(match.group(1)) if match else None


async def inspect_dimension(conn: psycopg.AsyncConnection, dim: int) -> DimensionState:
    """Compare the store's embedding column with ``dim`` (counting rows only when they differ)."""
    want = embedding_type(dim)
    have = await existing_embedding_type(conn)
    rows = 0
    if have is not None and have != want:
        rows = int(str(await _scalar(conn, "SELECT count(*) FROM memory_vectors")))
    return DimensionState(have, want, rows)


def mismatch_error(state: DimensionState, wanted_by: str) -> SchemaMismatch:
    """The SchemaMismatch for a memory_vectors that holds rows of another dimension than ``wanted_by`` needs."""
    dim = dim_of(state.want)
    return SchemaMismatch(
        f"embedding_dim mismatch: memory_vectors.embedding is {state.have} and holds {state.rows} rows, but "
        f"{wanted_by} needs {state.want}. Nothing was changed. Fix: use the embedder the store was built with "
        f"({dim_of(state.have)} dimensions: set embedding_provider / embedding_model / embedding_dim and the "
        f"provider's API key to match), or move the rows out (export them, then empty memory_vectors or use a new "
        f"database) and run `memory-orchestrator migrate --embedding-dim {dim}`; an empty table is re-created "
        f"at the new dimension.",
        field="embedding_dim",
    )


async def migrate(
    dsn: str,
    *,
    embedding_dim: int | None = None,
    check: bool = False,
    config: MemoryConfig | None = None,
    wanted_by: str | None = None,
) -> MigrationReport:
    """Apply pending migrations to ``dsn`` (or, with ``check``, only report what is pending).

    ``embedding_dim`` is the dimension the caller's embedder produces. ``None`` (a caller that never
    embeds) keeps the existing column and gives a new store the configured embedder's dimension
    (``configured_embedding_dim(config)``; ``config`` defaults to the environment's). An empty
    memory_vectors of another dimension is re-created at ``embedding_dim``; one holding rows raises
    SchemaMismatch naming ``wanted_by`` (default: "embedding_dim=N") and changes nothing.
    """
    try:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, prepare_threshold=None)
    except psycopg.Error as exc:
        raise BackendUnavailable(
            f"cannot connect to PostgreSQL for migrations: {_one_line(exc)}", field="database_url"
        ) from exc
    try:
        who = wanted_by or f"embedding_dim={embedding_dim}"
        return await _migrate(conn, embedding_dim, check, config, who)
    except psycopg.Error as exc:
        raise BackendUnavailable(f"migration failed: {_one_line(exc)}", field="database_url") from exc
    finally:
        await conn.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


async def _resolve_dim(conn: psycopg.AsyncConnection, embedding_dim: int | None, config: MemoryConfig | None) -> int:
    if embedding_dim is not None:
        return embedding_dim
    existing = dim_of(await existing_embedding_type(conn))
    return existing or configured_embedding_dim(config or MemoryConfig.from_any(None))


async def _retype_empty(conn: psycopg.AsyncConnection, state: DimensionState, wanted_by: str) -> None:
    """Re-create the embedding column of an empty memory_vectors as ``state.want`` (inside a transaction).

    The HNSW index and the match functions are dropped here and re-created by the migration script
    (a vector -> halfvec change would otherwise leave the old functions behind as overloads).
    """
    await conn.execute("LOCK TABLE memory_vectors IN ACCESS EXCLUSIVE MODE")
    rows = int(str(await _scalar(conn, "SELECT count(*) FROM memory_vectors")))
    if rows:  # written to between the first look and the lock
        raise mismatch_error(DimensionState(state.have, state.want, rows), wanted_by)
    await conn.execute("DROP INDEX IF EXISTS memory_vectors_embedding_hnsw")
    cur = await conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.proname IN ('match_memories', 'match_memories_hybrid') AND p.pronamespace = "
        "(SELECT relnamespace FROM pg_class WHERE oid = to_regclass('public.memory_vectors'))"
    )
    for (signature,) in await cur.fetchall():
        await conn.execute(f"DROP FUNCTION IF EXISTS {signature}".encode())
    col = state.want  # rendered by embedding_type(): vector(N) / halfvec(N), nothing user-typed
    await conn.execute(
        f"ALTER TABLE memory_vectors ALTER COLUMN embedding TYPE {col} USING embedding::text::{col}".encode()
    )


async def _migrate(
    conn: psycopg.AsyncConnection, embedding_dim: int | None, check: bool, config: MemoryConfig | None, wanted_by: str
) -> MigrationReport:
    """The body of :func:`migrate` on an open autocommit connection."""
    await _check_pgvector(conn)
    await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
    try:
        report = MigrationReport(current_version=await current_version(conn), target_version=SCHEMA_VERSION)
        dim = await _resolve_dim(conn, embedding_dim, config)
        state = await inspect_dimension(conn, dim)
        if state.differs and state.rows:
            raise mismatch_error(state, wanted_by)
        report.embedding_type = state.want
        if state.differs:
            report.retyped_from = state.have
            report.notes.append(
                f"memory_vectors is empty: its embedding column changes from {state.have} to {state.want} "
                f"for {wanted_by}"
            )
        has_auth = bool(await _scalar(conn, "SELECT to_regprocedure('auth.uid()') IS NOT NULL"))
        if check:
            if not has_auth:
                report.notes.append("auth.uid() is absent: the Supabase auth emulation would be installed")
            return report
        async with conn.transaction():
            if not has_auth:
                await conn.execute(sql_text("supabase_auth_emulation.sql").encode())
                report.auth_emulated = True
            if report.retyped_from is not None:
                await _retype_empty(conn, state, wanted_by)
            await conn.execute(render_migrations(dim).encode())
            if report.auth_emulated or await _scalar(conn, "SELECT to_regrole('service_role') IS NOT NULL"):
                await conn.execute(sql_text("supabase_grants.sql").encode())
        report.applied = report.current_version < SCHEMA_VERSION or report.retyped_from is not None
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


__all__ = [
    "DEFAULT_DIM",
    "SCHEMA_VERSION",
    "DimensionState",
    "MigrationReport",
    "dim_of",
    "embedding_type",
    "existing_embedding_type",
    "inspect_dimension",
    "migrate",
    "mismatch_error",
    "render_migrations",
    "sql_text",
]
