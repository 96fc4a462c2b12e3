"""``with_memory(client, orchestrator)``: the real ``openai`` and ``google-genai`` SDK clients against the local
wire-protocol server, memory on the real Redis + PostgreSQL.

What the model received is read from the protocol server's request log; what was stored is read back
from the conversation tier.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import openai
import pytest
from chat_helpers import MakeOrchestrator, history
from google import genai
from google.genai import types
from protocol_server import ProtocolServer

from memory_implementations.errors import BackendUnavailable, ValidationError
from memory_implementations.integrations.clients import (
    MemoryAsyncOpenAI,
    MemoryLoopError,
    MemoryOpenAI,
    with_memory,
)
from memory_implementations.integrations.failopen import failopen_wrapper
from memory_implementations.memories.buffer import ConversationBufferMemory
from memory_implementations.memories.kv import KeyValueStoreMemory
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.types import MemoryType

pytest_plugins = ("conftest_providers", "chat_helpers")

TIERS = [MemoryType.CONVERSATION_BUFFER, MemoryType.KEY_VALUE_STORE]
MODEL = "gpt-4o-mini"
GEMINI = "gemini-2.5-flash"


@pytest.fixture
async def orch(make_orchestrator: MakeOrchestrator) -> MemoryOrchestrator:
    """Buffer + key-value tiers on the shared test stores."""
    return await make_orchestrator(TIERS)


def oai(server: ProtocolServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)


def oai_sync(server: ProtocolServer) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)


def gem(server: ProtocolServer) -> genai.Client:
    return genai.Client(api_key="g-test", http_options=types.HttpOptions(
        base_url=server.base_url, api_version="v1beta", retry_options=types.HttpRetryOptions(attempts=1)))


def buffer_of(o: MemoryOrchestrator) -> ConversationBufferMemory:
    tier = o.memories[MemoryType.CONVERSATION_BUFFER]
    assert isinstance(tier, ConversationBufferMemory)
    return tier


async def set_pref(o: MemoryOrchestrator, uid: str, key: str, value: str) -> None:
    kv = o.memories[MemoryType.KEY_VALUE_STORE]
    assert isinstance(kv, KeyValueStoreMemory)
    await kv.set(key, value, user_id=uid)


def sent_messages(server: ProtocolServer) -> list[list[dict[str, Any]]]:
    return [r.body["messages"] for r in server.requests_to("/chat/completions")]


def gemini_system(body: dict[str, Any]) -> str:
    instruction = body.get("systemInstruction") or {}
    return "\n".join(p.get("text", "") for p in instruction.get("parts", []))


def gemini_texts(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c.get("role", ""), "".join(p.get("text", "") for p in c["parts"])) for c in body["contents"]]


# --- OpenAI, async --------------------------------------------------------------------------------------


async def test_async_openai_merges_memory_into_the_system_message_and_stores_the_turn(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    await set_pref(orch, uid, "answer_style", "brief")
    client = with_memory(oai(protocol_server), orch, user_id=uid, session_id=sid, timeout_ms=5000)
    assert isinstance(client, MemoryAsyncOpenAI)
    protocol_server.reply_next("Paris.")
    messages = [{"role": "system", "content": "Be helpful."},
                {"role": "user", "content": "What is the capital of France?"}]
    reply = await client.chat.completions.create(model=MODEL, messages=messages)
    assert reply.choices[0].message.content == "Paris."
    (sent,) = sent_messages(protocol_server)
    assert len(sent) == 2 and sent[0]["role"] == "system"
    assert sent[0]["content"].startswith("Be helpful.\n\n") and "answer_style: brief" in sent[0]["content"]
    assert sent[1] == {"role": "user", "content": "What is the capital of France?"}
    assert messages[0] == {"role": "system", "content": "Be helpful."}  # the caller's list is not modified
    assert client.memory.last_degraded == {} and client.memory.last_context is not None
    assert await client.memory.aflush() == 0
    assert await history(orch, uid, sid) == [("user", "What is the capital of France?"), ("assistant", "Paris.")]

    # no system message: one is inserted; the stored turn is now part of the memory block
    protocol_server.reply_next("Madrid.")
    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "And of Spain?"}])
    second = sent_messages(protocol_server)[1]
    assert [m["role"] for m in second] == ["system", "user"]
    assert "What is the capital of France?" in second[0]["content"] and "Paris." in second[0]["content"]
    await client.memory.aflush()
    assert (await history(orch, uid, sid))[-2:] == [("user", "And of Spain?"), ("assistant", "Madrid.")]


async def test_inject_messages_prepends_the_context_messages(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    await set_pref(orch, uid, "language", "Portuguese")
    await orch.store_turn(session_id=sid, user_id=uid, user_message="I am planning a trip.",
                          assistant_message="Where to?")
    client = with_memory(oai(protocol_server), orch, user_id=uid, session_id=sid, inject="messages",
                         timeout_ms=5000)
    await client.chat.completions.create(model=MODEL, messages=[{"role": "system", "content": "Be brief."},
                                                                {"role": "user", "content": "To Lisbon."}])
    (sent,) = sent_messages(protocol_server)
    assert sent[0] == {"role": "system", "content": "Be brief."}  # the application's instructions stay first
    assert sent[1]["role"] == "system" and "language: Portuguese" in sent[1]["content"]
    assert "I am planning a trip." not in sent[1]["content"]
    assert sent[2:] == [{"role": "user", "content": "I am planning a trip."},
                        {"role": "assistant", "content": "Where to?"},
                        {"role": "user", "content": "To Lisbon."}]


async def test_async_openai_stream_passes_chunks_and_stores_the_accumulated_reply(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    client = with_memory(oai(protocol_server), orch, user_id=uid, session_id=sid, timeout_ms=5000)
    protocol_server.reply_next("The tide comes in twice a day.")
    deltas: list[str] = []
    usage = None
    async with await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "How often is high tide?"}], stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        async for chunk in stream:
            assert isinstance(chunk, openai.types.chat.ChatCompletionChunk)
            if chunk.choices and chunk.choices[0].delta.content:
                deltas.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        assert stream.response.status_code == 200  # SDK attributes pass through
    assert len(deltas) > 1 and "".join(deltas) == "The tide comes in twice a day."
    assert usage is not None and usage.completion_tokens == len(deltas)
    assert await client.memory.aflush() == 0
    assert await history(orch, uid, sid) == [("user", "How often is high tide?"),
                                             ("assistant", "The tide comes in twice a day.")]


async def test_abandoned_or_cut_streams_store_nothing(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    client = with_memory(oai(protocol_server), orch, user_id=uid, session_id=sid, timeout_ms=5000)
    protocol_server.reply_next("one two three four five six")
    async with await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count to six."}], stream=True) as stream:
        first = [await stream.__anext__(), await stream.__anext__()]
    assert len(first) == 2
    protocol_server.cut_next_stream(2)  # the connection drops before the finish reason
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count again."}], stream=True)
    got = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert got == "echo: Count "
    assert await client.memory.aflush() == 0
    assert await history(orch, uid, sid) == []
    # a complete stream closed early by the caller after the finish reason is stored
    protocol_server.reply_next("Done.")
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Finish."}], stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].finish_reason == "stop":
            break
    await stream.close()
    await client.memory.aflush()
    assert await history(orch, uid, sid) == [("user", "Finish."), ("assistant", "Done.")]


async def test_per_call_user_and_session_overrides_and_memory_off(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    other = f"{uid}-other"
    await set_pref(orch, other, "pet", "a cat named Miso")
    client = with_memory(oai(protocol_server), orch, user_id=uid, session_id=sid, timeout_ms=5000)
    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Who is my pet?"}],
                                         user=other, memory_session_id="s-override")
    body = protocol_server.requests_to("/chat/completions")[0].body
    assert body["user"] == other  # still forwarded to the API
    assert not any(k.startswith("memory") for k in body)
    assert "pet: a cat named Miso" in body["messages"][0]["content"]
    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Plain call."}],
                                         memory=False)
    assert protocol_server.requests_to("/chat/completions")[1].body["messages"] == [
        {"role": "user", "content": "Plain call."}]
    await client.memory.aflush()
    assert await history(orch, other, "s-override") == [("user", "Who is my pet?"),
                                                        ("assistant", "echo: Who is my pet?")]
    assert await history(orch, uid, sid) == []
    assert await history(orch, uid, "s-override") == []


async def test_tool_result_follow_up_stores_only_the_reply(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    client = with_memory(oai(protocol_server), orch, user_id=uid, session_id=sid, timeout_ms=5000)
    protocol_server.reply_next("It is 21 degrees in Oslo.")
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "21C"},
    ]
    await client.chat.completions.create(model=MODEL, messages=messages)
    await client.memory.aflush()
    assert await history(orch, uid, sid) == [("assistant", "It is 21 degrees in Oslo.")]


async def test_llm_errors_propagate_unchanged_and_nothing_is_stored(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    client = with_memory(oai(protocol_server), orch, user_id=uid, session_id=sid, timeout_ms=5000)
    protocol_server.fail_next(1, 400)
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello?"}])
    assert err.value.status_code == 400 and "scripted failure 400" in str(err.value)
    protocol_server.fail_next(1, 500)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi?"}], stream=True)
    assert await client.memory.aflush() == 0
    assert await history(orch, uid, sid) == []


async def test_bad_arguments_raise_validation_errors_naming_the_field(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    raw = oai(protocol_server)
    cases: list[tuple[Any, str]] = [
        (lambda: with_memory(object(), orch), "client"),
        (lambda: with_memory(raw, "not an orchestrator"), "orchestrator"),
        (lambda: with_memory(raw, orch, inject="sideways"), "inject"),
        (lambda: with_memory(raw, orch, user_id=""), "user_id"),
        (lambda: with_memory(raw, orch, session_id=3), "session_id"),
        (lambda: with_memory(raw, orch, timeout_ms=0), "timeout_ms"),
        (lambda: with_memory(raw, orch, max_total_tokens=-5), "max_total_tokens"),
        (lambda: with_memory(raw, orch, metadata=["x"]), "metadata"),
        (lambda: with_memory(with_memory(raw, orch), orch), "client"),
    ]
    for build, field in cases:
        with pytest.raises(ValidationError) as err:
            build()
        assert err.value.field == field, field
    client = with_memory(raw, orch, user_id=uid, session_id=sid)
    messages = [{"role": "user", "content": "Hi"}]
    for extra, field in (({"memory": "yes"}, "memory"), ({"memory_session_id": ""}, "memory_session_id"),
                         ({"memory_user_id": 7}, "memory_user_id"), ({"user": 5}, "user")):
        with pytest.raises(ValidationError) as err:
            await client.chat.completions.create(model=MODEL, messages=messages, **extra)
        assert err.value.field == field
    unbound = with_memory(raw, orch)
    with pytest.raises(ValidationError) as err:
        await unbound.chat.completions.create(model=MODEL, messages=messages)
    assert err.value.field == "user_id"
    with pytest.raises(ValidationError) as err:
        await unbound.chat.completions.create(model=MODEL, messages=messages, user=uid)
    assert err.value.field == "session_id"
    assert protocol_server.requests == []  # nothing reached the model


async def test_other_attributes_pass_through(orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str,
                                             sid: str) -> None:
    raw = oai(protocol_server)
    client = with_memory(raw, orch, user_id=uid, session_id=sid, timeout_ms=5000)
    assert client.base_url == raw.base_url and client.api_key == "sk-test"
    emb = await client.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=8)
    assert len(emb.data[0].embedding) == 8
    slower = client.with_options(timeout=30)
    assert isinstance(slower, MemoryAsyncOpenAI) and slower.memory is client.memory
    await slower.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Still remembered?"}])
    await client.memory.aflush()
    assert await history(orch, uid, sid) == [("user", "Still remembered?"), ("assistant", "echo: Still remembered?")]


# --- OpenAI, sync ---------------------------------------------------------------------------------------


async def test_sync_openai_runs_memory_on_the_orchestrators_loop(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    await set_pref(orch, uid, "units", "metric")
    client = with_memory(oai_sync(protocol_server), orch, user_id=uid, session_id=sid, timeout_ms=5000)
    assert isinstance(client, MemoryOpenAI) and client.memory.loop is asyncio.get_running_loop()
    # on the loop's own thread a sync call would deadlock: a clear error, and nothing is sent
    with pytest.raises(MemoryLoopError, match="deadlock"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "How far?"}])
    assert protocol_server.requests == []

    protocol_server.reply_next("About 5 km.")
    reply = await asyncio.to_thread(client.chat.completions.create, model=MODEL,
                                    messages=[{"role": "user", "content": "How far is it?"}])
    assert reply.choices[0].message.content == "About 5 km."
    assert "units: metric" in sent_messages(protocol_server)[0][0]["content"]

    def consume_stream() -> list[str]:
        protocol_server.reply_next("Roughly an hour on foot.")
        with client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "How long?"}],
                                            stream=True) as stream:
            return [c.choices[0].delta.content or "" for c in stream if c.choices]

    parts = await asyncio.to_thread(consume_stream)
    assert "".join(parts) == "Roughly an hour on foot." and len(parts) > 2
    assert await client.memory.aflush() == 0
    assert await history(orch, uid, sid) == [("user", "How far is it?"), ("assistant", "About 5 km."),
                                             ("user", "How long?"), ("assistant", "Roughly an hour on foot.")]


def test_sync_clients_without_a_loop_use_a_private_loop_thread(
    base_config: dict[str, Any], protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    """OpenAI and Gemini sync clients on one fresh orchestrator: memory runs on one private loop thread."""
    o = MemoryOrchestrator({**base_config, "enabled_memories": TIERS, "tier_timeout_ms": 5000})
    client = with_memory(oai_sync(protocol_server), o, user_id=uid, session_id=sid, timeout_ms=30_000)
    gclient = with_memory(gem(protocol_server), o, user_id=uid, session_id=sid, timeout_ms=30_000)
    assert client.memory.loop is None
    try:
        protocol_server.reply_next("Nice to meet you, Ana.")
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "I am Ana."}])
        assert client.memory.flush() == 0
        protocol_server.reply_next("You are Ana.")
        reply = gclient.models.generate_content(model=GEMINI, contents="Who am I?")
        assert reply.text == "You are Ana."
        body = protocol_server.requests_to(":generateContent")[0].body
        assert "I am Ana." in gemini_system(body) and "Nice to meet you, Ana." in gemini_system(body)
        protocol_server.reply_next("Ana, still.")
        pieces = [c.text for c in gclient.models.generate_content_stream(model=GEMINI, contents="And now?")]
        assert "".join(pieces) == "Ana, still." and len(pieces) > 1
        assert gclient.memory.flush() == 0

        async def read(orchestrator: MemoryOrchestrator) -> list[tuple[str, str]]:
            return await history(orchestrator, uid, sid)

        assert client.memory.run(read) == [
            ("user", "I am Ana."), ("assistant", "Nice to meet you, Ana."), ("user", "Who am I?"),
            ("assistant", "You are Ana."), ("user", "And now?"), ("assistant", "Ana, still.")]
    finally:
        client.memory.close()
    with pytest.raises(BackendUnavailable):  # the orchestrator was closed on its private loop
        o.stores


async def test_sync_wrap_of_an_initialized_orchestrator_needs_its_loop(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer
) -> None:
    def wrap() -> Any:
        return with_memory(oai_sync(protocol_server), orch, user_id="u", session_id="s")

    with pytest.raises(ValidationError) as err:
        await asyncio.to_thread(wrap)  # no loop in that thread, and the orchestrator's connections are on ours
    assert err.value.field == "loop"


# --- Gemini ---------------------------------------------------------------------------------------------


async def test_gemini_async_merges_into_system_instruction_and_stores(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    await set_pref(orch, uid, "diet", "vegetarian")
    client = with_memory(gem(protocol_server), orch, user_id=uid, session_id=sid, timeout_ms=5000)
    protocol_server.reply_next("Try a lentil curry.")
    config = types.GenerateContentConfig(system_instruction="Be brief.", temperature=0.2)
    reply = await client.aio.models.generate_content(model=GEMINI, contents="What should I cook?", config=config)
    assert reply.text == "Try a lentil curry."
    body = protocol_server.requests_to(":generateContent")[0].body
    system = gemini_system(body)
    assert system.startswith("Be brief.") and "diet: vegetarian" in system
    assert body["generationConfig"]["temperature"] == 0.2
    assert config.system_instruction == "Be brief."  # the caller's config is not modified
    assert gemini_texts(body) == [("user", "What should I cook?")]
    assert await client.memory.aflush() == 0
    assert await history(orch, uid, sid) == [("user", "What should I cook?"), ("assistant", "Try a lentil curry.")]


async def test_gemini_async_stream_and_messages_mode(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    await set_pref(orch, uid, "city", "Porto")
    await orch.store_turn(session_id=sid, user_id=uid, user_message="I need a restaurant.",
                          assistant_message="For how many people?")
    client = with_memory(gem(protocol_server), orch, user_id=uid, session_id=sid, inject="messages",
                         timeout_ms=5000)
    protocol_server.reply_next("Booked a table for two in Porto.")
    stream = await client.aio.models.generate_content_stream(
        model=GEMINI, contents=[types.Content(role="user", parts=[types.Part(text="Two people.")])],
        config={"system_instruction": "You book tables."})
    pieces = [chunk.text async for chunk in stream]
    assert "".join(pieces) == "Booked a table for two in Porto." and len(pieces) > 1
    body = protocol_server.requests_to(":streamGenerateContent")[0].body
    system = gemini_system(body)
    assert system.startswith("You book tables.") and "city: Porto" in system
    assert "I need a restaurant." not in system
    assert gemini_texts(body) == [("user", "I need a restaurant."), ("model", "For how many people?"),
                                  ("user", "Two people.")]
    await client.memory.aflush()
    assert (await history(orch, uid, sid))[-2:] == [("user", "Two people."),
                                                   ("assistant", "Booked a table for two in Porto.")]


async def test_gemini_overrides_memory_off_and_errors(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    client = with_memory(gem(protocol_server), orch, user_id=uid, session_id=sid, timeout_ms=5000)
    await client.aio.models.generate_content(model=GEMINI, contents="Note this.", memory_user_id=f"{uid}-b",
                                             memory_session_id="other")
    await client.aio.models.generate_content(model=GEMINI, contents="Not this.", memory=False)
    plain = protocol_server.requests_to(":generateContent")[1].body
    assert "systemInstruction" not in plain
    protocol_server.fail_next(1, 403)
    with pytest.raises(genai.errors.ClientError) as err:
        await client.aio.models.generate_content(model=GEMINI, contents="Forbidden?")
    assert err.value.code == 403
    with pytest.raises(ValidationError) as verr:
        await client.aio.models.generate_content(model=GEMINI, contents="x", memory_session_id=" ")
    assert verr.value.field == "memory_session_id"
    await client.memory.aflush()
    assert await history(orch, f"{uid}-b", "other") == [("user", "Note this."), ("assistant", "echo: Note this.")]
    assert await history(orch, uid, sid) == []


async def test_gemini_sync_from_a_worker_thread(
    orch: MemoryOrchestrator, protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    await set_pref(orch, uid, "tone", "formal")
    client = with_memory(gem(protocol_server), orch, user_id=uid, session_id=sid, timeout_ms=5000)

    def call() -> list[str]:
        protocol_server.reply_next("Good evening.")
        return [c.text for c in client.models.generate_content_stream(model=GEMINI, contents="Greet me.")]

    assert "".join(await asyncio.to_thread(call)) == "Good evening."
    assert "tone: formal" in gemini_system(protocol_server.requests_to(":streamGenerateContent")[0].body)
    with pytest.raises(MemoryLoopError):
        client.models.generate_content(model=GEMINI, contents="On the loop thread.")
    await client.memory.aflush()
    assert await history(orch, uid, sid) == [("user", "Greet me."), ("assistant", "Good evening.")]


# --- memory on a loop in another thread (loop=) -------------------------------------------------------


def test_memory_on_a_background_loop_serves_async_and_sync_clients(
    base_config: dict[str, Any], protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    """The application runs the orchestrator on its own loop thread; clients on other loops/threads use it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    o = MemoryOrchestrator({**base_config, "enabled_memories": TIERS, "tier_timeout_ms": 5000})
    try:
        asyncio.run_coroutine_threadsafe(o.initialize(), loop).result(60)
        sync_client = with_memory(oai_sync(protocol_server), o, user_id=uid, session_id=sid, loop=loop,
                                  timeout_ms=5000)
        protocol_server.reply_next("Hello Rui.")
        sync_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "I am Rui."}])
        assert sync_client.memory.flush() == 0

        async def ask() -> tuple[str, list[dict[str, Any]]]:  # a different loop: the test's own asyncio.run
            client = with_memory(oai(protocol_server), o, user_id=uid, session_id=sid, loop=loop, timeout_ms=5000)
            protocol_server.reply_next("You are Rui.")
            reply = await client.chat.completions.create(model=MODEL,
                                                         messages=[{"role": "user", "content": "Who am I?"}])
            await client.memory.aflush()
            return str(reply.choices[0].message.content), sent_messages(protocol_server)[-1]

        text, sent = asyncio.run(ask())
        assert text == "You are Rui." and "I am Rui." in sent[0]["content"]  # memory read on the other loop
        stored = asyncio.run_coroutine_threadsafe(history(o, uid, sid), loop).result(30)
        assert stored == [("user", "I am Rui."), ("assistant", "Hello Rui."), ("user", "Who am I?"),
                          ("assistant", "You are Rui.")]
    finally:
        asyncio.run_coroutine_threadsafe(failopen_wrapper(o).aclose(), loop).result(30)
        asyncio.run_coroutine_threadsafe(o.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_stopped_memory_loop_means_memory_is_down(
    base_config: dict[str, Any], protocol_server: ProtocolServer, uid: str, sid: str
) -> None:
    """The loop memory was bound to is gone: the call still succeeds, without memory."""
    loop = asyncio.new_event_loop()  # never started
    o = MemoryOrchestrator({**base_config, "enabled_memories": TIERS})
    client = with_memory(oai_sync(protocol_server), o, user_id=uid, session_id=sid, loop=loop)
    protocol_server.reply_next("Still answering.")
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello?"}])
    assert reply.choices[0].message.content == "Still answering."
    assert client.memory.last_context is None and "memory" in client.memory.last_degraded
    assert sent_messages(protocol_server)[-1] == [{"role": "user", "content": "Hello?"}]
    loop.close()
