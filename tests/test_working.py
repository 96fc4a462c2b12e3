"""WorkingMemory against a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from memory_implementations.errors import ValidationError
from memory_implementations.memories import WorkingMemory
from memory_implementations.stores import Stores


@pytest.fixture
async def make(base_config: dict[str, Any], stores: Stores):
    """Build a working memory on the shared stores with config overrides."""

    async def _make(**overrides: Any) -> WorkingMemory:
        mem = WorkingMemory({**base_config, **overrides}, stores=stores)
        await mem.initialize()
        return mem

    return _make


async def put(mem: WorkingMemory, uid: str, ns: str, key: str, importance: float = 0.5, **extra: Any) -> None:
    await mem.store(
        {"namespace": ns, "user_id": uid, "key": key, "content": f"value of {key}", "importance": importance, **extra}
    )


async def present(mem: WorkingMemory, uid: str, ns: str, keys: list[str]) -> set[str]:
    return {k for k in keys if await mem.get(ns, k, user_id=uid) is not None}


async def test_seed_usage_exactly_as_documented(base_config: dict[str, Any], sid: str) -> None:
    config = {
        "redis_url": base_config["redis_url"],
        "database_url": base_config["database_url"],
        "data_dir": base_config["data_dir"],
        "embedding_dim": base_config["embedding_dim"],
        "ttl_seconds": 1800,
        "capacity_limit": 100,
        "eviction_policy": "importance",
        "enable_reasoning_chain": True,
    }
    working_memory = WorkingMemory(config)
    await working_memory.initialize()
    ns = f"reasoning_session-{sid}"
    try:
        await working_memory.store({"namespace": ns, "key": "goal", "content": "plan a trip", "importance": 0.9})
        await working_memory.add_reasoning_step(ns, "thought", "need dates first")
        stats = await working_memory.get_namespace_stats(ns)
        assert stats["count"] == 1 and stats["capacity"] == 100 and stats["reasoning_steps"] == 1
        assert stats["avg_importance"] == pytest.approx(0.9)
        assert 0 < stats["ttl_remaining"] <= 1800
        health = await working_memory.health_check()
        assert health["status"] == "healthy"
        assert set(health["details"]) >= {"redis", "eviction_policy"} and "postgres" not in health["details"]
    finally:
        await working_memory.clear(namespace=ns)
        await working_memory.close()


async def test_importance_eviction_lowest_first_ties_oldest(make, uid: str, sid: str) -> None:
    mem = await make(capacity_limit=3, eviction_policy="importance")
    await put(mem, uid, sid, "a", 0.9)
    await put(mem, uid, sid, "b", 0.1)
    await put(mem, uid, sid, "c", 0.5)
    await put(mem, uid, sid, "d", 0.7)
    assert await present(mem, uid, sid, list("abcd")) == {"a", "c", "d"}
    await put(mem, uid, sid, "e", 0.5)  # c (0.5, older) loses the tie against e
    assert await present(mem, uid, sid, list("acde")) == {"a", "d", "e"}
    stats = await mem.get_namespace_stats(sid, user_id=uid)
    assert stats["evictions"] == 2 and stats["count"] == 3


async def test_importance_eviction_refuses_a_less_important_newcomer(make, uid: str, sid: str) -> None:
    mem = await make(capacity_limit=2, eviction_policy="importance")
    await put(mem, uid, sid, "a", 0.9)
    await put(mem, uid, sid, "b", 0.8)
    ref = await mem.store({"namespace": sid, "user_id": uid, "key": "c", "content": "minor", "importance": 0.1})
    assert not ref.created
    assert await present(mem, uid, sid, list("abc")) == {"a", "b"}
    assert (await mem.get_namespace_stats(sid, user_id=uid))["evictions"] == 1


async def test_lru_eviction_uses_reads(make, uid: str, sid: str) -> None:
    mem = await make(capacity_limit=3, eviction_policy="lru")
    for k in "abc":
        await put(mem, uid, sid, k)
    assert (await mem.get(sid, "a", user_id=uid))["content"] == "value of a"  # a is now most recent
    await put(mem, uid, sid, "d")
    assert await present(mem, uid, sid, list("abcd")) == {"a", "c", "d"}


async def test_fifo_eviction_ignores_reads_and_updates(make, uid: str, sid: str) -> None:
    mem = await make(capacity_limit=3, eviction_policy="fifo")
    for k in "abc":
        await put(mem, uid, sid, k)
    await mem.get(sid, "a", user_id=uid)
    ref = await mem.store({"namespace": sid, "user_id": uid, "key": "a", "content": "updated", "importance": 1.0})
    assert not ref.created  # an update, not an insert: nothing evicted
    assert (await mem.get_namespace_stats(sid, user_id=uid))["evictions"] == 0
    await put(mem, uid, sid, "d")
    assert await present(mem, uid, sid, list("abcd")) == {"b", "c", "d"}


async def test_capacity_holds_under_concurrency(make, stores: Stores, uid: str, sid: str) -> None:
    mem = await make(capacity_limit=5)
    await asyncio.gather(*(put(mem, uid, sid, f"k{i}", (i % 10) / 10) for i in range(40)))
    stats = await mem.get_namespace_stats(sid, user_id=uid)
    assert stats["count"] == 5 and stats["evictions"] == 35
    keys = mem._keys(uid, sid)
    assert await stores.redis.hlen(keys[0]) == 5
    assert [await stores.redis.zcard(k) for k in keys[1:4]] == [5, 5, 5]


async def test_ttl_expiry_namespace_and_item(make, stores: Stores, uid: str, sid: str) -> None:
    mem = await make(ttl_seconds=1)
    await put(mem, uid, sid, "short")
    await put(mem, uid, sid, "long", ttl_seconds=30)
    assert 0 < await stores.redis.ttl(mem._keys(uid, sid)[0]) <= 30
    await asyncio.sleep(1.3)
    assert await mem.get(sid, "short", user_id=uid) is None
    assert (await mem.get(sid, "long", user_id=uid))["content"] == "value of long"
    stats = await mem.get_namespace_stats(sid, user_id=uid)
    assert stats["count"] == 1 and stats["expired"] == 1


async def test_reasoning_chain_order_and_validation(make, uid: str, sid: str) -> None:
    mem = await make()
    steps = [("thought", "t1"), ("action", "search flights"), ("observation", "3 found"), ("result", "book #2")]
    numbers = [await mem.add_reasoning_step(sid, t, c, user_id=uid) for t, c in steps]
    assert numbers == [1, 2, 3, 4]
    chain = await mem.get_reasoning_chain(sid, user_id=uid)
    assert [(s["step"], s["type"], s["content"]) for s in chain] == [(n, t, c) for n, (t, c) in zip(numbers, steps)]
    with pytest.raises(ValidationError) as err:
        await mem.add_reasoning_step(sid, "guess", "nope", user_id=uid)
    assert err.value.field == "step_type"
    disabled = await make(enable_reasoning_chain=False)
    with pytest.raises(ValidationError):
        await disabled.add_reasoning_step(sid, "thought", "x", user_id=uid)
    assert len(await mem.get_reasoning_chain(sid, user_id=uid)) == 4


async def test_get_context_ranks_and_renders_chain(make, uid: str, sid: str) -> None:
    mem = await make()
    await put(mem, uid, sid, "minor", 0.1)
    await put(mem, uid, sid, "major", 0.95)
    await mem.store({"namespace": sid, "user_id": uid, "key": "data", "value": {"n": 3}, "importance": 0.5})
    await mem.add_reasoning_step(sid, "thought", "first think", user_id=uid)
    await mem.add_reasoning_step(sid, "action", "then act", user_id=uid)
    ctx = await mem.get_context({"namespace": sid, "user_id": uid})
    facts = [it for it in ctx.items if it["kind"] == "item"]
    assert [it["key"] for it in sorted(facts, key=lambda it: -it["score"])] == ["major", "data", "minor"]
    assert all(it["section"] == "working_memory" for it in ctx.items)
    assert ctx.text.index("[thought] first think") < ctx.text.index("[action] then act")
    assert 'data: {"n": 3}' in ctx.text
    assert [i["key"] for i in ctx["items"]] == ["minor", "major", "data"]
    assert [s["content"] for s in ctx["reasoning_chain"]] == ["first think", "then act"]
    budget = ctx.token_count - mem.tokenizer.count("- minor: value of minor")
    small = await mem.get_context({"namespace": sid, "user_id": uid}, max_tokens=budget)
    assert small.truncated and small.token_count <= budget
    assert "major" in small.text and "then act" in small.text and "minor" not in small.text
    assert (await mem.get_context({"namespace": sid, "user_id": uid}, max_tokens=1)).text == ""


async def test_delete_clear_and_tenant_isolation(make, sid: str) -> None:
    mem = await make()
    alice, bob = "alice-" + sid, "bob-" + sid
    await put(mem, alice, sid, "secret")
    await put(mem, bob, sid, "other")
    assert await mem.get(sid, "secret", user_id=bob) is None
    assert [i["key"] for i in (await mem.get_context({"namespace": sid, "user_id": bob}))["items"]] == ["other"]
    assert await mem.delete(sid, "secret", user_id=alice) is True
    assert await mem.delete(sid, "secret", user_id=alice) is False
    await put(mem, alice, sid, "x")
    await put(mem, alice, sid + "-2", "y")
    assert await mem.clear(user_id=alice) == 2
    assert await mem.get(sid + "-2", "y", user_id=alice) is None
    assert await mem.get(sid, "other", user_id=bob) is not None
    assert await mem.clear(namespace=sid, user_id=bob) == 1
