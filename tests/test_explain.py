"""``get_comprehensive_context(..., explain=True)``: why each candidate was kept or left out (Python and HTTP)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from service_fixtures import new_user  # noqa: F401  (the service fixtures below)

from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.stores import Stores
from memory_implementations.types import ContextRequest, MemoryType

pytest_plugins = ["service_fixtures"]

FACTS = [
    ("I moved to Lisbon last spring with my dog Rex.", "Lisbon is lovely! How is Rex settling in?"),
    ("My sister Ana is a marine biologist in Porto.", "What a fascinating job."),
    ("I am allergic to peanuts, please remember that.", "Noted: no peanuts in any recipe."),
    ("The weather was rainy all week.", "Sorry to hear that."),
]


async def test_every_candidate_has_a_fate_and_the_budget_adds_up(
    base_config: dict[str, Any], stores: Stores, uid: str
) -> None:
    orchestrator = MemoryOrchestrator({**base_config, "warm_up": False}, stores=stores)
    for user_message, reply in FACTS:
        await orchestrator.store_turn("s1", uid, user_message, reply)
    await orchestrator.flush()
    plain = await orchestrator.get_comprehensive_context(
        ContextRequest(query="Where do I live now?", user_id=uid, session_id="s2", max_total_tokens=120))
    assert plain.explanation is None and "explanation" not in plain.to_dict()  # only when asked
    ctx = await orchestrator.get_comprehensive_context(
        ContextRequest(query="Where do I live now?", user_id=uid, session_id="s2", max_total_tokens=120),
        explain=True)
    assert ctx.text == plain.text  # explaining changes nothing in the context itself
    ex = ctx.explanation
    assert ex is not None and ctx.to_dict()["explanation"] == ex
    assert ex["budget"]["max_total_tokens"] == 120
    assert ex["budget"]["unused"] == 120 - ctx.total_tokens
    vector = ex["sections"]["vector_search"]
    kept = [c for c in vector["candidates"] if c["status"] == "kept"]
    assert [c["id"] for c in kept] == [i["id"] for i in sorted(
        ctx.sections["vector_search"].items, key=lambda i: -i["score"])]  # kept = what the model sees
    assert vector["used"] == ctx.sections["vector_search"].tokens <= vector["allotment"]
    assert all(c["status"] in {"kept", "budget", "duplicate", "trimmed"} for c in vector["candidates"])
    # the vector tier's own search: every memory it returned, with the tier's cut and the scores
    search = ex["tiers"]["vector_database"]["search"]
    assert search and {"kept", "tier_budget"} >= {row["status"] for row in search}
    lisbon = next(row for row in search if "Lisbon last spring" in row["content"])
    assert lisbon["similarity"] > 0 and "vector" in lisbon["sources"]
    assert ex["tiers"]["vector_database"]["mode"] == "hybrid"
    assert {"latency_ms", "offered"} <= set(ex["tiers"]["entity_memory"])
    assert set(ex["entities"]) >= {"offered", "left_out"}
    await orchestrator.forget(uid)


async def test_a_duplicate_names_the_section_it_repeats(base_config: dict[str, Any], stores: Stores, uid: str) -> None:
    orchestrator = MemoryOrchestrator({**base_config, "warm_up": False, "enabled_memories": [
        MemoryType.CONVERSATION_BUFFER, MemoryType.VECTOR_DATABASE]}, stores=stores)
    await orchestrator.store_turn("s1", uid, "My favourite colour is teal.", "Teal is a great colour.")
    await orchestrator.flush()
    # same session: the message is in the recent conversation and also found by the vector search
    ctx = await orchestrator.get_comprehensive_context(
        ContextRequest(query="What is my favourite colour?", user_id=uid, session_id="s1"), explain=True)
    assert ctx.explanation is not None
    dups = [c for c in ctx.explanation["sections"]["vector_search"]["candidates"] if c["status"] == "duplicate"]
    assert dups and all(c["duplicate_of"] == "recent_conversation" for c in dups)
    assert any("teal" in c["content"].lower() for c in dups)
    await orchestrator.forget(uid)


def test_http_context_explains_when_asked(live, tenant):
    _, key = tenant
    sid = f"s-{uuid.uuid4().hex[:8]}"
    with live.client(key) as c:
        assert c.post("/v1/turns", json={"session_id": sid, "user_message": "I live in Lisbon with my dog Rex.",
                                         "assistant_message": "Lovely city."}).status_code == 201
        body: dict[str, Any] = {}
        for _ in range(50):  # the turn is embedded in the background
            r = c.post("/v1/context", json={"query": "Where do I live?", "session_id": f"{sid}-q", "explain": True})
            assert r.status_code == 200, r.text
            body = r.json()
            if any(row["status"] == "kept" for row in body["explanation"]["tiers"]["vector_database"]["search"]):
                break
            time.sleep(0.1)
        assert "Lisbon" in body["text"]
        assert body["explanation"]["sections"]["vector_search"]["candidates"]
        plain = c.post("/v1/context", json={"query": "Where do I live?", "session_id": f"{sid}-q"}).json()
        assert "explanation" not in plain
        bad = c.post("/v1/context", json={"query": "x", "session_id": sid, "explain": "yes please"})
        assert bad.status_code == 422 and "explain" in bad.text
