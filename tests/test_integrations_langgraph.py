"""``MemoryStore``: LangGraph's BaseStore over the key-value and vector tiers, with real LangGraph graphs.

Everything runs against the real Redis and PostgreSQL of the test session and the offline MiniLM
embedder (384 dimensions); the graphs are real ``StateGraph``s compiled with ``store=``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypedDict

import pytest
from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import GetOp, ListNamespacesOp, PutOp, SearchOp

from memory_implementations.config import MemoryConfig
from memory_implementations.errors import ConfigError, ValidationError
from memory_implementations.integrations.langgraph import MemoryStore
from memory_implementations.memories.kv import KeyValueStoreMemory
from memory_implementations.memories.vector import VectorDatabaseMemory
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.stores import Stores
from memory_implementations.types import MemoryType


@pytest.fixture
async def tiers(
    config: MemoryConfig, stores: Stores
) -> AsyncIterator[tuple[KeyValueStoreMemory, VectorDatabaseMemory]]:
    """The key-value and vector tiers on the shared test stores."""
    kv = KeyValueStoreMemory(config, stores=stores)
    vec = VectorDatabaseMemory(config, stores=stores)
    await kv.initialize()
    await vec.initialize()
    yield kv, vec
    await kv.close()
    await vec.close()


@pytest.fixture
async def store(tiers: tuple[KeyValueStoreMemory, VectorDatabaseMemory]) -> AsyncIterator[MemoryStore]:
    """An unbound store (the first namespace label is the owner) over the shared tiers."""
    kv, vec = tiers
    s = MemoryStore(kv, vector=vec)
    yield s
    await s.aclose()


async def vector_rows(stores: Stores, uid: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, content, metadata) of the user's vector memories."""
    async with stores.pg.connection() as conn:
        cur = await conn.execute(
            "SELECT namespace, content, metadata FROM memory_vectors WHERE user_id = %s ORDER BY namespace, content",
            (uid,),
        )
        return list(await cur.fetchall())


async def kv_row(stores: Stores, uid: str, ns: str, key: str) -> tuple[Any, ...] | None:
    async with stores.pg.connection() as conn:
        cur = await conn.execute(
            "SELECT value, created_at, updated_at, expires_at - updated_at FROM memory_kv "
            "WHERE user_id = %s AND namespace = %s AND key = %s",
            (uid, ns, key),
        )
        return await cur.fetchone()


# put / get / overwrite / delete ----------------------------------------------------------------
async def test_put_get_overwrite_delete_round_trip(store: MemoryStore, tiers: Any, stores: Stores, uid: str) -> None:
    kv, _ = tiers
    ns = (uid, "prefs")
    value = {"food": "pizza", "nested": {"list": [1, 2.5, None, True], "text": "héllo ✓"}}
    assert await store.aget(ns, "likes") is None
    await store.aput(ns, "likes", value)

    item = await store.aget(ns, "likes")
    assert item is not None
    assert (item.namespace, item.key, item.value) == (ns, "likes", value)
    row = await kv_row(stores, uid, "prefs", "likes")
    assert row is not None and (item.created_at, item.updated_at) == (row[1], row[2])
    assert isinstance(item.created_at, datetime) and item.created_at.tzinfo is not None
    # the key-value tier holds the same value (so the orchestrator's key_value section sees it)
    assert await kv.get("likes", namespace="prefs", user_id=uid) == value
    # indexed once into the vector tier, tagged with namespace and key
    (vrow,) = await vector_rows(stores, uid)
    assert vrow[2]["langgraph"]["namespace"] == "prefs" and vrow[2]["langgraph"]["key"] == "likes"
    assert "pizza" in vrow[1]

    # overwrite: same created_at, later updated_at, the vector memory replaced (not duplicated)
    await store.aput(ns, "likes", {"food": "sushi"})
    again = await store.aget(ns, "likes")
    assert again is not None and again.value == {"food": "sushi"}
    assert again.created_at == item.created_at and again.updated_at > item.updated_at
    (vrow,) = await vector_rows(stores, uid)
    assert "sushi" in vrow[1] and "pizza" not in vrow[1]
    # a listing returns the same item as get
    (listed,) = await store.asearch((uid,))
    assert (listed.namespace, listed.key, listed.value, listed.created_at, listed.updated_at) == (
        again.namespace, again.key, again.value, again.created_at, again.updated_at)
    assert listed.score is None

    # delete removes the item from both tiers
    await store.adelete(ns, "likes")
    assert await store.aget(ns, "likes") is None
    assert await kv.get("likes", namespace="prefs", user_id=uid) is None
    assert await vector_rows(stores, uid) == []


