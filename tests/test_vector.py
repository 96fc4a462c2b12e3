"""VectorDatabaseMemory on the direct PostgreSQL path, with the real offline MiniLM embedder (384 dims)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from memory_implementations.config import MemoryConfig
from memory_implementations.errors import NotFound, SchemaMismatch, ValidationError
from memory_implementations.memories._provider_key import provider_key
from memory_implementations.memories.vector import DENSE_WEIGHT, VectorDatabaseMemory
from memory_implementations.memories.vector_backend import VectorRow, content_hash, lexical_queries
from memory_implementations.memories.vector_sql import SqlVectorBackend
from memory_implementations.providers import build_embedder
from memory_implementations.stores import Stores
from memory_implementations.types import ContextRequest, MemoryType

ORDERS = [
    "Order ORD-88412: the customer asked for a refund because the lamp arrived broken.",
    "Order ORD-55120 delivery status: shipped, arriving Tuesday.",
    "Order ORD-31877 delivery status: delayed at the warehouse.",
    "Order ORD-90215 delivery status: out for delivery today.",
    "Order ORD-88413 delivery status: delivered to the front desk.",
    "Order ORD-48812 delivery status: awaiting pickup by courier.",
    "Order ORD-12488 delivery status: label created, not yet shipped.",
    "Delivery status updates are sent by email for every order.",
]


class CountingEmbedder:
    """Wraps the real embedder and counts embed() calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model, self.dim, self.kind = inner.model, inner.dim, inner.kind
        self.calls: list[int] = []

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return await self.inner.embed(texts)


@pytest.fixture
async def memory(config: MemoryConfig, stores: Stores) -> AsyncIterator[VectorDatabaseMemory]:
    """The vector tier on the shared test stores."""
    m = VectorDatabaseMemory(config, stores=stores)
    await m.initialize()
    yield m
    await m.close()


async def rows_of(stores: Stores, user_id: str) -> list[dict[str, Any]]:
    """The user's rows, read directly."""
    async with stores.pg.connection() as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        await cur.execute(
            "SELECT id::text AS id, content, metadata, session_id, namespace, created_at, updated_at, content_hash "
            "FROM memory_vectors WHERE user_id = %s ORDER BY created_at, content",
            (user_id,),
        )
        return await cur.fetchall()


def unit(rng: np.random.Generator, n: int, dim: int = 384) -> np.ndarray:
    """``n`` random unit vectors."""
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# store, de-duplication, get -------------------------------------------------------------------
async def test_uses_the_shared_real_embedder(memory: VectorDatabaseMemory, stores: Stores) -> None:
    assert memory.embedder is stores.shared(provider_key("embedder", memory.config), lambda: None)
    assert (memory.embedder.dim, memory.embedder.kind) == (384, "semantic")
    assert memory.embedding_dim() == 384
    assert isinstance(memory.backend, SqlVectorBackend)


async def test_store_and_get(memory: VectorDatabaseMemory, stores: Stores, uid: str, sid: str) -> None:
    ref = await memory.store({"content": "Paris is the capital of France", "user_id": uid, "session_id": sid,
                              "namespace": "geo", "metadata": {"source": "atlas"}})
    assert ref.memory_type is MemoryType.VECTOR_DATABASE and ref.created and ref.durable
    got = await memory.get(ref.id)
    assert got is not None
    assert (got["content"], got["user_id"], got["session_id"], got["namespace"], got["metadata"]) == (
        "Paris is the capital of France", uid, sid, "geo", {"source": "atlas"})
    assert await memory.get(ref.id, user_id=str(uuid.uuid4())) is None
    row = (await rows_of(stores, uid))[0]
    assert row["content_hash"] == content_hash("  paris is THE capital of france ")


