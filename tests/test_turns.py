"""``orchestrator.turn()`` and ``remember_turn``: memory for a custom LLM node, fail-open both ways."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from chat_helpers import MakeOrchestrator, history

from memory_implementations.errors import ValidationError
from memory_implementations.integrations import failopen_wrapper
from memory_implementations.memories.kv import KeyValueStoreMemory
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.turns import MemoryTurn, remember_turn
from memory_implementations.types import MemoryType

TIERS = [MemoryType.CONVERSATION_BUFFER, MemoryType.KEY_VALUE_STORE]


pytest_plugins = ("chat_helpers",)


@pytest.fixture
async def orch(make_orchestrator: MakeOrchestrator) -> MemoryOrchestrator:
    """Buffer + key-value tiers on the shared test stores."""
    return await make_orchestrator(TIERS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_turn_brings_memory_and_stores_the_exchange(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    kv = orch.memories[MemoryType.KEY_VALUE_STORE]
    assert isinstance(kv, KeyValueStoreMemory)
    await kv.set("diet", "vegetarian", user_id=uid)
    await orch.store_turn(session_id=sid, user_id=uid, user_message="Hi, I'm Ana.", assistant_message="Hello Ana!")
    async with orch.turn(sid, uid, "What should I cook tonight?", system_prompt="Be brief.") as t:
        assert isinstance(t, MemoryTurn) and t.used_memory and t.degraded == {}
        assert "diet: vegetarian" in t.text
        assert t.messages[0]["role"] == "system" and t.messages[0]["content"].startswith("Be brief.")
        assert "diet: vegetarian" in t.messages[0]["content"]
        assert [m["content"] for m in t.messages[1:]] == ["Hi, I'm Ana.", "Hello Ana!", "What should I cook tonight?"]
        t.record("A mushroom risotto.")
    await t.stored()
    assert (await history(orch, uid, sid))[-2:] == [("user", "What should I cook tonight?"),
                                                   ("assistant", "A mushroom risotto.")]


async def test_failed_block_stores_nothing_and_unrecorded_turn_stores_the_query(
    orch: MemoryOrchestrator, uid: str, sid: str
) -> None:
    with pytest.raises(RuntimeError, match="model exploded"):
        async with orch.turn(sid, uid, "Question that fails") as t:
            raise RuntimeError("model exploded")
    await t.stored()
    assert await history(orch, uid, sid) == []
    async with orch.turn(sid, uid, "Just noting this.") as t2:
        pass
    await t2.stored()
    assert await history(orch, uid, sid) == [("user", "Just noting this.")]
    async with orch.turn(sid, uid, "Not to be kept.", store=False) as t3:
        t3.record("fine")
    await t3.stored()
    assert len(await history(orch, uid, sid)) == 1


async def test_turn_runs_without_memory_when_both_backends_are_down(base_config: dict[str, Any], uid: str,
                                                                     sid: str) -> None:
    dead = {**base_config, "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", "enabled_memories": TIERS}
    o = MemoryOrchestrator(dead)
    try:
        async with o.turn(sid, uid, "Still there?", timeout_ms=1500) as t:
            assert not t.used_memory and t.text == ""
            assert "memory" in t.degraded
            assert t.messages == [{"role": "user", "content": "Still there?"}]
            t.record("Yes, without memory.")
        await t.stored()  # never raises: the turn waits in the retry queue
        queued = failopen_wrapper(o).pending_turns()
        assert [(q.user_message, q.assistant_message) for q in queued] == [("Still there?", "Yes, without memory.")]
    finally:
        await failopen_wrapper(o).aclose()
        await o.close()


async def test_remember_turn_decorator(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    seen: list[list[dict[str, Any]]] = []

    @remember_turn(orch)
    async def node(*, query: str, session_id: str, user_id: str, memory: MemoryTurn) -> str:
        seen.append(memory.messages)
        return f"echo: {query}"

    assert await node(query="ping", session_id=sid, user_id=uid) == "echo: ping"
    assert seen[0][-1] == {"role": "user", "content": "ping"}
    await failopen_wrapper(orch).flush()
    assert await history(orch, uid, sid) == [("user", "ping"), ("assistant", "echo: ping")]
    with pytest.raises(ValidationError) as err:
        await node(query="ping", user_id=uid)  # type: ignore[call-arg]
    assert err.value.field == "session_id"


async def test_turn_validation(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    for args, field in (((" ", uid, "q"), "session_id"), ((sid, "", "q"), "user_id"), ((sid, uid, ""), "query")):
        with pytest.raises(ValidationError) as err:
            orch.turn(*args)
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        orch.turn(sid, uid, "q", timeout_ms=0)
    assert err.value.field == "timeout_ms"
    async with orch.turn(sid, uid, "q", store=False) as t:
        with pytest.raises(ValidationError) as err:
            t.record("   ")
        assert err.value.field == "assistant_text"
        with pytest.raises(ValidationError) as err:
            await t.__aenter__()
        assert err.value.field == "turn"