async def test_batch_runs_ops_in_order_and_value_none_deletes(store: MemoryStore, uid: str) -> None:
    ns = (uid, "b")
    results = await store.abatch([
        PutOp(ns, "k1", {"n": 1}, index=False),
        GetOp(ns, "k1"),
        GetOp(ns, "missing"),
        PutOp(ns, "k1", None),
        GetOp(ns, "k1"),
        SearchOp((uid,)),
    ])
    assert results[0] is None
    assert results[1] is not None and results[1].value == {"n": 1}
    assert results[2] is None and results[4] is None
    assert results[5] == []


# search ------------------------------------------------------------------------------------------
async def test_listing_search_filter_limit_offset_and_prefix(store: MemoryStore, uid: str) -> None:
    for i in range(5):
        await store.aput((uid, "docs", "x"), f"k{i}", {"kind": "a" if i % 2 == 0 else "b", "n": i,
                                                    "meta": {"lang": "en" if i < 3 else "de", "tag": i}},
                         index=False)
    await store.aput((uid, "docs", "y"), "other", {"kind": "a", "n": 10}, index=False)
    await store.aput((uid, "docsx"), "near", {"kind": "a", "n": 11}, index=False)

    keys = [it.key for it in await store.asearch((uid, "docs", "x"))]
    assert keys == ["k4", "k3", "k2", "k1", "k0"]  # newest first
    assert [it.key for it in await store.asearch((uid, "docs"), filter={"kind": "a"})] == ["other", "k4", "k2", "k0"]
    assert [it.key for it in await store.asearch((uid, "docs", "x"), limit=2, offset=1)] == ["k3", "k2"]
    assert [it.key for it in await store.asearch((uid, "docs"), filter={"n": {"$gte": 2, "$lt": 10}})] == [
        "k4", "k3", "k2"]
    assert [it.key for it in await store.asearch((uid, "docs"), filter={"kind": {"$ne": "a"}})] == ["k3", "k1"]
    assert [it.key for it in await store.asearch((uid, "docs"), filter={"meta": {"lang": "de"}})] == ["k4", "k3"]
    # a label prefix, not a string prefix: ("docs",) does not match ("docsx",)
    assert {it.key for it in await store.asearch((uid, "docs"))} == {"k0", "k1", "k2", "k3", "k4", "other"}
    assert [it.namespace for it in await store.asearch((uid, "docsx"))] == [(uid, "docsx")]
    assert len(await store.asearch((uid,), limit=100)) == 7


