"""Advanced orchestration: all six tiers, per-request weights, tenant isolation, entity steering,
fail-open degradation, health, the renderings, and forgetting a user.

Run:  python examples/advanced_orchestration.py

Offline on the embedded servers. Data goes to ``$MEMORY_DATA_DIR`` when set, otherwise to a fresh
temporary directory, deleted when the script exits.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from typing import Any

from memory_implementations.errors import BackendUnavailable
from memory_implementations.logging import configure_logging
from memory_implementations.memories.working import WorkingMemory
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.types import ContextRequest, MemoryContext, MemoryType

DATA_DIR = os.environ.get("MEMORY_DATA_DIR") or tempfile.mkdtemp(prefix="mi-example-")
if not os.environ.get("MEMORY_DATA_DIR"):  # our own scratch dir (~40 MB): delete it when the script exits
    # registered before the embedded servers start, so it runs after their exit handlers have stopped them
    atexit.register(shutil.rmtree, DATA_DIR, ignore_errors=True)
RUN = uuid.uuid4().hex[:6]
ALICE, BOB = f"alice-{RUN}", f"bob-{RUN}"

CONFIG: dict[str, Any] = {
    "data_dir": DATA_DIR,
    "enabled_memories": [m.value for m in MemoryType],  # all six tiers
    "buffer_window_size": 4,
    "window_size": 4,
    "embedding_dim": 384,
    "llm_provider": "offline",
    "similarity_threshold": 0.2,
    "default_context_priority": {
        "recent_conversation": 0.35, "summary": 0.2, "entities": 0.15,
        "vector_search": 0.15, "working_memory": 0.1, "key_value": 0.05,
    },
}

ALICE_TURNS = [
    ("Hi, I'm Alice. I work as a nurse at St Mary Hospital.", "Hello Alice!"),
    ("My dog is called Biscuit and he loves the beach.", "Biscuit sounds lovely."),
    ("Maria is my sister and she lives in Porto.", "Nice, Porto is beautiful."),
    ("I'm training for the Lisbon half marathon in October.", "Good luck with the training!"),
    ("My knee hurts after long runs.", "Consider shorter runs and physio."),
]
BOB_TURNS = [
    ("Hey, Bob here. I'm a carpenter and I love fishing.", "Hi Bob!"),
    ("My cat is called Pixel.", "Hello Pixel!"),
]


def show(ctx: Any, title: str) -> None:
    """Print a context's sections: tokens against budget and the first items."""
    print(f"\n--- {title} ---")
    print(f"total {ctx.total_tokens}/{ctx.max_total_tokens} tokens; degraded: {sorted(ctx.degraded) or 'none'}; "
          f"entities named in the query: {ctx.entities or 'none'}")
    for name, section in ctx.sections.items():
        first = section.contents[0][:70] if section.contents else ""
        print(f"  {name:20s} {section.tokens:4d}/{section.budget:<4d} {','.join(section.tiers) or '-':22s} {first}")


def mentions(ctx: Any, word: str) -> bool:
    """True when any section of ``ctx`` contains ``word``."""
    return any(word.lower() in c.lower() for s in ctx.sections.values() for c in s.contents)


class FlakyWorkingMemory(WorkingMemory):
    """Working memory whose reads fail while ``down`` is set (to show fail-open behaviour)."""

    down = False

    async def get_context(self, query: Mapping[str, Any] | ContextRequest | None = None, *,
                          max_tokens: int | None = None) -> MemoryContext:
        if self.down:
            raise BackendUnavailable("working-memory Redis node is down (simulated)")
        return await super().get_context(query, max_tokens=max_tokens)


async def main() -> None:
    configure_logging("ERROR")
    print(f"data dir: {DATA_DIR}")
    orchestrator = MemoryOrchestrator(CONFIG, memories={MemoryType.WORKING_MEMORY: FlakyWorkingMemory})
    await orchestrator.initialize()
    try:
        await run(orchestrator)
    finally:
        await orchestrator.close()


