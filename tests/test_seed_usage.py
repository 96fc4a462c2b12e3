"""The seed README's documented usage, run as written (with the test backends in the config)."""

from __future__ import annotations

from typing import Any

from memory_implementations import (
    ConversationBufferMemory,
    ConversationSummaryMemory,
    EntityMemory,
    KeyValueStoreMemory,
    VectorDatabaseMemory,
    WorkingMemory,
)


async def test_seed_basic_usage_summary_memory(base_config: dict[str, Any], sid: str, uid: str) -> None:
    config = {**base_config, "google_api_key": None}
    memory = ConversationSummaryMemory(config)
    await memory.initialize()
    await memory.store(
        {
            "session_id": sid,
            "user_id": uid,
            "role": "user",
            "content": "Hello, I need help with Python async programming",
        }
    )
    # the seed asks for context with the session id alone
    context = await memory.get_context({"session_id": sid})
    assert [msg["content"] for msg in context.get("messages", [])] == [
        "Hello, I need help with Python async programming"
    ]
    assert context.get("summary", "") == ""
    health = await memory.health_check()
    assert health["status"] == "healthy"
    assert "timestamp" in health
    await memory.close()


async def test_seed_config_dicts_construct_every_tier(base_config: dict[str, Any]) -> None:
    buffer = ConversationBufferMemory({**base_config, "window_size": 10, "window_type": "turns", "ttl_seconds": 3600})
    summary = ConversationSummaryMemory(
        {**base_config, "buffer_window_size": 10, "summary_context_weight": 0.3, "max_total_tokens": 4000}
    )
    vector = VectorDatabaseMemory({**base_config, "similarity_threshold": 0.7})
    working = WorkingMemory(
        {**base_config, "ttl_seconds": 1800, "capacity_limit": 100, "eviction_policy": "importance",
         "enable_reasoning_chain": True}
    )
    kv = KeyValueStoreMemory({**base_config, "namespace": "user_context", "serialize_json": True})
    entity = EntityMemory(
        {**base_config, "entity_types": ["person", "organization", "location", "concept"], "relationship_tracking": True}
    )
    assert buffer.config.window_size == 10 and buffer.config.window_type == "turns"
    assert summary.config.summary_context_weight == 0.3
    assert vector.config.similarity_threshold == 0.7
    assert working.config.eviction_policy == "importance" and working.config.capacity_limit == 100
    assert kv.config.namespace == "user_context"
    assert entity.config.entity_types == ["person", "organization", "location", "concept"]


async def test_session_shared_by_two_users_needs_user_id(base_config: dict[str, Any], sid: str) -> None:
    memory = ConversationBufferMemory(base_config)
    await memory.initialize()
    await memory.store({"session_id": sid, "user_id": "alice", "role": "user", "content": "alice here"})
    await memory.store({"session_id": sid, "user_id": "bob", "role": "user", "content": "bob here"})
    # ambiguous owner: the seed-style call falls back to the default tenant and leaks nothing
    ctx = await memory.get_context({"session_id": sid})
    assert ctx.get("messages") == []
    ctx_a = await memory.get_context({"session_id": sid, "user_id": "alice"})
    assert [m["content"] for m in ctx_a.get("messages")] == ["alice here"]
    await memory.close()
