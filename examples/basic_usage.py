"""Basic usage of each memory tier on its own (the seed's API), offline, on the embedded servers.

Run:  python examples/basic_usage.py

No Redis, PostgreSQL or API key needed: with no ``redis_url`` / ``database_url`` the tiers start an
embedded Redis and PostgreSQL + pgvector. Data goes to ``$MEMORY_DATA_DIR`` when set, otherwise to a
fresh temporary directory, deleted when the script exits (your own data directory is never touched).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
import uuid

from memory_implementations.logging import configure_logging
from memory_implementations.memories.buffer import ConversationBufferMemory
from memory_implementations.memories.entity import EntityMemory
from memory_implementations.memories.kv import KeyValueStoreMemory
from memory_implementations.memories.summary import ConversationSummaryMemory
from memory_implementations.memories.vector import VectorDatabaseMemory
from memory_implementations.memories.working import WorkingMemory

DATA_DIR = os.environ.get("MEMORY_DATA_DIR") or tempfile.mkdtemp(prefix="mi-example-")
if not os.environ.get("MEMORY_DATA_DIR"):  # our own scratch dir (~40 MB): delete it when the script exits
    # registered before the embedded servers start, so it runs after their exit handlers have stopped them
    atexit.register(shutil.rmtree, DATA_DIR, ignore_errors=True)
USER = f"ada-{uuid.uuid4().hex[:8]}"  # a fresh user per run, so repeated runs do not mix
BASE = {"data_dir": DATA_DIR, "embedding_dim": 384, "llm_provider": "offline"}

CONVERSATION = [
    ("user", "Hi, my name is Ada and I work as a data engineer at Northwind Logistics."),
    ("assistant", "Nice to meet you, Ada! How can I help today?"),
    ("user", "I live in Lisbon and my dog is called Biscuit."),
    ("assistant", "Lisbon is lovely. Say hi to Biscuit!"),
    ("user", "Our Kafka consumer lags behind during the nightly batch."),
    ("assistant", "Let's look at partition counts and consumer concurrency."),
    ("user", "We have 12 partitions and 3 consumers."),
    ("assistant", "Scale consumers up to 12 so each partition has one."),
]


def heading(title: str) -> None:
    print(f"\n=== {title} ===")


async def buffer_demo() -> None:
    heading("ConversationBufferMemory: the recent window")
    memory = ConversationBufferMemory({**BASE, "window_size": 4, "window_type": "turns"})
    await memory.initialize()
    for role, content in CONVERSATION:
        await memory.store({"session_id": "chat-1", "user_id": USER, "role": role, "content": content})
    context = await memory.get_context({"session_id": "chat-1", "user_id": USER})
    for m in context.get("messages", []):
        print(f"  {m['role']:>9}: {m['content']}")
    stats = await memory.get_session_stats("chat-1", user_id=USER)
    print(f"  stored {stats['message_count']} messages, window shows {len(context['messages'])}")
    await memory.close()


async def summary_demo() -> None:
    heading("ConversationSummaryMemory: recent turns + a summary of everything older")
    memory = ConversationSummaryMemory({**BASE, "buffer_window_size": 4, "max_total_tokens": 600})
    await memory.initialize()
    for role, content in CONVERSATION:
        await memory.store({"session_id": "chat-2", "user_id": USER, "role": role, "content": content})
    await memory.flush()  # summaries are written by a background worker; wait for it in a script
    context = await memory.get_context({"session_id": "chat-2", "user_id": USER})
    print(f"  summary: {context.get('summary') or '(none yet)'}")
    for m in context.get("messages", []):
        print(f"  {m['role']:>9}: {m['content']}")
    await memory.close()


async def vector_demo() -> None:
    heading("VectorDatabaseMemory: semantic search")
    memory = VectorDatabaseMemory({**BASE, "similarity_threshold": 0.2})
    await memory.initialize()
    facts = [
        "Ada's dog is a rescue greyhound called Biscuit.",
        "Ada prefers concise answers with Python examples.",
        "The nightly batch job runs at 02:00 UTC on the Kafka cluster.",
        "Ada is allergic to peanuts.",
    ]
    await memory.store_many([{"content": f, "user_id": USER} for f in facts])
    for question in ("What pet does Ada have?", "Is there any food Ada must avoid?"):
        hits = await memory.search(question, user_id=USER, k=2)
        print(f"  Q: {question}")
        for hit in hits:
            print(f"     {hit.score:.2f}  {hit.content}")
    await memory.close()


async def working_demo() -> None:
    heading("WorkingMemory: scratch items and a reasoning chain")
    memory = WorkingMemory({**BASE, "capacity_limit": 3, "eviction_policy": "importance"})
    await memory.initialize()
    ns = f"task-{USER}"
    items = [("weather", "it is sunny", 0.1), ("goal", "Fix consumer lag", 0.9),
             ("partitions", "12 partitions", 0.6), ("consumers", "3 consumers", 0.5)]
    for key, content, importance in items:
        await memory.store({"namespace": ns, "user_id": USER, "key": key, "content": content, "importance": importance})
    await memory.add_reasoning_step(ns, "thought", "Lag grows because consumers < partitions", user_id=USER)
    await memory.add_reasoning_step(ns, "action", "Scale the consumer group to 12", user_id=USER)
    context = await memory.get_context({"namespace": ns, "user_id": USER})
    print("  " + context["text"].replace("\n", "\n  "))
    stats = await memory.get_namespace_stats(ns, user_id=USER)
    print(f"  items kept: {stats['count']} of capacity {stats['capacity']}; evictions: {stats['evictions']}")
    await memory.close()


async def kv_demo() -> None:
    heading("KeyValueStoreMemory: preferences, with the history of superseded values")
    memory = KeyValueStoreMemory({**BASE, "namespace": "profile"})
    await memory.initialize()
    await memory.set("city", "Lisbon", user_id=USER)
    await memory.set("answer_style", {"length": "concise", "language": "Python"}, user_id=USER)
    await memory.set("city", "Berlin", user_id=USER)  # the user moved: supersedes Lisbon
    print(f"  city now: {await memory.get('city', user_id=USER)}")
    for old in await memory.history("city", user_id=USER):
        print(f"  city was: {old['value']} (version {old['version']}, superseded {old['superseded_at'][:19]})")
    print(f"  answer_style: {await memory.get('answer_style', user_id=USER)}")
    await memory.close()


async def entity_demo() -> None:
    heading("EntityMemory: people, organisations, places and their relationships")
    memory = EntityMemory(BASE)
    await memory.initialize()
    await memory.process("My name is Ada and I work at Northwind Logistics. I live in Lisbon.", user_id=USER)
    await memory.process("Maria is my sister. I moved to Berlin last week.", user_id=USER)
    context = await memory.get_context({"query": "Where does Ada live and who is Maria?", "user_id": USER})
    print("  " + context["text"].replace("\n", "\n  "))
    analytics = await memory.get_entity_analytics(USER)
    print(f"  entities: {analytics['total_entities']}, by type: {analytics['entities_by_type']}, "
          f"attribute changes: {analytics['attribute_changes']}")
    for change in await memory.get_attribute_history("User", user_id=USER, attribute="city"):
        print(f"  User.city was {change['value']} until {change['superseded_at'][:19]}")
    await memory.close()


async def main() -> None:
    configure_logging("WARNING")  # keep the library's info logs off the example's output
    print(f"data dir: {DATA_DIR}  (embedded Redis + PostgreSQL; offline providers)")
    await buffer_demo()
    await summary_demo()
    await vector_demo()
    await working_demo()
    await kv_demo()
    await entity_demo()
    print("\ndone")


if __name__ == "__main__":
    asyncio.run(main())