async def test_repeated_store_refreshes_the_row(memory: VectorDatabaseMemory, stores: Stores, uid: str) -> None:
    first = await memory.store({"content": "I prefer window seats", "user_id": uid, "metadata": {"a": 1, "k": "x"}})
    before = (await rows_of(stores, uid))[0]
    second = await memory.store({"content": "i prefer   WINDOW seats", "user_id": uid, "metadata": {"b": 2, "k": "y"}})
    rows = await rows_of(stores, uid)
    assert second.id == first.id and second.created is False
    assert len(rows) == 1
    assert rows[0]["content"] == "I prefer window seats"
    assert rows[0]["metadata"] == {"a": 1, "b": 2, "k": "y"}
    assert rows[0]["created_at"] == before["created_at"]
    assert rows[0]["updated_at"] > before["updated_at"]
    other_ns = await memory.store({"content": "I prefer window seats", "user_id": uid, "namespace": "travel"})
    assert other_ns.created and other_ns.id != first.id
    other_user = await memory.store({"content": "I prefer window seats", "user_id": str(uuid.uuid4())})
    assert other_user.created and other_user.id != first.id


async def test_store_many_one_embed_call_and_in_batch_duplicates(
    config: MemoryConfig, stores: Stores, uid: str
) -> None:
    counting = CountingEmbedder(stores.shared(provider_key("embedder", config), lambda: build_embedder(config, redis=stores.redis)))
    m = VectorDatabaseMemory(config, stores=stores, embedder=counting)
    items: list[Any] = [
        {"content": "Alice works at Acme", "user_id": uid, "metadata": {"n": 1}},
        {"content": "Bob lives in Berlin", "user_id": uid},
        {"content": "alice works at acme", "user_id": uid, "metadata": {"m": 2}},
        {"content": "Carol plays the cello", "user_id": uid},
    ]
    refs = await m.store_many(items)
    assert counting.calls == [3]  # one call, duplicates embedded once
    assert [r.created for r in refs] == [True, True, False, True]
    assert refs[0].id == refs[2].id and len({r.id for r in refs}) == 3
    rows = await rows_of(stores, uid)
    assert len(rows) == 3
    assert next(r for r in rows if r["id"] == refs[0].id)["metadata"] == {"n": 1, "m": 2}
    assert (await m.store("plain string memory")).created in (True, False)
    await m.clear(user_id="default")


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"content": ""}, "content"),
        ({"content": "   "}, "content"),
        ({"content": 42}, "content"),
        ({"content": "ok", "metadata": ["not", "a", "dict"]}, "metadata"),
        ({"content": "ok", "metadata": {"when": datetime.now(UTC)}}, "metadata"),
        ({"content": "ok", "user_id": 7}, "user_id"),
        ({"content": "ok", "namespace": ""}, "namespace"),
        ({"content": "ok", "colour": "blue"}, "colour"),
        (3.14, "item"),
    ],
)
async def test_bad_items_raise_validation_error_naming_the_field(
    memory: VectorDatabaseMemory, stores: Stores, uid: str, item: Any, field: str
) -> None:
    if isinstance(item, dict):
        item = {"user_id": uid, **item}
    with pytest.raises(ValidationError) as err:
        await memory.store(item)
    assert err.value.field == field
    assert await rows_of(stores, uid) == []


async def test_a_bad_item_in_a_batch_writes_nothing(memory: VectorDatabaseMemory, stores: Stores, uid: str) -> None:
    with pytest.raises(ValidationError) as err:
        await memory.store_many([{"content": "good one", "user_id": uid}, {"content": "x" * 40_000, "user_id": uid}])
    assert err.value.field == "items[1].content"
    assert "max_message_chars" in err.value.message
    assert await rows_of(stores, uid) == []


