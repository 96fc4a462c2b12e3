"""MemoryOrchestrator: fail-open reads, steering, dedupe, budgets, turn writes, forget and health.

Fault injection (a tier that raises, one that outlives its deadline, a spy on requests) uses small
BaseMemory subclasses; everything end-to-end uses the six real tiers on the real Redis/PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import pytest
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from memory_implementations.base import BaseMemory
from memory_implementations.composer import CONVERSATION, SECTION_ORDER
from memory_implementations.config import MemoryConfig
from memory_implementations.context import ComprehensiveContext
from memory_implementations.errors import ValidationError
from memory_implementations.memories.buffer import ConversationBufferMemory
from memory_implementations.memories.entity import EntityMemory
from memory_implementations.memories.kv import KeyValueStoreMemory
from memory_implementations.memories.summary import ConversationSummaryMemory
from memory_implementations.memories.vector import VectorDatabaseMemory
from memory_implementations.memories.working import WorkingMemory
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.stores import Stores
from memory_implementations.tokens import get_tokenizer
from memory_implementations.types import ContextRequest, HealthStatus, MemoryContext, MemoryType, StoredRef

ALL = list(MemoryType)
TABLES = (
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


# --- fakes for fault injection ---------------------------------------------------------------------


class FakeTier(BaseMemory):
    """A tier with canned items that can raise, sleep, wait for an event, or spy on requests."""

    memory_type: ClassVar[MemoryType] = MemoryType.WORKING_MEMORY
    backends: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        config: Any = None,
        *,
        stores: Stores | None = None,
        items: list[dict[str, Any]] | None = None,
        delay: float = 0.0,
        error: Exception | None = None,
        wait_for: asyncio.Event | None = None,
        sets: asyncio.Event | None = None,
        log: list[str] | None = None,
        health: str = "healthy",
    ) -> None:
        super().__init__(config, stores=stores)
        self.items = items or []
        self.delay, self.error, self.wait_for, self.sets = delay, error, wait_for, sets
        self.log = log if log is not None else []
        self.requests: list[ContextRequest] = []
        self.health = health

    async def store(self, item: Mapping[str, Any] | Any) -> StoredRef:
        return StoredRef(id="x", memory_type=self.memory_type)

    async def get_context(self, query: Any = None, *, max_tokens: int | None = None) -> MemoryContext:
        req = ContextRequest.from_any(query)
        self.requests.append(req)
        self.log.append(f"start:{self.memory_type.value}")
        if self.sets is not None:
            self.sets.set()
        if self.wait_for is not None:
            await self.wait_for.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        self.log.append(f"end:{self.memory_type.value}")
        return MemoryContext(memory_type=self.memory_type, items=[dict(i) for i in self.items])

    async def clear(self, *, session_id: str | None = None, user_id: str | None = None,
                    namespace: str | None = None) -> int:
        return 0

    async def health_check(self) -> HealthStatus:
        return HealthStatus(status=self.health)  # type: ignore[arg-type]


def fake(mt: MemoryType) -> type[FakeTier]:
    return type(f"Fake_{mt.value}", (FakeTier,), {"memory_type": mt})


class FakeEntity(FakeTier):
    memory_type: ClassVar[MemoryType] = MemoryType.ENTITY_MEMORY

    def __init__(self, *args: Any, names: list[str] | None = None, find_delay: float = 0.0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.names = names or []
        self.find_delay = find_delay

    async def find_entities_in_text(self, text: str, user_id: str = "default") -> list[dict[str, Any]]:
        if self.find_delay:
            await asyncio.sleep(self.find_delay)
        return [{"name": n} for n in self.names if n.lower() in text.lower()]


def make(*tiers: FakeTier) -> dict[MemoryType, BaseMemory]:
    return {t.memory_type: t for t in tiers}


@pytest.fixture
def cfg(base_config: dict[str, Any]) -> dict[str, Any]:
    """All six real tiers; a generous deadline (the first embedding call loads the model)."""
    return {**base_config, "enabled_memories": ALL, "tier_timeout_ms": 5000}


@pytest.fixture
async def orch(cfg: dict[str, Any], stores: Stores) -> AsyncIterator[MemoryOrchestrator]:
    o = MemoryOrchestrator(cfg, stores=stores)
    await o.initialize()
    yield o
    await o.close()


def within_budget(ctx: ComprehensiveContext, budget: int, model: str = "gpt-4o") -> None:
    tok = get_tokenizer(model)
    a = ctx.anthropic()
    assert tok.count_messages(ctx.messages) <= budget
    assert tok.count(a["system"]) + tok.count_messages(a["messages"]) <= budget
    assert tok.count(ctx.text) <= budget
    assert ctx.token_counts["messages"] == tok.count_messages(ctx.messages)


async def count_rows(stores: Stores, table: str, user_id: str) -> int:
    async with stores.pg.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s", (user_id,))
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def redis_keys(stores: Stores, user_id: str) -> list[bytes]:
    return [k async for k in stores.redis.scan_iter(match=f"*{user_id}*", count=1000)]


# --- fail-open, deadlines, concurrency -------------------------------------------------------------


async def test_a_raising_tier_and_a_slow_tier_are_degraded_and_the_turn_returns(
    base_config: dict[str, Any], stores: Stores, uid: str, sid: str
) -> None:
    boom = fake(MemoryType.WORKING_MEMORY)(base_config, error=RuntimeError("disk on fire"))
    slow = fake(MemoryType.KEY_VALUE_STORE)(base_config, delay=5.0, items=[{"section": "key_value", "content": "x"}])
    good = fake(MemoryType.VECTOR_DATABASE)(
        base_config, items=[{"section": "vector_search", "content": "User likes green tea", "score": 0.9}]
    )
    o = MemoryOrchestrator({**base_config, "enabled_memories": [], "tier_timeout_ms": 100},
                           stores=stores, memories=make(boom, slow, good))
    await o.initialize()
    ctx = await o.get_comprehensive_context(ContextRequest(query="tea?", session_id=sid, user_id=uid))
    assert set(ctx.degraded) == {"working_memory", "key_value_store"}
    assert "disk on fire" in ctx.degraded["working_memory"] and "RuntimeError" in ctx.degraded["working_memory"]
    assert ctx.degraded["key_value_store"].startswith("timeout")
    assert ctx.sections["vector_search"].contents == ["User likes green tea"]
    assert ctx.sections["key_value"].items == [] and ctx.sections["working_memory"].items == []
    assert "User likes green tea" in ctx.text
    assert set(ctx.latency_ms) >= {"working_memory", "key_value_store", "vector_database", "total"}
    await o.close()


async def test_parallel_mode_queries_tiers_concurrently_and_sequential_mode_does_not(
    base_config: dict[str, Any], stores: Stores, uid: str, sid: str
) -> None:
    for parallel in (True, False):
        started = asyncio.Event()
        log: list[str] = []
        # the first tier only answers once the second has started: possible only if they run concurrently
        first = fake(MemoryType.WORKING_MEMORY)(base_config, wait_for=started, log=log,
                                                items=[{"content": "w1", "score": 1}])
        second = fake(MemoryType.KEY_VALUE_STORE)(base_config, sets=started, log=log,
                                                  items=[{"content": "k1", "score": 1}])
        o = MemoryOrchestrator(
            {**base_config, "enabled_memories": [], "parallel_queries": parallel, "tier_timeout_ms": 300,
             "warm_up": False},  # the events are one-shot: the warm-up read would use them up
            stores=stores, memories=make(first, second),
        )
        ctx = await o.get_comprehensive_context({"query": "q", "session_id": sid, "user_id": uid})
        if parallel:
            assert ctx.degraded == {}
            assert ctx.sections["working_memory"].contents == ["w1"]
        else:
            assert list(ctx.degraded) == ["working_memory"]  # it waited alone and missed its deadline
            assert log.index("start:key_value_store") > log.index("start:working_memory")
            assert "end:working_memory" not in log
        assert ctx.sections["key_value"].contents == ["k1"]
        await o.close()


async def test_per_request_deadline_override(base_config: dict[str, Any], stores: Stores, uid: str, sid: str) -> None:
    slow = fake(MemoryType.WORKING_MEMORY)(base_config, delay=0.5, items=[{"content": "late"}])
    o = MemoryOrchestrator({**base_config, "enabled_memories": [], "tier_timeout_ms": 5000},
                           stores=stores, memories=make(slow))
    ctx = await o.get_comprehensive_context(ContextRequest(session_id=sid, user_id=uid), tier_timeout_ms=50)
    assert "working_memory" in ctx.degraded
    ctx = await o.get_comprehensive_context({"session_id": sid, "user_id": uid, "tier_timeout_ms": 50})
    assert "working_memory" in ctx.degraded
    with pytest.raises(ValidationError):
        await o.get_comprehensive_context(ContextRequest(session_id=sid), tier_timeout_ms=0)
    await o.close()


# --- budgets ---------------------------------------------------------------------------------------


async def test_only_enabled_sections_get_budget_and_unused_budget_reflows(
    base_config: dict[str, Any], stores: Stores, uid: str, sid: str
) -> None:
    many = [{"content": f"memory number {i} about the user and their many plans", "score": 1 - i / 100}
            for i in range(80)]
    vec = fake(MemoryType.VECTOR_DATABASE)(base_config, items=many)
    kv = fake(MemoryType.KEY_VALUE_STORE)(base_config, items=[{"content": "tz: UTC"}])
    o = MemoryOrchestrator({**base_config, "enabled_memories": []}, stores=stores, memories=make(vec, kv))
    ctx = await o.get_comprehensive_context(ContextRequest(query="plans", session_id=sid, user_id=uid,
                                                           max_total_tokens=500))
    assert set(ctx.budgets) == {"vector_search", "key_value"}
    v = ctx.sections["vector_search"]
    assert ctx.sections["key_value"].contents == ["tz: UTC"]
    assert v.tokens > v.share  # key_value's unused share flowed to the vector section
    assert 0 < len(v.items) < 80 and not v.truncated
    kept = {i["content"] for i in v.items}
    assert kept == {m["content"] for m in many[: len(kept)]}  # the best-scored items, lowest dropped first
    within_budget(ctx, 500)
    # request weights override the configured ones; a zero weight gives that section nothing
    ctx = await o.get_comprehensive_context(ContextRequest(query="plans", session_id=sid, user_id=uid,
                                                           max_total_tokens=500, weights={"vector_search": 0}))
    assert ctx.sections["vector_search"].items == []
    with pytest.raises(ValidationError):
        await o.get_comprehensive_context(ContextRequest(session_id=sid, weights={"vectors": 1.0}))
    await o.close()


# --- steering --------------------------------------------------------------------------------------


async def test_entities_named_in_the_query_steer_the_vector_search(
    base_config: dict[str, Any], stores: Stores, uid: str, sid: str
) -> None:
    vec = fake(MemoryType.VECTOR_DATABASE)(base_config, items=[{"content": "v"}])
    ent = FakeEntity(base_config, names=["Ana", "Boston"])
    o = MemoryOrchestrator({**base_config, "enabled_memories": []}, stores=stores, memories=make(vec, ent))
    ctx = await o.get_comprehensive_context(ContextRequest(query="Where does Ana work?", session_id=sid, user_id=uid))
    assert ctx.entities == ["Ana"]
    assert vec.requests[-1].filters["entities"] == ["Ana"]
    assert "entity_steering" in ctx.latency_ms
    # steering that is too slow is skipped: the vector search goes on unsteered and is not degraded
    ent.find_delay = 1.0
    ctx = await o.get_comprehensive_context(
        ContextRequest(query="Where does Ana work?", session_id=sid, user_id=uid), tier_timeout_ms=200
    )
    assert "entities" not in vec.requests[-1].filters
    assert "vector_database" not in ctx.degraded
    # cross_memory_links off: no steering
    o2 = MemoryOrchestrator({**base_config, "enabled_memories": [], "cross_memory_links": False}, stores=stores,
                            memories=make(vec, FakeEntity(base_config, names=["Ana"])))
    await o2.get_comprehensive_context(ContextRequest(query="Ana?", session_id=sid, user_id=uid))
    assert "entities" not in vec.requests[-1].filters
    await o.close()
    await o2.close()


async def test_real_entity_steering_end_to_end(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    entity = orch.memories[MemoryType.ENTITY_MEMORY]
    assert isinstance(entity, EntityMemory)
    await entity.process("Carlos is my brother and he lives in Boston.", user_id=uid)
    vector = orch.memories[MemoryType.VECTOR_DATABASE]
    assert isinstance(vector, VectorDatabaseMemory)
    await vector.store_many([
        {"content": "Carlos plays the cello in an orchestra", "user_id": uid},
        {"content": "The weather was rainy last week", "user_id": uid},
    ])
    seen: list[list[str]] = []
    real = vector.search

    async def spy(query: str, **kw: Any) -> Any:
        seen.append(list(kw.get("extra_terms") or []))
        return await real(query, **kw)

    vector.search = spy  # type: ignore[method-assign]
    try:
        ctx = await orch.get_comprehensive_context(
            ContextRequest(query="What instrument does Carlos play?", session_id=sid, user_id=uid)
        )
    finally:
        del vector.search
    assert "Carlos" in ctx.entities
    assert seen == [[], ["Carlos"]]  # unsteered at once, then again steered by the name it found
    assert ctx.degraded == {}
    assert any("cello" in c for c in ctx.sections["vector_search"].contents)
    assert any(c.startswith("Carlos") for c in ctx.sections["entities"].contents)
    await orch.forget(uid)


async def test_steering_reuses_the_entity_tiers_single_lookup(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    """With the entity tier queried, steering takes its names from it: one entity SQL statement per turn."""
    entity = orch.memories[MemoryType.ENTITY_MEMORY]
    assert isinstance(entity, EntityMemory)
    await entity.process("Carlos is my brother and he lives in Boston.", user_id=uid)
    calls: list[str] = []
    real_rows, real_find = entity.db._rows, entity.find_entities_in_text

    async def count_rows(sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        calls.append(sql)
        return await real_rows(sql, params)

    async def no_find(*args: Any, **kw: Any) -> list[dict[str, Any]]:
        calls.append("find_entities_in_text")
        return await real_find(*args, **kw)

    entity.db._rows = count_rows  # type: ignore[method-assign]
    entity.find_entities_in_text = no_find  # type: ignore[method-assign]
    try:
        ctx = await orch.get_comprehensive_context(
            ContextRequest(query="Where does Carlos live?", session_id=sid, user_id=uid)
        )
    finally:
        del entity.db._rows, entity.find_entities_in_text
    assert ctx.entities == ["Carlos"] and "entity_steering" in ctx.latency_ms
    assert len(calls) == 1 and calls[0] != "find_entities_in_text", calls  # one statement for tier + steering
    line = next(c for c in ctx.sections["entities"].contents if c.startswith("Carlos"))
    assert "Boston" in line or "brother" in line  # attributes / relationships hydrated in that statement
    await orch.forget(uid)


async def test_turn_reads_redis_in_one_round_trip_and_summary_only(
    orch: MemoryOrchestrator, uid: str, sid: str
) -> None:
    """Buffer, summary, key-value and working-memory reads share one pipeline; the summary tier reads no messages."""
    for i in range(4):
        await orch.store_turn(session_id=sid, user_id=uid, user_message=f"question {i} about trains",
                              assistant_message=f"answer {i} about trains")
    summary = orch.memories[MemoryType.CONVERSATION_SUMMARY]
    assert isinstance(summary, ConversationSummaryMemory)
    req = ContextRequest(query="trains", session_id=sid, user_id=uid)
    await orch.get_comprehensive_context(req)  # warm: caches filled
    batch = orch.stores.redis_batch
    before = batch.round_trips
    full_calls: list[Any] = []
    real = summary.get_context

    async def spy(*args: Any, **kw: Any) -> MemoryContext:
        full_calls.append(args)
        return await real(*args, **kw)

    summary.get_context = spy  # type: ignore[method-assign]
    try:
        ctx = await orch.get_comprehensive_context(req)
    finally:
        del summary.get_context
    assert batch.round_trips - before == 1
    assert full_calls == [] and summary.last_read_messages == 0
    assert ctx.degraded == {} and len(ctx.conversation) == 8
    # the summary tier alone (the default configuration) supplies recent_conversation itself
    alone = MemoryOrchestrator({**orch.config.model_dump(), "enabled_memories": ["conversation_summary"]},
                               stores=orch.stores)
    ctx2 = await alone.get_comprehensive_context(req)
    assert [m["content"] for m in ctx2.conversation] == [m["content"] for m in ctx.conversation]
    assert ctx2.sections[CONVERSATION].tiers == ["conversation_summary"]
    await orch.forget(uid)


# --- conversation tiers together, dedupe, renderings -----------------------------------------------


async def test_buffer_and_summary_together_show_each_message_once(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    for i in range(3):
        await orch.store_turn(session_id=sid, user_id=uid, user_message=f"question {i} about trains",
                              assistant_message=f"answer {i} about trains")
    ctx = await orch.get_comprehensive_context(ContextRequest(query="trains", session_id=sid, user_id=uid))
    conv = ctx.sections[CONVERSATION]
    assert conv.tiers == ["conversation_buffer"]
    contents = [m["content"] for m in ctx.conversation]
    assert contents == [f"{k} {i} about trains" for i in range(3) for k in ("question", "answer")]
    assert len(set(contents)) == len(contents)
    await orch.forget(uid)


async def test_store_turn_is_durable_before_flush_and_background_work_lands_after(
    orch: MemoryOrchestrator, stores: Stores, uid: str, sid: str
) -> None:
    result = await orch.store_turn(
        session_id=sid, user_id=uid, user_message="My name is Ana Lopez and I live in Dallas, Texas.",
        assistant_message="Nice to meet you, Ana!", metadata={"channel": "web"},
    )
    # durable right after return, before any flush
    assert await count_rows(stores, "memory_messages", uid) == 2
    assert [s["role"] for s in result["stored"]] == ["user", "assistant"]
    assert all(s["durable"] for s in result["stored"])
    assert set(result["scheduled"]) == {"turn_embedding", "entity_extraction"}
    await orch.flush()
    assert stores.worker.pending == 0
    assert await count_rows(stores, "memory_vectors", uid) == 2  # both sides of the exchange are retrievable
    assert await count_rows(stores, "memory_entities", uid) >= 1
    # summaries: enough turns for the summariser's batch, then flush
    for i in range(8):
        await orch.store_turn(session_id=sid, user_id=uid, user_message=f"Tell me about city number {i} please",
                              assistant_message=f"City number {i} is lovely in spring.")
    await orch.flush()
    assert await count_rows(stores, "memory_summaries", uid) >= 1
    ctx = await orch.get_comprehensive_context(ContextRequest(query="Where does Ana live?", session_id=sid,
                                                              user_id=uid, max_total_tokens=3000))
    assert ctx.sections["summary"].items, ctx.to_dict()["sections"]["summary"]
    assert any("Dallas" in c for c in ctx.sections["entities"].contents)
    assert ctx.degraded == {}
    within_budget(ctx, 3000)
    await orch.forget(uid)


async def test_invalid_turns_write_nothing(orch: MemoryOrchestrator, stores: Stores, uid: str, sid: str) -> None:
    with pytest.raises(ValidationError) as err:
        await orch.store_turn(session_id=sid, user_id=uid, user_message="fine", assistant_message="bad\x00")
    assert err.value.field == "assistant_message"
    with pytest.raises(ValidationError):
        await orch.store_turn(session_id=sid, user_id=uid, user_message="x" * (orch.config.max_message_chars + 1))
    with pytest.raises(ValidationError):
        await orch.store_turn(session_id="", user_id=uid, user_message="hello")
    await orch.flush()
    assert await count_rows(stores, "memory_messages", uid) == 0
    assert await count_rows(stores, "memory_vectors", uid) == 0


async def test_same_fact_from_two_tiers_is_shown_once(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    msg = "I am allergic to peanuts and shellfish"
    await orch.store_turn(session_id=sid, user_id=uid, user_message=msg, assistant_message="Noted, I will remember.")
    kv = orch.memories[MemoryType.KEY_VALUE_STORE]
    assert isinstance(kv, KeyValueStoreMemory)
    await kv.set("city", "Dallas", user_id=uid)
    vector = orch.memories[MemoryType.VECTOR_DATABASE]
    await vector.store({"content": "User lives in Dallas", "user_id": uid})
    await orch.flush()
    ctx = await orch.get_comprehensive_context(
        ContextRequest(query="Do I live in Dallas? Am I allergic to peanuts?", session_id=sid, user_id=uid)
    )
    vec_contents = ctx.sections["vector_search"].contents
    assert msg not in vec_contents  # the embedded user message is already in the recent conversation
    assert ctx.sections["vector_search"].deduplicated >= 1
    assert "User lives in Dallas" in vec_contents  # a different fact than "city: Dallas": kept
    assert "city: Dallas" in ctx.sections["key_value"].contents
    assert ctx.text.count(msg) == 1
    await orch.forget(uid)


@pytest.mark.parametrize("budget", [120, 400, 1500])
async def test_all_renderings_within_budget_with_all_six_tiers(
    orch: MemoryOrchestrator, uid: str, sid: str, budget: int
) -> None:
    for i in range(6):
        await orch.store_turn(session_id=sid, user_id=uid,
                              user_message=f"I am planning trip number {i} to Kyoto with my sister Maria",
                              assistant_message=f"Trip {i} sounds great; Kyoto has {i + 3} famous temples.")
    kv = orch.memories[MemoryType.KEY_VALUE_STORE]
    assert isinstance(kv, KeyValueStoreMemory)
    await kv.set("diet", "vegetarian", user_id=uid)
    working = orch.memories[MemoryType.WORKING_MEMORY]
    assert isinstance(working, WorkingMemory)
    await working.store({"namespace": sid, "user_id": uid, "key": "goal", "content": "book a ryokan"})
    await orch.flush()
    ctx = await orch.get_comprehensive_context(
        ContextRequest(query="What about Maria and Kyoto?", session_id=sid, user_id=uid, max_total_tokens=budget)
    )
    assert ctx.degraded == {}
    assert list(ctx.sections) == list(SECTION_ORDER)
    within_budget(ctx, budget)
    assert ctx.total_tokens <= budget
    if budget >= 1500:
        assert all(ctx.sections[s].items for s in ("entities", "key_value", "working_memory", CONVERSATION))
    d = ctx.to_dict()
    assert d["max_total_tokens"] == budget and d["tokenizer"]["model"] == "gpt-4o"
    assert set(d["latency_ms"]) >= {m.value for m in ALL} | {"total", "compose"}
    # another model's tokenizer is used when the request names it
    other = await orch.get_comprehensive_context(
        ContextRequest(query="Kyoto", session_id=sid, user_id=uid, max_total_tokens=budget, model="gpt-3.5-turbo")
    )
    within_budget(other, budget, "gpt-3.5-turbo")
    assert other.tokenizer_model == "gpt-3.5-turbo"
    await orch.forget(uid)


# --- forget ----------------------------------------------------------------------------------------


async def test_forget_removes_the_user_everywhere(orch: MemoryOrchestrator, stores: Stores, sid: str) -> None:
    uid, other = str(uuid.uuid4()), str(uuid.uuid4())
    for user in (uid, other):
        for i in range(6):
            await orch.store_turn(session_id=sid, user_id=user,
                                  user_message=f"My friend Ana Lopez works at Mercy Hospital, note {i}",
                                  assistant_message=f"Got it, note {i}.")
        kv = orch.memories[MemoryType.KEY_VALUE_STORE]
        assert isinstance(kv, KeyValueStoreMemory)
        await kv.set("city", "Dallas", user_id=user)
        await kv.set("city", "Austin", user_id=user)  # leaves a history row
        working = orch.memories[MemoryType.WORKING_MEMORY]
        await working.store({"namespace": sid, "user_id": user, "key": "k", "content": "v"})
        await orch.get_comprehensive_context(ContextRequest(query="Ana", session_id=sid, user_id=user))
    # the last turn's background jobs are still pending: forget must not let them write back
    counts = await orch.forget(uid)
    assert set(counts) >= {m.value for m in ALL} | {"redis_keys"}
    assert counts["conversation_buffer"] + counts["conversation_summary"] >= 12
    assert counts["vector_database"] >= 1 and counts["key_value_store"] >= 1 and counts["entity_memory"] >= 1
    await orch.flush()
    for table in TABLES:
        assert await count_rows(stores, table, uid) == 0, table
    assert await redis_keys(stores, uid) == []
    # the other user is untouched
    assert await count_rows(stores, "memory_messages", other) == 12
    assert await count_rows(stores, "memory_kv_history", other) >= 1
    assert await redis_keys(stores, other) != []
    await orch.forget(other)
    with pytest.raises(ValidationError):
        await orch.forget("")


# --- health ----------------------------------------------------------------------------------------


async def test_health_with_all_tiers(orch: MemoryOrchestrator) -> None:
    h = await orch.health_check()
    assert h["status"] == "healthy", h.details
    assert set(h.details["memories"]) == {m.value for m in ALL}
    assert all(t["status"] == "healthy" and t["latency_ms"] >= 0 for t in h.details["memories"].values())
    assert h.details["backends"]["redis"]["status"] == "healthy"
    assert h.details["backends"]["postgres"]["latency_ms"] >= 0
    assert h.details["required"] == ["conversation_buffer", "conversation_summary"]


async def test_health_with_redis_down_is_degraded(cfg: dict[str, Any], stores: Stores) -> None:
    broken = Stores(
        config=stores.config,
        redis=aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5, socket_timeout=0.5),
        pg=stores.pg,
        dsn=stores.dsn,
        keys=stores.keys,
        embedding_dim=stores.embedding_dim,
    )
    o = MemoryOrchestrator(cfg, stores=broken)
    await o.initialize()
    h = await o.health_check()
    assert h["status"] == "degraded", h.details
    assert h.details["backends"]["redis"]["status"] == "unhealthy"
    assert h.details["backends"]["postgres"]["status"] == "healthy"
    assert h.details["memories"]["working_memory"]["status"] == "unhealthy"  # Redis-only, optional
    # reads fail open: the Redis-only tiers are reported degraded, the turn still returns
    ctx = await o.get_comprehensive_context(ContextRequest(query="hi", session_id="s", user_id=str(uuid.uuid4())))
    assert "working_memory" in ctx.degraded
    await o.close()
    await broken.redis.aclose()


async def test_health_with_postgres_down_is_unhealthy(cfg: dict[str, Any], stores: Stores) -> None:
    dead_pool = AsyncConnectionPool("postgresql://127.0.0.1:1/none", open=False)
    broken = Stores(config=stores.config, redis=stores.redis, pg=dead_pool, dsn="postgresql://127.0.0.1:1/none",
                    keys=stores.keys, embedding_dim=stores.embedding_dim)
    o = MemoryOrchestrator(cfg, stores=broken)
    await o.initialize()
    h = await o.health_check()
    assert h["status"] == "unhealthy"
    assert h.details["backends"]["postgres"]["status"] == "unhealthy"
    assert "postgres is down" in h.details["reasons"]
    await o.close()


async def test_health_required_versus_optional_tiers(base_config: dict[str, Any], stores: Stores) -> None:
    sick = fake(MemoryType.VECTOR_DATABASE)(base_config, health="unhealthy")
    fine = fake(MemoryType.CONVERSATION_BUFFER)(base_config)
    o = MemoryOrchestrator({**base_config, "enabled_memories": []}, stores=stores,
                           memories=make(sick, fine))
    h = await o.health_check()
    assert h["status"] == "degraded"  # an optional tier is down
    o2 = MemoryOrchestrator({**base_config, "enabled_memories": []}, stores=stores,
                            memories=make(sick, fine), required_memories=[MemoryType.VECTOR_DATABASE])
    assert (await o2.health_check())["status"] == "unhealthy"
    await o.close()
    await o2.close()


# --- lifecycle -------------------------------------------------------------------------------------


async def test_opens_and_closes_its_own_stores_and_exposes_tiers(base_config: dict[str, Any], uid: str,
                                                                 sid: str) -> None:
    config = MemoryConfig.from_any({**base_config, "enabled_memories": [MemoryType.CONVERSATION_BUFFER,
                                                                          MemoryType.KEY_VALUE_STORE]})
    async with MemoryOrchestrator(config) as o:
        assert isinstance(o.memories[MemoryType.CONVERSATION_BUFFER], ConversationBufferMemory)
        assert set(o.memories) == {MemoryType.CONVERSATION_BUFFER, MemoryType.KEY_VALUE_STORE}
        assert o.memories[MemoryType.CONVERSATION_BUFFER].stores is o.stores  # one shared Stores
        assert o.memories[MemoryType.KEY_VALUE_STORE].stores is o.stores
        await o.store_turn(session_id=sid, user_id=uid, user_message="hello there", assistant_message="hi!")
        ctx = await o.get_comprehensive_context(ContextRequest(session_id=sid, user_id=uid))
        assert [m["content"] for m in ctx.messages] == ["hello there", "hi!"]
        stores = o.stores
        await o.forget(uid)
    assert stores._closed
    summary_only = MemoryOrchestrator({**base_config, "enabled_memories": [MemoryType.CONVERSATION_SUMMARY]})
    assert isinstance(summary_only.memories[MemoryType.CONVERSATION_SUMMARY], ConversationSummaryMemory)
    assert summary_only.required == {MemoryType.CONVERSATION_SUMMARY}


async def test_initialize_warms_what_the_first_turn_needs_and_leaves_nothing_behind(
    base_config: dict[str, Any], stores: Stores
) -> None:
    """initialize() loads the embedding model and reads every tier once (reserved user, nothing kept)."""
    from memory_implementations.orchestrator import WARM_UP_USER
    from memory_implementations.providers.local_embedder import MiniLMEmbedder

    def model_loaded(o: MemoryOrchestrator) -> bool:
        vector = o.memories[MemoryType.VECTOR_DATABASE]
        assert isinstance(vector, VectorDatabaseMemory)
        model = vector.embedder.backend  # the cache wraps the model
        assert isinstance(model, MiniLMEmbedder)
        return model.load_seconds is not None

    private = {**base_config, "embedding_provider": "local"}
    cold = MemoryOrchestrator({**private, "warm_up": False})
    await cold.initialize()
    assert not model_loaded(cold)  # lazy: the first turn would pay for the load
    await cold.close()
    warm = MemoryOrchestrator(dict(private))
    seen: list[str] = []
    for tier in warm.memories.values():
        method = "get_steered_context" if isinstance(tier, VectorDatabaseMemory) else "get_context"
        real = getattr(tier, method)

        async def spy(*a: Any, _real: Any = real, _name: str = tier.memory_type.value, **kw: Any) -> Any:
            seen.append(_name)
            return await _real(*a, **kw)

        setattr(tier, method, spy)
    await warm.initialize()
    assert model_loaded(warm)
    assert "vector_database" in seen and len(seen) >= 4  # every tier was read once
    assert await warm.warm_up() == {}  # nothing degraded
    assert await redis_keys(warm.stores, WARM_UP_USER) == []
    for table in ("memory_messages", "memory_vectors", "memory_entities", "memory_kv"):
        assert await count_rows(warm.stores, table, WARM_UP_USER) == 0
    await warm.close()
