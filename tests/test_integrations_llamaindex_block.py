"""OrchestratorMemoryBlock inside a real ``llama_index.core.memory.Memory`` (its default SQLite short-term store)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import structlog
from llama_index.core.llms import ChatMessage
from llama_index.core.memory import Memory
from llama_index.core.memory.memory import InsertMethod
from llama_index.core.storage.chat_store.base_db import MessageStatus
from llama_index.core.storage.chat_store.sql import SQLAlchemyChatStore
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from memory_implementations.errors import BackendUnavailable, ValidationError
from memory_implementations.integrations.failopen import failopen_wrapper
from memory_implementations.integrations.llamaindex_block import (
    OrchestratorMemoryBlock,
    latest_user_text,
    turns_of,
)
from memory_implementations.memories.buffer import ConversationBufferMemory
from memory_implementations.memories.kv import KeyValueStoreMemory
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.stores import Stores
from memory_implementations.types import MemoryType, StoredRef

TIERS = [MemoryType.CONVERSATION_BUFFER, MemoryType.KEY_VALUE_STORE, MemoryType.VECTOR_DATABASE]


@pytest.fixture
async def orch(base_config: dict[str, Any], stores: Stores) -> AsyncIterator[MemoryOrchestrator]:
    """A real orchestrator (buffer, key-value, vector) on the shared test stores."""
    o = MemoryOrchestrator({**base_config, "enabled_memories": TIERS, "tier_timeout_ms": 10000}, stores=stores)
    await o.initialize()
    yield o
    await o.close()


async def remember_tea(orch: MemoryOrchestrator, uid: str) -> None:
    kv = orch.memories[MemoryType.KEY_VALUE_STORE]
    assert isinstance(kv, KeyValueStoreMemory)
    await kv.set("favourite_tea", "oolong", user_id=uid)


def text_of(message: ChatMessage) -> str:
    """All text blocks of a message (Memory prepends the memory blocks to existing ones)."""
    return "".join(getattr(b, "text", "") for b in message.blocks)


async def test_memory_aget_includes_the_orchestrator_context(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    await remember_tea(orch, uid)
    block = OrchestratorMemoryBlock(orch, user_id=uid, name="long_term")
    memory = Memory.from_defaults(session_id=sid, memory_blocks=[block], token_limit=4000)
    await memory.aput(ChatMessage(role="system", content="You are a barista."))
    await memory.aput(ChatMessage(role="user", content="Which tea should I order?"))

    out = await memory.aget()
    assert [str(m.role.value) for m in out] == ["system", "user"]
    system = text_of(out[0])
    # LlamaIndex's template wraps each block in <memory><block name>...</block name></memory>
    assert "<memory>" in system and "<long_term>" in system and "</long_term>" in system
    assert "favourite_tea: oolong" in system
    assert system.rstrip().endswith("You are a barista.")  # the memory goes before the existing system text
    assert block.last_context is not None and block.last_context.query == "Which tea should I order?"
    assert block.last_context.session_id == sid  # the Memory's session, passed to the block
    assert block.last_error is None

    # insert_method=USER: the memory goes into the latest user message instead
    memory_user = Memory.from_defaults(session_id=f"{sid}-u", memory_blocks=[block], token_limit=4000,
                                       insert_method=InsertMethod.USER)
    await memory_user.aput(ChatMessage(role="user", content="Anything warm?"))
    out = await memory_user.aget()
    assert [str(m.role.value) for m in out] == ["user"]
    assert "favourite_tea: oolong" in text_of(out[0]) and text_of(out[0]).rstrip().endswith("Anything warm?")
    assert block.last_context.query == "Anything warm?"
    await orch.forget(uid)


async def test_flushed_messages_reach_the_orchestrator(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    block = OrchestratorMemoryBlock(orch, user_id=uid)
    memory = Memory.from_defaults(session_id=sid, memory_blocks=[block], token_limit=120, token_flush_size=20,
                                  chat_history_token_ratio=0.5)
    for i in range(6):
        await memory.aput(ChatMessage(role="user", content=f"Question {i}: tell me about the planet number {i}."))
        await memory.aput(ChatMessage(role="assistant", content=f"Answer {i}: planet {i} is a gas giant."))

    archived = await memory.aget_all(status=MessageStatus.ARCHIVED)
    active = await memory.aget_all(status=MessageStatus.ACTIVE)
    assert archived and active  # the FIFO overflowed and flushed its oldest messages
    buffer = orch.memories[MemoryType.CONVERSATION_BUFFER]
    stored = await buffer.get_messages(sid, uid)
    # exactly the flushed messages were stored, as turns, in order; the short-term ones were not
    assert [(m.role, m.content) for m in stored] == [(str(m.role.value), m.content) for m in archived]
    assert all(m.metadata.get("source") == "llamaindex_memory" for m in stored)
    assert not {m.content for m in stored} & {m.content for m in active}

    # the next read serves them back from long-term memory
    await memory.aput(ChatMessage(role="user", content="What did you say about planet 0?"))
    out = await memory.aget()
    assert out[0].role.value == "system"
    assert "Answer 0: planet 0 is a gas giant." in text_of(out[0])
    await orch.forget(uid)


@pytest.fixture
async def scratch_db(pg_dsn: str) -> AsyncIterator[str]:
    """A database of its own in the test PostgreSQL (LlamaIndex's table stays out of the memory schema)."""
    name = f"li_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute(f"CREATE DATABASE {name}")
    yield psycopg.conninfo.make_conninfo(pg_dsn, dbname=name)
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


async def test_memory_short_term_on_postgres_survives_a_restart(orch: MemoryOrchestrator, scratch_db: str,
                                                                uid: str, sid: str) -> None:
    """Memory's own short-term store on PostgreSQL (psycopg async, no extra driver) + the block for the long term."""
    await remember_tea(orch, uid)

    def engine() -> AsyncEngine:
        return create_async_engine("postgresql+psycopg://",
                                   async_creator=lambda: psycopg.AsyncConnection.connect(scratch_db))

    first = engine()
    store = SQLAlchemyChatStore(table_name="llama_index_memory", async_engine=first)
    memory = Memory.from_defaults(session_id=sid, chat_store=store, token_limit=4000,
                                  memory_blocks=[OrchestratorMemoryBlock(orch, user_id=uid)])
    await memory.aput(ChatMessage(role="user", content="Remember: I take it without sugar."))
    await memory.aput(ChatMessage(role="assistant", content="Noted."))
    await first.dispose()

    second = engine()  # a "restart": new engine, new store, new block, new Memory
    store = SQLAlchemyChatStore(table_name="llama_index_memory", async_engine=second)
    memory = Memory.from_defaults(session_id=sid, chat_store=store, token_limit=4000,
                                  memory_blocks=[OrchestratorMemoryBlock(orch, user_id=uid)])
    await memory.aput(ChatMessage(role="user", content="Make me a tea."))
    out = await memory.aget()
    assert [(str(m.role.value), m.content) for m in out[1:]] == [
        ("user", "Remember: I take it without sugar."), ("assistant", "Noted."), ("user", "Make me a tea.")]
    assert out[0].role.value == "system" and "favourite_tea: oolong" in text_of(out[0])
    await second.dispose()
    await orch.forget(uid)


async def test_read_only_block_and_explicit_session(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    await orch.store_turn(session_id="app-session", user_id=uid, user_message="My cat is called Miso.",
                          assistant_message="Lovely name.")
    block = OrchestratorMemoryBlock(orch, user_id=uid, session_id="app-session", store_flushed=False,
                                    memory_types=["conversation_buffer"])
    memory = Memory.from_defaults(session_id=sid, memory_blocks=[block], token_limit=60, token_flush_size=10,
                                  chat_history_token_ratio=0.5)
    for i in range(4):
        await memory.aput(ChatMessage(role="user", content=f"Filler question number {i} about nothing."))
        await memory.aput(ChatMessage(role="assistant", content=f"Filler answer number {i}."))
    assert await memory.aget_all(status=MessageStatus.ARCHIVED)
    buffer = orch.memories[MemoryType.CONVERSATION_BUFFER]
    assert await buffer.get_messages(sid, uid) == []  # read-only: nothing flushed was stored
    out = await memory.aget()
    assert "My cat is called Miso." in text_of(out[0])  # the block reads its own session, not the Memory's
    assert block.last_context.session_id == "app-session"
    assert set(block.last_context.sections) == {"recent_conversation"}  # memory_types limits the tiers
    await orch.forget(uid)


async def test_memory_failures_never_reach_the_agent(base_config: dict[str, Any], orch: MemoryOrchestrator,
                                                     uid: str, sid: str) -> None:
    # read: PostgreSQL unreachable, so the orchestrator cannot even start -> no memory, a warning, no exception
    down = MemoryOrchestrator({**base_config, "enabled_memories": [MemoryType.CONVERSATION_BUFFER],
                               "database_url": "postgresql://nobody@127.0.0.1:1/nothing"})
    block = OrchestratorMemoryBlock(down, user_id=uid)
    memory = Memory.from_defaults(session_id=sid, memory_blocks=[block], token_limit=4000)
    await memory.aput(ChatMessage(role="user", content="Hello?"))
    with structlog.testing.capture_logs() as logs:
        out = await memory.aget()
    assert [(str(m.role.value), m.content) for m in out] == [("user", "Hello?")]  # no memory system message
    assert block.last_error is not None
    assert any(e["event"] == "memory_block_read_failed" and e["log_level"] == "warning" for e in logs)

    # write: a flushed message the tier rejects (a NUL byte) is logged, and Memory.aput still returns
    block = OrchestratorMemoryBlock(orch, user_id=uid)
    memory = Memory.from_defaults(session_id=sid, memory_blocks=[block], token_limit=40, token_flush_size=10,
                                  chat_history_token_ratio=0.5)
    with structlog.testing.capture_logs() as logs:
        await memory.aput(ChatMessage(role="user", content="bad \x00 byte in an old message"))
        await memory.aput(ChatMessage(role="assistant", content="reply to the old message"))
        for i in range(3):
            await memory.aput(ChatMessage(role="user", content=f"newer question {i} with several words"))
    assert await memory.aget_all(status=MessageStatus.ARCHIVED)
    failures = [e for e in logs if e["event"] == "memory_block_write_failed"]
    assert len(failures) == 1 and failures[0]["log_level"] == "error" and "ValidationError" in failures[0]["reason"]
    assert block.failed_writes == 1
    buffer = orch.memories[MemoryType.CONVERSATION_BUFFER]
    assert all("\x00" not in m.content for m in await buffer.get_messages(sid, uid))
    await orch.forget(uid)


async def test_block_validates_its_arguments(orch: MemoryOrchestrator, uid: str) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"user_id": ""}, "user_id"),
        ({"user_id": uid, "session_id": " "}, "session_id"),
        ({"user_id": uid, "max_tokens": 0}, "max_tokens"),
        ({"user_id": uid, "timeout_s": -1}, "timeout_s"),
        ({"user_id": uid, "memory_types": ["nope"]}, "memory_types[0]"),
        ({"user_id": uid, "memory_types": ["key_value_store", "entity_memory"]}, "memory_types[1]"),
        ({"user_id": uid, "memory_types": "key_value_store"}, "memory_types"),
        ({"user_id": uid, "name": ""}, "name"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationError) as err:
            OrchestratorMemoryBlock(orch, **kwargs)
        assert err.value.field == field, kwargs
    with pytest.raises(ValidationError) as err:
        OrchestratorMemoryBlock({"enabled_memories": []}, user_id=uid)  # type: ignore[arg-type]
    assert err.value.field == "orchestrator"
    block = OrchestratorMemoryBlock(orch, user_id=uid, memory_types=["key_value_store"], max_tokens=300)
    assert block.memory_types == [MemoryType.KEY_VALUE_STORE]
    assert "orchestrator" not in block.model_dump()  # not serialised with the Memory