async def test_semantic_search_ranks_the_relevant_item_first(store: MemoryStore, stores: Stores, uid: str) -> None:
    ns = (uid, "memories")
    facts = {
        "food": "I love eating pizza and Italian food",
        "car": "My car is a red Toyota hatchback",
        "pet": "I have a dog called Rex who likes to run",
        "job": "I work as a nurse at the city hospital",
    }
    for key, text in facts.items():
        await store.aput(ns, key, {"text": text, "topic": key}, index=["text"])
    await store.aput(ns, "hidden", {"text": "I love eating pizza every day"}, index=False)

    results = await store.asearch(ns, query="what meals do I enjoy?", limit=4)
    assert results[0].key == "food"
    assert [r.score for r in results] == sorted([r.score for r in results], reverse=True)
    assert all(isinstance(r.score, float) for r in results)
    assert "hidden" not in {r.key for r in results}  # index=False: not in the vector tier
    assert results[0].value == {"text": facts["food"], "topic": "food"}

    assert [r.key for r in await store.asearch(ns, query="which animal do I own", limit=1)] == ["pet"]
    # filter and offset apply to the ranked items
    assert [r.key for r in await store.asearch(ns, query="what meals do I enjoy?", filter={"topic": "car"})] == ["car"]
    ranked = [r.key for r in await store.asearch(ns, query="what meals do I enjoy?", limit=4)]
    assert [r.key for r in await store.asearch(ns, query="what meals do I enjoy?", limit=2, offset=1)] == ranked[1:3]
    # another prefix of the same owner sees nothing
    assert await store.asearch((uid, "elsewhere"), query="pizza") == []

    # re-indexing replaces the item's memory
    await store.aput(ns, "food", {"text": "I stopped eating pizza; I now cook vegan curries", "topic": "food"},
                     index=["text"])
    food_rows = [r for r in await vector_rows(stores, uid) if r[2]["langgraph"]["key"] == "food"]
    assert [r[1] for r in food_rows] == ["I stopped eating pizza; I now cook vegan curries"]
    # a whole-value index (the default) also works
    await store.aput(ns, "city", {"home": "I live in Lisbon, the capital of Portugal"})
    assert (await store.asearch(ns, query="Where do I live?", limit=1))[0].key == "city"

    with pytest.raises(ValidationError) as err:
        await store.asearch((), query="pizza")
    assert err.value.field == "namespace_prefix"


async def test_list_namespaces_options(tiers: Any, uid: str) -> None:
    kv, vec = tiers
    bound = MemoryStore(kv, vector=vec, user_id=uid, index=False)
    for ns in [("a", "b", "c"), ("a", "b", "d"), ("a", "e"), ("x", "b")]:
        await bound.aput(ns, "k", {"v": 1})
    assert await bound.alist_namespaces() == [("a", "b", "c"), ("a", "b", "d"), ("a", "e"), ("x", "b")]
    assert await bound.alist_namespaces(prefix=("a",)) == [("a", "b", "c"), ("a", "b", "d"), ("a", "e")]
    assert await bound.alist_namespaces(suffix=("b",)) == [("x", "b")]
    assert await bound.alist_namespaces(prefix=("*", "b")) == [("a", "b", "c"), ("a", "b", "d"), ("x", "b")]
    assert await bound.alist_namespaces(max_depth=2) == [("a", "b"), ("a", "e"), ("x", "b")]
    assert await bound.alist_namespaces(limit=2, offset=1) == [("a", "b", "d"), ("a", "e")]
    assert await bound.alist_namespaces(prefix=("a",), suffix=("d",)) == [("a", "b", "d")]
    # bound namespaces are the user's key-value namespaces, joined by '.'
    assert await kv.get("k", namespace="a.b.c", user_id=uid) == {"v": 1}

    unbound = MemoryStore(kv, vector=vec, index=False)
    assert await unbound.alist_namespaces(prefix=(uid,), max_depth=2) == [(uid, "a"), (uid, "x")]
    assert (await unbound.aget((uid, "a", "e"), "k")) is not None
    await bound.aclose()
    await unbound.aclose()


async def test_ttl_in_minutes(tiers: Any, stores: Stores, uid: str) -> None:
    kv, vec = tiers
    s = MemoryStore(kv, vector=vec, index=False, ttl={"default_ttl": 2})
    assert s.supports_ttl
    ns = (uid, "t")
    await s.aput(ns, "short", {"v": 1}, ttl=1)
    await s.aput(ns, "default", {"v": 2})
    await s.aput(ns, "forever", {"v": 3}, ttl=None)
    assert (await kv_row(stores, uid, "t", "short"))[3].total_seconds() == 60  # type: ignore[index]
    assert (await kv_row(stores, uid, "t", "default"))[3].total_seconds() == 120  # type: ignore[index]
    assert (await kv_row(stores, uid, "t", "forever"))[3] is None  # type: ignore[index]
    # once past expires_at an item is gone from get, search and list_namespaces
    async with stores.pg.connection() as conn:
        await conn.execute("UPDATE memory_kv SET expires_at = now() - interval '1 second' WHERE user_id = %s "
                           "AND key IN ('short', 'default')", (uid,))
    assert await s.aget(ns, "short") is None
    assert [it.key for it in await s.asearch(ns)] == ["forever"]
    await s.adelete(ns, "forever")
    assert await s.alist_namespaces(prefix=(uid,)) == []
    with pytest.raises(ValidationError) as err:
        await s.abatch([PutOp(ns, "bad", {"v": 1}, ttl=-1)])
    assert err.value.field == "ttl"
    await s.aclose()


