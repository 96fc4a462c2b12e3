"""The vector tier over Supabase REST, against a real PostgREST 12 in front of the test PostgreSQL.

Covers the supabase-py path end to end (upsert, rpc match_memories, wfts, PATCH, DELETE) with a
service_role key, and Row Level Security through REST with users' ``authenticated`` JWTs.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest
from postgrest.exceptions import APIError
from postgrest_server import PostgREST, free_port, run_postgrest

from memory_implementations.errors import BackendUnavailable, MemoryError, SchemaMismatch, ValidationError
from memory_implementations.memories.vector import VectorDatabaseMemory
from memory_implementations.stores import Stores
from memory_implementations.stores.supabase import SupabaseVectorBackend, create_supabase_client


@pytest.fixture(scope="module")
def postgrest(stores: Stores, pg_dsn: str) -> Iterator[PostgREST]:
    """PostgREST started after the session's migrations (so its schema cache sees match_memories)."""
    yield from run_postgrest(pg_dsn)


def rest_config(base_config: dict[str, Any], url: str, key: str, **extra: Any) -> dict[str, Any]:
    """Config with Supabase URL + key and no database_url (selects the REST backend)."""
    cfg = {k: v for k, v in base_config.items() if k != "database_url"}
    cfg.update(supabase_url=url, supabase_key=key, **extra)
    return cfg


@pytest.fixture
async def rest_memory(base_config: dict[str, Any], postgrest: PostgREST) -> AsyncIterator[VectorDatabaseMemory]:
    """The vector tier on the REST backend with the service_role key."""
    memory = VectorDatabaseMemory(rest_config(base_config, postgrest.url, postgrest.service_key()))
    await memory.initialize()
    yield memory
    await memory.close()


async def db_rows(stores: Stores, user_id: str) -> list[tuple[Any, ...]]:
    """The user's rows read directly from PostgreSQL (id, content, metadata, session_id, created_at, updated_at)."""
    async with stores.pg.connection() as conn:
        cur = await conn.execute(
            "SELECT id::text, content, metadata, session_id, created_at, updated_at FROM memory_vectors "
            "WHERE user_id = %s ORDER BY created_at",
            (user_id,),
        )
        return await cur.fetchall()


async def test_rest_backend_is_selected_without_database_url(rest_memory: VectorDatabaseMemory) -> None:
    assert rest_memory.mode == "supabase"
    assert isinstance(rest_memory.backend, SupabaseVectorBackend)
    health = await rest_memory.health_check()
    assert health["status"] == "healthy"
    assert health["details"]["supabase"]["status"] == "healthy"


async def test_store_dedupe_search_update_delete_through_rest(
    rest_memory: VectorDatabaseMemory, stores: Stores, uid: str, sid: str
) -> None:
    refs = await rest_memory.store_many(
        [
            {"content": "My cat Miso loves salmon treats", "user_id": uid, "session_id": sid, "metadata": {"a": 1}},
            {"content": "The quarterly report is due on Friday", "user_id": uid, "metadata": {"kind": "work"}},
        ]
    )
    assert [r.created for r in refs] == [True, True]
    again = await rest_memory.store({"content": "  my CAT miso loves salmon treats ", "user_id": uid,
                                     "metadata": {"b": 2}})
    assert again.id == refs[0].id and again.created is False
    rows = await db_rows(stores, uid)
    assert len(rows) == 2
    cat = next(r for r in rows if r[0] == refs[0].id)
    assert cat[1] == "My cat Miso loves salmon treats"  # the original text is kept
    assert cat[2] == {"a": 1, "b": 2}  # metadata merged
    assert cat[3] == sid  # the session is kept
    assert cat[5] > cat[4]  # updated_at refreshed

    results = await rest_memory.search("what does my pet like to eat", user_id=uid, threshold=0.0)
    assert results[0].id == refs[0].id
    assert results[0].similarity is not None and results[0].similarity > 0.3
    filtered = await rest_memory.search("what does my pet like to eat", user_id=uid, threshold=-1.0,
                                        filters={"kind": "work"})
    assert [r.id for r in filtered] == [refs[1].id]

    updated = await rest_memory.update(refs[1].id, content="The dentist appointment is on Monday",
                                       metadata={"kind": "health"}, user_id=uid)
    assert updated["content"] == "The dentist appointment is on Monday"
    assert updated["metadata"] == {"kind": "health"}
    top = await rest_memory.search("when do I see the dentist", user_id=uid, k=1, threshold=0.0)
    assert top[0].id == refs[1].id

    assert await rest_memory.delete(refs[0].id, user_id=str(uuid.uuid4())) is False
    assert await rest_memory.delete(refs[0].id, user_id=uid) is True
    assert await rest_memory.get(refs[0].id) is None
    assert [r[0] for r in await db_rows(stores, uid)] == [refs[1].id]
    assert await rest_memory.clear(user_id=uid) == 1
    assert await db_rows(stores, uid) == []


async def test_hybrid_and_mmr_through_rest(rest_memory: VectorDatabaseMemory, uid: str) -> None:
    docs = [
        "Order ORD-88412: the customer asked for a refund because the lamp arrived broken.",
        "Order ORD-55120 delivery status: shipped, arriving Tuesday.",
        "Order ORD-31877 delivery status: delayed at the warehouse.",
        "Order ORD-90215 delivery status: out for delivery today.",
        "Order ORD-48812 delivery status: awaiting pickup by courier.",
    ]
    refs = await rest_memory.store_many([{"content": d, "user_id": uid} for d in docs])
    query = "What is the delivery status of ORD-88412?"
    plain = await rest_memory.search(query, user_id=uid, k=2, threshold=-1.0, hybrid=False)
    assert refs[0].id not in [r.id for r in plain]
    hybrid = await rest_memory.search(query, user_id=uid, k=2, threshold=-1.0, hybrid=True)
    assert hybrid[0].id == refs[0].id
    assert "text" in hybrid[0].sources
    diverse = await rest_memory.search(query, user_id=uid, k=3, threshold=-1.0, mmr_lambda=0.3)
    assert len({r.id for r in diverse}) == 3


