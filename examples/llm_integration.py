"""Attach memory to LLM calls: an OpenAI client wrapped with ``with_memory``, and a LangGraph agent.

Run:  python examples/llm_integration.py

1. ``with_memory(AsyncOpenAI(...), orchestrator, user_id=..., session_id=...)``: every
   ``chat.completions.create`` gets the user's memory in its system message and stores the turn in the
   background, streamed replies included.
2. A LangGraph graph whose nodes use the same memory: ``MemoryStore`` (LangGraph's store API over the
   key-value and vector tiers) for a profile the agent saves, and the wrapped client to answer.
3. Memory down: the wrapped client still answers, without memory, and a metric counts it.

With ``OPENAI_API_KEY`` set this calls OpenAI (``OPENAI_MODEL``, default gpt-4o-mini). Without it a
local OpenAI-compatible server (``local_chat_server.py``) stands in: it quotes the memory line that
best matches the question, so you see exactly what memory contributed. No network is needed. Data goes
to ``$MEMORY_DATA_DIR`` when set, otherwise to a fresh temporary directory (deleted
when the script exits).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
import uuid
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from local_chat_server import LocalChatServer  # examples/local_chat_server.py (the script's own folder)
from openai import AsyncOpenAI
from prometheus_client import REGISTRY

from memory_implementations.integrations import MemoryStore, with_memory
from memory_implementations.logging import configure_logging
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.types import MemoryType

DATA_DIR = os.environ.get("MEMORY_DATA_DIR") or tempfile.mkdtemp(prefix="mi-example-")
if not os.environ.get("MEMORY_DATA_DIR"):  # our own scratch dir (~40 MB): delete it when the script exits
    # registered before the embedded servers start, so it runs after their exit handlers have stopped them
    atexit.register(shutil.rmtree, DATA_DIR, ignore_errors=True)
USER = f"sam-{uuid.uuid4().hex[:6]}"
CONFIG: dict[str, Any] = {
    "data_dir": DATA_DIR,
    "enabled_memories": [MemoryType.CONVERSATION_SUMMARY, MemoryType.VECTOR_DATABASE, MemoryType.ENTITY_MEMORY,
                         MemoryType.KEY_VALUE_STORE, MemoryType.WORKING_MEMORY],
    "buffer_window_size": 4,
    "embedding_dim": 384,
    "llm_provider": "offline",  # memory's own summaries/extraction stay offline in this example
    "similarity_threshold": 0.2,
}


def make_client(server: LocalChatServer | None) -> tuple[AsyncOpenAI, str, str]:
    """``(client, model, label)``: OpenAI when OPENAI_API_KEY is set, else the local server."""
    if server is None:
        model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
        return AsyncOpenAI(), model, f"OpenAI {model}"
    return AsyncOpenAI(base_url=server.base_url, api_key="local"), "local", "local model (no OPENAI_API_KEY)"


def failopen_count() -> float:
    """Calls that went ahead without memory, as the Prometheus counter has it."""
    total = 0.0
    for reason in ("timeout", "backend_unavailable", "error"):
        total += REGISTRY.get_sample_value("memory_llm_failopen_total", {"reason": reason}) or 0.0
    return total


# --- 1. the wrapped SDK client --------------------------------------------------------------------

async def chat_with_memory(orchestrator: MemoryOrchestrator, raw: AsyncOpenAI, model: str) -> None:
    """Two sessions through the wrapped client; the second recalls what the first said."""
    client = with_memory(raw, orchestrator, user_id=USER, session_id=f"{USER}-monday")
    for text in ("Hi! I'm Sam and I work as a pharmacist in Leeds.",
                 "My dog is called Biscuit and she is a greyhound."):
        reply = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
        print(f"you: {text}\n  -> {reply.choices[0].message.content}")
    # streamed: chunks pass through as they come; the turn is stored once the stream completes
    text = "I prefer short answers."
    stream = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}],
                                                  stream=True)
    parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    print(f"you: {text}\n  -> (streamed) {''.join(parts)}")
    await client.memory.aflush()
    await orchestrator.flush()  # background embedding / extraction land now (a script, not a server)

    question = "What is my dog called?"
    reply = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], memory_session_id=f"{USER}-tuesday")
    ctx = client.memory.last_context
    print(f"\nnew session, you: {question}\n  -> {reply.choices[0].message.content}")
    print(f"  memory used: {ctx is not None} ({ctx.total_tokens if ctx else 0} context tokens), "
          f"sections: {', '.join(ctx.sections) if ctx else '-'}")


# --- 2. a LangGraph agent on the same memory ------------------------------------------------------

class State(TypedDict, total=False):
    """The graph's state: who asks what, and the answer."""

    user_id: str
    question: str
    answer: str


