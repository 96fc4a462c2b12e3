"""The migration runner and database_migrations.sql against a real PostgreSQL + pgvector."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from pg_helpers import PLAIN_PG_DSN, fresh_database

from memory_implementations.cli import main
from memory_implementations.config import MemoryConfig
from memory_implementations.errors import BackendUnavailable, ExtensionMissing, SchemaMismatch
from memory_implementations.stores.migrations import (
    SCHEMA_VERSION,
    embedding_type,
    existing_embedding_type,
    migrate,
    render_migrations,
    sql_text,
)

ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = ROOT / "memory_implementations" / "sql"
TENANT_TABLES = (
    "memory_messages",
    "memory_summaries",
    "memory_vectors",
    "memory_kv",
    "memory_kv_history",
    "memory_entities",
    "memory_entity_aliases",
    "memory_entity_attribute_history",
    "memory_entity_relationships",
)

SNAPSHOT_SQL = """
SELECT string_agg(line, E'\\n' ORDER BY line) FROM (
    SELECT format('col %s.%s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull)
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL SELECT 'idx ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL SELECT format('pol %s.%s %s %s %s', tablename, policyname, roles, qual, with_check)
        FROM pg_policies WHERE schemaname = 'public'
    UNION ALL SELECT format('rls %s %s', relname, relrowsecurity) FROM pg_class
        WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
    UNION ALL SELECT 'fn ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) FROM pg_proc p
        WHERE p.pronamespace IN ('public'::regnamespace, to_regnamespace('auth'))
    UNION ALL SELECT format('grant %s %s %s', grantee, table_name, privilege_type)
        FROM information_schema.role_table_grants WHERE table_schema = 'public'
    UNION ALL SELECT format('ext %s', extname) FROM pg_extension
    UNION ALL SELECT format('ver %s %s %s', version, description, applied_at) FROM memory_schema_version
) lines(line)
"""


HNSW_INDEXDEF = "SELECT indexdef FROM pg_indexes WHERE indexname = 'memory_vectors_embedding_hnsw'"


@pytest.fixture
async def fresh_dsn(pg_dsn: str) -> AsyncIterator[str]:
    """A new, empty database on the test server."""
    async with fresh_database(pg_dsn) as dsn:
        yield dsn


async def scalar(dsn: str, query: str, params: tuple[object, ...] = ()) -> object:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(query, params or None)
        row = await cur.fetchone()
        return row[0] if row else None


async def snapshot(dsn: str) -> str:
    value = await scalar(dsn, SNAPSHOT_SQL)
    assert isinstance(value, str) and "memory_vectors" in value
    return value


def psql(dsn: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_root_script_is_the_packaged_one() -> None:
    # users run `psql -f database_migrations.sql` from the repo; the runner applies the packaged copy
    assert (ROOT / "database_migrations.sql").read_text(encoding="utf-8") == sql_text()


async def test_psql_applies_the_file_twice(fresh_dsn: str) -> None:
    emulation = psql(fresh_dsn, SQL_DIR / "supabase_auth_emulation.sql")
    assert emulation.returncode == 0, emulation.stderr
    for _ in range(2):
        result = psql(fresh_dsn, ROOT / "database_migrations.sql")
        assert result.returncode == 0, result.stderr
        assert "ERROR" not in result.stderr
    assert await scalar(fresh_dsn, "SELECT count(*) FROM memory_schema_version") == SCHEMA_VERSION
    assert await scalar(fresh_dsn, "SELECT max(version) FROM memory_schema_version") == SCHEMA_VERSION
    for table in TENANT_TABLES:
        assert await scalar(fresh_dsn, "SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass(%s)", (table,))
    policies = await scalar(fresh_dsn, "SELECT count(*) FROM pg_policies WHERE policyname = 'tenant_isolation'")
    assert policies == len(TENANT_TABLES)
    # the runner then finds the schema current and only (re)applies the idempotent parts
    report = await migrate(fresh_dsn, embedding_dim=1536)
    assert (report.current_version, report.applied, report.auth_emulated) == (SCHEMA_VERSION, False, False)
    assert report.embedding_type == "vector(1536)"


async def test_migrate_twice_is_a_noop_the_second_time(fresh_dsn: str) -> None:
    first = await migrate(fresh_dsn, embedding_dim=384)
    assert (first.current_version, first.applied, first.auth_emulated) == (SCHEMA_VERSION, True, True)
    before = await snapshot(fresh_dsn)
    second = await migrate(fresh_dsn, embedding_dim=384)
    assert (second.current_version, second.applied, second.auth_emulated) == (SCHEMA_VERSION, False, False)
    assert second.pending == []
    assert await snapshot(fresh_dsn) == before


async def test_check_reports_pending_then_nothing(fresh_dsn: str) -> None:
    before = await migrate(fresh_dsn, embedding_dim=384, check=True)
    assert before.pending == list(range(1, SCHEMA_VERSION + 1)) and before.current_version == 0
    assert any("auth" in note for note in before.notes)
    # --check changes nothing
    assert await scalar(fresh_dsn, "SELECT to_regclass('public.memory_schema_version') IS NULL")
    assert await scalar(fresh_dsn, "SELECT to_regprocedure('auth.uid()') IS NULL")
    await migrate(fresh_dsn, embedding_dim=384)
    after = await migrate(fresh_dsn, embedding_dim=384, check=True)
    assert after.pending == [] and after.notes == []


async def test_embedding_dim_384(fresh_dsn: str) -> None:
    report = await migrate(fresh_dsn, embedding_dim=384)
    assert report.embedding_type == "vector(384)"
    async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as conn:
        assert await existing_embedding_type(conn) == "vector(384)"
        indexdef = await (
            await conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'memory_vectors_embedding_hnsw'")
        ).fetchone()
        assert indexdef is not None and "hnsw" in indexdef[0] and "vector_cosine_ops" in indexdef[0]
        vec = "[" + ",".join(["1"] + ["0"] * 383) + "]"
        await conn.execute(
            "INSERT INTO memory_vectors (user_id, content, content_hash, embedding) VALUES ('u', 'x', 'h', %s::vector)",
            (vec,),
        )
        cur = await conn.execute("SELECT content, similarity FROM match_memories(%s::vector, 0.5, 5)", (vec,))
        rows = await cur.fetchall()
    assert [r[0] for r in rows] == ["x"] and rows[0][1] == pytest.approx(1.0)


async def test_embedding_dim_3072_uses_halfvec(fresh_dsn: str) -> None:
    report = await migrate(fresh_dsn, embedding_dim=3072)
    assert report.embedding_type == "halfvec(3072)"
    async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as conn:
        assert await existing_embedding_type(conn) == "halfvec(3072)"
        cur = await conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'memory_vectors_embedding_hnsw'")
        indexdef = await cur.fetchone()
        assert indexdef is not None and "USING hnsw" in indexdef[0] and "halfvec_cosine_ops" in indexdef[0]
        vec = "[" + ",".join(["0.5"] * 3072) + "]"
        other = "[" + ",".join(["-0.5"] * 3072) + "]"
        await conn.execute(
            "INSERT INTO memory_vectors (user_id, content, content_hash, embedding) "
            "VALUES ('u', 'same', 'h1', %s::halfvec), ('u', 'opposite', 'h2', %s::halfvec)",
            (vec, other),
        )
        cur = await conn.execute("SELECT content FROM match_memories(%s::halfvec, 0.5, 5)", (vec,))
        assert [r[0] for r in await cur.fetchall()] == ["same"]
    again = await migrate(fresh_dsn, embedding_dim=3072)
    assert again.applied is False


async def test_dimension_mismatch_raises_and_changes_nothing(fresh_dsn: str) -> None:
    await migrate(fresh_dsn, embedding_dim=384)
    vec = "[" + ",".join(["0.1"] * 384) + "]"
    await scalar(
        fresh_dsn,
        "INSERT INTO memory_vectors (user_id, content, content_hash, embedding) "
        "VALUES ('u', 'kept', 'h', %s::vector) RETURNING id",
        (vec,),
    )
    before = await snapshot(fresh_dsn)
    for check in (False, True):
        with pytest.raises(SchemaMismatch) as info:
            await migrate(fresh_dsn, embedding_dim=1536, check=check)
        assert "vector(384)" in str(info.value) and "vector(1536)" in str(info.value)
        assert "holds 1 rows" in str(info.value) and "migrate --embedding-dim 1536" in str(info.value)
        assert info.value.field == "embedding_dim"
    with pytest.raises(SchemaMismatch):
        await migrate(fresh_dsn, embedding_dim=3072)
    assert await snapshot(fresh_dsn) == before
    assert await scalar(fresh_dsn, "SELECT content FROM memory_vectors") == "kept"


async def test_unspecified_dimension_keeps_the_existing_one(fresh_dsn: str) -> None:
    await migrate(fresh_dsn, embedding_dim=384)
    report = await migrate(fresh_dsn, embedding_dim=None)
    assert report.embedding_type == "vector(384)"


async def test_unspecified_dimension_on_a_new_store_is_the_configured_embedders(
    fresh_dsn: str, pg_dsn: str
) -> None:
    # no key: the local embedder's 384
    local = await migrate(fresh_dsn, embedding_dim=None, config=MemoryConfig.from_any({"embedding_provider": "auto"}))
    assert local.embedding_type == "vector(384)"
    async with fresh_database(pg_dsn) as other:  # an OpenAI key: text-embedding-3-small's 1536
        keyed = MemoryConfig.from_any({"openai_api_key": "sk-test", "embedding_provider": "auto"})
        assert (await migrate(other, embedding_dim=None, config=keyed)).embedding_type == "vector(1536)"


async def test_an_empty_table_of_another_dimension_is_retyped(fresh_dsn: str) -> None:
    # e.g. `psql -f database_migrations.sql` (vector(1536)), then a 384-dimensional embedder
    await migrate(fresh_dsn, embedding_dim=1536)
    check = await migrate(fresh_dsn, embedding_dim=384, check=True)
    assert check.retyped_from == "vector(1536)" and not check.up_to_date
    assert await scalar(fresh_dsn, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = 'memory_vectors'::regclass AND attname = 'embedding'") == "vector(1536)"
    report = await migrate(fresh_dsn, embedding_dim=384)
    assert (report.embedding_type, report.retyped_from, report.applied) == ("vector(384)", "vector(1536)", True)
    vec = "[" + ",".join(["1"] + ["0"] * 383) + "]"
    await scalar(fresh_dsn, "INSERT INTO memory_vectors (user_id, content, content_hash, embedding) "
                 "VALUES ('u', 'x', 'h', %s::vector) RETURNING id", (vec,))
    assert await scalar(fresh_dsn, "SELECT content FROM match_memories(%s::vector, 0.5, 5)", (vec,)) == "x"
    assert await scalar(fresh_dsn, "SELECT content FROM match_memories_hybrid(%s::vector, 'x', 0.5, 5, "
                        "'{}'::jsonb, 'u')", (vec,)) == "x"
    indexdef = await scalar(fresh_dsn, HNSW_INDEXDEF)
    assert isinstance(indexdef, str) and "hnsw" in indexdef and "vector_cosine_ops" in indexdef
    again = await migrate(fresh_dsn, embedding_dim=384, check=True)
    assert again.up_to_date and again.retyped_from is None


async def test_an_empty_table_is_retyped_to_halfvec_without_leftover_functions(fresh_dsn: str) -> None:
    await migrate(fresh_dsn, embedding_dim=1536)
    report = await migrate(fresh_dsn, embedding_dim=3072)
    assert report.embedding_type == "halfvec(3072)"
    signatures = await scalar(fresh_dsn, "SELECT string_agg(oid::regprocedure::text, ' ') FROM pg_proc "
                              "WHERE proname IN ('match_memories', 'match_memories_hybrid')")
    assert isinstance(signatures, str) and signatures.count("halfvec") == 2 and "(vector" not in signatures
    indexdef = await scalar(fresh_dsn, HNSW_INDEXDEF)
    assert isinstance(indexdef, str) and "halfvec_cosine_ops" in indexdef
    vec = "[" + ",".join(["0.5"] * 3072) + "]"
    await scalar(fresh_dsn, "INSERT INTO memory_vectors (user_id, content, content_hash, embedding) "
                 "VALUES ('u', 'y', 'h', %s::halfvec) RETURNING id", (vec,))
    assert await scalar(fresh_dsn, "SELECT content FROM match_memories(%s::halfvec, 0.5, 5)", (vec,)) == "y"


async def test_concurrent_migrations_all_succeed(fresh_dsn: str) -> None:
    reports = await asyncio.gather(*(migrate(fresh_dsn, embedding_dim=384) for _ in range(3)))
    assert all(r.current_version == SCHEMA_VERSION for r in reports)
    # the advisory lock serialises them: exactly one found the database empty
    assert sorted(r.applied for r in reports) == [False, False, True]
    assert sorted(r.auth_emulated for r in reports) == [False, False, True]
    assert await scalar(fresh_dsn, "SELECT count(*) FROM memory_schema_version") == SCHEMA_VERSION
    assert await scalar(fresh_dsn, "SELECT count(*) FROM pg_proc WHERE proname = 'match_memories'") == 1


async def test_concurrent_migrations_of_two_databases_share_the_roles(pg_dsn: str) -> None:
    # roles are cluster-wide; the advisory lock is per database
    async with fresh_database(pg_dsn) as a, fresh_database(pg_dsn) as b:
        reports = await asyncio.gather(migrate(a, embedding_dim=8), migrate(b, embedding_dim=8))
        assert [r.current_version for r in reports] == [SCHEMA_VERSION, SCHEMA_VERSION]


def test_render_migrations_rewrites_every_embedding_type() -> None:
    text = render_migrations(3072)
    assert "vector(1536)" not in text and "vector_cosine_ops" not in text
    assert text.count("halfvec(3072)") >= 2  # the column and match_memories' argument
    assert "halfvec_cosine_ops" in text
    small = render_migrations(384)
    assert "vector(1536)" not in small and "vector(384)" in small and "vector_cosine_ops" in small
    assert embedding_type(2000) == "vector(2000)" and embedding_type(2001) == "halfvec(2001)"
    for bad in (0, 16001):
        with pytest.raises(SchemaMismatch):
            embedding_type(bad)


async def test_unreachable_server_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable) as info:
        await migrate("postgresql://postgres@127.0.0.1:1/nowhere")
    assert info.value.field == "database_url"
    assert "cannot connect" in str(info.value)


async def test_plain_postgres_without_pgvector_raises_extension_missing() -> None:
    with pytest.raises(ExtensionMissing) as info:
        await migrate(PLAIN_PG_DSN, embedding_dim=384)
    message = str(info.value)
    assert "`vector` extension is missing" in message
    assert "postgresql-<major>-pgvector" in message and "embedded PostgreSQL" in message
    assert isinstance(info.value, BackendUnavailable)
    # nothing was created on that server
    assert await scalar(PLAIN_PG_DSN, "SELECT to_regclass('public.memory_schema_version') IS NULL")


def test_cli_migrate_on_plain_postgres_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["migrate", "--dsn", PLAIN_PG_DSN, "--embedding-dim", "384"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "`vector` extension is missing" in lines[0]
    assert "Traceback" not in err


async def test_search_functions_plan_per_call_and_a_version_2_schema_is_upgraded(fresh_dsn: str) -> None:
    """Both search functions force a custom plan (a generic one cannot tell a small tenant from a huge one)."""
    config_sql = "SELECT proconfig FROM pg_proc WHERE proname = %s"
    await migrate(fresh_dsn, embedding_dim=384)
    async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as conn:
        for fn in ("match_memories", "match_memories_hybrid"):  # as schema version 2 left them
            await conn.execute(f"ALTER FUNCTION {fn} RESET plan_cache_mode")
        await conn.execute("DELETE FROM memory_schema_version WHERE version = 3")
    assert "plan_cache_mode=force_custom_plan" not in (await scalar(fresh_dsn, config_sql, ("match_memories",)))
    report = await migrate(fresh_dsn, embedding_dim=384)
    assert report.applied and report.current_version == SCHEMA_VERSION == 3
    for fn in ("match_memories", "match_memories_hybrid"):
        assert "plan_cache_mode=force_custom_plan" in (await scalar(fresh_dsn, config_sql, (fn,)))
