"""Memory tools for LLMs: schemas, resolve_tool_call on the real tiers (OpenAI and Anthropic shapes), memory_prompt."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from memory_implementations.errors import ConfigError, ValidationError
from memory_implementations.integrations import (
    TOOLS,
    count_message_tokens,
    memory_prompt,
    memory_tools,
    resolve_tool_call,
    resolve_tool_calls,
    tool_result_message,
)
from memory_implementations.integrations.tools import parse_tool_call, run_tool_call
from memory_implementations.memories.kv import KeyValueStoreMemory
from memory_implementations.memories.vector import VectorDatabaseMemory
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.stores import Stores
from memory_implementations.tokens import get_tokenizer
from memory_implementations.types import MemoryType

TIERS = [MemoryType.CONVERSATION_BUFFER, MemoryType.VECTOR_DATABASE, MemoryType.KEY_VALUE_STORE]


@pytest.fixture
async def orch(base_config: dict[str, Any], stores: Stores) -> AsyncIterator[MemoryOrchestrator]:
    """Buffer, vector and key-value tiers on the shared test stores (generous deadline: the model loads once)."""
    o = MemoryOrchestrator({**base_config, "enabled_memories": TIERS, "tier_timeout_ms": 5000,
                            "similarity_threshold": 0.1}, stores=stores)
    await o.initialize()
    yield o
    await o.close()


def openai_call(name: str, args: dict[str, Any] | str, *, as_object: bool = False) -> Any:
    """An OpenAI Chat Completions tool call (dict, or an SDK-like object)."""
    arguments = args if isinstance(args, str) else json.dumps(args)
    call_id = f"call_{uuid.uuid4().hex[:8]}"
    if as_object:
        return SimpleNamespace(id=call_id, type="function",
                               function=SimpleNamespace(name=name, arguments=arguments))
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def anthropic_call(name: str, args: dict[str, Any], *, as_object: bool = False) -> Any:
    """An Anthropic tool_use block (dict, or an SDK-like object)."""
    block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:8]}", "name": name, "input": args}
    return SimpleNamespace(**block) if as_object else block


def vector(o: MemoryOrchestrator) -> VectorDatabaseMemory:
    tier = o.memories[MemoryType.VECTOR_DATABASE]
    assert isinstance(tier, VectorDatabaseMemory)
    return tier


def kv(o: MemoryOrchestrator) -> KeyValueStoreMemory:
    tier = o.memories[MemoryType.KEY_VALUE_STORE]
    assert isinstance(tier, KeyValueStoreMemory)
    return tier


# --- schemas -------------------------------------------------------------------------------------------


def test_schemas_in_each_format() -> None:
    openai = memory_tools("openai")
    anthropic = memory_tools("anthropic")
    responses = memory_tools("openai_responses")
    names = ["search_memory", "remember", "recall_conversation", "get_user_profile", "set_preference",
             "edit_memory", "forget_memory", "get_working_memory", "set_working_memory"]
    assert [t["function"]["name"] for t in openai] == names
    assert [t["name"] for t in anthropic] == names
    assert [t["name"] for t in responses] == names
    for o, a, r in zip(openai, anthropic, responses, strict=True):
        assert o["type"] == "function" and r["type"] == "function"
        assert o["function"]["parameters"] == a["input_schema"] == r["parameters"]
        assert a["input_schema"]["type"] == "object" and a["input_schema"]["additionalProperties"] is False
        assert a["description"] and "user_id" not in a["input_schema"]["properties"]  # the app supplies the user
    search = next(t for t in anthropic if t["name"] == "search_memory")
    assert search["input_schema"]["required"] == ["query"]
    # every schema is plain JSON, and a copy: changing it does not change the next call's result
    json.dumps(openai)
    openai[0]["function"]["parameters"]["properties"].clear()
    assert memory_tools("openai")[0]["function"]["parameters"]["properties"]


def test_include_and_orchestrator_filtering(base_config: dict[str, Any]) -> None:
    assert [t["name"] for t in memory_tools("anthropic", include=["remember", "set_preference"])] == [
        "remember", "set_preference"]
    with pytest.raises(ValidationError) as err:
        memory_tools("openai", include=["remember", "drop_database"])
    assert err.value.field == "include"
    with pytest.raises(ValidationError) as err:
        memory_tools("gemini")  # type: ignore[arg-type]
    assert err.value.field == "format"
    kv_only = MemoryOrchestrator({**base_config, "enabled_memories": [MemoryType.KEY_VALUE_STORE]})
    assert [t["name"] for t in memory_tools("anthropic", orchestrator=kv_only)] == [
        "get_user_profile", "set_preference", "forget_memory"]
    working_only = MemoryOrchestrator({**base_config, "enabled_memories": [MemoryType.WORKING_MEMORY]})
    assert [t["name"] for t in working_only.memory_tools("anthropic")] == [
        "get_working_memory", "set_working_memory"]


# --- resolving calls against the real tiers ----------------------------------------------------------


async def test_remember_then_search_openai_and_anthropic(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    stored = await run_tool_call(
        orch, openai_call("remember", {"content": "The user is allergic to penicillin.", "topics": ["health"]}),
        user_id=uid, session_id=sid)
    assert stored["stored"] is True and stored["already_known"] is False
    row = await vector(orch).get(stored["id"], user_id=uid)
    assert row is not None and row["content"] == "The user is allergic to penicillin."
    assert row["metadata"]["topics"] == ["health"] and row["metadata"]["source"] == "agent"
    again = await run_tool_call(
        orch, anthropic_call("remember", {"content": "The user is allergic to penicillin."}, as_object=True),
        user_id=uid, session_id=sid)
    assert again["id"] == stored["id"] and again["already_known"] is True
    await run_tool_call(orch, anthropic_call("remember", {"content": "The user's favourite city is Lisbon."}),
                            user_id=uid, session_id=sid)

    found = await run_tool_call(
        orch, openai_call("search_memory", {"query": "Which medicines must I avoid?", "limit": 1}, as_object=True),
        user_id=uid, session_id=sid)
    assert found["count"] == 1
    assert found["memories"][0]["content"] == "The user is allergic to penicillin."
    assert found["memories"][0]["id"] == stored["id"] and found["memories"][0]["topics"] == ["health"]
    json.dumps(found)
    found = await run_tool_call(orch, anthropic_call("search_memory", {"query": "trip to Portugal"}),
                                    user_id=uid, session_id=sid)
    assert found["memories"][0]["content"] == "The user's favourite city is Lisbon."
    # another user sees none of it
    other = await run_tool_call(orch, openai_call("search_memory", {"query": "penicillin allergy"}),
                                    user_id=str(uuid.uuid4()))
    assert other == {"memories": [], "count": 0}


async def test_preferences_set_get_forget(orch: MemoryOrchestrator, uid: str) -> None:
    first = await run_tool_call(orch, openai_call("set_preference", {"key": "answer_style", "value": "brief"}),
                                    user_id=uid)
    assert first == {"key": "answer_style", "value": "brief", "stored": True, "replaced": False}
    second = await run_tool_call(orch, anthropic_call("set_preference", {"key": "answer_style",
                                                                             "value": "detailed"}), user_id=uid)
    assert second["replaced"] is True
    await run_tool_call(orch, anthropic_call("set_preference", {"key": "units", "value": 1}), user_id=uid)
    assert await kv(orch).get("answer_style", user_id=uid) == "detailed"
    assert [h["value"] for h in await kv(orch).history("answer_style", user_id=uid)] == ["brief"]

    one = await run_tool_call(orch, openai_call("get_user_profile", {"key": "answer_style"}), user_id=uid)
    assert one == {"key": "answer_style", "found": True, "value": "detailed"}
    missing = await run_tool_call(orch, anthropic_call("get_user_profile", {"key": "timezone"}), user_id=uid)
    assert missing == {"key": "timezone", "found": False, "value": None}
    everything = await run_tool_call(orch, openai_call("get_user_profile", "{}"), user_id=uid)
    assert everything == {"preferences": {"answer_style": "detailed", "units": 1}}

    gone = await run_tool_call(orch, anthropic_call("forget_memory", {"key": "units"}), user_id=uid)
    assert gone == {"key": "units", "deleted": True}
    assert await kv(orch).get("units", "absent", user_id=uid) == "absent"
    again = await run_tool_call(orch, openai_call("forget_memory", {"key": "units"}), user_id=uid)
    assert again["deleted"] is False


async def test_forget_memory_by_id_only_for_its_owner(orch: MemoryOrchestrator, uid: str) -> None:
    ref = await vector(orch).store({"content": "The user's locker code is 4512.", "user_id": uid})
    intruder = await run_tool_call(orch, openai_call("forget_memory", {"memory_id": ref.id}),
                                       user_id=str(uuid.uuid4()))
    assert intruder["deleted"] is False
    assert await vector(orch).get(ref.id, user_id=uid) is not None
    result = await run_tool_call(orch, anthropic_call("forget_memory", {"memory_id": ref.id}), user_id=uid)
    assert result == {"memory_id": ref.id, "deleted": True}
    assert await vector(orch).get(ref.id, user_id=uid) is None


async def test_recall_conversation_across_and_within_sessions(orch: MemoryOrchestrator, uid: str) -> None:
    await orch.store_turn(session_id="monday", user_id=uid, user_message="My dog Biscuit needs her vaccinations.",
                          assistant_message="Noted.")
    await orch.store_turn(session_id="tuesday", user_id=uid, user_message="My other dog Pepper needs a new collar.",
                          assistant_message="Nice.")
    await orch.store_turn(session_id="tuesday", user_id=uid, user_message="I am repainting the kitchen walls blue.",
                          assistant_message="Good choice.")
    await vector(orch).store({"content": "The user's dog is a greyhound.", "user_id": uid})  # not a turn
    await orch.flush()
    everywhere = await run_tool_call(
        orch, openai_call("recall_conversation", {"query": "dog vaccinations", "limit": 5}),
        user_id=uid, session_id="tuesday")
    contents = [m["content"] for m in everywhere["messages"]]
    assert contents[0] == "My dog Biscuit needs her vaccinations."
    assert everywhere["messages"][0]["session_id"] == "monday"
    assert "My other dog Pepper needs a new collar." in contents
    assert "The user's dog is a greyhound." not in contents  # only conversation turns
    here = await run_tool_call(
        orch, anthropic_call("recall_conversation", {"query": "dog vaccinations", "scope": "this_session"}),
        user_id=uid, session_id="tuesday")
    assert here["count"] >= 1
    assert here["messages"][0]["content"] == "My other dog Pepper needs a new collar."
    assert {m["session_id"] for m in here["messages"]} == {"tuesday"}
    with pytest.raises(ValidationError) as err:
        await run_tool_call(orch, openai_call("recall_conversation", {"query": "dog", "scope": "this_session"}),
                                user_id=uid)
    assert err.value.field == "scope"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (openai_call("search_memory", {}), "query"),
        (anthropic_call("search_memory", {"query": "   "}), "query"),
        (openai_call("search_memory", {"query": "x", "limit": 0}), "limit"),
        (anthropic_call("search_memory", {"query": "x", "limit": "five"}), "limit"),
        (openai_call("search_memory", {"query": "x", "user_id": "someone-else"}), "user_id"),
        (openai_call("remember", {"content": "x" * 5000}), "content"),
        (anthropic_call("remember", {"content": "fact", "topics": "health"}), "topics"),
        (anthropic_call("remember", {"content": "fact", "topics": ["ok", 3]}), "topics[1]"),
        (openai_call("recall_conversation", {"query": "x", "scope": "everything"}), "scope"),
        (anthropic_call("set_preference", {"key": "has space", "value": "v"}), "key"),
        (openai_call("set_preference", {"key": "k", "value": {"nested": True}}), "value"),
        (anthropic_call("set_preference", {"key": "k"}), "value"),
        (openai_call("forget_memory", {}), "memory_id"),
        (anthropic_call("forget_memory", {"memory_id": "a", "key": "b"}), "memory_id"),
        (openai_call("search_memory", "{not json"), "arguments"),
        (openai_call("search_memory", "[1, 2]"), "arguments"),
        (openai_call("drop_tables", {}), "name"),
        ({"role": "assistant", "content": "hi"}, "tool_call"),
    ],
)
async def test_bad_arguments_name_the_field(orch: MemoryOrchestrator, uid: str, call: Any, field: str) -> None:
    before = await kv(orch).list(user_id=uid)
    with pytest.raises(ValidationError) as err:
        await run_tool_call(orch, call, user_id=uid, session_id="s")
    assert err.value.field == field, err.value.message
    assert await kv(orch).list(user_id=uid) == before  # nothing was written


async def test_missing_tier_and_missing_user(base_config: dict[str, Any], stores: Stores, uid: str) -> None:
    o = MemoryOrchestrator({**base_config, "enabled_memories": [MemoryType.KEY_VALUE_STORE]}, stores=stores)
    with pytest.raises(ConfigError) as err:
        await run_tool_call(o, openai_call("search_memory", {"query": "x"}), user_id=uid)
    assert err.value.field == "enabled_memories"
    with pytest.raises(ValidationError) as verr:
        await run_tool_call(o, openai_call("get_user_profile", {}), user_id="")
    assert verr.value.field == "user_id"
    await o.close()


async def test_resolve_tool_calls_builds_result_messages(orch: MemoryOrchestrator, uid: str) -> None:
    good = openai_call("set_preference", {"key": "language", "value": "Portuguese"})
    bad = openai_call("search_memory", {"limit": 3})
    out = await resolve_tool_calls(orch, [good, bad], user_id=uid)
    assert out[0]["role"] == "tool" and out[0]["tool_call_id"] == good["id"]
    assert json.loads(out[0]["content"])["stored"] is True
    assert out[1]["tool_call_id"] == bad["id"]
    assert json.loads(out[1]["content"]) == {"error": "search_memory: 'query' is required", "field": "query",
                                             "code": "validation_error"}
    block = anthropic_call("get_user_profile", {"key": "language"})
    (result,) = await resolve_tool_calls(orch, [block], user_id=uid)
    assert result["type"] == "tool_result" and result["tool_use_id"] == block["id"] and "is_error" not in result
    assert json.loads(result["content"])["value"] == "Portuguese"
    responses_call = {"type": "function_call", "call_id": "fc_1", "name": "get_user_profile",
                      "arguments": json.dumps({"key": "language"})}
    (item,) = await resolve_tool_calls(orch, [responses_call], user_id=uid)
    assert item == {"type": "function_call_output", "call_id": "fc_1",
                    "output": json.dumps({"key": "language", "found": True, "value": "Portuguese"})}
    err_block = tool_result_message(block, {"error": "x"}, is_error=True)
    assert err_block["is_error"] is True


def test_parse_tool_call_shapes() -> None:
    assert parse_tool_call({"name": "remember", "arguments": {"content": "x"}}).arguments == {"content": "x"}
    parsed = parse_tool_call(anthropic_call("remember", {"content": "y"}, as_object=True))
    assert (parsed.format, parsed.name, parsed.arguments) == ("anthropic", "remember", {"content": "y"})
    assert parse_tool_call(openai_call("remember", "")).arguments == {}
    assert set(TOOLS) == {t["name"] for t in memory_tools("anthropic")}


# --- memory_prompt ------------------------------------------------------------------------------------


async def test_memory_prompt_openai_and_anthropic(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    await orch.store_turn(session_id=sid, user_id=uid, user_message="I live in Porto now.",
                          assistant_message="Porto is lovely.")
    await kv(orch).set("language", "Portuguese", user_id=uid)
    query = "Which language should you answer in?"
    messages = await memory_prompt(orch, query, user_id=uid, session_id=sid, max_total_tokens=600,
                                   system_prompt="You are a helpful assistant.")
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].startswith("You are a helpful assistant.")
    assert "language: Portuguese" in messages[0]["content"]
    assert [m["content"] for m in messages[1:]] == ["I live in Porto now.", "Porto is lovely.", query]
    assert messages[-1]["role"] == "user"
    assert count_message_tokens(messages) <= 600

    anth = await memory_prompt(orch, query, user_id=uid, session_id=sid, max_total_tokens=600, format="anthropic")
    assert "language: Portuguese" in anth["system"]
    assert anth["messages"][0]["role"] == "user" and anth["messages"][-1]["role"] == "user"
    assert anth["messages"][-1]["content"].endswith(query)
    tok = get_tokenizer(orch.config.tokenizer_model)
    assert tok.count(anth["system"]) + tok.count_messages(anth["messages"]) <= 600


async def test_memory_prompt_budget_covers_the_query(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    for i in range(12):
        await orch.store_turn(session_id=sid, user_id=uid, user_message=f"Question number {i} about gardening tools?",
                              assistant_message=f"Answer number {i}: use a sturdy spade and keep it sharp.")
    query = "Summarise what we said about spades. " * 5
    for budget in (120, 200, 400):
        messages = await memory_prompt(orch, query, user_id=uid, session_id=sid, max_total_tokens=budget)
        assert messages[-1] == {"role": "user", "content": query}
        assert count_message_tokens(messages) <= budget
        assert len(messages) > 1  # some memory still fits
    with pytest.raises(ValidationError) as err:
        await memory_prompt(orch, query, user_id=uid, session_id=sid, max_total_tokens=20)
    assert err.value.field == "max_total_tokens"
    with pytest.raises(ValidationError) as err:
        await memory_prompt(orch, "", user_id=uid, session_id=sid)
    assert err.value.field == "query"


# --- editing, working memory, the result envelope, memory_prompt(session=..., long_term_search=...) ---


@pytest.fixture
async def agent(base_config: dict[str, Any], stores: Stores) -> AsyncIterator[MemoryOrchestrator]:
    """The tool tiers plus working memory."""
    o = MemoryOrchestrator({**base_config, "enabled_memories": [*TIERS, MemoryType.WORKING_MEMORY],
                            "tier_timeout_ms": 5000, "similarity_threshold": 0.1}, stores=stores)
    await o.initialize()
    yield o
    await o.close()


async def test_edit_memory_corrects_content_and_topics(agent: MemoryOrchestrator, uid: str) -> None:
    stored = await run_tool_call(agent, openai_call("remember", {"content": "The user lives in Lyon.",
                                                                 "topics": ["home"]}), user_id=uid)
    edited = await run_tool_call(agent, anthropic_call("edit_memory", {"memory_id": stored["id"],
                                                                       "content": "The user lives in Marseille."}),
                                 user_id=uid)
    assert edited["updated"] and edited["content"] == "The user lives in Marseille." and edited["topics"] == ["home"]
    found = await run_tool_call(agent, openai_call("search_memory", {"query": "where does the user live"}),
                                user_id=uid)
    contents = [m["content"] for m in found["memories"]]
    assert "The user lives in Marseille." in contents and "The user lives in Lyon." not in contents
    retagged = await run_tool_call(agent, openai_call("edit_memory", {"memory_id": stored["id"],
                                                                      "topics": ["home", "france"]}), user_id=uid)
    assert retagged["topics"] == ["home", "france"] and retagged["content"] == "The user lives in Marseille."
    for args, field in (({"memory_id": stored["id"]}, "content"), ({"content": "x"}, "memory_id")):
        with pytest.raises(ValidationError) as err:
            await run_tool_call(agent, openai_call("edit_memory", args), user_id=uid)
        assert err.value.field == field
    # another user cannot edit it
    outcome = await resolve_tool_call(agent, openai_call("edit_memory", {"memory_id": stored["id"],
                                                                         "content": "hijacked"}), user_id="intruder")
    assert outcome["success"] is False and outcome["code"] == "not_found"
    assert (await vector(agent).get(stored["id"], user_id=uid) or {})["content"] == "The user lives in Marseille."


async def test_working_memory_tools_are_per_session(agent: MemoryOrchestrator, uid: str, sid: str) -> None:
    wrote = await run_tool_call(agent, openai_call("set_working_memory", {"key": "plan", "value": "compare 3 flights",
                                                                          "importance": 0.9}),
                                user_id=uid, session_id=sid)
    assert wrote == {"key": "plan", "stored": True, "replaced": False}
    again = await run_tool_call(agent, anthropic_call("set_working_memory", {"key": "plan", "value": "book the 9am"}),
                                user_id=uid, session_id=sid)
    assert again["replaced"] is True
    await run_tool_call(agent, openai_call("set_working_memory", {"key": "budget", "value": 450}),
                        user_id=uid, session_id=sid)
    one = await run_tool_call(agent, openai_call("get_working_memory", {"key": "plan"}), user_id=uid, session_id=sid)
    assert one == {"key": "plan", "found": True, "value": "book the 9am"}
    everything = await run_tool_call(agent, openai_call("get_working_memory", {}), user_id=uid, session_id=sid)
    assert [(i["key"], i["value"]) for i in everything["items"]] == [("plan", "book the 9am"), ("budget", 450)]
    # another session sees its own, empty scratchpad; the orchestrator's context shows this one
    other = await run_tool_call(agent, openai_call("get_working_memory", {}), user_id=uid, session_id=sid + "-b")
    assert other["items"] == []
    ctx = await agent.get_comprehensive_context({"query": "plan", "session_id": sid, "user_id": uid})
    assert "plan: book the 9am" in ctx.text
    with pytest.raises(ValidationError) as err:
        await run_tool_call(agent, openai_call("get_working_memory", {}), user_id=uid)
    assert err.value.field == "session_id"
    with pytest.raises(ValidationError) as err:
        await run_tool_call(agent, openai_call("set_working_memory", {"key": "x", "value": "y", "importance": 3}),
                            user_id=uid, session_id=sid)
    assert err.value.field == "importance"


async def test_resolve_tool_call_envelope(agent: MemoryOrchestrator, uid: str, sid: str) -> None:
    call = openai_call("set_preference", {"key": "units", "value": "metric"})
    ok = await agent.resolve_tool_call(call, user_id=uid, session_id=sid)
    assert ok["success"] is True and ok["function_name"] == "set_preference"
    assert ok["tool_call_id"] == call["id"] and ok["result"]["stored"] is True
    assert json.loads(ok["formatted_response"]) == ok["result"]
    block = anthropic_call("set_preference", {"key": "units"})
    bad = await resolve_tool_call(agent, block, user_id=uid)
    assert bad["success"] is False and bad["field"] == "value" and bad["tool_call_id"] == block["id"]
    assert "value" in json.loads(bad["formatted_response"])["error"]
    garbage = await resolve_tool_call(agent, {"nonsense": True}, user_id=uid)
    assert garbage["success"] is False and garbage["function_name"] is None and garbage["field"] == "tool_call"
    assert await kv(agent).get("units", user_id=uid) == "metric"


async def test_memory_prompt_session_dict_and_long_term_search(agent: MemoryOrchestrator, uid: str, sid: str) -> None:
    await agent.store_turn(session_id=sid, user_id=uid, user_message="Let's plan the garden.",
                           assistant_message="Happy to help with the garden.")
    await kv(agent).set("favourite_plant", "lavender", user_id=uid)
    query = "What should I plant?"
    session = {"session_id": sid, "user_id": uid, "model_name": "gpt-4o", "context_window_max": 500}
    full = await agent.memory_prompt(query, session=session)
    assert "favourite_plant: lavender" in full[0]["content"] and count_message_tokens(full) <= 500
    assert full[-1] == {"role": "user", "content": query}
    short = await memory_prompt(agent, query, session=session, long_term_search=False)
    assert "lavender" not in json.dumps(short)
    assert [m["content"] for m in short if m["role"] != "system"] == [
        "Let's plan the garden.", "Happy to help with the garden.", query]
    for kwargs, field in (({"session": {"session_id": sid, "colour": "red"}}, "session.colour"),
                          ({"session": {"session_id": sid}}, "user_id"),
                          ({"session": session, "long_term_search": {"text": "x"}}, "long_term_search.text"),
                          ({"session": session, "long_term_search": "yes"}, "long_term_search")):
        with pytest.raises(ValidationError) as err:
            await memory_prompt(agent, query, **kwargs)  # type: ignore[arg-type]
        assert err.value.field == field