def test_turns_of_pairs_messages_into_exchanges() -> None:
    messages = [
        ChatMessage(role="system", content="sys"),
        ChatMessage(role="assistant", content="Welcome back."),
        ChatMessage(role="user", content="Weather in Oslo?"),
        ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [{"id": "c1"}]}),
        ChatMessage(role="tool", content="-3C", additional_kwargs={"tool_call_id": "c1"}),
        ChatMessage(role="assistant", content="It is -3C."),
        ChatMessage(role="assistant", content="Wrap up warm."),
        ChatMessage(role="user", content="Thanks"),
    ]
    assert turns_of(messages) == [
        (None, "Welcome back."),
        ("Weather in Oslo?", "It is -3C.\n\nWrap up warm."),
        ("Thanks", None),
    ]
    assert latest_user_text(messages) == "Thanks"
    assert latest_user_text(messages[:2]) == ""
    assert latest_user_text(None) == ""


class _DownBuffer(ConversationBufferMemory):
    """The real buffer, except that writes fail while ``down`` is set (PostgreSQL unreachable)."""

    down = True

    async def store_many(self, items: Any) -> list[StoredRef]:
        if type(self).down:
            raise BackendUnavailable("PostgreSQL is unreachable (injected)", field="database_url")
        return await super().store_many(items)


