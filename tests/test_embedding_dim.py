"""One store, one embedding dimension: the user's paths from a fresh store, with no API key (local embedder, 384).

Tiers that never embed neither decide nor check memory_vectors' dimension; an empty table follows the
embedder; a table holding vectors of another dimension is refused, and `health` / `migrate --check` say so.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cli_env import fresh_dsn, isolated  # noqa: F401,F811  (fixtures: isolated is autouse)

from memory_implementations import (
    ConversationBufferMemory,
    ConversationSummaryMemory,
    MemoryOrchestrator,
    MemoryType,
    SchemaMismatch,
    VectorDatabaseMemory,
)
from memory_implementations.cli import main
from memory_implementations.cli.health import compute_health, health_exit_code
from memory_implementations.config import MemoryConfig
from memory_implementations.providers.embedding_dim import configured_embedding_dim
from memory_implementations.providers.embeddings import build_embedder
from memory_implementations.stores.migrations import migrate

README_CONFIG = {"buffer_window_size": 10, "max_total_tokens": 4000}
TYPE_SQL = (
    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
    "WHERE attrelid = 'memory_vectors'::regclass AND attname = 'embedding'"
)


@pytest.fixture
def defaults(fresh_dsn: str, redis_url: str, tmp_path: Path) -> dict[str, Any]:
    """The default configuration (no embedding settings, no keys) pointed at a fresh database."""
    return {"database_url": fresh_dsn, "redis_url": redis_url, "data_dir": str(tmp_path / "data")}


async def column_type(dsn: str) -> str:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        row = await (await conn.execute(TYPE_SQL)).fetchone()
    assert row is not None
    return str(row[0])


async def add_row(dsn: str, dim: int) -> None:
    vec = "[" + ",".join(["0.1"] * dim) + "]"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO memory_vectors (user_id, content, content_hash, embedding) "
            "VALUES ('u', 'old', 'h', %s::vector)",
            (vec,),
        )


async def readme_summary_snippet(config: dict[str, Any], uid: str, sid: str) -> None:
    """The README's first "Use" snippet."""
    memory = ConversationSummaryMemory({**config, **README_CONFIG})
    await memory.initialize()
    await memory.store({"session_id": sid, "user_id": uid, "role": "user",
                        "content": "Hello, I need help with Python async programming"})
    context = await memory.get_context({"session_id": sid, "user_id": uid})
    assert [m["content"] for m in context.get("messages", [])] == ["Hello, I need help with Python async programming"]
    await memory.close()


async def orchestrator_remembers(config: dict[str, Any], uid: str) -> None:
    """The README's orchestrator with default tiers, storing and finding a memory in the vector tier."""
    orchestrator = MemoryOrchestrator(dict(config))
    await orchestrator.initialize()
    try:
        vector = orchestrator.memories[MemoryType.VECTOR_DATABASE]
        assert isinstance(vector, VectorDatabaseMemory) and vector.embedder.dim == 384
        await vector.store({"content": "I moved to Lisbon last spring", "user_id": uid})
        ctx = await vector.get_context({"query": "where do I live?", "user_id": uid})
        assert [i["content"] for i in ctx.items] == ["I moved to Lisbon last spring"]
    finally:
        await orchestrator.close()


def test_the_dimension_follows_the_configured_embedder() -> None:
    none = MemoryConfig.from_any({})
    assert configured_embedding_dim(none) == 384 == build_embedder(none).dim
    openai = MemoryConfig.from_any({"openai_api_key": "sk-test"})
    assert configured_embedding_dim(openai) == 1536 == build_embedder(openai).dim
    gemini = MemoryConfig.from_any({"google_api_key": "g-test"})
    assert configured_embedding_dim(gemini) == 768 == build_embedder(gemini).dim
    explicit = MemoryConfig.from_any({"openai_api_key": "sk-test", "embedding_dim": 256})
    assert configured_embedding_dim(explicit) == 256 == build_embedder(explicit).dim
    ada = MemoryConfig.from_any({"openai_api_key": "sk-test", "embedding_model": "text-embedding-ada-002"})
    assert configured_embedding_dim(ada) == 1536


