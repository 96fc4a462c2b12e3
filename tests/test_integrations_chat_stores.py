"""LlamaIndex chat store and LangChain chat history on the real conversation tiers.

The frameworks are installed for the tests (the ``[dev]`` extra), so the classes here speak their message
objects and also accept plain ``{"role", "content"}`` dicts; ``pair()`` reads either. Without the
frameworks the classes speak dicts only: that mode is checked in a subprocess that cannot import them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from memory_implementations.errors import ConfigError, ValidationError
from memory_implementations.integrations import MemoryChatMessageHistory, MemoryChatStore
from memory_implementations.memories.buffer import ConversationBufferMemory
from memory_implementations.memories.kv import KeyValueStoreMemory
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.stores import Stores
from memory_implementations.types import ContextRequest, MemoryType

LC_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def pair(message: Any) -> tuple[str, str]:
    """(role, content) of a dict, LlamaIndex ChatMessage or LangChain message."""
    if isinstance(message, Mapping):
        return str(message["role"]), str(message["content"])
    role = getattr(message, "role", None)
    if role is None or getattr(message, "type", None) in LC_ROLES:
        role = LC_ROLES.get(message.type, message.type)
    return str(getattr(role, "value", role)), str(message.content)


def extras(message: Any) -> dict[str, Any]:
    """Fields beyond role and content: dict keys, or a LlamaIndex/LangChain message's additional_kwargs."""
    if isinstance(message, Mapping):
        return {k: v for k, v in message.items() if k not in ("role", "content")}
    return dict(getattr(message, "additional_kwargs", {}) or {})


@pytest.fixture
async def buffer(base_config: dict[str, Any], stores: Stores) -> AsyncIterator[ConversationBufferMemory]:
    """The real buffer tier on the shared test stores."""
    tier = ConversationBufferMemory(base_config, stores=stores)
    await tier.initialize()
    yield tier
    await tier.close()


CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello! I'm learning Python."},
    {"role": "assistant", "content": "Great! What would you like to learn?"},
]


# --- LlamaIndex BaseChatStore method set ---------------------------------------------------------------


async def test_chat_store_async_round_trip(buffer: ConversationBufferMemory, uid: str, sid: str) -> None:
    store = MemoryChatStore(buffer, user_id=uid)
    assert await store.aget_messages(sid) == []
    await store.aset_messages(sid, CONVERSATION)
    assert [pair(m) for m in await store.aget_messages(sid)] == [(m["role"], m["content"]) for m in CONVERSATION]
    # the data is in the buffer tier itself (PostgreSQL record + Redis window)
    assert [(m.role, m.content) for m in await buffer.get_messages(sid, uid)] == [
        (m["role"], m["content"]) for m in CONVERSATION]

    await store.async_add_message(sid, {"role": "user", "content": "Tell me about decorators."})
    await store.aadd_message(sid, {"role": "assistant", "content": "A decorator wraps a function."})
    assert len(await store.aget_messages(sid)) == 5

    last = await store.adelete_last_message(sid)
    assert last is not None and pair(last) == ("assistant", "A decorator wraps a function.")
    first = await store.adelete_message(sid, 0)
    assert first is not None and pair(first) == ("system", "You are a helpful assistant.")
    assert await store.adelete_message(sid, 99) is None
    assert [pair(m) for m in await store.aget_messages(sid)] == [
        ("user", "Hello! I'm learning Python."), ("assistant", "Great! What would you like to learn?"),
        ("user", "Tell me about decorators.")]
    assert [(m.role, m.content) for m in await buffer.get_messages(sid, uid)] == [
        pair(m) for m in await store.aget_messages(sid)]

    # replacing keeps the original timestamps of re-stored messages
    before = {m.content: m.created_at for m in await buffer.get_messages(sid, uid)}
    await store.async_add_message(sid, {"role": "system", "content": "Be concise."}, idx=0)
    after = await buffer.get_messages(sid, uid)
    assert [m.content for m in after][:2] == ["Be concise.", "Hello! I'm learning Python."]
    assert all(m.created_at == before[m.content] for m in after if m.content in before)

    other = f"{sid}-b"
    await store.async_add_message(other, {"role": "user", "content": "Second conversation."})
    keys = await store.aget_keys()
    assert keys == [sid, other]
    deleted = await store.adelete_messages(sid)
    assert deleted is not None and len(deleted) == 4
    assert await store.aget_messages(sid) == []
    assert await store.adelete_messages(sid) is None
    assert await store.adelete_last_message(sid) is None
    assert await store.aget_keys() == [other]
    assert await buffer.get_messages(sid, uid) == []