async def run(orchestrator: MemoryOrchestrator) -> None:
    kv = orchestrator.memories[MemoryType.KEY_VALUE_STORE]
    working = orchestrator.memories[MemoryType.WORKING_MEMORY]

    # 1. two users, each in their own session; the app also records profile facts and task state
    for user, turns in ((ALICE, ALICE_TURNS), (BOB, BOB_TURNS)):
        for user_msg, reply in turns:
            await orchestrator.store_turn(session_id=f"{user}-s1", user_id=user, user_message=user_msg,
                                          assistant_message=reply)
    await kv.set("preferred_units", "kilometres", user_id=ALICE)  # type: ignore[attr-defined]
    await working.store({"namespace": f"{ALICE}-s2", "user_id": ALICE, "key": "goal",
                         "content": "plan a training week around the sore knee", "importance": 0.9})
    await orchestrator.flush()  # embeddings, summaries and entity extraction run in the background

    # 2. a new session: the answer is not in the conversation, memory supplies it
    question = "What is my dog called, and where does Maria live?"
    ctx = await orchestrator.get_comprehensive_context(
        ContextRequest(query=question, session_id=f"{ALICE}-s2", user_id=ALICE, max_total_tokens=1200))
    show(ctx, f"Alice asks: {question}")
    print(f"alice recall: Biscuit={mentions(ctx, 'Biscuit')} Porto={mentions(ctx, 'Porto')}")

    # 3. tenant isolation: Bob asks the same question and sees none of Alice's memories
    bob = await orchestrator.get_comprehensive_context(
        ContextRequest(query=question, session_id=f"{BOB}-s2", user_id=BOB, max_total_tokens=1200))
    print(f"bob sees Alice's facts: Biscuit={mentions(bob, 'Biscuit')} Porto={mentions(bob, 'Porto')}; "
          f"his own: Pixel={mentions(bob, 'Pixel')}")

    # 4. per-request weights: favour semantic search over everything else for a research-style turn
    heavy = await orchestrator.get_comprehensive_context(ContextRequest(
        query="running injuries and training", session_id=f"{ALICE}-s2", user_id=ALICE, max_total_tokens=300,
        weights={"vector_search": 0.8, "recent_conversation": 0.05, "summary": 0.05, "entities": 0.05,
                 "working_memory": 0.025, "key_value": 0.025}))
    light = await orchestrator.get_comprehensive_context(ContextRequest(
        query="running injuries and training", session_id=f"{ALICE}-s2", user_id=ALICE, max_total_tokens=300))
    share = {c: round(x.sections["vector_search"].share) for c, x in (("weighted", heavy), ("default", light))}
    print(f"vector_search share of a 300-token budget: default {share['default']}, weighted {share['weighted']}")

    # 5. fail-open: one tier fails, the turn still succeeds and says which tier is missing
    working.down = True  # type: ignore[attr-defined]
    try:
        degraded = await orchestrator.get_comprehensive_context(
            ContextRequest(query="What's my goal for this week?", session_id=f"{ALICE}-s2", user_id=ALICE))
    finally:
        working.down = False  # type: ignore[attr-defined]
    show(degraded, "working memory down (simulated)")
    print(f"degraded tiers: {sorted(degraded.degraded)}; sections still answered: "
          f"{[n for n, s in degraded.sections.items() if s.items]}")

    # 6. renderings: OpenAI messages, Anthropic system+messages, plain text, JSON for logs
    print(f"\nopenai messages: {len(ctx.messages)} (first role: {ctx.messages[0]['role']})")
    anthropic = ctx.anthropic()
    print(f"anthropic: system {len(anthropic['system'])} chars, {len(anthropic['messages'])} messages")
    print(f"json keys: {sorted(json.loads(ctx.to_json()))[:6]} ...")

    # 7. health, then forget Alice entirely (GDPR-style erasure across Redis and PostgreSQL)
    health = await orchestrator.health_check()
    print(f"\nhealth: {health['status']}; tiers: "
          f"{ {k: v['status'] for k, v in health['details']['memories'].items()} }")
    removed = await orchestrator.forget(ALICE)
    after = await orchestrator.get_comprehensive_context(
        ContextRequest(query=question, session_id=f"{ALICE}-s2", user_id=ALICE))
    print(f"forgot alice: removed {sum(removed.values())} records; recall after forget: "
          f"Biscuit={mentions(after, 'Biscuit')}")


if __name__ == "__main__":
    asyncio.run(main())