# search ----------------------------------------------------------------------------------------
async def test_semantic_search_scoping_and_filters(memory: VectorDatabaseMemory, uid: str, sid: str) -> None:
    ids = await memory.store_many([
        {"content": "My dog Rex is a golden retriever", "user_id": uid, "session_id": sid,
         "metadata": {"topic": "pets"}},
        {"content": "I work as a nurse at the city hospital", "user_id": uid, "metadata": {"topic": "work"}},
        {"content": "My cat sleeps on the windowsill", "user_id": uid, "namespace": "cats",
         "metadata": {"topic": "pets"}},
    ])
    other = str(uuid.uuid4())
    await memory.store({"content": "My dog Rex is a golden retriever", "user_id": other})

    results = await memory.search("what kind of dog do I have", user_id=uid, threshold=0.0, hybrid=False)
    assert results[0].id == ids[0].id
    assert all(r.user_id == uid for r in results)
    assert results[0].similarity is not None and results[0].score == results[0].similarity
    assert [r.similarity for r in results] == sorted([r.similarity for r in results], reverse=True)
    assert {"id", "content", "metadata", "similarity", "score", "created_at"} <= set(results[0])

    in_session = await memory.get_context({"query": "animals", "user_id": uid, "session_id": sid,
                                           "session_only": True, "threshold": -1.0})
    assert [i["id"] for i in in_session.items] == [ids[0].id]
    across = await memory.get_context({"query": "animals", "user_id": uid, "session_id": sid, "threshold": -1.0})
    assert len(across.items) == 3
    pets = await memory.search("animals", user_id=uid, threshold=-1.0, filters={"topic": "pets"})
    assert {r.id for r in pets} == {ids[0].id, ids[2].id}
    assert [r.id for r in await memory.search("animals", user_id=uid, threshold=-1.0, namespace="cats")] == [ids[2].id]
    assert [r.id for r in await memory.search("animals", user_id=uid, threshold=-1.0, session_id=sid)] == [ids[0].id]
    assert len(await memory.search("animals", user_id=uid, threshold=-1.0, k=1)) == 1
    strict = await memory.search("what kind of dog do I have", user_id=uid, threshold=0.99, hybrid=False)
    assert strict == []
    # the threshold bounds the similarity leg; a full-text match is kept whatever its similarity
    kept = await memory.search("what kind of dog do I have", user_id=uid, threshold=0.99)
    assert [(r.id, r.sources) for r in kept] == [(ids[0].id, ("text",))]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert await memory.search("dog", user_id=uid, threshold=-1.0, created_after=future) == []
    assert len(await memory.search("dog", user_id=uid, threshold=-1.0, created_before=future.isoformat())) == 3


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"k": 0}, "k"),
        ({"k": "5"}, "k"),
        ({"threshold": 2.0}, "threshold"),
        ({"filters": "topic=pets"}, "filters"),
        ({"mmr_lambda": 1.5}, "mmr_lambda"),
        ({"hybrid": "yes"}, "hybrid"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_after": datetime(2024, 1, 1)}, "created_after"),
        ({"user_id": ""}, "user_id"),
    ],
)
async def test_bad_search_arguments(memory: VectorDatabaseMemory, uid: str, kwargs: dict[str, Any], field: str) -> None:
    args = {"user_id": uid, **kwargs}
    with pytest.raises(ValidationError) as err:
        await memory.search("anything", **args)
    assert err.value.field == field


async def test_hybrid_finds_the_exact_keyword_row(memory: VectorDatabaseMemory, uid: str) -> None:
    refs = await memory.store_many([{"content": c, "user_id": uid} for c in ORDERS])
    target = refs[0].id
    query = "What is the delivery status of ORD-88412?"
    plain = await memory.search(query, user_id=uid, k=3, threshold=-1.0, hybrid=False)
    assert target not in [r.id for r in plain]  # the embedding alone prefers the other delivery notes
    hybrid = await memory.search(query, user_id=uid, k=3, threshold=-1.0, hybrid=True)
    assert hybrid[0].id == target
    assert set(hybrid[0].sources) == {"vector", "text"}
    dense_rank = [r.id for r in await memory.search(query, user_id=uid, k=8, threshold=-1.0, hybrid=False)].index(
        target) + 1
    assert hybrid[0].score == pytest.approx(1 / 61 + DENSE_WEIGHT / (60 + dense_rank))


async def test_hybrid_from_config(config: MemoryConfig, stores: Stores, uid: str) -> None:
    m = VectorDatabaseMemory(config.model_copy(update={"hybrid_search": True}), stores=stores)
    refs = await m.store_many([{"content": c, "user_id": uid} for c in ORDERS])
    assert (await m.search("delivery status of ORD-88412", user_id=uid, k=1, threshold=-1.0))[0].id == refs[0].id
    off = VectorDatabaseMemory(config.model_copy(update={"hybrid_search": False}), stores=stores)
    plain = await off.search("delivery status of ORD-88412", user_id=uid, k=1, threshold=-1.0)
    assert plain[0].id != refs[0].id and plain[0].sources == ("vector",)


