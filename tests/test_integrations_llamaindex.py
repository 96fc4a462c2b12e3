"""MemoryChatStore with real llama-index-core objects: the BaseChatStore surface, ChatMemoryBuffer, chat engines."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest
from llama_index.core.base.llms.types import ImageBlock, MessageRole, TextBlock, ToolCallBlock
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import ChatMessage, MockLLM
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.storage.chat_store.base import BaseChatStore
from llama_index.core.utils import get_tokenizer

from memory_implementations.errors import ValidationError
from memory_implementations.integrations.llamaindex import MemoryChatStore
from memory_implementations.memories.buffer import ConversationBufferMemory
from memory_implementations.stores import Stores

SURFACE = ["set_messages", "get_messages", "add_message", "delete_messages", "delete_message", "delete_last_message",
           "get_keys", "aset_messages", "aget_messages", "async_add_message", "adelete_messages", "adelete_message",
           "adelete_last_message", "aget_keys"]


@pytest.fixture
async def buffer(base_config: dict[str, Any], stores: Stores) -> AsyncIterator[ConversationBufferMemory]:
    """The real buffer tier on the shared test stores."""
    tier = ConversationBufferMemory(base_config, stores=stores)
    await tier.initialize()
    yield tier
    await tier.close()


def msg(role: str, content: str) -> ChatMessage:
    return ChatMessage(role=role, content=content)


def pairs(messages: list[ChatMessage]) -> list[tuple[str, str | None]]:
    return [(m.role.value, m.content) for m in messages]


def test_memory_chat_store_implements_the_whole_base_surface() -> None:
    assert issubclass(MemoryChatStore, BaseChatStore)
    assert not getattr(MemoryChatStore, "__abstractmethods__", None)
    public = {n for n, f in vars(BaseChatStore).items() if inspect.isfunction(f) and not n.startswith("_")}
    assert public - {"class_name"} == set(SURFACE)  # the surface checked here is the library's whole surface
    for name in SURFACE:
        ours, theirs = getattr(MemoryChatStore, name), getattr(BaseChatStore, name)
        # our own implementation (not the base's to_thread default for the async twins) ...
        assert ours is not theirs, name
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(theirs), name
        # ... accepting every argument the base signature declares, by the same names
        base_params = [p for p in inspect.signature(theirs).parameters if p != "self"]
        inspect.signature(ours).bind(None, **{p: object() for p in base_params})


async def test_the_surface_with_chat_messages_sync_and_async(buffer: ConversationBufferMemory, uid: str,
                                                             sid: str) -> None:
    store = MemoryChatStore(buffer, user_id=uid)
    other = f"{sid}-2"

    # async twins
    await store.aset_messages(sid, [msg("user", "a"), msg("assistant", "b")])
    await store.async_add_message(sid, msg("user", "c"))
    await store.async_add_message(sid, msg("system", "s"), idx=0)
    got = await store.aget_messages(sid)
    assert all(isinstance(m, ChatMessage) for m in got)
    assert pairs(got) == [("system", "s"), ("user", "a"), ("assistant", "b"), ("user", "c")]
    removed = await store.adelete_message(sid, 2)
    assert isinstance(removed, ChatMessage) and pairs([removed]) == [("assistant", "b")]
    last = await store.adelete_last_message(sid)
    assert last is not None and pairs([last]) == [("user", "c")]
    await store.async_add_message(other, msg("user", "x"))
    assert await store.aget_keys() == [sid, other]
    deleted = await store.adelete_messages(other)
    assert deleted is not None and pairs(deleted) == [("user", "x")]
    assert await store.aget_keys() == [sid]

    # sync methods, as LlamaIndex calls them from synchronous code
    def sync() -> tuple[Any, ...]:
        store.set_messages(other, [msg("user", "1"), msg("assistant", "2"), msg("user", "3")])
        store.add_message(other, msg("assistant", "4"))
        store.add_message(other, msg("user", "0"), idx=0)
        at = store.delete_message(other, 1)
        out_of_range = store.delete_message(other, 10)
        newest = store.delete_last_message(other)
        return at, out_of_range, newest, store.get_messages(other), store.get_keys()

    at, out_of_range, newest, remaining, keys = await asyncio.to_thread(sync)
    assert pairs([at]) == [("user", "1")] and out_of_range is None and pairs([newest]) == [("assistant", "4")]
    assert pairs(remaining) == [("user", "0"), ("assistant", "2"), ("user", "3")]
    assert keys == [sid, other]
    assert pairs(await asyncio.to_thread(store.delete_messages, other) or []) == pairs(remaining)
    assert await asyncio.to_thread(store.delete_messages, other) is None
    assert await asyncio.to_thread(store.delete_last_message, other) is None
    assert await store.aget_keys() == [sid]

    with pytest.raises(ValidationError) as err:
        await store.async_add_message(sid, msg("user", "x"), idx="0")  # type: ignore[arg-type]
    assert err.value.field == "idx"
    with pytest.raises(ValidationError) as err:
        await store.aset_messages(sid, [msg("user", "ok"), "not a message"])
    assert err.value.field == "messages[1]"
    assert pairs(await store.aget_messages(sid)) == [("system", "s"), ("user", "a")]  # nothing was replaced
    await store.aclose()


async def test_chat_message_round_trip_keeps_kwargs_blocks_and_roles(buffer: ConversationBufferMemory, uid: str,
                                                                     sid: str) -> None:
    store = MemoryChatStore(buffer, user_id=uid)
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    messages = [
        ChatMessage(role=MessageRole.DEVELOPER, content="Answer briefly."),
        ChatMessage(role=MessageRole.USER, blocks=[
            TextBlock(text="What is in this picture, and the weather?"),
            ImageBlock(url="https://example.com/cat.png", image_mimetype="image/png"),
        ]),
        ChatMessage(role=MessageRole.ASSISTANT, content="", additional_kwargs={"tool_calls": [call]}),
        ChatMessage(role=MessageRole.ASSISTANT, blocks=[
            TextBlock(text="Checking."),
            ToolCallBlock(tool_call_id="call_2", tool_name="forecast", tool_kwargs={"city": "Oslo", "days": 2}),
        ]),
        ChatMessage(role=MessageRole.TOOL, content="-3C",
                    additional_kwargs={"tool_call_id": "call_1", "name": "weather", "raw": {"temp_c": -3.0}}),
        ChatMessage(role=MessageRole.CHATBOT, content="A cat; -3C in Oslo."),
    ]
    await store.aset_messages(sid, messages)
    back = await store.aget_messages(sid)
    assert back == messages  # pydantic equality: roles, blocks (images, tool calls) and additional_kwargs
    assert [m.role for m in await buffer.get_messages(sid, uid)] == [
        "system", "user", "assistant", "assistant", "tool", "assistant"]  # the tier's own roles
    # the sync path rebuilds them the same way
    assert await asyncio.to_thread(store.get_messages, sid) == messages
    store.close()


async def test_chat_memory_buffer_persists_across_restarts(base_config: dict[str, Any], uid: str, sid: str) -> None:
    config = dict(base_config)
    first = MemoryChatStore(config, user_id=uid)  # builds its own buffer tier and connections
    memory = ChatMemoryBuffer.from_defaults(chat_store=first, chat_store_key=sid, token_limit=10_000)
    history: list[ChatMessage] = []
    for i in range(5):
        history += [msg("user", f"Question {i}: what is the capital of country number {i}?"),
                    msg("assistant", f"Answer {i}: it is city number {i}, a lovely place.")]
    for m in history[:6]:
        await memory.aput(m)
    await asyncio.to_thread(memory.put_messages, history[6:])  # the sync path (private loop thread)
    assert pairs(await memory.aget_all()) == pairs(history)
    await first.aclose()

    # a "restart": new store, new tier, new connections — the history is in Redis/PostgreSQL
    second = MemoryChatStore(config, user_id=uid)
    restored = ChatMemoryBuffer.from_defaults(chat_store=second, chat_store_key=sid, token_limit=10_000)
    assert pairs(await restored.aget_all()) == pairs(history)
    assert pairs(await restored.aget()) == pairs(history)  # everything fits

    # token_limit truncation: the newest messages that fit, starting at a user message
    limit = 60
    small = ChatMemoryBuffer.from_defaults(chat_store=second, chat_store_key=sid, token_limit=limit)
    recent = await small.aget()
    tokens = len(get_tokenizer()(" ".join(str(m.content) for m in recent)))
    assert 0 < len(recent) < len(history) and tokens <= limit
    assert pairs(recent) == pairs(history[-len(recent):]) and recent[0].role == MessageRole.USER
    longer = pairs(history[-len(recent) - 2:])
    assert len(get_tokenizer()(" ".join(c or "" for _, c in longer))) > limit  # one more turn would not fit

    await restored.areset()
    assert await second.aget_messages(sid) == [] and await second.aget_keys() == []
    await second.aclose()


async def test_simple_chat_engine_remembers_through_the_store(base_config: dict[str, Any], uid: str,
                                                              sid: str) -> None:
    store = MemoryChatStore(base_config, user_id=uid)
    engine = SimpleChatEngine.from_defaults(
        llm=MockLLM(), memory=ChatMemoryBuffer.from_defaults(chat_store=store, chat_store_key=sid, token_limit=3000))
    reply = await engine.achat("My name is Ada.")
    await asyncio.to_thread(engine.chat, "What is my name?")
    await store.aclose()

    restarted = MemoryChatStore(base_config, user_id=uid)
    messages = await restarted.aget_messages(sid)
    assert [m.role for m in messages] == [MessageRole.USER, MessageRole.ASSISTANT] * 2
    assert messages[0].content == "My name is Ada." and messages[1].content == str(reply)
    assert messages[2].content == "What is my name?"
    # a new engine on the restarted store sends that history to the model (MockLLM echoes its prompt)
    engine = SimpleChatEngine.from_defaults(
        llm=MockLLM(), memory=ChatMemoryBuffer.from_defaults(chat_store=restarted, chat_store_key=sid))
    answer = await engine.achat("And again?")
    assert "My name is Ada." in str(answer)
    await restarted.adelete_messages(sid)
    await restarted.aclose()