async def test_readme_summary_snippet_then_vector_memory_on_a_fresh_data_dir(
    tmp_path: Path, uid: str, sid: str
) -> None:
    # (a) zero configuration: embedded Redis + PostgreSQL in a fresh data dir
    config: dict[str, Any] = {"data_dir": str(tmp_path / "home-data")}
    await readme_summary_snippet(config, uid, sid)
    async with VectorDatabaseMemory(dict(config)) as vector:
        await vector.store({"content": "I moved to Lisbon last spring", "user_id": uid})
        ctx = await vector.get_context({"query": "where do I live?", "user_id": uid})
        assert [i["content"] for i in ctx.items] == ["I moved to Lisbon last spring"]
        assert await column_type(vector.stores.dsn) == "vector(384)"
    await orchestrator_remembers(config, uid)


async def test_summary_snippet_then_orchestrator(defaults: dict[str, Any], uid: str, sid: str) -> None:
    # (a) on a database
    await readme_summary_snippet(defaults, uid, sid)
    await orchestrator_remembers(defaults, uid)
    assert await column_type(defaults["database_url"]) == "vector(384)"


async def test_orchestrator_then_summary_and_buffer_memory(defaults: dict[str, Any], uid: str, sid: str) -> None:
    # (b) the reverse order, with rows in memory_vectors by the time the non-embedding tiers open
    await orchestrator_remembers(defaults, uid)
    await readme_summary_snippet(defaults, uid, sid)
    # a tier that never embeds ignores the dimension, even one configured for another embedder
    async with ConversationBufferMemory({**defaults, "embedding_dim": 1536}) as buffer:
        await buffer.store({"session_id": sid, "user_id": uid, "role": "user", "content": "still here"})
        assert "still here" in [m["content"] for m in (await buffer.get_context({"session_id": sid})).get("messages")]
    assert await column_type(defaults["database_url"]) == "vector(384)"


async def test_a_non_embedding_tier_keeps_an_empty_1536_table_and_the_vector_tier_adopts_it(
    defaults: dict[str, Any], uid: str, sid: str
) -> None:
    # Supabase: `psql -f database_migrations.sql` creates vector(1536) as written
    await migrate(defaults["database_url"], embedding_dim=1536)
    async with ConversationSummaryMemory({**defaults, **README_CONFIG}) as summary:
        assert isinstance(summary, ConversationSummaryMemory)
        assert await column_type(defaults["database_url"]) == "vector(1536)"
        assert summary.stores.embedding_dim == 1536
        # a vector tier sharing those stores re-creates the empty column for its embedder
        vector = VectorDatabaseMemory(dict(defaults), stores=summary.stores)
        await vector.store({"content": "shared stores work", "user_id": uid})
        assert await column_type(defaults["database_url"]) == "vector(384)"
        assert summary.stores.embedding_dim == 384
        await vector.close()