def test_lexical_queries_treat_identifiers_as_required() -> None:
    assert lexical_queries("status of ORD-88412?") == ("ord-88412", "status or of or ord-88412")
    assert lexical_queries("where is alice", ["Alice Smith"]) == ("alice or smith", "where or is or alice or smith")
    assert lexical_queries("???") is None


async def test_mmr_removes_near_duplicates(memory: VectorDatabaseMemory, uid: str) -> None:
    await memory.store_many([{"content": c, "user_id": uid} for c in [
        "The Eiffel Tower is in Paris.",
        "The Eiffel Tower is located in Paris.",
        "The Eiffel Tower stands in Paris, France.",
        "Paris is home to the Eiffel Tower.",
        "The Louvre museum in Paris holds the Mona Lisa.",
        "Paris has excellent bakeries selling croissants.",
    ]])
    query = "famous places in Paris"
    plain = await memory.search(query, user_id=uid, k=3, threshold=-1.0)
    diverse = await memory.search(query, user_id=uid, k=3, threshold=-1.0, mmr_lambda=0.3)

    def towers(rs: list[Any]) -> int:
        return sum("Eiffel" in r.content for r in rs)

    assert towers(plain) >= 2
    assert towers(diverse) == 1
    assert len(diverse) == 3


async def test_filtered_search_returns_enough_rows_with_iterative_scan(
    memory: VectorDatabaseMemory, stores: Stores
) -> None:
    """2,000 rows, 1% tagged: a top-5 search filtered on the tag returns 5 even through the HNSW index."""
    rng = np.random.default_rng(7)
    user, tag = str(uuid.uuid4()), f"rare-{uuid.uuid4().hex[:8]}"
    vecs = unit(rng, 2000)
    rows = [
        VectorRow(user_id=user, namespace="iter", content=f"synthetic memory {i}", content_hash=content_hash(f"s{i}"),
                  embedding=vecs[i], embedding_model="synthetic", metadata={"tag": tag} if i % 100 == 0 else {})
        for i in range(2000)
    ]
    await memory.backend.upsert(rows)
    query = unit(rng, 1)[0]
    hits = await memory.backend.search(query, memory_scope(filter={"tag": tag}), threshold=-1.0, count=5)
    assert len(hits) == 5
    async with stores.pg.connection() as conn:
        await conn.execute("SET enable_seqscan = off")  # force the HNSW path, as on a large table
        await conn.execute("SET enable_bitmapscan = off")  # (not the GIN metadata index)
        await conn.execute("SET hnsw.ef_search = 40")
        cur = await conn.execute(
            "SELECT count(*) FROM match_memories(%s::vector(384), -1.0, 5, %s::jsonb)", (query, f'{{"tag": "{tag}"}}'))
        assert (await cur.fetchone())[0] == 5
        # control: the same ordered scan without iterative scanning comes back short
        await conn.execute("SET hnsw.iterative_scan = off")
        cur = await conn.execute(
            "SELECT count(*) FROM (SELECT id FROM memory_vectors WHERE metadata @> %s::jsonb "
            "ORDER BY embedding <=> %s::vector(384) LIMIT 5) s", (f'{{"tag": "{tag}"}}', query))
        assert (await cur.fetchone())[0] < 5
        await conn.execute("RESET ALL")
    await memory.clear(user_id=user)


