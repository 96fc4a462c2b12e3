"""MemoryChatMessageHistory with real langchain-core objects: messages, RunnableWithMessageHistory, a fake model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.prompts.chat import ChatPromptValue
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from memory_implementations.errors import ValidationError
from memory_implementations.integrations.langchain import MemoryChatMessageHistory
from memory_implementations.memories.buffer import ConversationBufferMemory
from memory_implementations.stores import Stores


@pytest.fixture
async def buffer(base_config: dict[str, Any], stores: Stores) -> AsyncIterator[ConversationBufferMemory]:
    """The real buffer tier on the shared test stores."""
    tier = ConversationBufferMemory(base_config, stores=stores)
    await tier.initialize()
    yield tier
    await tier.close()


CONVERSATION: list[BaseMessage] = [
    SystemMessage(content="You are a weather bot.", id="m0"),
    HumanMessage(content=[{"type": "text", "text": "Weather in Oslo? Here is a photo."},
                          {"type": "image_url", "image_url": {"url": "https://example.com/oslo.png"}}],
                 name="ada", id="m1"),
    AIMessage(content="", id="m2", tool_calls=[{"name": "weather", "args": {"city": "Oslo"}, "id": "call_1",
                                                "type": "tool_call"}],
              usage_metadata={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
              response_metadata={"model_name": "fake"}),
    ToolMessage(content="-3C", tool_call_id="call_1", name="weather", status="success", artifact={"raw": -3.0},
                id="m3"),
    AIMessage(content="It is -3C in Oslo.", id="m4"),
    ChatMessage(role="developer", content="Keep answers short.", id="m5"),
]


async def test_message_round_trip_keeps_every_field(buffer: ConversationBufferMemory, uid: str, sid: str) -> None:
    history = MemoryChatMessageHistory(sid, buffer, user_id=uid)
    assert isinstance(history, BaseChatMessageHistory)
    await history.aadd_messages(CONVERSATION)
    back = await history.aget_messages()
    assert back == CONVERSATION  # type, content blocks, tool calls, ids, names, metadata, artifact
    assert [type(m) for m in back] == [type(m) for m in CONVERSATION]
    assert [(m.role, m.content) for m in await buffer.get_messages(sid, uid)] == [
        ("system", "You are a weather bot."), ("user", "Weather in Oslo? Here is a photo."), ("assistant", ""),
        ("tool", "-3C"), ("assistant", "It is -3C in Oslo."), ("system", "Keep answers short.")]
    assert await asyncio.to_thread(lambda: history.messages) == CONVERSATION  # the sync property too

    # a streamed chunk is stored as the message it stands for
    await history.aclear()
    await history.aadd_messages([AIMessageChunk(content="streamed", id="c1")])
    assert await history.aget_messages() == [AIMessage(content="streamed", id="c1")]

    with pytest.raises(ValidationError) as err:
        await history.aadd_messages([HumanMessage(content="ok"), ChatMessage(role="wizard", content="x")])
    assert err.value.field == "messages[1].role"
    assert await history.aget_messages() == [AIMessage(content="streamed", id="c1")]  # all or nothing
    await history.aclear()
    await history.aclose()


def chain_with_history(replies: list[str], seen: list[list[BaseMessage]], config: dict[str, Any],
                       uid: str) -> tuple[RunnableWithMessageHistory, list[MemoryChatMessageHistory]]:
    """prompt -> (record what the model is sent) -> fake model, with history from MemoryChatMessageHistory."""
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You are terse."), MessagesPlaceholder("history"), ("human", "{question}")])

    def record(value: ChatPromptValue) -> ChatPromptValue:
        seen.append(value.to_messages())
        return value

    model = GenericFakeChatModel(messages=iter(replies))
    histories: list[MemoryChatMessageHistory] = []

    def get_session_history(session_id: str) -> MemoryChatMessageHistory:
        history = MemoryChatMessageHistory(session_id, config, user_id=uid)
        histories.append(history)
        return history

    runnable = RunnableWithMessageHistory(prompt | RunnableLambda(record) | model, get_session_history,
                                          input_messages_key="question", history_messages_key="history")
    return runnable, histories


# langchain-core 1.x deprecates RunnableWithMessageHistory in favour of LangGraph persistence; it still works
@pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")
async def test_runnable_with_message_history_accumulates_per_session(base_config: dict[str, Any], uid: str,
                                                                     sid: str) -> None:
    seen: list[list[BaseMessage]] = []
    runnable, histories = chain_with_history(["Hi Ada.", "Your name is Ada.", "Hello stranger."], seen,
                                             base_config, uid)
    other = f"{sid}-other"

    first = await runnable.ainvoke({"question": "I am Ada."}, config={"configurable": {"session_id": sid}})
    assert first.content == "Hi Ada."
    # the sync path (RunnableWithMessageHistory.invoke uses .messages / add_messages)
    second = await asyncio.to_thread(runnable.invoke, {"question": "What is my name?"},
                                     {"configurable": {"session_id": sid}})
    assert second.content == "Your name is Ada."
    third = await runnable.ainvoke({"question": "Who am I?"}, config={"configurable": {"session_id": other}})
    assert third.content == "Hello stranger."

    def texts(messages: list[BaseMessage]) -> list[tuple[str, Any]]:
        return [(m.type, m.content) for m in messages]

    assert texts(seen[0]) == [("system", "You are terse."), ("human", "I am Ada.")]
    assert texts(seen[1]) == [("system", "You are terse."), ("human", "I am Ada."), ("ai", "Hi Ada."),
                              ("human", "What is my name?")]
    assert texts(seen[2]) == [("system", "You are terse."), ("human", "Who am I?")]  # sessions are separate
    for history in histories:
        await history.aclose()

    # a new history instance (own tier and connections) sees what the chain stored
    restarted = MemoryChatMessageHistory(sid, base_config, user_id=uid)
    assert texts(await restarted.aget_messages()) == [("human", "I am Ada."), ("ai", "Hi Ada."),
                                                      ("human", "What is my name?"), ("ai", "Your name is Ada.")]
    # ... and a new chain continues the conversation from it
    seen.clear()
    runnable, histories = chain_with_history(["Still Ada."], seen, base_config, uid)
    await runnable.ainvoke({"question": "Again?"}, config={"configurable": {"session_id": sid}})
    assert len(seen[0]) == 6 and texts(seen[0])[-1] == ("human", "Again?")
    assert len(await restarted.aget_messages()) == 6
    for history in histories:
        await history.aclose()
    await restarted.aclear()
    await restarted.aclose()
    other_history = MemoryChatMessageHistory(other, base_config, user_id=uid)
    assert texts(await other_history.aget_messages()) == [("human", "Who am I?"), ("ai", "Hello stranger.")]
    await other_history.aclear()
    await other_history.aclose()


@pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")
async def test_sync_invokes_share_one_private_loop_per_source(base_config: dict[str, Any], stores: Stores,
                                                              uid: str, sid: str) -> None:
    """The documented ``lambda session_id: MemoryChatMessageHistory(...)`` builds a history per call; their
    sync methods must share one loop thread (and one copy of the tier), not start one per call."""
    import threading

    from memory_implementations.orchestrator import MemoryOrchestrator

    orchestrator = MemoryOrchestrator({**base_config, "warm_up": False, "enabled_memories": ["conversation_buffer"]},
                                      stores=stores)
    histories: list[MemoryChatMessageHistory] = []

    def get_session_history(session_id: str) -> MemoryChatMessageHistory:
        histories.append(MemoryChatMessageHistory(session_id, orchestrator, user_id=uid))
        return histories[-1]

    model = GenericFakeChatModel(messages=iter(["One.", "Two.", "Three."]))
    prompt = ChatPromptTemplate.from_messages([MessagesPlaceholder("history"), ("human", "{question}")])
    runnable = RunnableWithMessageHistory(prompt | model, get_session_history, input_messages_key="question",
                                          history_messages_key="history")

    def portal_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "memory-chat-history")

    before = portal_threads()
    for question in ("a?", "b?", "c?"):
        await asyncio.to_thread(runnable.invoke, {"question": question}, {"configurable": {"session_id": sid}})
    assert len(histories) >= 3  # a new history per call ...
    assert portal_threads() == before + 1  # ... one loop thread for all of them
    assert len(await histories[-1].aget_messages()) == 6
    histories[-1].close()  # stops the shared portal; a later sync call starts a fresh one
    assert portal_threads() == before
    assert len(await asyncio.to_thread(lambda: histories[0].messages)) == 6
    histories[0].close()
    await histories[0].aclear()
    await orchestrator.close()
