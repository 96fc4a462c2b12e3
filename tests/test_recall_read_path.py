"""The read path's recall: everything said is retrievable, retrieval fills the budget, hybrid in one
statement, partner turns and dates around a hit, entities that earn their place, newer facts first.

Real Redis and PostgreSQL + pgvector, the local MiniLM embedder, the rule-based extractor.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from memory_implementations import ContextRequest, MemoryOrchestrator, MemoryType
from memory_implementations.errors import ValidationError
from memory_implementations.indexing import SHORT_MESSAGE_WORDS, turn_index_items
from memory_implementations.orchestrator import relevant_entities
from memory_implementations.stores import Stores
from memory_implementations.types import Message

pytest_plugins = ("chat_helpers",)

ALL = [MemoryType.CONVERSATION_SUMMARY, MemoryType.VECTOR_DATABASE, MemoryType.ENTITY_MEMORY,
       MemoryType.WORKING_MEMORY, MemoryType.KEY_VALUE_STORE]
START = datetime(2025, 3, 14, 18, 30, tzinfo=UTC)


async def vector_rows(stores: Stores, uid: str) -> list[dict[str, Any]]:
    async with stores.pg.connection() as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        await cur.execute("SELECT content, metadata, created_at FROM memory_vectors WHERE user_id = %s "
                          "ORDER BY created_at, (metadata->>'message_id')::bigint", (uid,))
        return list(await cur.fetchall())


@pytest.fixture
async def orch(make_orchestrator: Any) -> MemoryOrchestrator:
    o: MemoryOrchestrator = await make_orchestrator(ALL)
    return o


# 1. everything said is retrievable ------------------------------------------------------------------
async def test_both_sides_and_short_messages_are_indexed_with_their_time(
    orch: MemoryOrchestrator, stores: Stores, uid: str, sid: str
) -> None:
    await orch.store_turn(sid, uid, "Which city should I pick for the conference?",
                          "I would pick Lisbon: direct flights and a lovely venue by the river.", created_at=START)
    await orch.store_turn(sid, uid, "ok", "Great, I will book it.", created_at=START + timedelta(minutes=2))
    await orch.flush()
    rows = await vector_rows(stores, uid)
    assert [r["content"] for r in rows] == [
        "Which city should I pick for the conference?",
        "I would pick Lisbon: direct flights and a lovely venue by the river.",
        "ok",
        "Great, I will book it.",
    ]
    assert [r["metadata"]["role"] for r in rows] == ["user", "assistant", "user", "assistant"]
    assert rows[0]["created_at"] == START and rows[3]["created_at"] == START + timedelta(minutes=2)
    assert [p["content"] for p in rows[1]["metadata"]["partners"]] == ["Which city should I pick for the conference?"]
    assert isinstance(rows[1]["metadata"]["message_id"], int)
    assert rows[1]["metadata"]["partners"][0]["message_id"] == rows[1]["metadata"]["message_id"] - 1


def test_short_messages_are_embedded_with_their_partner() -> None:
    q = Message(session_id="s", role="user", content="Can you suggest a colour for the car?")
    a = Message(session_id="s", role="assistant", content="Blue.")
    assert len(a.content.split()) < SHORT_MESSAGE_WORDS
    items = turn_index_items([q, a], [7, 8])
    assert "embed_text" not in items[0]
    assert items[1]["embed_text"] == f"{q.content}\n{a.content}" and items[1]["content"] == "Blue."
    assert items[1]["metadata"]["partners"] == [{"role": "user", "content": q.content, "message_id": 7,
                                                 "created_at": None}]
    assert "partners" not in turn_index_items([a], [8])[0]["metadata"]


def test_a_user_message_answers_the_previous_assistant_question() -> None:
    before = Message(session_id="s", role="user", content="We painted the nursery!", id=4)
    asked = Message(session_id="s", role="assistant", content="Which colour did you go with for the nursery?", id=5)
    answer = Message(session_id="s", role="user", content="Oh, teal.")
    reply = Message(session_id="s", role="assistant", content="Lovely, teal is calming.")
    items = turn_index_items([answer, reply], [7, 8], previous=[asked, before])
    assert [p["content"] for p in items[0]["metadata"]["partners"]] == [asked.content, reply.content]
    assert items[0]["embed_text"] == f"{asked.content}\nOh, teal."
    # the question is indexed again with its answer, so a hit on the question brings the answer
    assert len(items) == 3 and items[2]["content"] == asked.content and items[2]["metadata"]["message_id"] == 5
    assert [p["content"] for p in items[2]["metadata"]["partners"]] == [before.content, answer.content]
    statement = Message(session_id="s", role="assistant", content="Good night.", id=5)
    plain = turn_index_items([answer, reply], [7, 8], previous=[statement])
    assert len(plain) == 2 and [p["content"] for p in plain[0]["metadata"]["partners"]] == [reply.content]


async def test_an_answer_in_the_next_turn_is_found_with_its_question(
    orch: MemoryOrchestrator, uid: str, sid: str
) -> None:
    await orch.store_turn(sid, uid, "We finally painted the nursery this weekend!",
                          "How exciting! Which colour did you go with for the nursery walls?", created_at=START)
    await orch.store_turn(sid, uid, "Oh, teal.", "Teal is a calming choice.", created_at=START + timedelta(minutes=1))
    for i in range(10):
        await orch.store_turn(sid, uid, f"Unrelated errand number {i}: groceries and the post office.")
    await orch.flush()
    ctx = await orch.get_comprehensive_context(ContextRequest(
        query="What colour are the nursery walls?", session_id=f"{sid}-q", user_id=uid, max_total_tokens=400))
    text = ctx.text
    assert "- User: Oh, teal." in text and "Which colour did you go with for the nursery walls?" in text
    items = ctx.sections["vector_search"].items
    teal = next(i for i in items if i["content"] == "Oh, teal.")
    assert all(teal["score"] > i["score"] for i in items if i["content"].startswith("Unrelated errand"))


async def test_store_turn_rejects_a_bad_created_at(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    with pytest.raises(ValidationError) as err:
        await orch.store_turn(sid, uid, "hello there my friend", created_at="last tuesday")
    assert err.value.field == "created_at"
    with pytest.raises(ValidationError):
        await orch.store_turn(sid, uid, "hello there my friend", created_at=12)  # type: ignore[arg-type]


# 2. retrieval fills the budget --------------------------------------------------------------------
FACTS = [f"My {thing} is {value}." for thing, value in [
    ("favourite colour", "teal"), ("dentist", "Dr. Okafor"), ("gym", "Iron Temple"), ("car", "a 2014 Civic"),
    ("bank", "Northwind Credit"), ("landlord", "Mrs. Petrakis"), ("barber", "Sal on 5th"), ("cat", "Miso"),
    ("bike", "a red Trek"), ("phone", "a Pixel 7"), ("laptop", "a ThinkPad"), ("street", "Alder Lane"),
    ("yoga teacher", "Ines"), ("pharmacy", "Corner Drugs"), ("guitar", "a Yamaha acoustic"),
    ("book club", "the Thursday Readers"), ("favourite tea", "oolong"), ("running shoe", "a Brooks Ghost"),
    ("plumber", "Dario"), ("favourite band", "Wilco"), ("coffee shop", "Bean Counter"), ("bakery", "Flour Power"),
    ("vet", "Dr. Hahn"), ("tailor", "Mr. Ito"), ("insurer", "Harbor Mutual"), ("mechanic", "Quick Lube Joe"),
]]


async def test_a_new_session_gives_long_term_memory_the_budget(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    for i, fact in enumerate(FACTS):
        await orch.store_turn(sid, uid, fact, f"Noted, thank you for telling me (fact {i}).",
                              created_at=START + timedelta(days=i))
    await orch.flush()
    ctx = await orch.get_comprehensive_context(ContextRequest(
        query="What are my favourite things?", session_id=f"{sid}-new", user_id=uid, max_total_tokens=1000))
    section = ctx.sections["vector_search"]
    assert len(section.items) > 20  # far more than a fixed top-5
    assert ctx.token_counts["text"] > 600  # most of the budget is used, none exceeded
    assert max(ctx.token_counts.values()) <= 1000
    assert "favourite colour is teal" in ctx.text and "favourite band is Wilco" in ctx.text


async def test_max_results_stays_a_cap(make_orchestrator: Any, uid: str, sid: str) -> None:
    o = await make_orchestrator(ALL, max_results=3)
    for fact in FACTS[:10]:
        await o.store_turn(sid, uid, fact)
    await o.flush()
    ctx = await o.get_comprehensive_context(ContextRequest(
        query="my things", session_id=f"{sid}-new", user_id=uid, max_total_tokens=2000))
    hits = [i for i in ctx.sections["vector_search"].items if i.get("kind") != "partner"]
    assert 0 < len(hits) <= 3


# 3. hybrid by default, one statement --------------------------------------------------------------
async def test_hybrid_is_one_statement_and_finds_the_rare_word(orch: MemoryOrchestrator, stores: Stores,
                                                               uid: str, sid: str) -> None:
    await orch.store_turn(sid, uid, "The wifi password at the cabin is PELICAN-4471.", created_at=START)
    for i in range(15):
        await orch.store_turn(sid, uid, f"Network troubleshooting note {i}: restart the router and modem.")
    await orch.flush()
    vector = orch.memories[MemoryType.VECTOR_DATABASE]
    _, backend = await vector._ready()  # type: ignore[attr-defined]
    calls: list[str] = []
    for name in ("search", "text_search", "hybrid_search"):
        real = getattr(backend, name)

        async def spy(*a: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            calls.append(_name)
            return await _real(*a, **kw)

        setattr(backend, name, spy)
    try:
        ctx = await orch.get_comprehensive_context(ContextRequest(
            query="what is the PELICAN-4471 code for?", session_id=f"{sid}-q", user_id=uid, max_total_tokens=300))
    finally:
        for name in ("search", "text_search", "hybrid_search"):
            delattr(backend, name)
    assert calls == ["hybrid_search"]
    top = max(ctx.sections["vector_search"].items, key=lambda i: i["score"])
    assert top["content"] == "The wifi password at the cabin is PELICAN-4471."
    assert set(top["sources"]) == {"vector", "text"}


# 4. partner turns and dates -----------------------------------------------------------------------
async def test_a_hit_brings_its_partner_turn_and_its_date(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    await orch.store_turn(sid, uid, "Can you recommend a novel for my flight?",
                          "Try 'The Remains of the Day' by Kazuo Ishiguro: quiet, short and moving.",
                          created_at=START)
    await orch.store_turn(sid, uid, "Thanks, what about podcasts?", "Maybe later.",
                          created_at=START + timedelta(hours=1))
    await orch.flush()
    ctx = await orch.get_comprehensive_context(ContextRequest(
        query="Which book did you suggest by Ishiguro?", session_id=f"{sid}-q", user_id=uid, max_total_tokens=800,
        filters={"k": 1}))
    lines = ctx.text.splitlines()
    answer = next(i for i, line in enumerate(lines) if "Remains of the Day" in line)
    assert lines[answer].startswith("- Assistant: Try 'The Remains")
    assert lines[answer - 1] == "- User: Can you recommend a novel for my flight?"  # its question
    assert lines[answer - 2] == "[2025-03-14]"  # the day, once for its lines
    hit, partner = sorted(ctx.sections["vector_search"].items, key=lambda i: i.get("kind") == "partner")
    assert ctx.sections["vector_search"].contents == [partner["content"], hit["content"]]
    assert (partner["kind"], partner["partner_of"]) == ("partner", hit["id"]) and partner["score"] < hit["score"]
    assert "podcasts" not in ctx.text


async def test_partner_turns_are_the_first_to_go_when_the_budget_is_short(
    orch: MemoryOrchestrator, uid: str, sid: str
) -> None:
    for i, fact in enumerate(FACTS[:12]):
        await orch.store_turn(sid, uid, fact, f"Got it, I will remember that detail number {i} for you.")
    await orch.flush()
    ctx = await orch.get_comprehensive_context(ContextRequest(
        query="my favourite colour, tea and band", session_id=f"{sid}-q", user_id=uid, max_total_tokens=160))
    items = ctx.sections["vector_search"].items
    assert items and max(ctx.token_counts.values()) <= 160
    hits = [i for i in items if i.get("kind") != "partner"]
    partners = [i for i in items if i.get("kind") == "partner"]
    assert len(hits) > len(partners)
    assert "favourite colour is teal" in ctx.text


# 5. entities earn their place ---------------------------------------------------------------------
def test_relevant_entities_keeps_named_or_retrieved_ones_only() -> None:
    def ent(name: str, matched: bool = False, aliases: list[str] | None = None, bare: bool = False) -> dict[str, Any]:
        return {"content": f"{name} (person)", "matched": matched,
                "entity": {"name": name, "aliases": aliases or [], "attributes": {} if bare else {"job": "nurse"}}}

    entities = [ent("Ana", matched=True), ent("Raj"), ent("Bo"), ent("Katherine", aliases=["Kate"]), ent("Li"),
                ent("Vera", bare=True), ent("User")]
    others = {"vector_search": [{"content": "Raj and I went hiking"}, {"content": "Kate called me"},
                                {"content": "Vera sent photos"}],
              "entities": entities, "recent_conversation": [{"content": "Bonnie is here"}]}
    kept = relevant_entities(entities, others)
    assert [e["entity"]["name"] for e in kept] == ["Ana", "Raj", "Katherine"]  # "Bo" is not "Bonnie"; Vera is bare
    asked = relevant_entities(entities, others, query="Where do I live?")
    assert [e["entity"]["name"] for e in asked] == ["Ana", "Raj", "Katherine", "User"]


async def test_unrelated_entities_stay_out_of_the_context(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    await orch.store_turn(sid, uid, "My friend Tom plays tennis every Sunday morning.")
    await orch.store_turn(sid, uid, "My sister Maria works at Google in Seattle.")
    for i in range(14):
        await orch.store_turn(sid, uid, f"Maria told me her work at Google is busy this quarter, week {i}.")
    await orch.flush()
    entity = orch.memories[MemoryType.ENTITY_MEMORY]
    assert "Tom" in [e["name"] for e in await entity.list_entities(user_id=uid)]  # type: ignore[attr-defined]
    ctx = await orch.get_comprehensive_context(ContextRequest(
        query="Where does Maria work?", session_id=f"{sid}-q", user_id=uid, max_total_tokens=2000))
    names = [i["entity"]["name"] for i in ctx.sections["entities"].items]
    assert "Maria" in names and "Tom" not in names


# 6. current facts win -----------------------------------------------------------------------------
async def test_a_changed_fact_shows_the_current_value_first(orch: MemoryOrchestrator, uid: str, sid: str) -> None:
    await orch.store_turn(sid, uid, "I live in Chicago with my two cats.", "Chicago is a great city!",
                          created_at=START)
    await orch.store_turn(f"{sid}-2", uid, "I'm thinking of moving to Denver next spring.", "Exciting plan!",
                          created_at=START + timedelta(days=30))
    await orch.store_turn(f"{sid}-3", uid, "We moved to Denver in March, I live in Denver now.",
                          "Welcome to Colorado!", created_at=START + timedelta(days=120))
    await orch.flush()
    ctx = await orch.get_comprehensive_context(ContextRequest(
        query="Where do I live now?", session_id=f"{sid}-q", user_id=uid, max_total_tokens=1000))
    lines = ctx.sections["vector_search"].contents
    moved = next(i for i, c in enumerate(lines) if c.startswith("We moved to Denver"))
    chicago = next(i for i, c in enumerate(lines) if c.startswith("I live in Chicago"))
    assert moved < chicago  # newest first
    text = ctx.text
    assert text.index("[2025-07-12]\n- User: We moved to Denver") < text.index("[2025-03-14]\n- User: I live in Chicago")
    user_line = next((c for c in ctx.sections["entities"].contents if c.startswith("User")), "")
    assert "city=Denver (since 2025-07-12, earlier Chicago)" in user_line


async def test_a_long_conversation_asks_long_term_memory_for_less(
    orch: MemoryOrchestrator, uid: str, sid: str
) -> None:
    for i in range(12):
        await orch.store_turn(sid, uid, f"Here is a long message number {i} about my garden, " + "tomatoes " * 40,
                              "Thanks, noted. " + "Beans and peppers grow well too. " * 8)
    await orch.flush()
    vector = orch.memories[MemoryType.VECTOR_DATABASE]
    asked: list[int | None] = []
    real = vector.get_steered_context  # type: ignore[attr-defined]

    async def spy(query: Any, *, max_tokens: int | None = None, entities: Any) -> Any:
        asked.append(max_tokens)
        return await real(query, max_tokens=max_tokens, entities=entities)

    vector.get_steered_context = spy  # type: ignore[attr-defined]
    try:
        request = ContextRequest(query="what grows in my garden?", session_id=sid, user_id=uid, max_total_tokens=2000)
        first = await orch.get_comprehensive_context(request)
        await orch.get_comprehensive_context(request)
        fresh = await orch.get_comprehensive_context(ContextRequest(
            query="what grows in my garden?", session_id=f"{sid}-new", user_id=uid, max_total_tokens=2000))
        await orch.get_comprehensive_context(replace(request, max_total_tokens=6000))
    finally:
        del vector.get_steered_context
    conversation = first.sections["recent_conversation"].tokens + first.sections["summary"].tokens
    assert conversation > 600  # the session's own messages take most of the budget
    assert asked[0] == 2000 and asked[2] == 2000  # a first read, and a new session: the whole budget
    assert asked[1] is not None and asked[1] < 2000  # then what the conversation leaves (with a margin)
    assert asked[3] is not None and asked[3] > 4000  # a larger budget leaves more room, not the same
    assert fresh.sections["vector_search"].tokens > first.sections["vector_search"].tokens