async def test_explain_uses_the_hnsw_index(memory: VectorDatabaseMemory, stores: Stores) -> None:
    """Diagnostic: the statement match_memories runs is an HNSW index scan once sequential scans are too costly."""
    rng = np.random.default_rng(3)
    user = str(uuid.uuid4())
    vecs = unit(rng, 500)
    await memory.backend.upsert([
        VectorRow(user_id=user, namespace="explain", content=f"e{i}", content_hash=content_hash(f"e{i}"),
                  embedding=vecs[i], embedding_model="synthetic") for i in range(500)
    ])
    async with stores.pg.connection() as conn:
        await conn.execute("SET enable_seqscan = off")
        cur = await conn.execute(
            "EXPLAIN SELECT id, 1 - (embedding <=> %s::vector(384)) AS similarity FROM memory_vectors m "
            "WHERE 1 - (m.embedding <=> %s::vector(384)) >= -1 ORDER BY m.embedding <=> %s::vector(384) LIMIT 5",
            (vecs[0], vecs[0], vecs[0]))
        plan = "\n".join(r[0] for r in await cur.fetchall())
        await conn.execute("RESET ALL")
    assert "memory_vectors_embedding_hnsw" in plan, plan
    await memory.clear(user_id=user)


def memory_scope(**kwargs: Any) -> Any:
    """A backend Scope."""
    from memory_implementations.memories.vector_backend import Scope

    return Scope(**kwargs)


# update / delete / clear -------------------------------------------------------------------------
async def test_update_reembeds_and_replaces_metadata(memory: VectorDatabaseMemory, uid: str) -> None:
    ref = await memory.store({"content": "My favourite sport is tennis", "user_id": uid, "metadata": {"a": 1}})
    other = await memory.store({"content": "I drive a blue bicycle", "user_id": uid})
    before = (await memory.search("swimming pool", user_id=uid, k=1, threshold=-1.0))[0]
    updated = await memory.update(ref.id, content="My favourite sport is swimming", metadata={"b": 2}, user_id=uid)
    assert updated["content"] == "My favourite sport is swimming" and updated["metadata"] == {"b": 2}
    after = (await memory.search("swimming pool", user_id=uid, k=1, threshold=-1.0))[0]
    assert after.id == ref.id
    assert after.similarity is not None and (before.id != ref.id or after.similarity > (before.similarity or 0))
    meta_only = await memory.update(ref.id, metadata={"c": 3}, user_id=uid)
    assert meta_only["content"] == "My favourite sport is swimming" and meta_only["metadata"] == {"c": 3}
    with pytest.raises(NotFound):
        await memory.update(ref.id, metadata={"x": 1}, user_id=str(uuid.uuid4()))
    with pytest.raises(ValidationError) as err:
        await memory.update(ref.id, content="i drive a BLUE bicycle", user_id=uid)
    assert err.value.field == "content" and other.id in err.value.message
    with pytest.raises(ValidationError) as err:
        await memory.update("not-a-uuid", content="x", user_id=uid)
    assert err.value.field == "id"
    with pytest.raises(ValidationError) as err:
        await memory.update(ref.id, user_id=uid)
    assert (await memory.get(ref.id))["content"] == "My favourite sport is swimming"  # type: ignore[index]


async def test_delete_is_scoped_to_the_user(memory: VectorDatabaseMemory, uid: str) -> None:
    ref = await memory.store({"content": "Temporary note", "user_id": uid})
    assert await memory.delete(ref.id, user_id=str(uuid.uuid4())) is False
    assert await memory.get(ref.id) is not None
    assert await memory.delete(ref.id, user_id=uid) is True
    assert await memory.get(ref.id) is None
    assert await memory.delete(ref.id, user_id=uid) is False


async def test_clear_by_scope(memory: VectorDatabaseMemory, stores: Stores, uid: str, sid: str) -> None:
    await memory.store_many([
        {"content": "one", "user_id": uid, "session_id": sid},
        {"content": "two", "user_id": uid, "namespace": "ns2"},
        {"content": "three", "user_id": uid},
    ])
    assert await memory.clear(user_id=uid, session_id=sid) == 1
    assert await memory.clear(user_id=uid, namespace="ns2") == 1
    assert [r["content"] for r in await rows_of(stores, uid)] == ["three"]
    with pytest.raises(ValidationError):
        await memory.clear()
    assert await memory.forget_user(uid) == 1
    assert await rows_of(stores, uid) == []


