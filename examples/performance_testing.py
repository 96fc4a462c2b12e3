"""Performance testing: bulk ingest, per-turn context latency (and each tier's share), store_turn latency.

Run:  python examples/performance_testing.py [--users 20] [--messages 40] [--turns 200]

A small, self-contained measurement on the embedded servers, offline. For the full benchmark against
raw Redis/pgvector floors (1,000 users, 150,000 vectors) see ``benchmarks/turn_latency.py`` or
``memory-orchestrator bench``. Data goes to ``$MEMORY_DATA_DIR`` when set, otherwise to a fresh
temporary directory, deleted when the script exits. Numbers depend on the machine and its load:
compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from typing import Any

from memory_implementations.logging import configure_logging
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.types import ContextRequest, MemoryType

DATA_DIR = os.environ.get("MEMORY_DATA_DIR") or tempfile.mkdtemp(prefix="mi-example-")
if not os.environ.get("MEMORY_DATA_DIR"):  # our own scratch dir (~40 MB): delete it when the script exits
    # registered before the embedded servers start, so it runs after their exit handlers have stopped them
    atexit.register(shutil.rmtree, DATA_DIR, ignore_errors=True)
RUN = uuid.uuid4().hex[:6]
WORDS = ("deploy budget python release invoice cluster garden coffee hiking train report review holiday "
         "recipe concert flight hotel exam doctor marathon kafka postgres redis vacuum index").split()
QUESTIONS = ("How is my deployment going?", "What did I say about the marathon?", "Any news on the invoice?",
             "Remind me about my holiday plans", "What do you know about my garden?")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def row(name: str, samples: list[float]) -> str:
    p50, p95, p99 = statistics.median(samples), pct(samples, 95), pct(samples, 99)
    return f"| {name} | {len(samples)} | {p50:.2f} | {p95:.2f} | {p99:.2f} |"


async def main(users: int, messages: int, turns: int) -> None:
    configure_logging("ERROR")
    rng = random.Random(42)
    config = {"data_dir": DATA_DIR, "enabled_memories": [m.value for m in MemoryType], "embedding_dim": 384,
              "llm_provider": "offline", "buffer_window_size": 10}
    orchestrator = MemoryOrchestrator(config)
    await orchestrator.initialize()
    try:
        ids = [(f"perf-{RUN}-u{u}", f"perf-{RUN}-s{u}") for u in range(users)]

        # 1. bulk ingest: one batched write per 500 messages (multi-row INSERT + one Redis pipeline)
        rows = [{"session_id": s, "user_id": u, "role": "user" if i % 2 == 0 else "assistant",
                 "content": f"Message {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20)))}
                for u, s in ids for i in range(messages)]
        writer: Any = orchestrator.memories[MemoryType.CONVERSATION_SUMMARY]
        t0 = time.perf_counter()
        for start in range(0, len(rows), 500):
            await writer.store_many(rows[start:start + 500])
        ingest_s = time.perf_counter() - t0

        # 2. some facts for the vector tier (batched embedding + one multi-row upsert per user)
        vector: Any = orchestrator.memories[MemoryType.VECTOR_DATABASE]
        for u, _ in ids:
            await vector.store_many([{"user_id": u, "content": f"{u} likes {rng.choice(WORDS)} and {w}"}
                                     for w in rng.sample(WORDS, 8)])
        await orchestrator.flush()

        def request(k: int) -> ContextRequest:
            u, s = ids[k % len(ids)]
            return ContextRequest(query=QUESTIONS[k % len(QUESTIONS)], session_id=s, user_id=u, max_total_tokens=2000)

        for k in range(30):  # warm-up: pools, caches, query embeddings
            await orchestrator.get_comprehensive_context(request(k))

        # 3. the per-turn read path, closed loop, and each tier's latency inside it
        totals: list[float] = []
        per_tier: dict[str, list[float]] = {}
        degraded = 0
        for k in range(turns):
            t0 = time.perf_counter()
            ctx = await orchestrator.get_comprehensive_context(request(k))
            totals.append((time.perf_counter() - t0) * 1000)
            degraded += bool(ctx.degraded)
            for tier, ms in ctx.latency_ms.items():
                if tier not in ("total", "compose"):
                    per_tier.setdefault(tier, []).append(ms)

        # 4. store_turn: returns once both messages are committed (embedding/extraction run in the background)
        writes: list[float] = []
        for k in range(min(turns, 100)):
            u, s = ids[k % len(ids)]
            t0 = time.perf_counter()
            await orchestrator.store_turn(session_id=s, user_id=u, user_message=f"Quick question {k} about "
                                          f"{rng.choice(WORDS)}?", assistant_message="A short answer.")
            writes.append((time.perf_counter() - t0) * 1000)
            await orchestrator.flush()  # not timed: keeps background work out of the next measurement

        print(f"data dir: {DATA_DIR}")
        print(f"corpus: {users} sessions x {messages} messages, {users * 8} vector memories, all six tiers\n")
        print(f"bulk ingest: {len(rows)} messages in {ingest_s:.2f} s = {len(rows) / ingest_s:,.0f} messages/s\n")
        print("| operation (ms) | n | p50 | p95 | p99 |")
        print("|---|---:|---:|---:|---:|")
        print(row("get_comprehensive_context", totals))
        for tier, samples in sorted(per_tier.items(), key=lambda kv: -statistics.median(kv[1])):
            print(row(f"  inside: {tier}", samples))
        print(row("store_turn (durable part)", writes))
        print(f"\ndegraded turns: {degraded} of {turns}")
    finally:
        await orchestrator.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.users, args.messages, args.turns))