async def test_chat_store_sync_methods(base_config: dict[str, Any], buffer: ConversationBufferMemory, uid: str,
                                       sid: str) -> None:
    store = MemoryChatStore(buffer, user_id=uid)

    def use_synchronously() -> list[Any]:
        """What a LlamaIndex ChatMemoryBuffer does from synchronous code (here: a worker thread)."""
        store.set_messages(sid, CONVERSATION[1:])
        store.add_message(sid, {"role": "user", "content": "What is a list comprehension?"})
        removed = store.delete_last_message(sid)
        assert removed is not None and pair(removed) == ("user", "What is a list comprehension?")
        store.add_message(sid, {"role": "user", "content": "And generators?"})
        assert store.get_keys() == [sid]
        return store.get_messages(sid)

    messages = await asyncio.to_thread(use_synchronously)
    expected = [("user", "Hello! I'm learning Python."), ("assistant", "Great! What would you like to learn?"),
                ("user", "And generators?")]
    assert [pair(m) for m in messages] == expected
    # written by the sync path (its own connections), read by the async tier: the same record
    assert [(m.role, m.content) for m in await buffer.get_messages(sid, uid)] == expected
    assert [pair(m) for m in await store.aget_messages(sid)] == expected
    deleted = await asyncio.to_thread(store.delete_messages, sid)
    assert deleted is not None and len(deleted) == 3
    assert await buffer.get_messages(sid, uid) == []
    await store.aclose()
    await store.aclose()  # idempotent


async def test_chat_store_isolates_users_and_validates(buffer: ConversationBufferMemory, uid: str,
                                                       sid: str) -> None:
    alice = MemoryChatStore(buffer, user_id=uid)
    bob = MemoryChatStore(buffer, user_id=str(uuid.uuid4()))
    await alice.aset_messages(sid, CONVERSATION[1:])
    await bob.async_add_message(sid, {"role": "user", "content": "Bob's message."})
    assert [pair(m) for m in await bob.aget_messages(sid)] == [("user", "Bob's message.")]
    assert len(await alice.aget_messages(sid)) == 2
    assert await bob.aget_keys() == [sid]

    with pytest.raises(ValidationError) as err:
        await alice.aset_messages(sid, [{"role": "user", "content": "ok"}, {"role": "wizard", "content": "x"}])
    assert err.value.field == "messages[1].role"
    with pytest.raises(ValidationError) as err:
        await alice.aset_messages(sid, [{"role": "user", "content": "bad \x00 byte"}])
    assert err.value.field == "content"
    with pytest.raises(ValidationError) as err:
        await alice.async_add_message("", {"role": "user", "content": "x"})
    assert err.value.field == "key"
    with pytest.raises(ValidationError) as err:
        await alice.aset_messages(sid, "not a list")  # type: ignore[arg-type]
    assert err.value.field == "messages"
    assert len(await alice.aget_messages(sid)) == 2  # a rejected replacement deleted nothing