async def test_validation_names_the_field(store: MemoryStore, uid: str) -> None:
    cases: list[tuple[Any, str]] = [
        (PutOp((uid,), "k", {"v": 1}), "namespace"),  # unbound: owner + at least one label
        (PutOp((uid, "a.b"), "k", {"v": 1}), "namespace"),
        (PutOp((uid, "a"), "", {"v": 1}), "key"),
        (PutOp((uid, "a"), "k", ["not", "a", "dict"]), "value"),  # type: ignore[arg-type]
        (PutOp((uid, "a"), "k", {"v": 1}, index="text"), "index"),  # type: ignore[arg-type]
        (SearchOp((uid,), filter={"n": {"$regex": "x"}}), "filter.n"),
        (SearchOp((uid,), limit=-1), "limit"),
        (ListNamespacesOp(max_depth=0), "max_depth"),
    ]
    for op, field in cases:
        with pytest.raises(ValidationError) as err:
            await store.abatch([op])
        assert err.value.field == field, op
    assert await store.asearch((uid,)) == []  # nothing was written
    with pytest.raises(ConfigError):
        MemoryStore(KeyValueStoreMemory({}), index={"fields": ["text"]})  # indexing without a vector tier


# persistence, orchestrator -------------------------------------------------------------------------
async def test_items_persist_across_new_store_instances(base_config: dict[str, Any], uid: str) -> None:
    first = MemoryStore(base_config)
    await first.aput((uid, "notes"), "n1", {"text": "The meeting with Dana is on Friday at noon"})
    await first.aput((uid, "notes"), "n2", {"text": "Buy oat milk and bananas"})
    written = await first.aget((uid, "notes"), "n1")
    await first.aclose()

    second = MemoryStore(base_config)  # new Stores, new connections
    try:
        again = await second.aget((uid, "notes"), "n1")
        assert again == written
        top = await second.asearch((uid, "notes"), query="when is my appointment with Dana?", limit=1)
        assert [r.key for r in top] == ["n1"]
        await second.adelete((uid, "notes"), "n1")
        await second.adelete((uid, "notes"), "n2")
    finally:
        await second.aclose()


async def test_orchestrator_sees_store_items(base_config: dict[str, Any], stores: Stores, uid: str) -> None:
    o = MemoryOrchestrator({**base_config, "enabled_memories": [MemoryType.KEY_VALUE_STORE,
                                                                 MemoryType.VECTOR_DATABASE]}, stores=stores)
    await o.initialize()
    s = MemoryStore(o)
    try:
        await s.aput((uid, "default"), "diet", {"diet": "strictly vegetarian"}, index=False)
        await s.aput((uid, "facts"), "home", {"text": "The user lives in a lighthouse in Maine"}, index=["text"])
        ctx = await o.get_comprehensive_context({"user_id": uid, "query": "Where does the user live?"})
        assert "strictly vegetarian" in ctx.text  # key_value section: the default namespace
        assert "The user lives in a lighthouse in Maine" in ctx.text  # vector_search section
    finally:
        await s.aclose()
        await o.close()


# real graphs ---------------------------------------------------------------------------------------
class State(TypedDict, total=False):
    user_id: str
    remember: str
    question: str
    recalled: list[str]


