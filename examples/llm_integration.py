"""Attach memory to an OpenAI-style chat call, with a fail-open wrapper.

Run:  python examples/llm_integration.py

Per turn: ``ctx = await orchestrator.get_comprehensive_context(...)``, send ``ctx.messages`` plus the
user's message to the model, then ``await orchestrator.store_turn(...)``. The wrapper is fail-open:
when memory is slow or down the model is still called (without memory), and a failed write never
loses the reply.

With ``OPENAI_API_KEY`` set this calls OpenAI (``OPENAI_MODEL``, default gpt-4o-mini). Without it, a
tiny local "model" stands in: it quotes the memory line that best matches the question, so you can see
exactly what memory contributed. No network is needed. Data goes to ``$MEMORY_DATA_DIR`` when set,
otherwise to a fresh temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from memory_implementations.logging import configure_logging
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.types import ContextRequest, MemoryType

DATA_DIR = os.environ.get("MEMORY_DATA_DIR") or tempfile.mkdtemp(prefix="mi-example-")
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
Messages = list[dict[str, str]]

_STOP = set("a an the is are was were am i my me you your to of in on at for and or it that this what whats "
            "which who where when how do does did again please tell remind called name s".split())


# --- the model ------------------------------------------------------------------------------------

class LocalEchoModel:
    """A stand-in with the OpenAI client's shape (``chat.completions.create``); no network, no weights.

    It answers by quoting the memory line (from the system message) that shares the most words with the
    question: not intelligent, but it shows precisely what memory put in front of the model.
    """

    def __init__(self) -> None:
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))
        self.calls = 0

    async def _create(self, *, model: str, messages: Messages, **_: Any) -> Any:
        self.calls += 1
        question = messages[-1]["content"]
        if not question.rstrip().endswith("?"):
            return _completion("(local echo model) Noted.")
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        lines = [ln.strip("- ").strip() for ln in system.splitlines() if ln.strip().startswith("-")]
        lines += [m["content"] for m in messages[1:-1] if m["role"] == "user"]
        wanted = _words(question)
        scored = sorted(((len(wanted & _words(ln)), ln) for ln in lines), key=lambda t: -t[0])
        if scored and scored[0][0] > 0:
            text = f"(local echo model) From memory: {scored[0][1]}"
        else:
            text = "(local echo model) I don't have anything in memory about that."
        return _completion(text)


def _completion(text: str) -> Any:
    """An object shaped like an OpenAI chat completion."""
    return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=text))])


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP and len(w) > 1}


def make_llm() -> tuple[Callable[[Messages], Awaitable[str]], str]:
    """``(call, label)``: OpenAI when OPENAI_API_KEY is set, else the local echo model."""
    if os.environ.get("OPENAI_API_KEY"):
        from openai import AsyncOpenAI

        client: Any = AsyncOpenAI()
        model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
        label = f"OpenAI {model}"
    else:
        client, model, label = LocalEchoModel(), "local-echo", "local echo model (no OPENAI_API_KEY)"

    async def call(messages: Messages) -> str:
        response = await client.chat.completions.create(model=model, messages=messages)
        return str(response.choices[0].message.content)

    return call, label


# --- the fail-open wrapper ------------------------------------------------------------------------

@dataclass
class TurnReport:
    """What happened on one turn."""

    reply: str
    used_memory: bool
    stored: bool
    memory_error: str | None = None
    context_tokens: int = 0


class MemoryChat:
    """Chat with memory attached; fail-open: memory trouble degrades the answer, never blocks it."""

    def __init__(self, orchestrator: MemoryOrchestrator | None, llm: Callable[[Messages], Awaitable[str]], *,
                 memory_timeout_s: float = 1.0, max_context_tokens: int = 1500) -> None:
        self.orchestrator = orchestrator
        self.llm = llm
        self.memory_timeout_s = memory_timeout_s
        self.max_context_tokens = max_context_tokens

    async def ask(self, text: str, *, session_id: str, user_id: str) -> TurnReport:
        messages: Messages = [{"role": "system", "content": "You are a helpful assistant."}]
        used, error, tokens = False, None, 0
        try:
            if self.orchestrator is None:
                raise RuntimeError("no memory configured")
            ctx = await asyncio.wait_for(
                self.orchestrator.get_comprehensive_context(ContextRequest(
                    query=text, session_id=session_id, user_id=user_id, max_total_tokens=self.max_context_tokens)),
                self.memory_timeout_s,
            )
            messages = [dict(m) for m in ctx.messages] or messages  # system (memory) + recent conversation
            used, tokens = True, ctx.total_tokens
        except Exception as exc:  # fail-open: answer without memory
            error = f"{type(exc).__name__}: {exc}"
        messages.append({"role": "user", "content": text})
        reply = await self.llm(messages)
        stored = False
        if self.orchestrator is not None and used:
            try:
                await self.orchestrator.store_turn(session_id=session_id, user_id=user_id, user_message=text,
                                                   assistant_message=reply)
                stored = True
            except Exception as exc:  # the reply is already produced; report and carry on
                error = f"store failed: {type(exc).__name__}: {exc}"
        return TurnReport(reply, used, stored, error, tokens)


# --- the run ----------------------------------------------------------------------------------------

async def main() -> None:
    configure_logging("ERROR")
    llm, label = make_llm()
    print(f"model: {label}; data dir: {DATA_DIR}")
    orchestrator = MemoryOrchestrator(CONFIG)
    await orchestrator.initialize()
    chat = MemoryChat(orchestrator, llm)
    try:
        for text in ("Hi! I'm Sam and I work as a pharmacist in Leeds.",
                     "My dog is called Biscuit and she is a greyhound.",
                     "I prefer short answers."):
            report = await chat.ask(text, session_id=f"{USER}-monday", user_id=USER)
            print(f"you: {text}\n  -> {report.reply}")
        await orchestrator.flush()  # let background embedding / extraction land (a script, not a server)

        question = "What is my dog called?"
        report = await chat.ask(question, session_id=f"{USER}-tuesday", user_id=USER)  # a new session
        print(f"\nnew session, you: {question}\n  -> {report.reply}")
        print(f"  memory used: {report.used_memory} ({report.context_tokens} context tokens), "
              f"turn stored: {report.stored}")
    finally:
        await orchestrator.close()

    # memory down: a store nobody can reach; the wrapper still answers, without memory
    broken = MemoryOrchestrator({**CONFIG, "redis_url": "redis://127.0.0.1:1/0",
                                 "database_url": "postgresql://nobody@127.0.0.1:1/none"})
    down = MemoryChat(broken, llm, memory_timeout_s=2.0)
    report = await down.ask("What is my dog called?", session_id=f"{USER}-wednesday", user_id=USER)
    reason = (report.memory_error or "")[:90]
    print(f"\nmemory down: memory used: {report.used_memory}; reason: {reason}\n  -> {report.reply}")


if __name__ == "__main__":
    asyncio.run(main())