def build_graph(store: MemoryStore, client: Any, model: str) -> Any:
    """save_profile -> answer; both nodes reach memory, one through the store, one through the client."""

    async def save_profile(state: State, runtime: Runtime[None]) -> State:
        assert runtime.store is not None
        if "cycle" in state["question"].lower():
            await runtime.store.aput((state["user_id"], "default"), "commute", {"text": "Sam cycles to work."})
        return {}

    async def answer(state: State) -> State:
        reply = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": state["question"]}], user=state["user_id"])
        return {"answer": str(reply.choices[0].message.content)}

    graph = StateGraph(State)
    graph.add_node("save_profile", save_profile)
    graph.add_node("answer", answer)
    graph.add_edge(START, "save_profile")
    graph.add_edge("save_profile", "answer")
    graph.add_edge("answer", END)
    return graph.compile(store=store)


async def agent_with_memory(orchestrator: MemoryOrchestrator, raw: AsyncOpenAI, model: str) -> None:
    """A graph run saves a profile fact; the next run's model call sees it in memory."""
    store = MemoryStore(orchestrator)
    client = with_memory(raw, orchestrator, session_id=f"{USER}-agent")  # user per call: OpenAI's user=
    app = build_graph(store, client, model)
    for question in ("I cycle to work every day.", "How do I commute to work?"):
        out = await app.ainvoke({"user_id": USER, "question": question})
        print(f"agent, you: {question}\n  -> {out['answer']}")
    item = await store.aget((USER, "default"), "commute")
    print(f"  store item: {item.value if item else None}")
    await client.memory.aflush()


# --- 3. memory down -----------------------------------------------------------------------------------

async def memory_down(raw: AsyncOpenAI, model: str) -> None:
    """Nobody listens where memory should be: the call still succeeds, without memory, and is counted."""
    broken = MemoryOrchestrator({**CONFIG, "redis_url": "redis://127.0.0.1:1/0",
                                 "database_url": "postgresql://nobody@127.0.0.1:1/none"})
    client = with_memory(raw, broken, user_id=USER, session_id=f"{USER}-wednesday", timeout_ms=2000)
    before = failopen_count()
    reply = await client.chat.completions.create(model=model,
                                                 messages=[{"role": "user", "content": "What is my dog called?"}])
    reason = client.memory.last_degraded.get("memory", "")[:80]
    print(f"\nmemory down: answered without memory; reason: {reason}\n  -> {reply.choices[0].message.content}")
    waiting = await client.memory.aflush()  # retried once now; still down, so the turn stays queued
    print(f"  memory_llm_failopen_total +{failopen_count() - before:g}; turns waiting to be stored: {waiting}")
    await client.memory.aclose()  # logs the turns it could not store (an application would persist them)
    await broken.close()


async def main() -> None:
    configure_logging("ERROR")
    server = None if os.environ.get("OPENAI_API_KEY") else LocalChatServer().start()
    try:
        raw, model, label = make_client(server)
        print(f"model: {label}; data dir: {DATA_DIR}")
        orchestrator = MemoryOrchestrator(CONFIG)
        await orchestrator.initialize()
        try:
            await chat_with_memory(orchestrator, raw, model)
            print()
            await agent_with_memory(orchestrator, raw, model)
        finally:
            await orchestrator.close()
        await memory_down(raw, model)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