# get_context ----------------------------------------------------------------------------------
async def test_get_context_follows_the_tier_contract(memory: VectorDatabaseMemory, uid: str) -> None:
    await memory.store_many([{"content": c, "user_id": uid, "metadata": {"i": i}} for i, c in enumerate([
        "I am allergic to peanuts and shellfish",
        "My sister lives in Lisbon",
        "I started learning the piano last year",
    ])])
    ctx = await memory.get_context(ContextRequest(query="what food should I avoid", user_id=uid,
                                                  filters={"threshold": -1.0, "hybrid": False}))
    assert ctx.memory_type is MemoryType.VECTOR_DATABASE
    first = ctx.items[0]
    assert first["section"] == "vector_search"
    assert first["content"] == "I am allergic to peanuts and shellfish"
    assert first["score"] == first["similarity"] and isinstance(first["id"], str) and first["metadata"] == {"i": 0}
    assert [i["score"] for i in ctx.items] == sorted([i["score"] for i in ctx.items], reverse=True)
    assert {r["id"] for r in ctx["results"]} == {i["id"] for i in ctx.items}
    assert "peanuts" in ctx.text and ctx.token_count == memory.tokenizer.count(ctx.text)
    assert ctx["mode"] == "vector" and ctx.truncated is False


async def test_get_context_trims_the_least_similar_first(memory: VectorDatabaseMemory, uid: str) -> None:
    await memory.store_many([{"content": c, "user_id": uid} for c in [
        "I am allergic to peanuts",
        "Peanut butter makes me sick, I avoid all nuts",
        "My sister lives in Lisbon and works as an architect designing museums",
    ]])
    request = {"query": "nut allergy", "user_id": uid, "threshold": -1.0}
    full = await memory.get_context(request)
    assert len(full.items) == 3
    budget = full.token_count - 5
    trimmed = await memory.get_context(request, max_tokens=budget)
    assert trimmed.truncated is True and trimmed.token_count <= budget
    assert [i["id"] for i in trimmed.items] == [i["id"] for i in full.items][:2]
    tiny = await memory.get_context(request, max_tokens=12)
    assert tiny.token_count <= 12 and len(tiny.items) <= 1


async def test_entities_steer_the_search(memory: VectorDatabaseMemory, uid: str) -> None:
    refs = await memory.store_many([{"content": c, "user_id": uid} for c in [
        "Project planning meeting moved to Thursday",
        "The budget review meeting is on Monday",
        "Team offsite agenda was shared with everyone",
        "Zoltan Kovacs owns the deployment checklist",
    ]])
    base = await memory.get_context({"query": "who handles the meeting plan", "user_id": uid, "k": 2,
                                     "threshold": -1.0})
    assert refs[3].id not in [i["id"] for i in base.items]
    steered = await memory.get_context({"query": "who handles the meeting plan", "user_id": uid, "k": 2,
                                        "threshold": -1.0, "entities": ["Zoltan Kovacs"]})
    assert refs[3].id in [i["id"] for i in steered.items]
    assert steered["mode"] == "hybrid" and steered["entities"] == ["Zoltan Kovacs"]


STEER_MEMORIES = [
    "Project planning meeting moved to Thursday",
    "The budget review meeting is on Monday",
    "Team offsite agenda was shared with everyone",
    "Zoltan Kovacs owns the deployment checklist",
]


