"""with_memory on the OpenAI Responses API (``responses.create``), sync and async, plain and streamed."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from chat_helpers import MakeOrchestrator, history
from protocol_server import ProtocolServer

from memory_implementations.integrations import with_memory
from memory_implementations.memories.kv import KeyValueStoreMemory
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.types import MemoryType

pytest_plugins = ("conftest_providers", "chat_helpers")

TIERS = [MemoryType.CONVERSATION_BUFFER, MemoryType.KEY_VALUE_STORE]
MODEL = "gpt-4.1-mini"


@pytest.fixture
async def orch(make_orchestrator: MakeOrchestrator) -> MemoryOrchestrator:
    """Buffer + key-value tiers on the shared test stores."""
    return await make_orchestrator(TIERS)


async def profile(o: MemoryOrchestrator, uid: str) -> None:
    kv = o.memories[MemoryType.KEY_VALUE_STORE]
    assert isinstance(kv, KeyValueStoreMemory)
    await kv.set("home_city", "Porto", user_id=uid)


def bodies(server: ProtocolServer) -> list[dict[str, Any]]:
    return [r.body for r in server.requests_to("/responses")]


async def test_async_responses_get_memory_in_instructions_and_store_the_turn(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    await profile(orch, uid)
    client = with_memory(openai.AsyncOpenAI(api_key="sk-test", base_url=protocol_server.openai_base_url,
                                            max_retries=0), orch, user_id=uid, session_id=sid, timeout_ms=5000)
    protocol_server.reply_next("You live in Porto.")
    reply = await client.responses.create(model=MODEL, input="Where do I live?", instructions="Be brief.")
    assert reply.output_text == "You live in Porto."
    (body,) = bodies(protocol_server)
    assert body["instructions"].startswith("Be brief.\n\n") and "home_city: Porto" in body["instructions"]
    assert body["input"] == "Where do I live?"  # the input is left as the caller sent it
    await client.memory.aflush()
    assert await history(orch, uid, sid) == [("user", "Where do I live?"), ("assistant", "You live in Porto.")]

    # streamed, list input, inject="messages": the conversation goes before the input items
    chat = with_memory(openai.AsyncOpenAI(api_key="sk-test", base_url=protocol_server.openai_base_url,
                                          max_retries=0), orch, user_id=uid, session_id=sid, inject="messages",
                       timeout_ms=5000)
    protocol_server.reply_next("Porto has great food.")
    stream = await chat.responses.create(model=MODEL, stream=True,
                                         input=[{"role": "user", "content": [{"type": "input_text",
                                                                              "text": "Any food tips?"}]}])
    deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Porto has great food."
    body = bodies(protocol_server)[-1]
    assert [item["role"] for item in body["input"]] == ["user", "assistant", "user"]
    assert body["input"][0] == {"role": "user", "content": "Where do I live?"}
    assert "home_city: Porto" in body["instructions"]
    await chat.memory.aflush()
    assert (await history(orch, uid, sid))[-2:] == [("user", "Any food tips?"), ("assistant", "Porto has great food.")]


async def test_sync_responses_and_a_cut_stream(orch: MemoryOrchestrator, protocol_server: ProtocolServer,
                                               uid: str, sid: str) -> None:
    client = with_memory(openai.OpenAI(api_key="sk-test", base_url=protocol_server.openai_base_url, max_retries=0),
                         orch, user_id=uid, session_id=sid, timeout_ms=5000)

    def call() -> str:
        protocol_server.reply_next("Noted, you like jazz.")
        return str(client.responses.create(model=MODEL, input="I like jazz.").output_text)

    assert await asyncio.to_thread(call) == "Noted, you like jazz."

    def cut() -> str:
        protocol_server.reply_next("This answer will be cut short.")
        protocol_server.cut_next_stream(2)
        stream = client.responses.create(model=MODEL, input="Tell me more.", stream=True)
        return "".join(e.delta for e in stream if e.type == "response.output_text.delta")

    assert await asyncio.to_thread(cut) == "This answer "
    await client.memory.aflush()
    # the complete turn is stored; the cut stream (no response.completed) is not
    assert await history(orch, uid, sid) == [("user", "I like jazz."), ("assistant", "Noted, you like jazz.")]
    # memory=False: a plain call, nothing injected, nothing stored
    protocol_server.reply_next("plain")
    await asyncio.to_thread(lambda: client.responses.create(model=MODEL, input="hi", memory=False))
    assert "instructions" not in bodies(protocol_server)[-1]
