"""What memory adds to an LLM call: ``with_memory`` and ``orchestrator.turn()`` against a raw SDK call.

One process, a local OpenAI-compatible server (``examples/local_chat_server.py``: answers in well under
a millisecond, so the difference is memory's cost, not the model's), embedded Redis + PostgreSQL with
pgvector in a temporary directory, offline models. Variants, interleaved in random order per
iteration so all see the same machine conditions:

* ``raw``: ``AsyncOpenAI.chat.completions.create`` straight to the server;
* ``wrapped``: the same call through ``with_memory`` (context in, turn stored in the background);
* ``wrapped_sync``: the sync ``OpenAI`` client through ``with_memory`` (memory on a private loop thread);
* ``turn``: ``async with orchestrator.turn(...)`` around the raw call, recording the reply (its prompt
  carries the recent conversation as messages, so the model call itself is larger than ``raw``'s);
* ``turn_no_llm``: the same turn with no model call: memory's own cost per turn (read + write hand-off);
* ``down``: ``with_memory`` on an orchestrator whose Redis and PostgreSQL nobody listens on (fail-open).

Usage: python benchmarks/llm_wrapper.py [--iterations 300] [--history 40] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI, OpenAI

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from local_chat_server import LocalChatServer

from memory_implementations.integrations import with_memory
from memory_implementations.logging import configure_logging
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.types import MemoryType

TIERS = [MemoryType.CONVERSATION_BUFFER, MemoryType.VECTOR_DATABASE, MemoryType.KEY_VALUE_STORE,
         MemoryType.WORKING_MEMORY]
QUESTIONS = ["Where do I live now?", "What is my dog called?", "Which language should you answer in?",
             "What do I do for work?", "What did we say about the garden?"]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def seed(orchestrator: MemoryOrchestrator, user: str, session: str, history: int) -> None:
    """A user with ``history`` turns, a profile and long-term memories."""
    facts = ["I live in Porto near the river.", "My dog is called Pepper.", "I work as a marine biologist.",
             "Please answer in Portuguese.", "We planted tomatoes and basil in the garden."]
    for i in range(history):
        fact = facts[i % len(facts)]
        await orchestrator.store_turn(session_id=session, user_id=user, user_message=f"{fact} (note {i})",
                                      assistant_message=f"Noted, thank you ({i}).")
    kv = orchestrator.memories[MemoryType.KEY_VALUE_STORE]
    await kv.set("language", "Portuguese", user_id=user)  # type: ignore[attr-defined]
    await orchestrator.flush()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Seed, warm up, measure; return the report."""
    data_dir = tempfile.mkdtemp(prefix="mi-bench-llm-")
    config = {"data_dir": data_dir, "enabled_memories": TIERS, "embedding_dim": 384, "llm_provider": "offline",
              "max_total_tokens": 1500}
    server = LocalChatServer().start()
    orchestrator = MemoryOrchestrator(config)
    await orchestrator.initialize()
    dead = MemoryOrchestrator({**config, "redis_url": "redis://127.0.0.1:1/0",
                               "database_url": "postgresql://nobody@127.0.0.1:1/none"})
    user, session = "bench-user", "bench-session"
    await seed(orchestrator, user, session, args.history)
    raw = AsyncOpenAI(base_url=server.base_url, api_key="local", max_retries=0)
    wrapped = with_memory(raw, orchestrator, user_id=user, session_id=session)
    sync_wrapped = with_memory(OpenAI(base_url=server.base_url, api_key="local", max_retries=0), orchestrator,
                               user_id=user, session_id=session)
    down = with_memory(raw, dead, user_id=user, session_id="down", timeout_ms=1000)

    def messages(q: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": q}]

    async def v_raw(q: str) -> None:
        await raw.chat.completions.create(model="local", messages=messages(q))

    async def v_wrapped(q: str) -> None:
        await wrapped.chat.completions.create(model="local", messages=messages(q))

    async def v_sync(q: str) -> None:
        await asyncio.to_thread(sync_wrapped.chat.completions.create, model="local", messages=messages(q))

    async def v_turn(q: str) -> None:
        async with orchestrator.turn(session, user, q) as t:
            reply = await raw.chat.completions.create(model="local", messages=t.messages)
            t.record(reply)

    async def v_turn_only(q: str) -> None:
        async with orchestrator.turn(session, user, q) as t:
            t.record("A canned reply.")

    async def v_down(q: str) -> None:
        await down.chat.completions.create(model="local", messages=messages(q))

    variants = {"raw": v_raw, "wrapped": v_wrapped, "wrapped_sync": v_sync, "turn": v_turn,
                "turn_no_llm": v_turn_only, "down": v_down}
    rng = random.Random(7)
    for _ in range(args.warmup):  # model load, caches, connection pools, the down path's first failure
        for fn in variants.values():
            await fn(rng.choice(QUESTIONS))
    await wrapped.memory.aflush()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(args.iterations):
        q = rng.choice(QUESTIONS)
        order = list(variants.items())
        rng.shuffle(order)
        for name, fn in order:
            start = time.perf_counter()
            await fn(q)
            samples[name].append((time.perf_counter() - start) * 1000)
        if i % 50 == 49:  # keep the background stores from piling up; not timed
            await wrapped.memory.aflush()
    await wrapped.memory.aflush()
    stats = {name: {"p50_ms": round(statistics.median(v), 3), "p99_ms": round(pct(v, 99), 3),
                    "mean_ms": round(statistics.fmean(v), 3)} for name, v in samples.items()}
    base = stats["raw"]["p50_ms"]
    for name in stats:
        stats[name]["added_p50_ms"] = round(stats[name]["p50_ms"] - base, 3)
    await down.memory.aclose()
    await dead.close()
    await orchestrator.close()
    server.stop()
    return {"iterations": args.iterations, "history_turns": args.history, "tiers": [t.value for t in TIERS],
            "python": platform.python_version(), "cpus": os.cpu_count(), "loadavg": os.getloadavg(),
            "results": stats}


def main() -> None:
    """Parse flags, run, print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--history", type=int, default=40, help="turns already in the session")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logging("CRITICAL")
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.iterations} iterations, {args.history} turns of history, tiers: {', '.join(report['tiers'])}; "
          f"load average {report['loadavg'][0]:.2f}")
    print(f"{'variant':<14}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'added p50':>11}")
    for name, s in report["results"].items():
        print(f"{name:<14}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}{s['mean_ms']:>9.2f}{s['added_p50_ms']:>11.2f}")


if __name__ == "__main__":
    main()
