"""KeyValueStoreMemory against a real Redis and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

import pytest

from memory_implementations.errors import ValidationError
from memory_implementations.memories import KeyValueStoreMemory
from memory_implementations.memories._shared import COMPRESSED, KIND_JSON, KIND_STR
from memory_implementations.stores import Stores


@pytest.fixture
async def make(base_config: dict[str, Any], stores: Stores):
    """Build a key-value memory on the shared stores with config overrides."""

    async def _make(**overrides: Any) -> KeyValueStoreMemory:
        mem = KeyValueStoreMemory({**base_config, **overrides}, stores=stores)
        await mem.initialize()
        return mem

    return _make


async def raw_blob(mem: KeyValueStoreMemory, uid: str, ns: str, key: str) -> bytes | None:
    return await mem.stores.redis.hget(mem.stores.keys.key(uid, ns, "kv", key), "d")


async def pg_rows(stores: Stores, uid: str) -> list[tuple[Any, ...]]:
    async with stores.pg.connection() as conn:
        cur = await conn.execute("SELECT key, value, version FROM memory_kv WHERE user_id = %s ORDER BY key", (uid,))
        return await cur.fetchall()


async def test_seed_usage_exactly_as_documented(base_config: dict[str, Any], uid: str) -> None:
    config = {
        "redis_url": base_config["redis_url"],
        "database_url": base_config["database_url"],
        "data_dir": base_config["data_dir"],
        "embedding_dim": base_config["embedding_dim"],
        "namespace": "user_context",
        "serialize_json": True,
    }
    kv_memory = KeyValueStoreMemory(config)
    await kv_memory.initialize()
    try:
        await kv_memory.store({"key": "language", "value": "Python", "user_id": uid})
        await kv_memory.store({"key": "prefs", "value": {"tone": "brief"}, "user_id": uid})
        ctx = await kv_memory.get_context({"user_id": uid})
        assert ctx.get("values") == {"language": "Python", "prefs": {"tone": "brief"}}
        assert {it["section"] for it in ctx.items} == {"key_value"}
        assert "language: Python" in ctx.text
        assert (await kv_memory.health_check())["status"] == "healthy"
    finally:
        await kv_memory.clear(user_id=uid)
        await kv_memory.close()


async def test_json_round_trip_and_write_through(make, stores: Stores, uid: str) -> None:
    mem = await make(namespace="prefs")
    values = {"a": {"nested": [1, 2.5, None, True]}, "b": "héllo ✓", "c": 42, "d": None, "e": [1, "x"]}
    for k, v in values.items():
        await mem.set(k, v, user_id=uid)
    assert {k: await mem.get(k, user_id=uid) for k in values} == values
    assert [(r[0], r[1], r[2]) for r in await pg_rows(stores, uid)] == [(k, v, 1) for k, v in sorted(values.items())]
    assert await mem.get("missing", "fallback", user_id=uid) == "fallback"


async def test_compression_round_trip_raw_redis_bytes(make, uid: str) -> None:
    mem = await make(compression_threshold=64)
    big = {"text": "lorem ipsum " * 200}
    await mem.set("big", big, user_id=uid)
    await mem.set("small", "tiny", user_id=uid)
    raw = await raw_blob(mem, uid, "default", "big")
    assert raw is not None and raw[0] == KIND_JSON | COMPRESSED
    assert len(raw) < len(json.dumps(big)) // 4
    assert json.loads(zlib.decompress(raw[1:])) == big
    small = await raw_blob(mem, uid, "default", "small")
    assert small == bytes([KIND_JSON]) + b'"tiny"'
    assert await mem.get("big", user_id=uid) == big
    await mem.stores.redis.delete(mem.stores.keys.key(uid, "default", "kv", "big"))
    assert await mem.get("big", user_id=uid) == big  # warmed from PostgreSQL, compressed again
    assert (await raw_blob(mem, uid, "default", "big"))[0] == KIND_JSON | COMPRESSED


async def test_serialize_json_off_accepts_only_str_and_bytes(make, uid: str) -> None:
    mem = await make(serialize_json=False, compression_threshold=10_000)
    await mem.set("s", "plain text", user_id=uid)
    await mem.set("b", b"\x00\xffbinary", user_id=uid)
    assert await raw_blob(mem, uid, "default", "s") == bytes([KIND_STR]) + b"plain text"
    assert await mem.get("s", user_id=uid) == "plain text"
    assert await mem.get("b", user_id=uid) == b"\x00\xffbinary"
    await mem.stores.redis.delete(*(mem.stores.keys.key(uid, "default", "kv", k) for k in "sb"))
    assert await mem.get("b", user_id=uid) == b"\x00\xffbinary"  # from PostgreSQL
    with pytest.raises(ValidationError) as err:
        await mem.set("d", {"no": "dicts"}, user_id=uid)
    assert err.value.field == "value"


async def test_history_supersession_keeps_the_record(make, uid: str) -> None:
    mem = await make(namespace="facts")
    await mem.set("home", "lives in SF", user_id=uid)
    ref = await mem.set("home", "moved to Dallas", user_id=uid)
    assert not ref.created
    assert await mem.get("home", user_id=uid) == "moved to Dallas"
    hist = await mem.history("home", user_id=uid)
    assert [(h["value"], h["version"]) for h in hist] == [("lives in SF", 1)]
    assert hist[0]["valid_from"] <= hist[0]["superseded_at"]
    full = await mem.history("home", user_id=uid, include_current=True)
    assert [(h["value"], h["version"], h["superseded_at"] is None) for h in full] == [
        ("lives in SF", 1, False),
        ("moved to Dallas", 2, True),
    ]
    assert full[1]["valid_from"] == hist[0]["superseded_at"]


async def test_delete_tombstone_and_recreate_continues_versions(make, uid: str) -> None:
    mem = await make()
    await mem.set("k", 1, user_id=uid)
    await mem.set("k", 2, user_id=uid)
    assert await mem.delete("k", user_id=uid) is True
    assert await mem.delete("k", user_id=uid) is False
    assert await mem.get("k", user_id=uid) is None
    rkey = mem.stores.keys.key(uid, "default", "kv", "k")
    assert await mem.stores.redis.hgetall(rkey) == {b"v": b"3"}  # tombstone
    await mem.set("k", 3, user_id=uid)
    assert await mem.get("k", user_id=uid) == 3
    assert [(h["value"], h["version"]) for h in await mem.history("k", user_id=uid)] == [(1, 1), (2, 2)]
    assert [h["version"] for h in await mem.history("k", user_id=uid, include_current=True)] == [1, 2, 3]


async def test_concurrent_writers_leave_cache_matching_postgres(make, stores: Stores, uid: str) -> None:
    mem = await make()
    await asyncio.gather(*(mem.set("race", i, user_id=uid) for i in range(12)))
    ((_key, value, version),) = await pg_rows(stores, uid)
    assert version == 12
    assert await mem.get("race", user_id=uid) == value
    assert int(await stores.redis.hget(stores.keys.key(uid, "default", "kv", "race"), "v")) == 12
    hist = await mem.history("race", user_id=uid)
    assert [h["version"] for h in hist] == list(range(1, 12))


async def test_stale_warm_cannot_overwrite_newer_value(make, uid: str) -> None:
    mem = await make()
    await mem.set("k", "new", user_id=uid)
    await mem.set("k", "newer", user_id=uid)
    rkey = mem.stores.keys.key(uid, "default", "kv", "k")
    assert await mem._fill(keys=[rkey], args=[1, mem._blob("old"), 0]) == 0  # version 1 < 2: refused
    assert await mem.get("k", user_id=uid) == "newer"


async def test_ttl_expiry_in_redis_and_postgres(make, uid: str) -> None:
    mem = await make()
    await mem.set("temp", "soon gone", user_id=uid, ttl=1)
    await mem.set("keep", "stays", user_id=uid)
    rkey = mem.stores.keys.key(uid, "default", "kv", "temp")
    assert 0 < await mem.stores.redis.pttl(rkey) <= 1000
    assert await mem.get("temp", user_id=uid) == "soon gone"
    await asyncio.sleep(1.3)
    assert await mem.stores.redis.exists(rkey) == 0
    assert await mem.get("temp", user_id=uid) is None  # the PostgreSQL row is expired too
    assert await mem.list(user_id=uid) == {"keep": "stays"}
    assert "temp" not in (await mem.get_context({"user_id": uid}))["values"]


async def test_list_prefix_and_namespaces(make, uid: str) -> None:
    mem = await make()
    await mem.set("pref.tone", "brief", namespace="ui", user_id=uid)
    await mem.set("pref.lang", "en", namespace="ui", user_id=uid)
    await mem.set("other", 1, namespace="ui", user_id=uid)
    await mem.set("pref.tone", "verbose", namespace="email", user_id=uid)
    assert await mem.list("ui", "pref.", user_id=uid) == {"pref.lang": "en", "pref.tone": "brief"}
    assert await mem.list("ui", "pref%", user_id=uid) == {}  # prefix is literal, not a LIKE pattern
    assert await mem.list("email", user_id=uid) == {"pref.tone": "verbose"}
    assert await mem.get("pref.tone", namespace="email", user_id=uid) == "verbose"


async def test_get_context_snapshot_invalidated_by_writes(make, uid: str) -> None:
    mem = await make(namespace="ctx")
    await mem.set("city", "SF", user_id=uid)
    first = await mem.get_context({"user_id": uid, "query": "what's my city?"})
    assert first["values"] == {"city": "SF"}
    nskey = mem.stores.keys.key(uid, "ctx", "kvns", "all")
    assert await mem.stores.redis.hexists(nskey, "d")  # cached snapshot
    await mem.set("city", "Dallas", user_id=uid)
    await mem.set("pet", "cat", user_id=uid)
    ctx = await mem.get_context({"user_id": uid, "query": "what's my city?"})
    assert ctx["values"] == {"city": "Dallas", "pet": "cat"}
    assert ctx.items[0]["key"] == "city"  # mentioned in the query, ranked first
    assert ctx.items[0]["content"] == "city: Dallas"
    budget = ctx.token_count - mem.tokenizer.count("- pet: cat")
    small = await mem.get_context({"user_id": uid, "query": "what's my city?"}, max_tokens=budget)
    assert small["values"] == {"city": "Dallas"} and small.truncated and small.token_count <= budget


async def test_clear_and_tenant_isolation(make, stores: Stores, uid: str) -> None:
    mem = await make()
    other = "other-" + uid
    await mem.set("secret", "mine", user_id=uid, namespace="a")
    await mem.set("secret", "theirs", user_id=other, namespace="a")
    await mem.set("x", 1, user_id=uid, namespace="b")
    assert await mem.get("secret", user_id=other, namespace="a") == "theirs"
    assert await mem.list("a", user_id=other) == {"secret": "theirs"}
    assert await mem.clear(namespace="a", user_id=uid) == 1
    assert await mem.get("secret", user_id=uid, namespace="a") is None
    assert await mem.get("x", user_id=uid, namespace="b") == 1
    assert await mem.clear(session_id="any") == 0  # key-value data is not session-scoped
    assert await mem.clear(user_id=uid) == 1
    assert await pg_rows(stores, uid) == []
    assert [k async for k in stores.redis.scan_iter(match=stores.keys.pattern(uid))] == []
    assert await mem.get("secret", user_id=other, namespace="a") == "theirs"
    await mem.clear(user_id=other)
