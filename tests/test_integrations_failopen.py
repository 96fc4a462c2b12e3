"""Fail-open LLM wrapper on the real tiers: memory in when it answers, the reply always, the turn never lost silently.

The "LLM" is a local async function (the application's code); fault injection uses small subclasses of
the real tiers (a tier that raises, one that hangs, a buffer whose writes fail until told otherwise) and
a Redis URL on a port nobody listens on.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from memory_implementations.errors import BackendUnavailable, ValidationError
from memory_implementations.integrations import MemoryAugmentedLLM, failopen_wrapper, reply_text
from memory_implementations.integrations.failopen import call_with_memory
from memory_implementations.memories.buffer import ConversationBufferMemory
from memory_implementations.memories.kv import KeyValueStoreMemory
from memory_implementations.memories.working import WorkingMemory
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.stores import Stores
from memory_implementations.types import ContextRequest, MemoryContext, MemoryType, StoredRef

TIERS = [MemoryType.CONVERSATION_BUFFER, MemoryType.KEY_VALUE_STORE]
NEVER = 3600.0  # retry loop interval in tests: retries happen through flush()


class RecordingLLM:
    """The application's model call: records what it was sent and answers from the system message."""

    def __init__(self, reply: str = "Sure.") -> None:
        self.calls: list[dict[str, Any]] = []
        self.reply = reply

    async def __call__(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        self.calls.append({"messages": [dict(m) for m in messages], **kwargs})
        return self.reply


class FlakyBuffer(ConversationBufferMemory):
    """The real buffer, except that writes fail while ``down`` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.down = True
        self.attempts = 0

    async def store_many(self, items: Any) -> list[StoredRef]:
        self.attempts += 1
        if self.down:
            raise BackendUnavailable("PostgreSQL is unreachable (injected)", field="database_url")
        return await super().store_many(items)


class UnreachableBuffer(ConversationBufferMemory):
    """The real buffer, except that initialisation fails while ``down`` is set (memory entirely down)."""

    down = True

    async def initialize(self) -> None:
        if type(self).down:
            raise BackendUnavailable("cannot reach Redis or PostgreSQL (injected)", field="redis_url")
        await super().initialize()


class RaisingWorking(WorkingMemory):
    """A working-memory tier whose reads raise."""

    async def get_context(self, query: Any = None, *, max_tokens: int | None = None) -> MemoryContext:
        raise RuntimeError("working memory exploded (injected)")


class HangingKV(KeyValueStoreMemory):
    """A key-value tier whose reads never finish."""

    async def get_context(self, query: Any = None, *, max_tokens: int | None = None) -> MemoryContext:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.fixture
async def orch(base_config: dict[str, Any], stores: Stores) -> AsyncIterator[MemoryOrchestrator]:
    """Buffer + key-value tiers on the shared test stores."""
    o = MemoryOrchestrator({**base_config, "enabled_memories": TIERS, "tier_timeout_ms": 5000}, stores=stores)
    await o.initialize()
    yield o
    await o.close()


def buffer_of(o: MemoryOrchestrator) -> ConversationBufferMemory:
    tier = o.memories[MemoryType.CONVERSATION_BUFFER]
    assert isinstance(tier, ConversationBufferMemory)
    return tier


async def history(o: MemoryOrchestrator, uid: str, sid: str) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in await buffer_of(o).get_messages(sid, uid)]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_reply_with_memory_then_turn_stored(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    kv = orch.memories[MemoryType.KEY_VALUE_STORE]
    assert isinstance(kv, KeyValueStoreMemory)
    await kv.set("answer_style", "brief", user_id=uid)
    llm = RecordingLLM("Paris.")
    wrapped = MemoryAugmentedLLM(orch, llm, system_prompt="Be helpful.", retry_initial_s=NEVER)
    reply = await wrapped("What is the capital of France?", user_id=uid, session_id=sid)
    assert reply == "Paris."
    assert wrapped.last_degraded == {} and wrapped.degraded is False
    sent = llm.calls[0]["messages"]
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith("Be helpful.")
    assert "answer_style: brief" in sent[0]["content"]
    assert sent[-1] == {"role": "user", "content": "What is the capital of France?"}
    assert await wrapped.flush() == 0
    assert await history(orch, uid, sid) == [("user", "What is the capital of France?"), ("assistant", "Paris.")]
    # the next call sees the stored turn as recent conversation
    await wrapped("And of Spain?", user_id=uid, session_id=sid)
    assert [m["content"] for m in llm.calls[1]["messages"][1:]] == [
        "What is the capital of France?", "Paris.", "And of Spain?"]
    await wrapped.aclose()
    assert wrapped.stats["stored"] == 2 and wrapped.pending == 0


async def test_a_tier_that_raises_degrades_but_the_rest_still_helps(
    base_config: dict[str, Any], stores: Stores, uid: str, sid: str
) -> None:
    cfg = {**base_config, "enabled_memories": TIERS, "tier_timeout_ms": 5000}
    o = MemoryOrchestrator(cfg, stores=stores, memories={MemoryType.WORKING_MEMORY: RaisingWorking})
    kv = o.memories[MemoryType.KEY_VALUE_STORE]
    assert isinstance(kv, KeyValueStoreMemory)
    await o.initialize()
    await kv.set("timezone", "Europe/Lisbon", user_id=uid)
    llm = RecordingLLM("It is noon.")
    wrapped = MemoryAugmentedLLM(o, llm, retry_initial_s=NEVER)
    result = await wrapped.complete("What time is it?", user_id=uid, session_id=sid)
    assert result.reply == "It is noon." and result.used_memory is True
    assert set(wrapped.last_degraded) == {"working_memory"}
    assert "working memory exploded" in wrapped.last_degraded["working_memory"]
    assert result.degraded == wrapped.last_degraded
    assert "timezone: Europe/Lisbon" in llm.calls[0]["messages"][0]["content"]
    await wrapped.aclose()
    assert await history(o, uid, sid) == [("user", "What time is it?"), ("assistant", "It is noon.")]
    await o.close()


async def test_dead_redis_port_still_answers_and_reports_degraded(
    base_config: dict[str, Any], uid: str, sid: str
) -> None:
    cfg = {**base_config, "redis_url": f"redis://127.0.0.1:{free_port()}/0", "tier_timeout_ms": 5000,
           "enabled_memories": [*TIERS, MemoryType.WORKING_MEMORY]}
    o = MemoryOrchestrator(cfg)
    llm = RecordingLLM("Hello!")
    wrapped = MemoryAugmentedLLM(o, llm, timeout_ms=10_000, retry_initial_s=NEVER)
    reply = await wrapped("Hi, I am new here.", user_id=uid, session_id=sid)
    assert reply == "Hello!"
    assert "working_memory" in wrapped.last_degraded  # Redis-only tier
    assert "Error" in wrapped.last_degraded["working_memory"]
    assert llm.calls[0]["messages"][-1] == {"role": "user", "content": "Hi, I am new here."}
    # PostgreSQL is the record: the turn is stored even though the Redis cache is unreachable
    assert await wrapped.flush() == 0
    assert await history(o, uid, sid) == [("user", "Hi, I am new here."), ("assistant", "Hello!")]
    await wrapped.aclose()
    await o.close()
    # The Redis auto-pipeline (stores/batch.py) leaves unretrieved exceptions on the futures of a failed
    # batch; collect them now, so their finalizers do not run later inside pytest's own parsing (which
    # crashes CPython 3.11.7's AST validator: "AST constructor recursion depth mismatch").
    gc.collect()


async def test_memory_down_answers_without_memory_and_retries_the_turn(
    base_config: dict[str, Any], stores: Stores, uid: str, sid: str
) -> None:
    UnreachableBuffer.down = True
    o = MemoryOrchestrator({**base_config, "enabled_memories": TIERS}, stores=stores,
                           memories={MemoryType.CONVERSATION_BUFFER: UnreachableBuffer})
    llm = RecordingLLM("I can still answer.")
    wrapped = MemoryAugmentedLLM(o, llm, system_prompt="Be kind.", retry_initial_s=NEVER)
    failopen_before = metric("memory_llm_failopen_total", reason="backend_unavailable")
    queued_before = metric("memory_llm_turns_total", outcome="queued")
    result = await wrapped.complete("Remember that I like tea.", user_id=uid, session_id=sid)
    assert metric("memory_llm_failopen_total", reason="backend_unavailable") == failopen_before + 1
    assert result.reply == "I can still answer." and result.used_memory is False and result.context is None
    assert set(result.degraded) == {"memory"} and "injected" in result.degraded["memory"]
    assert llm.calls[0]["messages"] == [{"role": "system", "content": "Be kind."},
                                        {"role": "user", "content": "Remember that I like tea."}]
    assert await wrapped.flush() == 1  # the store failed: kept, not lost
    (pending,) = wrapped.pending_turns()
    assert (pending.user_id, pending.session_id, pending.user_message, pending.assistant_message) == (
        uid, sid, "Remember that I like tea.", "I can still answer.")
    assert pending.attempts >= 1 and "injected" in (pending.last_error or "")
    assert wrapped.stats["queued"] == 1 and wrapped.stats["stored"] == 0
    assert metric("memory_llm_turns_total", outcome="queued") == queued_before + 1

    UnreachableBuffer.down = False  # memory comes back
    assert await wrapped.flush() == 0
    assert await history(o, uid, sid) == [("user", "Remember that I like tea."),
                                          ("assistant", "I can still answer.")]
    assert wrapped.stats["retried"] == 1
    # and the next call uses memory again
    await wrapped("What do I like?", user_id=uid, session_id=sid)
    assert wrapped.last_degraded == {}
    assert "Remember that I like tea." in [m["content"] for m in llm.calls[1]["messages"]]
    await wrapped.aclose()
    await o.close()


async def test_slow_memory_misses_the_deadline(base_config: dict[str, Any], stores: Stores, uid: str,
                                               sid: str) -> None:
    o = MemoryOrchestrator({**base_config, "enabled_memories": TIERS, "tier_timeout_ms": 60_000}, stores=stores,
                           memories={MemoryType.KEY_VALUE_STORE: HangingKV})
    await o.initialize()
    llm = RecordingLLM("Quick answer.")
    wrapped = MemoryAugmentedLLM(o, llm, timeout_ms=200, retry_initial_s=NEVER)
    timeouts = metric("memory_llm_failopen_total", reason="timeout")
    assert await wrapped("Are you there?", user_id=uid, session_id=sid) == "Quick answer."
    assert set(wrapped.last_degraded) == {"memory"} and wrapped.last_degraded["memory"].startswith("timeout")
    assert metric("memory_llm_failopen_total", reason="timeout") == timeouts + 1
    assert llm.calls[0]["messages"] == [{"role": "user", "content": "Are you there?"}]
    await wrapped.aclose()
    assert await history(o, uid, sid) == [("user", "Are you there?"), ("assistant", "Quick answer.")]
    await o.close()


async def test_retry_queue_is_bounded_and_keeps_session_order(
    base_config: dict[str, Any], stores: Stores, uid: str, sid: str
) -> None:
    flaky = FlakyBuffer(base_config)
    o = MemoryOrchestrator({**base_config, "enabled_memories": TIERS}, stores=stores,
                           memories={MemoryType.CONVERSATION_BUFFER: flaky})
    llm = RecordingLLM("ok")
    wrapped = MemoryAugmentedLLM(o, llm, max_pending=2, retry_initial_s=NEVER)
    for i in range(3):
        await wrapped(f"message {i}", user_id=uid, session_id=sid)
    assert await wrapped.flush() == 2
    assert [t.user_message for t in wrapped.pending_turns()] == ["message 1", "message 2"]  # the oldest dropped
    assert wrapped.stats["dropped"] == 1 and wrapped.stats["queued"] == 3
    # a new turn of the same session waits behind the queued ones, even once writes work again
    flaky.down = False
    wrapped.max_pending = 3  # room for it (at 2 it would push out "message 1")
    await wrapped("message 3", user_id=uid, session_id=sid)
    assert await wrapped.flush() == 0
    assert await history(o, uid, sid) == [
        ("user", "message 1"), ("assistant", "ok"), ("user", "message 2"), ("assistant", "ok"),
        ("user", "message 3"), ("assistant", "ok")]
    await wrapped.aclose()
    await o.close()


async def test_invalid_turn_is_rejected_loudly_not_retried(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    llm = RecordingLLM("fine")
    wrapped = MemoryAugmentedLLM(orch, llm, retry_initial_s=NEVER)
    huge = "x" * (orch.config.max_message_chars + 1)
    assert await wrapped(huge, user_id=uid, session_id=sid) == "fine"
    assert await wrapped.flush() == 0
    assert wrapped.stats["rejected"] == 1 and wrapped.stats["stored"] == 0
    assert await history(orch, uid, sid) == []
    await wrapped.aclose()


async def test_llm_errors_propagate_and_nothing_is_stored(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    async def broken(messages: list[dict[str, str]]) -> str:
        raise ConnectionResetError("model endpoint down")

    wrapped = MemoryAugmentedLLM(orch, broken, retry_initial_s=NEVER)
    with pytest.raises(ConnectionResetError):
        await wrapped("Hello?", user_id=uid, session_id=sid)
    assert await wrapped.flush() == 0
    assert await history(orch, uid, sid) == []
    with pytest.raises(ValidationError) as err:
        await wrapped("Hello?", user_id="", session_id=sid)
    assert err.value.field == "user_id"
    with pytest.raises(ValidationError) as err:
        MemoryAugmentedLLM(orch, broken, max_pending=0)
    assert err.value.field == "max_pending"
    await wrapped.aclose()


async def test_anthropic_format_and_sdk_shaped_replies(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    seen: dict[str, Any] = {}

    async def claude(messages: list[dict[str, str]], *, system: str) -> Any:
        seen["messages"], seen["system"] = messages, system
        return SimpleNamespace(content=[SimpleNamespace(type="text", text="Bonjour !")])

    await orch.store_turn(session_id=sid, user_id=uid, user_message="Let us practise French.",
                          assistant_message="D'accord.")
    wrapped = MemoryAugmentedLLM(orch, claude, format="anthropic", system_prompt="Tutor.", retry_initial_s=NEVER)
    result = await wrapped.complete("Say hello.", user_id=uid, session_id=sid)
    assert result.text == "Bonjour !"
    assert seen["system"].startswith("Tutor.")
    assert seen["messages"][0] == {"role": "user", "content": "Let us practise French."}
    assert seen["messages"][-1] == {"role": "user", "content": "Say hello."}
    await wrapped.aclose()
    assert (await history(orch, uid, sid))[-2:] == [("user", "Say hello."), ("assistant", "Bonjour !")]


async def test_call_with_memory_one_shot(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    llm = RecordingLLM("Done.")
    result = await call_with_memory(orch, llm, user_id=uid, session_id=sid, query="Book a table.", timeout_ms=5000)
    assert result.reply == "Done." and result.used_memory is True and result.degraded == {}
    wrapper = failopen_wrapper(orch)
    assert failopen_wrapper(orch) is wrapper
    assert await wrapper.flush() == 0
    assert await history(orch, uid, sid) == [("user", "Book a table."), ("assistant", "Done.")]
    await wrapper.aclose()


def test_reply_text_shapes() -> None:
    openai = SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content="from openai"))])
    anthropic = {"content": [{"type": "text", "text": "from"}, {"type": "tool_use", "id": "t"},
                             {"type": "text", "text": "claude"}]}
    assert reply_text(openai) == "from openai"
    assert reply_text(anthropic) == "from\nclaude"
    assert reply_text(SimpleNamespace(output_text="from responses")) == "from responses"
    assert reply_text({"choices": [{"message": {"content": None}}]}) is None
    assert reply_text("plain") == "plain"
    assert reply_text(SimpleNamespace(message=SimpleNamespace(content="from llamaindex"))) == "from llamaindex"
    assert reply_text(SimpleNamespace(content="from langchain", type="ai")) == "from langchain"
    assert reply_text(42) is None


async def test_reply_without_text_stores_the_user_message(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    async def tool_only(messages: list[dict[str, str]]) -> Mapping[str, Any]:
        return {"choices": [{"message": {"content": None, "tool_calls": [{"id": "c1"}]}}]}

    wrapped = MemoryAugmentedLLM(orch, tool_only, retry_initial_s=NEVER)
    result = await wrapped.complete("Look this up.", user_id=uid, session_id=sid)
    assert result.text is None
    await wrapped.aclose()
    assert await history(orch, uid, sid) == [("user", "Look this up.")]


async def test_context_request_is_bounded_by_the_budget(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    for i in range(10):
        await orch.store_turn(session_id=sid, user_id=uid, user_message=f"Long question {i} " * 10,
                              assistant_message=f"Long answer {i} " * 10)
    llm = RecordingLLM()
    wrapped = MemoryAugmentedLLM(orch, llm, max_total_tokens=150, retry_initial_s=NEVER)
    await wrapped("Short?", user_id=uid, session_id=sid)
    from memory_implementations.integrations import count_message_tokens

    sent = llm.calls[0]["messages"]
    assert count_message_tokens(sent) <= 150 and len(sent) >= 2
    full = await orch.get_comprehensive_context(ContextRequest(query="Short?", session_id=sid, user_id=uid,
                                                               max_total_tokens=4000))
    assert len(sent) - 1 < len(full.messages)  # trimmed to fit
    await wrapped.aclose()