async def test_flushed_turns_survive_a_backend_outage(base_config: dict[str, Any], stores: Stores, uid: str,
                                                      sid: str) -> None:
    o = MemoryOrchestrator({**base_config, "enabled_memories": [MemoryType.CONVERSATION_BUFFER]}, stores=stores,
                           memories={MemoryType.CONVERSATION_BUFFER: _DownBuffer})
    await o.initialize()
    writer = failopen_wrapper(o)
    writer.retry_initial_s = writer.retry_max_s = 3600.0  # retries happen through flush() below
    try:
        block = OrchestratorMemoryBlock(o, user_id=uid)
        memory = Memory.from_defaults(session_id=sid, memory_blocks=[block], token_limit=40, token_flush_size=10,
                                      chat_history_token_ratio=0.5)
        _DownBuffer.down = True
        await memory.aput(ChatMessage(role="user", content="My sister is called Ines."))
        await memory.aput(ChatMessage(role="assistant", content="Nice to know about Ines."))
        for i in range(3):
            await memory.aput(ChatMessage(role="user", content=f"newer question {i} with several words"))
        assert await memory.aget_all(status=MessageStatus.ARCHIVED)  # something was flushed to the block
        queued = writer.pending_turns()
        assert queued and queued[0].user_message == "My sister is called Ines."
        assert block.failed_writes == 0  # queued, not lost
        _DownBuffer.down = False
        assert await writer.flush() == 0
        buffer = o.memories[MemoryType.CONVERSATION_BUFFER]
        assert isinstance(buffer, ConversationBufferMemory)
        stored = [(m.role, m.content) for m in await buffer.get_messages(sid, uid)]
        assert stored[:2] == [("user", "My sister is called Ines."), ("assistant", "Nice to know about Ines.")]
    finally:
        _DownBuffer.down = False
        await writer.aclose()
        await o.forget(uid)
        await o.close()