@pytest.mark.parametrize("names", [["Zoltan Kovacs"], []])
async def test_steered_context_embeds_the_query_before_the_names_and_matches_get_context(
    memory: VectorDatabaseMemory, uid: str, names: list[str]
) -> None:
    """The unsteered search runs while the entity names are looked up (its answer is used when there are
    none; names run it again with them); one embedding; the answer equals awaiting the names first."""
    await memory.store_many([{"content": c, "user_id": uid} for c in STEER_MEMORIES])
    request = {"query": "who handles the meeting plan", "user_id": uid, "k": 2, "threshold": -1.0}
    expected = await memory.get_context({**request, **({"entities": names} if names else {})})
    embedder, backend = await memory._ready()
    calls: list[str] = []
    real_embed, real_hybrid = embedder.embed, backend.hybrid_search

    async def embed(*args: Any, **kw: Any) -> Any:
        calls.append("embed")
        return await real_embed(*args, **kw)

    async def hybrid_search(*args: Any, **kw: Any) -> Any:
        calls.append("search")
        return await real_hybrid(*args, **kw)

    async def late_names() -> list[str]:
        for _ in range(20):  # the names arrive only after the embedding started
            if "embed" in calls:
                break
            await asyncio.sleep(0.005)
        calls.append("names")
        return names

    embedder.embed, backend.hybrid_search = embed, hybrid_search  # type: ignore[method-assign]
    try:
        got = await memory.get_steered_context(request, entities=late_names())
    finally:
        del embedder.embed, backend.hybrid_search
    # the search does not wait for the names; a second statement only when names steer it
    assert calls == (["embed", "search", "names", "search"] if names else ["embed", "search", "names"])
    assert [i["id"] for i in got.items] == [i["id"] for i in expected.items]
    assert got["mode"] == expected["mode"] and got["entities"] == expected["entities"]
    assert [i["score"] for i in got.items] == pytest.approx([i["score"] for i in expected.items])


async def test_steered_context_falls_back_cleanly(memory: VectorDatabaseMemory, uid: str) -> None:
    """An invalid request raises as get_context does; an empty query or MMR runs no early leg."""
    async def names() -> list[str]:
        return []

    with pytest.raises(ValidationError):
        await memory.get_steered_context({"query": "x", "user_id": uid, "k": 0}, entities=names())
    await memory.store({"content": "a note about tea", "user_id": uid})
    ctx = await memory.get_steered_context({"user_id": uid}, entities=names())
    assert ctx["mode"] == "recent"
    ctx = await memory.get_steered_context({"query": "tea", "user_id": uid, "mmr_lambda": 0.5, "threshold": -1.0},
                                           entities=names())
    assert [i["content"] for i in ctx.items] == ["a note about tea"]


async def test_empty_query_returns_recent_memories_without_vector_work(config: MemoryConfig, stores: Stores,
                                                                        uid: str) -> None:
    counting = CountingEmbedder(stores.shared(provider_key("embedder", config), lambda: build_embedder(config, redis=stores.redis)))
    m = VectorDatabaseMemory(config, stores=stores, embedder=counting)
    await m.store({"content": "older note", "user_id": uid})
    await m.store({"content": "newer note", "user_id": uid})
    counting.calls.clear()
    ctx = await m.get_context({"user_id": uid})
    assert counting.calls == []
    assert ctx["mode"] == "recent"
    assert [i["content"] for i in ctx.items] == ["newer note", "older note"]
    assert all(i["score"] <= 0.0 and i["section"] == "vector_search" for i in ctx.items)


# schema / lifecycle ---------------------------------------------------------------------------
async def test_dimension_mismatch_is_refused_and_changes_nothing(
    base_config: dict[str, Any], stores: Stores, memory: VectorDatabaseMemory, uid: str
) -> None:
    await memory.store({"content": "kept across the failed open", "user_id": uid})
    async with stores.pg.connection() as conn:
        count_before = (await (await conn.execute("SELECT count(*) FROM memory_vectors")).fetchone())[0]
    other = VectorDatabaseMemory({**base_config, "embedding_provider": "lexical", "embedding_dim": 128})
    assert other.embedding_dim() == 128
    with pytest.raises(SchemaMismatch) as err:
        await other.initialize()
    assert err.value.field == "embedding_dim"
    assert "vector(384)" in err.value.message and "vector(128)" in err.value.message
    assert "Nothing was changed" in err.value.message
    async with stores.pg.connection() as conn:
        cur = await conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'memory_vectors'::regclass AND attname = 'embedding'")
        assert (await cur.fetchone())[0] == "vector(384)"
        assert (await (await conn.execute("SELECT count(*) FROM memory_vectors")).fetchone())[0] == count_before


async def test_embedder_and_shared_stores_must_agree(config: MemoryConfig, stores: Stores) -> None:
    lexical = build_embedder(config.model_copy(update={"embedding_provider": "lexical", "embedding_dim": 64}))
    m = VectorDatabaseMemory(config, stores=stores, embedder=lexical)
    with pytest.raises(SchemaMismatch) as err:
        await m.initialize()
    assert "64" in err.value.message and "384" in err.value.message


