"""Memory tools as LangChain StructuredTools (run by LangGraph's ToolNode) and LlamaIndex FunctionTools."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chat_helpers import MakeOrchestrator
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from memory_implementations.errors import ValidationError
from memory_implementations.integrations import langchain_tools, llamaindex_tools, memory_tools
from memory_implementations.integrations.agent_tools import SYNC_ERROR
from memory_implementations.memories.kv import KeyValueStoreMemory
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.types import MemoryType

TIERS = [MemoryType.CONVERSATION_BUFFER, MemoryType.VECTOR_DATABASE, MemoryType.KEY_VALUE_STORE,
         MemoryType.WORKING_MEMORY]


pytest_plugins = ("chat_helpers",)


@pytest.fixture
async def orch(make_orchestrator: MakeOrchestrator) -> MemoryOrchestrator:
    """The tool tiers on the shared test stores."""
    return await make_orchestrator(TIERS, similarity_threshold=0.1)


def by_name(tools: list[Any]) -> dict[str, Any]:
    return {t.name if hasattr(t, "name") else t.metadata.name: t for t in tools}


async def test_langchain_tools_match_the_schemas_and_run_through_a_tool_node(
    orch: MemoryOrchestrator, uid: str, sid: str
) -> None:
    tools = langchain_tools(orch, user_id=uid, session_id=sid)
    assert [convert_to_openai_tool(t) for t in tools] == memory_tools("openai", orchestrator=orch)
    graph = StateGraph(MessagesState)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    app = graph.compile()
    calls = [{"name": "set_preference", "args": {"key": "units", "value": "metric"}, "id": "c1", "type": "tool_call"},
             {"name": "remember", "args": {"content": "The user's sister is called Ines."}, "id": "c2",
              "type": "tool_call"},
             {"name": "set_working_memory", "args": {"key": "plan", "value": "book a table"}, "id": "c3",
              "type": "tool_call"}]
    out = await app.ainvoke({"messages": [AIMessage(content="", tool_calls=calls)]})
    results = {m.tool_call_id: json.loads(m.content) for m in out["messages"] if isinstance(m, ToolMessage)}
    assert results["c1"]["stored"] is True and results["c2"]["stored"] is True and results["c3"]["stored"] is True
    kv = orch.memories[MemoryType.KEY_VALUE_STORE]
    assert isinstance(kv, KeyValueStoreMemory) and await kv.get("units", user_id=uid) == "metric"
    found = json.loads(await by_name(tools)["search_memory"].ainvoke({"query": "sister's name"}))
    assert any("Ines" in m["content"] for m in found["memories"])
    # a bad call comes back as an error the model can read, not as an exception
    bad = json.loads(await by_name(tools)["set_preference"].ainvoke({"key": "no spaces allowed", "value": 1}))
    assert bad["field"] == "key" and bad["code"] == "validation_error"
    # a blocking call says to use the async API
    assert json.loads(by_name(tools)["get_user_profile"].invoke({}))["error"] == SYNC_ERROR


async def test_tools_are_bound_to_the_user_and_session(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    mine = by_name(langchain_tools(orch, user_id=uid, session_id=sid))
    theirs = by_name(langchain_tools(orch, user_id=uid + "-other", session_id=sid))
    await mine["set_preference"].ainvoke({"key": "diet", "value": "vegan"})
    assert json.loads(await theirs["get_user_profile"].ainvoke({"key": "diet"}))["found"] is False
    assert json.loads(await mine["get_user_profile"].ainvoke({"key": "diet"}))["value"] == "vegan"
    only = langchain_tools(orch, user_id=uid, include=["search_memory", "remember"])
    assert [t.name for t in only] == ["search_memory", "remember"]
    no_session = by_name(langchain_tools(orch, user_id=uid))
    assert json.loads(await no_session["get_working_memory"].ainvoke({}))["field"] == "session_id"
    for kwargs, field in (({"user_id": ""}, "user_id"), ({"user_id": uid, "session_id": " "}, "session_id")):
        with pytest.raises(ValidationError) as err:
            langchain_tools(orch, **kwargs)
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        llamaindex_tools("not an orchestrator", user_id=uid)  # type: ignore[arg-type]
    assert err.value.field == "orchestrator"


async def test_llamaindex_function_tools(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    tools = llamaindex_tools(orch, user_id=uid, session_id=sid)
    assert [t.metadata.to_openai_tool() for t in tools] == memory_tools("openai", orchestrator=orch)
    named = by_name(tools)
    stored = await named["remember"].acall(content="The user's flight leaves Tuesday at 9am.", topics=["travel"])
    assert json.loads(stored.content)["stored"] is True and not stored.is_error
    found = await named["search_memory"].acall(query="when is the flight")
    hits = json.loads(found.content)["memories"]
    assert hits and hits[0]["topics"] == ["travel"]
    edited = await named["edit_memory"].acall(memory_id=hits[0]["id"], content="The flight leaves Wednesday.")
    assert json.loads(edited.content)["updated"] is True
    assert json.loads(named["search_memory"].call(query="flight").content)["error"] == SYNC_ERROR