async def test_chat_store_keeps_extra_fields_and_framework_roles(buffer: ConversationBufferMemory, uid: str,
                                                                 sid: str) -> None:
    store = MemoryChatStore(buffer, user_id=uid)
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    await store.aset_messages(sid, [
        {"role": "developer", "content": "Answer in French."},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "42", "tool_call_id": "call_1", "name": "lookup"},
    ])
    stored = await buffer.get_messages(sid, uid)
    assert [m.role for m in stored] == ["system", "assistant", "tool"]  # the tier's roles
    out = await store.aget_messages(sid)
    assert pair(out[0]) == ("developer", "Answer in French.")  # the framework's role comes back
    assert extras(out[1])["tool_calls"] == [call]
    assert extras(out[2])["tool_call_id"] == "call_1" and extras(out[2])["name"] == "lookup"


async def test_chat_store_on_an_orchestrator_feeds_the_context(base_config: dict[str, Any], stores: Stores,
                                                               uid: str, sid: str) -> None:
    o = MemoryOrchestrator({**base_config, "enabled_memories": [MemoryType.CONVERSATION_SUMMARY]}, stores=stores)
    await o.initialize()
    store = MemoryChatStore(o, user_id=uid)
    await store.aset_messages(sid, CONVERSATION[1:])
    ctx = await o.get_comprehensive_context(ContextRequest(query="next?", session_id=sid, user_id=uid))
    assert [m["content"] for m in ctx.conversation] == [m["content"] for m in CONVERSATION[1:]]
    await o.close()
    kv_only = MemoryOrchestrator({**base_config, "enabled_memories": [MemoryType.KEY_VALUE_STORE]}, stores=stores)
    with pytest.raises(ConfigError) as err:
        MemoryChatStore(kv_only, user_id=uid)
    assert err.value.field == "enabled_memories"
    with pytest.raises(ConfigError):
        MemoryChatStore(KeyValueStoreMemory(base_config), user_id=uid)


async def test_chat_store_built_from_config_and_redis_durability(base_config: dict[str, Any], uid: str,
                                                                 sid: str) -> None:
    store = MemoryChatStore({**base_config, "durability": "redis"}, user_id=uid)
    await store.aset_messages(sid, CONVERSATION)
    await store.async_add_message(f"{sid}:two", {"role": "user", "content": "hi"})
    assert await store.aget_keys() == sorted([sid, f"{sid}:two"])  # from Redis: PostgreSQL keeps no rows
    assert [pair(m) for m in await store.aget_messages(sid)] == [(m["role"], m["content"]) for m in CONVERSATION]
    assert pair(await store.adelete_last_message(sid)) == ("assistant", "Great! What would you like to learn?")
    assert len(await store.aget_messages(sid)) == 2
    await store.adelete_messages(sid)
    await store.adelete_messages(f"{sid}:two")
    assert await store.aget_keys() == []
    await store.aclose()


# --- LangChain BaseChatMessageHistory surface ----------------------------------------------------------


async def test_langchain_history_async_and_sync(buffer: ConversationBufferMemory, uid: str, sid: str) -> None:
    history = MemoryChatMessageHistory(sid, buffer, user_id=uid)
    assert await history.aget_messages() == []
    await history.aadd_messages([{"role": "user", "content": "I'm Sam."},
                                 {"role": "assistant", "content": "Hi Sam!"}])
    assert [pair(m) for m in await history.aget_messages()] == [("user", "I'm Sam."), ("assistant", "Hi Sam!")]

    def sync_use() -> list[Any]:
        history.add_user_message("What's my name?")
        history.add_ai_message("Sam.")
        return history.messages

    messages = await asyncio.to_thread(sync_use)
    assert [pair(m) for m in messages] == [("user", "I'm Sam."), ("assistant", "Hi Sam!"),
                                           ("user", "What's my name?"), ("assistant", "Sam.")]
    assert [(m.role, m.content) for m in await buffer.get_messages(sid, uid)] == [pair(m) for m in messages]
    # another session of the same user is separate
    other = MemoryChatMessageHistory(f"{sid}-x", buffer, user_id=uid)
    assert await other.aget_messages() == []
    await asyncio.to_thread(history.clear)
    assert await history.aget_messages() == []
    await history.aadd_messages([{"role": "user", "content": "again"}])
    await history.aclear()
    assert await buffer.get_messages(sid, uid) == []
    with pytest.raises(ValidationError) as err:
        await history.aadd_messages([{"role": "user", "content": "ok"}, 42])
    assert err.value.field == "messages[1]"
    assert await buffer.get_messages(sid, uid) == []  # all or nothing
    with pytest.raises(ValidationError):
        MemoryChatMessageHistory("", buffer, user_id=uid)
    await history.aclose()
    await other.aclose()