async def test_standalone_seed_style_usage(base_config: dict[str, Any], uid: str) -> None:
    async with VectorDatabaseMemory(dict(base_config)) as m:
        assert isinstance(m, VectorDatabaseMemory)
        await m.store({"content": "Seed-style memories work", "user_id": uid})
        ctx = await m.get_context({"query": "does the seed API work", "user_id": uid})
        assert ctx.get("items")[0]["content"] == "Seed-style memories work"
        health = await m.health_check()
        assert health["status"] == "healthy"
        assert health["details"]["postgres"]["status"] == "healthy"
        assert health["details"]["redis"]["status"] == "healthy"
        assert health["details"]["embedder"]["dim"] == 384
        await m.clear(user_id=uid)


# match_memories: top-k by distance first, then the threshold ----------------------------------------
async def test_off_topic_query_returns_nothing_and_stops_after_k(memory: VectorDatabaseMemory, stores: Stores) -> None:
    """A query unlike everything a tenant stored returns [] (also through HNSW); the threshold filters the top k."""
    rng = np.random.default_rng(11)
    user = str(uuid.uuid4())
    base = unit(rng, 1)[0]
    vecs = base + 0.05 * rng.standard_normal((300, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    await memory.backend.upsert([
        VectorRow(user_id=user, namespace="far", content=f"near {i}", content_hash=content_hash(f"near{i}"),
                  embedding=vecs[i], embedding_model="synthetic") for i in range(300)
    ])
    far = -base  # cosine similarity about -1 with every row
    assert await memory.backend.search(far, memory_scope(user_id=user), threshold=0.3, count=5) == []
    near = await memory.backend.search(base, memory_scope(user_id=user), threshold=0.3, count=5)
    assert len(near) == 5 and all(h.similarity is not None and h.similarity >= 0.3 for h in near)
    async with stores.pg.connection() as conn:
        await conn.execute("SET enable_seqscan = off")  # force the HNSW path, as on a large tenant
        cur = await conn.execute(
            "SELECT count(*) FROM match_memories(%s::vector(384), 0.3, 5, '{}'::jsonb, %s)", (far, user))
        assert (await cur.fetchone())[0] == 0
        await conn.execute("RESET ALL")
    await memory.clear(user_id=user)


async def test_match_memories_plan_limits_before_the_threshold(stores: Stores) -> None:
    """The function body's plan: the threshold is a filter above the LIMIT (top-k first), not inside the scan."""
    import re

    async with stores.pg.connection() as conn:
        cur = await conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'match_memories'")
        body = (await cur.fetchone())[0]
        stmt = next(s for s in body.split(";") if "FROM memory_vectors" in s)
        names = ["query_embedding", "match_threshold", "match_count", "filter", "p_user_id", "p_namespace",
                 "p_session_id", "created_after", "created_before"]
        for i, name in enumerate(names, start=1):
            stmt = re.sub(rf"\b{name}\b", f"${i}", stmt)
        async with conn.transaction():
            await conn.execute(
                "PREPARE mm_body(vector(384), float8, int, jsonb, text, text, text, timestamptz, timestamptz) AS "
                + stmt)
            cur = await conn.execute(
                "EXPLAIN EXECUTE mm_body(array_fill(0.1, ARRAY[384])::vector(384), 0.3, 5, '{}', 'u', NULL, NULL, "
                "NULL, NULL)")
            plan = [r[0] for r in await cur.fetchall()]
            await conn.execute("DEALLOCATE mm_body")
    text = "\n".join(plan)
    limit_at = next(i for i, line in enumerate(plan) if "Limit" in line)
    filter_at = next(i for i, line in enumerate(plan) if "Filter" in line and ">=" in line)
    assert filter_at < limit_at, text  # the threshold filter sits above (is applied after) the LIMIT
    assert not any(">=" in line and "Filter" in line for line in plan[limit_at:]), text