async def test_async_graph_writes_then_a_later_run_reads(store: MemoryStore, uid: str) -> None:
    async def remember(state: State, runtime: Runtime[None]) -> State:
        if state.get("remember"):
            assert runtime.store is not None
            await runtime.store.aput((state["user_id"], "memories"), str(uuid.uuid4()), {"text": state["remember"]})
        return {}

    async def recall(state: State) -> State:
        if not state.get("question"):
            return {"recalled": []}
        found = await get_store().asearch((state["user_id"], "memories"), query=state["question"], limit=1)
        return {"recalled": [it.value["text"] for it in found]}

    builder = StateGraph(State)
    builder.add_node("remember", remember)
    builder.add_node("recall", recall)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "recall")
    builder.add_edge("recall", END)
    graph = builder.compile(store=store)

    await graph.ainvoke({"user_id": uid, "remember": "My favourite colour is teal"})
    await graph.ainvoke({"user_id": uid, "remember": "I am allergic to peanuts"})
    out = await graph.ainvoke({"user_id": uid, "question": "Do I have any food allergies?"})
    assert out["recalled"] == ["I am allergic to peanuts"]
    other = await graph.ainvoke({"user_id": f"{uid}-other", "question": "Do I have any food allergies?"})
    assert other["recalled"] == []  # another owner's memories are separate


def test_sync_graph_writes_then_a_later_run_reads(base_config: dict[str, Any]) -> None:
    uid = str(uuid.uuid4())
    store = MemoryStore(base_config)

    def remember(state: State) -> State:
        if state.get("remember"):
            get_store().put((state["user_id"], "memories"), f"m{len(state['remember'])}", {"text": state["remember"]})
        return {}

    def recall(state: State, runtime: Runtime[None]) -> State:
        assert runtime.store is not None
        found = runtime.store.search((state["user_id"], "memories"), query=state.get("question") or "", limit=5)
        return {"recalled": [it.value["text"] for it in found]}

    builder = StateGraph(State)
    builder.add_node("remember", remember)
    builder.add_node("recall", recall)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "recall")
    builder.add_edge("recall", END)
    graph = builder.compile(store=store)
    try:
        graph.invoke({"user_id": uid, "remember": "My sister Ana lives in Porto"})
        graph.invoke({"user_id": uid, "remember": "I drive a blue bicycle to work every day"})
        out = graph.invoke({"user_id": uid, "question": "Where does my sister live?"})
        assert out["recalled"][0] == "My sister Ana lives in Porto"
        assert len(out["recalled"]) == 2
        listed = graph.invoke({"user_id": uid})  # no question: a listing, newest first
        assert listed["recalled"] == ["I drive a blue bicycle to work every day", "My sister Ana lives in Porto"]
        assert store.list_namespaces(prefix=(uid,)) == [(uid, "memories")]
        for item in store.search((uid, "memories")):
            store.delete(item.namespace, item.key)
        assert store.search((uid, "memories")) == []
    finally:
        store.close()


async def test_sync_methods_from_async_code_and_from_the_store_thread(store: MemoryStore, uid: str) -> None:
    ns = (uid, "sync")
    await asyncio.to_thread(store.put, ns, "k", {"v": 1})
    got = await store.aget(ns, "k")  # written by the sync path's own tiers, read by the async path
    assert got is not None and got.value == {"v": 1}
    assert await asyncio.to_thread(store.get, ns, "k") == got

    async def nested(_: Any) -> Any:
        return store.get(ns, "k")  # a sync call on the store's own loop thread

    with pytest.raises(RuntimeError, match="own loop"):
        await asyncio.to_thread(store._portal.call, nested)
    # the store still works afterwards
    assert (await asyncio.to_thread(store.get, ns, "k")) == got
    await store.adelete(ns, "k")


def test_import_without_langgraph_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['langgraph'] = None\n"
        "try:\n"
        "    import memory_implementations.integrations.langgraph\n"
        "except ImportError as exc:\n"
        "    print('ERR', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert 'pip install "memory_implementations[langgraph]"' in out.stdout