async def test_langchain_history_reads_turns_stored_by_the_orchestrator(base_config: dict[str, Any],
                                                                        stores: Stores, uid: str, sid: str) -> None:
    o = MemoryOrchestrator({**base_config, "enabled_memories": [MemoryType.CONVERSATION_BUFFER]}, stores=stores)
    await o.initialize()
    await o.store_turn(session_id=sid, user_id=uid, user_message="Where is Lisbon?", assistant_message="Portugal.")
    history = MemoryChatMessageHistory(sid, o, user_id=uid)
    assert [pair(m) for m in await history.aget_messages()] == [("user", "Where is Lisbon?"),
                                                                ("assistant", "Portugal.")]
    await o.close()


# --- without the frameworks ------------------------------------------------------------------------------

WITHOUT_FRAMEWORKS = r"""
import asyncio, importlib, importlib.abc, json, sys

class NoFrameworks(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("llama_index", "langchain_core", "langchain", "langgraph"):
            raise ImportError(f"No module named {name!r} (blocked)")
        return None

sys.meta_path.insert(0, NoFrameworks())
config, uid, sid = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
import memory_implementations
from memory_implementations import integrations as mi

out = {"available": [mi.LLAMA_INDEX_AVAILABLE, mi.LANGCHAIN_AVAILABLE]}
try:
    importlib.import_module("memory_implementations.integrations.llamaindex_block")
except ImportError as exc:
    out["block_error"] = str(exc)

async def main():
    store = mi.MemoryChatStore(config, user_id=uid)
    await store.aset_messages(sid, [{"role": "user", "content": "hi"},
                                    {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]}])
    await asyncio.to_thread(store.add_message, sid, {"role": "human", "content": "sync"})
    out["store"] = await store.aget_messages(sid)
    out["popped"] = await store.adelete_last_message(sid)
    await store.adelete_messages(sid)
    await store.aclose()
    history = mi.MemoryChatMessageHistory(sid, config, user_id=uid)
    await asyncio.to_thread(history.add_user_message, "I am Sam.")
    await history.aadd_messages([{"role": "assistant", "content": "Hi Sam."}])
    out["history"] = await asyncio.to_thread(lambda: history.messages)
    await history.aclear()
    await history.aclose()
    out["loaded"] = sorted(m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("llama_index", "langchain_core"))

asyncio.run(main())
print(json.dumps(out))
"""


def test_without_the_frameworks_the_classes_speak_plain_dicts(base_config: dict[str, Any], uid: str,
                                                               sid: str) -> None:
    done = subprocess.run([sys.executable, "-c", WITHOUT_FRAMEWORKS, json.dumps(base_config), uid, sid],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["available"] == [False, False]
    assert "pip install 'memory-implementations[llamaindex]'" in out["block_error"]
    assert out["store"] == [{"role": "user", "content": "hi"},
                            {"role": "assistant", "content": "", "tool_calls": [{"id": "c1"}]},
                            {"role": "human", "content": "sync"}]
    assert out["popped"] == {"role": "human", "content": "sync"}
    assert out["history"] == [{"role": "user", "content": "I am Sam."}, {"role": "assistant", "content": "Hi Sam."}]
    assert out["loaded"] == []