async def test_get_context_through_rest(rest_memory: VectorDatabaseMemory, uid: str) -> None:
    await rest_memory.store_many([{"content": c, "user_id": uid} for c in
                                  ["I am allergic to peanuts", "My favourite colour is green"]])
    ctx = await rest_memory.get_context({"query": "food allergies", "user_id": uid})
    assert ctx.items[0]["section"] == "vector_search"
    assert ctx.items[0]["content"] == "I am allergic to peanuts"
    assert "peanuts" in ctx.text


async def test_rls_holds_through_rest(postgrest: PostgREST, rest_memory: VectorDatabaseMemory) -> None:
    user_a, user_b = str(uuid.uuid4()), str(uuid.uuid4())
    ref_a = await rest_memory.store({"content": "Alpha secret: the vault code is 1234", "user_id": user_a})
    ref_b = await rest_memory.store({"content": "Bravo secret: the vault code is 9876", "user_id": user_b})
    client_a = await create_supabase_client(postgrest.url, postgrest.user_key(user_a))
    try:
        emb = (await rest_memory.embedder.embed(["vault code"]))[0]
        params = {"query_embedding": [float(x) for x in emb], "match_threshold": -1.0, "match_count": 50}
        seen = (await client_a.rpc("match_memories", params).execute()).data
        assert [r["id"] for r in seen] == [ref_a.id]
        asked_for_b = (await client_a.rpc("match_memories", {**params, "p_user_id": user_b}).execute()).data
        assert asked_for_b == []
        selected = (await client_a.table("memory_vectors").select("id,user_id").execute()).data
        assert {r["user_id"] for r in selected} == {user_a}
        by_id = (await client_a.table("memory_vectors").select("id").eq("id", ref_b.id).execute()).data
        assert by_id == []
        row_as_b = {"user_id": user_b, "content": "forged", "content_hash": "x" * 64,
                    "embedding": [float(x) for x in emb]}
        with pytest.raises(APIError) as err:
            await client_a.table("memory_vectors").insert(row_as_b).execute()
        assert err.value.code == "42501"
        deleted = (await client_a.table("memory_vectors").delete().eq("id", ref_b.id).execute()).data
        assert deleted == []
    finally:
        await client_a.options.httpx_client.aclose()
    assert await rest_memory.get(ref_b.id) is not None  # B's row survived A's delete


async def test_tier_with_a_user_jwt_is_confined_to_that_user(
    base_config: dict[str, Any], postgrest: PostgREST, rest_memory: VectorDatabaseMemory
) -> None:
    user_a, user_b = str(uuid.uuid4()), str(uuid.uuid4())
    await rest_memory.store({"content": "Bravo likes mountain hiking", "user_id": user_b})
    memory_a = VectorDatabaseMemory(rest_config(base_config, postgrest.url, postgrest.user_key(user_a)))
    try:
        ref = await memory_a.store({"content": "Alpha likes sea kayaking", "user_id": user_a})
        assert ref.created is True
        assert await memory_a.search("hiking", user_id=user_b, threshold=-1.0) == []
        mine = await memory_a.search("outdoor hobbies", user_id=user_a, threshold=-1.0)
        assert [r.id for r in mine] == [ref.id]
        with pytest.raises(MemoryError) as err:
            await memory_a.store({"content": "forged note", "user_id": user_b})
        assert err.value.field == "user_id"
        assert "row-level security" in err.value.message
    finally:
        await memory_a.close()
    assert [r.content for r in await rest_memory.search("forged note", user_id=user_b, threshold=-1.0)] == [
        "Bravo likes mountain hiking"
    ]


async def test_rest_dimension_mismatch_is_reported(
    base_config: dict[str, Any], postgrest: PostgREST, stores: Stores
) -> None:
    cfg = rest_config(base_config, postgrest.url, postgrest.service_key(), embedding_provider="lexical",
                      embedding_dim=128)
    memory = VectorDatabaseMemory(cfg)
    with pytest.raises(SchemaMismatch) as err:
        await memory.initialize()
    assert err.value.field == "embedding_dim"
    assert "dimension" in err.value.message
    await memory.close()


async def test_rest_validation_writes_nothing(rest_memory: VectorDatabaseMemory, stores: Stores, uid: str) -> None:
    with pytest.raises(ValidationError) as err:
        await rest_memory.store_many([{"content": "fine", "user_id": uid}, {"content": "", "user_id": uid}])
    assert err.value.field == "items[1].content"
    assert await db_rows(stores, uid) == []


async def test_unreachable_supabase_is_backend_unavailable(base_config: dict[str, Any]) -> None:
    backend = await SupabaseVectorBackend.open(f"http://127.0.0.1:{free_port()}", "key", timeout=2.0)
    try:
        with pytest.raises(BackendUnavailable) as err:
            await backend.search(np.ones(384, dtype=np.float32) / np.sqrt(384), _scope(), threshold=0.0, count=1)
        assert err.value.field == "supabase_url"
    finally:
        await backend.close()


def _scope() -> Any:
    from memory_implementations.memories.vector_backend import Scope

    return Scope(user_id="nobody")
