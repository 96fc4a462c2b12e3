"""Bad items raise ValidationError naming the field, and nothing is written anywhere."""

from __future__ import annotations

from typing import Any

import pytest

from memory_implementations.errors import ValidationError
from memory_implementations.memories import ConversationBufferMemory, KeyValueStoreMemory, WorkingMemory
from memory_implementations.stores import Stores


async def footprint(stores: Stores, uid: str) -> tuple[int, ...]:
    """Rows of ``uid`` in every table these tiers write, and its Redis keys."""
    counts = []
    async with stores.pg.connection() as conn:
        for table in ("memory_messages", "memory_kv", "memory_kv_history"):
            cur = await conn.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s", (uid,))
            counts.append(int((await cur.fetchone())[0]))
    keys = [k async for k in stores.redis.scan_iter(match=stores.keys.pattern(uid))]
    return (*counts, len(keys))


@pytest.fixture
async def tiers(base_config: dict[str, Any], stores: Stores) -> dict[str, Any]:
    """One of each tier on the shared stores, with a small message limit."""
    cfg = {**base_config, "max_message_chars": 50}
    out = {
        "buffer": ConversationBufferMemory(cfg, stores=stores),
        "working": WorkingMemory(cfg, stores=stores),
        "kv": KeyValueStoreMemory(cfg, stores=stores),
        "kv_raw": KeyValueStoreMemory({**cfg, "serialize_json": False}, stores=stores),
    }
    for tier in out.values():
        await tier.initialize()
    return out


BUFFER_BAD = [
    ({"role": "user", "content": "no session"}, "session_id"),
    ({"session_id": "", "content": "empty session"}, "session_id"),
    ({"session_id": "s", "role": "robot", "content": "hi"}, "role"),
    ({"session_id": "s", "role": "user", "content": "x" * 51}, "content"),
    ({"session_id": "s", "role": "user", "content": 42}, "content"),
    ({"session_id": "s", "role": "user"}, "content"),
    ({"session_id": "s", "content": "nul \x00 byte"}, "content"),
    ({"session_id": "s", "content": "ok", "metadata": {"f": object()}}, "metadata"),
    ({"session_id": "s", "content": "ok", "metadata": "not a mapping"}, "metadata"),
    ({"session_id": "s", "content": "ok", "created_at": "yesterday"}, "created_at"),
]

WORKING_BAD = [
    ({"namespace": "n", "key": "", "content": "x"}, "key"),
    ({"namespace": "n", "content": "x"}, "key"),
    ({"namespace": "n", "key": "k"}, "content"),
    ({"namespace": "n", "key": "k", "content": "x", "importance": 1.5}, "importance"),
    ({"namespace": "n", "key": "k", "content": "x", "importance": -0.1}, "importance"),
    ({"namespace": "n", "key": "k", "content": "x", "importance": "high"}, "importance"),
    ({"namespace": "n", "key": "k", "content": "x", "importance": True}, "importance"),
    ({"namespace": "n", "key": "k", "content": "x", "importance": float("nan")}, "importance"),
    ({"namespace": "n", "key": "k", "content": {1, 2}}, "content"),
    ({"namespace": "n", "key": "k", "value": float("inf")}, "value"),
    ({"namespace": "n", "key": "k", "content": "y" * 51}, "content"),
    ({"namespace": 7, "key": "k", "content": "x"}, "namespace"),
    ({"namespace": "n", "key": "k", "content": "x", "ttl_seconds": -1}, "ttl_seconds"),
]

KV_BAD = [
    ({"key": "", "value": 1}, "key"),
    ({"value": 1}, "key"),
    ({"key": "k"}, "value"),
    ({"key": "k", "value": {1, 2}}, "value"),
    ({"key": "k", "value": float("nan")}, "value"),
    ({"key": "k", "value": "nul \x00"}, "value"),
    ({"key": "k", "value": 1, "ttl": 0}, "ttl"),
    ({"key": "k", "value": 1, "namespace": ""}, "namespace"),
]


@pytest.mark.parametrize(("item", "field"), BUFFER_BAD)
async def test_buffer_rejects_bad_items(
    tiers: dict[str, Any], stores: Stores, uid: str, item: dict, field: str
) -> None:
    before = await footprint(stores, uid)
    with pytest.raises(ValidationError) as err:
        await tiers["buffer"].store({**item, "user_id": uid})
    assert err.value.field == field and field in str(err.value)
    assert await footprint(stores, uid) == before


async def test_buffer_store_many_is_all_or_nothing(tiers: dict[str, Any], stores: Stores, uid: str, sid: str) -> None:
    before = await footprint(stores, uid)
    good = {"session_id": sid, "user_id": uid, "content": "fine"}
    with pytest.raises(ValidationError) as err:
        await tiers["buffer"].store_many([good, good, {**good, "role": "robot"}, good])
    assert err.value.field == "role" and "item 2" in str(err.value)
    assert await footprint(stores, uid) == before


@pytest.mark.parametrize(("item", "field"), WORKING_BAD)
async def test_working_rejects_bad_items(
    tiers: dict[str, Any], stores: Stores, uid: str, item: dict, field: str
) -> None:
    before = await footprint(stores, uid)
    with pytest.raises(ValidationError) as err:
        await tiers["working"].store({**item, "user_id": uid})
    assert err.value.field == field
    assert await footprint(stores, uid) == before


@pytest.mark.parametrize(("item", "field"), KV_BAD)
async def test_kv_rejects_bad_items(tiers: dict[str, Any], stores: Stores, uid: str, item: dict, field: str) -> None:
    before = await footprint(stores, uid)
    with pytest.raises(ValidationError) as err:
        await tiers["kv"].store({**item, "user_id": uid})
    assert err.value.field == field
    assert await footprint(stores, uid) == before


async def test_kv_without_json_rejects_structured_values(tiers: dict[str, Any], stores: Stores, uid: str) -> None:
    before = await footprint(stores, uid)
    for value in ({"a": 1}, [1], 3):
        with pytest.raises(ValidationError) as err:
            await tiers["kv_raw"].set("k", value, user_id=uid)
        assert err.value.field == "value"
    assert await footprint(stores, uid) == before


async def test_contexts_need_a_session_and_clear_needs_a_scope(tiers: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as err:
        await tiers["buffer"].get_context({"query": "no session"})
    assert err.value.field == "session_id"
    for name in ("buffer", "working", "kv"):
        with pytest.raises(ValidationError):
            await tiers[name].clear()


@pytest.mark.parametrize("name", ["buffer", "working", "kv"])
async def test_health_reports_each_backend_with_latency(tiers: dict[str, Any], name: str) -> None:
    health = await tiers[name].health_check()
    assert health["status"] == "healthy"
    expected = {"redis"} if name == "working" else {"redis", "postgres"}
    backends = {b for b in ("redis", "postgres") if b in health["details"]}
    assert backends == expected
    for b in expected:
        assert health["details"][b]["status"] == "healthy"
        assert isinstance(health["details"][b]["latency_ms"], float) and health["details"][b]["latency_ms"] >= 0
    assert health["details"]["memory_type"] == tiers[name].memory_type.value