def test_cli_migrate_without_flags_then_the_orchestrator(
    defaults: dict[str, Any], uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # (c) the documented "migrate, then use": the configured (local) embedder's dimension
    dsn = defaults["database_url"]
    assert main(["migrate", "--dsn", dsn]) == 0
    assert "embedding column: vector(384)" in capsys.readouterr().out
    asyncio.run(orchestrator_remembers(defaults, uid))


def test_cli_migrate_1536_then_the_orchestrator_on_the_empty_table(
    defaults: dict[str, Any], uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # (c)/(d) an empty vector(1536) table follows the embedder that uses it
    dsn = defaults["database_url"]
    assert main(["migrate", "--dsn", dsn, "--embedding-dim", "1536"]) == 0
    asyncio.run(orchestrator_remembers(defaults, uid))
    assert asyncio.run(column_type(dsn)) == "vector(384)"
    # and back: `migrate --embedding-dim N` re-creates an empty table only; this one now holds a row
    assert main(["migrate", "--dsn", dsn, "--embedding-dim", "1536"]) == 2
    assert "holds 1 rows" in capsys.readouterr().err


def test_cli_migrate_embedding_dim_384_on_an_empty_1536_table(
    fresh_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # (d) the fix the error message gives works on an empty table
    assert main(["migrate", "--dsn", fresh_dsn, "--embedding-dim", "1536"]) == 0
    assert main(["migrate", "--dsn", fresh_dsn, "--check", "--embedding-dim", "1536"]) == 0
    capsys.readouterr()
    assert main(["migrate", "--dsn", fresh_dsn, "--check"]) == 1  # the configured embedder wants 384
    assert "from vector(1536) to vector(384)" in capsys.readouterr().out
    assert main(["migrate", "--dsn", fresh_dsn, "--embedding-dim", "384"]) == 0
    out = capsys.readouterr().out
    assert "migrated" in out and "vector(384) (was vector(1536); the table was empty)" in out
    assert asyncio.run(column_type(fresh_dsn)) == "vector(384)"
    assert main(["migrate", "--dsn", fresh_dsn, "--check"]) == 0
    assert "up to date" in capsys.readouterr().out


async def test_a_table_holding_another_dimension_is_refused_by_name(defaults: dict[str, Any]) -> None:
    # (e) the library path
    dsn = defaults["database_url"]
    await migrate(dsn, embedding_dim=1536)
    await add_row(dsn, 1536)
    with pytest.raises(SchemaMismatch) as info:
        await MemoryOrchestrator(dict(defaults)).initialize()
    message = info.value.message
    assert info.value.field == "embedding_dim"
    assert "vector(1536)" in message and "vector(384)" in message and "holds 1 rows" in message
    assert "the configured embedder (local all-MiniLM-L6-v2, 384 dimensions)" in message
    assert "migrate --embedding-dim 384" in message and "Nothing was changed" in message
    assert await column_type(dsn) == "vector(1536)"
    # tiers that never embed still work on that store
    async with ConversationSummaryMemory({**defaults, **README_CONFIG}) as summary:
        await summary.store({"session_id": "s", "user_id": "u", "role": "user", "content": "fine"})
    # health reports it: unhealthy, with the message
    report = await compute_health(MemoryConfig.from_any(defaults))
    postgres = report["details"]["postgres"]
    assert report["status"] == "unhealthy" and health_exit_code(report) == 2
    assert postgres["embedding"] == "vector(1536)" and postgres["embedding_expected"] == "vector(384)"
    assert "holds 1 rows" in postgres["schema_error"]


async def test_health_flags_an_empty_table_of_another_dimension_as_pending(defaults: dict[str, Any]) -> None:
    await migrate(defaults["database_url"], embedding_dim=1536)
    report = await compute_health(MemoryConfig.from_any(defaults))
    postgres = report["details"]["postgres"]
    assert report["status"] == "degraded" and postgres["schema_pending"] is True
    assert "migrate" in postgres["hint"] and "vector(384)" in postgres["hint"]
    await migrate(defaults["database_url"], embedding_dim=None, config=MemoryConfig.from_any(defaults))
    assert await column_type(defaults["database_url"]) == "vector(1536)"  # None keeps what exists
    await migrate(defaults["database_url"], embedding_dim=384)
    assert (await compute_health(MemoryConfig.from_any(defaults)))["status"] == "healthy"


def test_cli_health_and_check_report_a_mismatch(
    defaults: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # (e) the CLI path: `health` exits 2 with the message, `migrate --check` exits non-zero
    dsn = defaults["database_url"]
    asyncio.run(migrate(dsn, embedding_dim=1536))
    asyncio.run(add_row(dsn, 1536))
    monkeypatch.setenv("DATABASE_URL", dsn)
    monkeypatch.setenv("REDIS_URL", defaults["redis_url"])
    monkeypatch.setenv("MEMORY_DATA_DIR", defaults["data_dir"])
    capsys.readouterr()
    assert main(["health"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("status: unhealthy") and "vector(1536)" in out and "vector(384)" in out
    code = main(["migrate", "--check"])
    err = capsys.readouterr().err
    assert code == 2 and "embedding_dim mismatch" in err and "holds 1 rows" in err
    assert asyncio.run(column_type(dsn)) == "vector(1536)"
