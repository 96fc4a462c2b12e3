"""EntityMemory on a real PostgreSQL with the offline rule-based extractor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from memory_implementations.errors import NotFound, ProviderError, ValidationError
from memory_implementations.memories.entity import EntityMemory, render_entity
from memory_implementations.memories.names import normalize_name, same_entity
from memory_implementations.providers.interfaces import Extraction
from memory_implementations.stores import Stores
from memory_implementations.types import MemoryType


@pytest.fixture
async def memory(base_config: dict[str, Any], stores: Stores) -> AsyncIterator[EntityMemory]:
    m = EntityMemory(base_config, stores=stores)
    await m.initialize()
    yield m


async def _count(stores: Stores, table: str, user_id: str) -> int:
    async with stores.pg.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s", (user_id,))
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


# --- names -------------------------------------------------------------------------------------------
def test_normalisation_and_similarity_rules() -> None:
    assert {normalize_name(n) for n in ("Acme Corp", "Acme Corporation", "ACME", "ACME, Inc.")} == {"acme"}
    assert normalize_name("Dr. Zoë Martín's") == "zoe martin"
    assert normalize_name("I.B.M.") == "ibm"
    assert same_entity("jonathan smith", "jonathon smith")
    assert not same_entity("bob smith", "robert smith")
    assert not same_entity("ana", "anna")


# --- extraction --------------------------------------------------------------------------------------
async def test_process_extracts_entities_attributes_and_relationships(memory: EntityMemory, uid: str) -> None:
    result = await memory.process(
        "My name is Ana Lopez. I work as a nurse at Mercy Hospital and I live in San Francisco.", user_id=uid
    )
    names = {(e["name"], e["type"]) for e in result.entities}
    assert {("User", "person"), ("Mercy Hospital", "organization"), ("San Francisco", "location")} <= names
    assert result.extractor == "rule-based" and not result.fallback

    user = await memory.get_entity("User", user_id=uid)
    assert user is not None
    assert user["attributes"]["job"] == "nurse"
    assert user["attributes"]["city"] == "San Francisco"
    assert "Ana Lopez" in user["aliases"]
    rels = {(r["type"], r["other"], r["direction"]) for r in user["relationships"]}
    assert ("works_at", "Mercy Hospital", "out") in rels
    assert ("lives_in", "San Francisco", "out") in rels
    # the user's alias resolves to the same entity
    by_alias = await memory.get_entity("ana lopez", user_id=uid)
    assert by_alias is not None and by_alias["id"] == user["id"]


async def test_store_schedules_background_extraction(memory: EntityMemory, stores: Stores, uid: str) -> None:
    ref = await memory.store(
        {"session_id": "s1", "user_id": uid, "role": "user", "content": "Carlos is my brother and he lives in Boston."}
    )
    assert ref.memory_type is MemoryType.ENTITY_MEMORY and ref.durable is False
    await memory.flush()
    carlos = await memory.get_entity("Carlos", user_id=uid)
    assert carlos is not None and carlos["type"] == "person"
    assert carlos["attributes"]["relation"] == "brother"
    assert await _count(stores, "memory_entity_relationships", uid) >= 1


async def test_store_accepts_bare_content_and_assistant_first_person_is_not_the_user(
    memory: EntityMemory, stores: Stores
) -> None:
    user = "default"
    await memory.clear(user_id=user)
    await memory.store({"content": "I live in Paris."})
    await memory.store({"content": "I live in Tokyo.", "role": "assistant"})
    await memory.flush()
    me = await memory.get_entity("User", user_id=user)
    assert me is not None and me["attributes"]["city"] == "Paris"
    assert await memory.get_entity("Tokyo", user_id=user) is not None
    await memory.clear(user_id=user)


# --- merge ---------------------------------------------------------------------------------------------
async def test_spellings_of_one_organisation_merge_into_one_row(memory: EntityMemory, stores: Stores, uid: str) -> None:
    await memory.process("I work at Acme Corporation.", user_id=uid)
    await memory.add_entity("ACME", "organization", user_id=uid)
    merged = await memory.add_entity("Acme Corp", "organization", user_id=uid)
    assert merged["created"] is False
    async with stores.pg.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*), max(mention_count) FROM memory_entities "
            "WHERE user_id = %s AND entity_type = 'organization'",
            (uid,),
        )
        count, mentions = await cur.fetchone()  # type: ignore[misc]
    assert (count, mentions) == (1, 3)


async def test_nicknames_merge_only_through_explicit_aliases(memory: EntityMemory, stores: Stores, uid: str) -> None:
    await memory.add_entity("Robert Smith", "person", user_id=uid)
    await memory.add_entity("Bob Smith", "person", user_id=uid)
    assert await _count(stores, "memory_entities", uid) == 2

    other = uid + "-aliased"
    robert = await memory.add_entity("Robert Smith", "person", user_id=other, aliases=["Bob Smith"])
    bob = await memory.add_entity("Bob Smith", "person", user_id=other)
    assert bob["id"] == robert["id"] and bob["mention_count"] == 2
    assert await _count(stores, "memory_entities", other) == 1
    await memory.clear(user_id=other)


async def test_spelling_variants_accents_and_first_names_merge(memory: EntityMemory, stores: Stores, uid: str) -> None:
    first = await memory.add_entity("Jonathan Smith", "person", user_id=uid)
    second = await memory.add_entity("Jonathon Smith", "person", user_id=uid)
    assert second["id"] == first["id"]
    assert "Jonathon Smith" in second["aliases"]
    zoe = await memory.add_entity("Zoë Martín", "person", user_id=uid)
    assert (await memory.add_entity("zoe martin", "person", user_id=uid))["id"] == zoe["id"]
    # a first name alone refers to the one person with that first name ...
    assert (await memory.add_entity("Zoe", "person", user_id=uid))["id"] == zoe["id"]
    # ... but a different short name stays apart, and a different type never fuzzy-merges
    await memory.add_entity("Ana", "person", user_id=uid)
    anna = await memory.add_entity("Anna", "person", user_id=uid)
    assert anna["name"] == "Anna" and anna["created"] is True
    assert await _count(stores, "memory_entities", uid) == 4


async def test_concurrent_upserts_are_race_safe(memory: EntityMemory, stores: Stores, uid: str) -> None:
    spellings = ["Acme Corp", "ACME", "Acme Corporation", "acme inc."] * 5
    await asyncio.gather(*(memory.add_entity(s, "organization", user_id=uid) for s in spellings))
    await memory.add_entity("Ana", "person", user_id=uid)
    await asyncio.gather(*(memory.add_relationship("Ana", "ACME", "works_at", user_id=uid) for _ in range(6)))
    async with stores.pg.connection() as conn:
        cur = await conn.execute(
            "SELECT mention_count FROM memory_entities WHERE user_id = %s AND normalized_name = 'acme'", (uid,)
        )
        assert [r[0] for r in await cur.fetchall()] == [20]
        cur = await conn.execute("SELECT weight FROM memory_entity_relationships WHERE user_id = %s", (uid,))
        assert [r[0] for r in await cur.fetchall()] == [6.0]


# --- attributes ----------------------------------------------------------------------------------------
async def test_newer_attribute_supersedes_older_and_history_keeps_it(memory: EntityMemory, uid: str) -> None:
    t0 = datetime(2024, 3, 1, tzinfo=UTC)
    await memory.process("I live in San Francisco.", user_id=uid, observed_at=t0)
    await memory.process(
        "I just moved to Dallas.", user_id=uid, observed_at=t0 + timedelta(days=30), source_message_id=77
    )
    await memory.process("Still in dallas, I live in Dallas.", user_id=uid, observed_at=t0 + timedelta(days=31))
    user = await memory.get_entity("User", user_id=uid)
    assert user is not None and user["attributes"]["city"] == "Dallas"
    history = await memory.get_attribute_history("User", user_id=uid, attribute="city")
    assert [h["value"] for h in history] == ["San Francisco"]  # the same value again is not a change
    assert history[0]["valid_from"].startswith("2024-03-01")
    assert history[0]["superseded_at"].startswith("2024-03-31")
    assert history[0]["source_message_id"] == 77
    rels = {(r["type"], r["other"]) for r in user["relationships"]}
    assert ("moved_to", "Dallas") in rels


async def test_direct_attribute_updates_keep_history(memory: EntityMemory, uid: str) -> None:
    await memory.add_entity("Ana", "person", user_id=uid, attributes={"job": "nurse", "city": "SF"})
    ana = await memory.add_entity("Ana", "person", user_id=uid, attributes={"Job": "doctor", "city": "sf"})
    assert ana["attributes"] == {"job": "doctor", "city": "SF"}
    history = await memory.get_attribute_history("Ana", user_id=uid)
    assert [(h["attribute"], h["value"]) for h in history] == [("job", "nurse")]
    with pytest.raises(NotFound) as err:
        await memory.get_attribute_history("Nobody", user_id=uid)
    assert err.value.field == "name"


# --- relationships ----------------------------------------------------------------------------------------
async def test_relationship_upsert_bumps_weight_and_validates_ends(memory: EntityMemory, uid: str) -> None:
    await memory.process("Carlos is my brother.", user_id=uid)
    await memory.process("Carlos is my brother.", user_id=uid)
    user = await memory.get_entity("User", user_id=uid)
    assert user is not None
    weights = {(r["type"], r["other"]): r["weight"] for r in user["relationships"]}
    assert weights[("has_brother", "Carlos")] == 2.0
    await memory.add_entity("Google", "organization", user_id=uid)
    rel = await memory.add_relationship("carlos", "GOOGLE", "Works At", user_id=uid, weight=0.5)
    assert (rel["type"], rel["source"], rel["target"], rel["weight"]) == ("works_at", "Carlos", "Google", 0.5)
    carlos = await memory.get_entity("Carlos", user_id=uid)
    assert carlos is not None
    assert ("works_at", "Google", "out") in {(r["type"], r["other"], r["direction"]) for r in carlos["relationships"]}
    assert ("has_brother", "User", "in") in {(r["type"], r["other"], r["direction"]) for r in carlos["relationships"]}
    with pytest.raises(NotFound) as err:
        await memory.add_relationship("Carlos", "Nowhere Inc", "works_at", user_id=uid)
    assert err.value.field == "target"


async def test_relationship_tracking_off_and_entity_types_filter(
    base_config: dict[str, Any], stores: Stores, uid: str
) -> None:
    m = EntityMemory(
        {**base_config, "relationship_tracking": False, "entity_types": ["person", "location"]}, stores=stores
    )
    await m.initialize()
    await m.process("I work at Mercy Hospital and I live in Boston. Carlos is my brother.", user_id=uid)
    assert await _count(stores, "memory_entity_relationships", uid) == 0
    listed = await m.list_entities(user_id=uid)
    assert {e["type"] for e in listed} == {"person", "location"}
    assert await m.get_entity("Mercy Hospital", user_id=uid) is None
    with pytest.raises(ValidationError) as err:
        await m.add_relationship("User", "Boston", "lives_in", user_id=uid)
    assert err.value.field == "relationship_tracking"


# --- importance and analytics ----------------------------------------------------------------------------
async def test_importance_uses_mentions_and_recency_decay(
    base_config: dict[str, Any], stores: Stores, uid: str
) -> None:
    m = EntityMemory(base_config, stores=stores, half_life_days=1.0)
    await m.initialize()
    now = datetime.now(UTC)
    for _ in range(4):
        await m.add_entity("Old Friend", "person", user_id=uid, observed_at=now - timedelta(days=10))
    await m.add_entity("New Friend", "person", user_id=uid, observed_at=now)
    await m.add_entity("Busy Friend", "person", user_id=uid, observed_at=now)
    await m.add_entity("Busy Friend", "person", user_id=uid, observed_at=now)
    ranked = [e["name"] for e in await m.list_entities(user_id=uid)]
    assert ranked == ["Busy Friend", "New Friend", "Old Friend"]
    old = await m.get_entity("Old Friend", user_id=uid)
    assert old is not None and old["mention_count"] == 4 and old["importance"] < 0.01


async def test_entity_analytics(memory: EntityMemory, uid: str) -> None:
    day1 = datetime(2024, 5, 1, 12, tzinfo=UTC)
    await memory.process("I work at Mercy Hospital and I live in Boston.", user_id=uid, observed_at=day1)
    await memory.process("Carlos is my brother.", user_id=uid, observed_at=day1 + timedelta(days=1))
    await memory.process("I live in Boston. I love hiking.", user_id=uid, observed_at=day1 + timedelta(days=1))
    a = await memory.get_entity_analytics(uid)
    assert a["user_id"] == uid
    assert a["entities_by_type"] == {"person": 2, "location": 1, "organization": 1, "concept": 1}
    assert a["total_entities"] == 5
    assert a["relationships_by_type"]["lives_in"] == 1
    assert a["relationships_by_type"]["has_brother"] == 1
    assert a["total_relationships"] == sum(a["relationships_by_type"].values())
    assert a["top_entities"][0]["name"] == "User"  # mentioned in every message
    assert a["growth"] == [
        {"date": "2024-05-01", "new_entities": 3, "cumulative": 3},
        {"date": "2024-05-02", "new_entities": 2, "cumulative": 5},
    ]
    empty = await memory.get_entity_analytics(uid + "-nobody")
    assert empty["total_entities"] == 0 and empty["growth"] == [] and empty["top_entities"] == []


# --- context ----------------------------------------------------------------------------------------------
async def test_get_context_returns_entity_named_by_alias_first(memory: EntityMemory, uid: str) -> None:
    await memory.add_entity(
        "Robert Smith", "person", user_id=uid, aliases=["Bobby"], attributes={"job": "pilot", "city": "Denver"}
    )
    await memory.add_entity("Skyways Airlines", "organization", user_id=uid)
    await memory.add_relationship("Robert Smith", "Skyways Airlines", "works_at", user_id=uid)
    for i in range(5):
        await memory.add_entity(f"Popular Topic {i}", "concept", user_id=uid)
        await memory.add_entity(f"Popular Topic {i}", "concept", user_id=uid)
    ctx = await memory.get_context({"query": "What does bobby do these days?", "user_id": uid})
    first = ctx.items[0]
    assert first["section"] == "entities" and first["matched"] is True
    assert first["content"] == ("Robert Smith (person, aka Bobby): job=pilot; city=Denver; works_at Skyways Airlines")
    assert first["score"] > max(i["score"] for i in ctx.items[1:])
    assert ctx.get("matched_entities") == ["Robert Smith"]
    assert len(ctx.items) == 7 and all({"section", "content", "score", "id"} <= set(i) for i in ctx.items)
    assert ctx.token_count == memory.tokenizer.count(ctx.text)

    small = await memory.get_context({"query": "bobby", "user_id": uid}, max_tokens=30)
    assert small.truncated and small.items[0]["matched"]
    assert memory.tokenizer.count(small.text) <= 30


async def test_find_entities_in_text_by_name_alias_and_first_name(memory: EntityMemory, uid: str) -> None:
    await memory.add_entity("Ana Lopez", "person", user_id=uid)
    await memory.add_entity("Acme Corporation", "organization", user_id=uid, aliases=["The Roadrunner Company"])
    await memory.add_entity("Boston", "location", user_id=uid)
    found = await memory.find_entities_in_text("Did ana meet the roadrunner folks at ACME Inc?", uid)
    assert {e["name"] for e in found} == {"Ana Lopez", "Acme Corporation"}
    assert await memory.find_entities_in_text("nothing relevant here", uid) == []


async def test_tenant_isolation(memory: EntityMemory, stores: Stores, uid: str) -> None:
    other = uid + "-other"
    await memory.add_entity("Secret Project", "concept", user_id=uid, attributes={"status": "hidden"})
    await memory.add_entity("Public Thing", "concept", user_id=other)
    ctx = await memory.get_context({"query": "secret project", "user_id": other})
    assert [i["entity"]["name"] for i in ctx.items] == ["Public Thing"]
    assert await memory.get_entity("Secret Project", user_id=other) is None
    assert await memory.find_entities_in_text("secret project", other) == []
    assert (await memory.get_entity_analytics(other))["total_entities"] == 1
    assert await memory.clear(session_id="any-session", user_id=other) == 0  # entities outlive a session
    with pytest.raises(ValidationError) as err:
        await memory.clear()
    assert err.value.field == "user_id"
    assert await memory.clear(user_id=other) == 1
    assert await _count(stores, "memory_entities", uid) == 1


# --- validation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"content": ""}, "content"),
        ({"content": 42}, "content"),
        ({"user_id": "u"}, "content"),
        ({"content": "I live in Paris.", "user_id": 7}, "user_id"),
        ({"content": "I live in Paris.", "role": "robot"}, "role"),
        ({"content": "I live in Paris.", "message_id": "x"}, "message_id"),
        ({"content": "I live in Paris.", "created_at": "yesterday"}, "created_at"),
        (["not", "a", "mapping"], "item"),
    ],
)
async def test_store_rejects_bad_items_naming_the_field(
    memory: EntityMemory, stores: Stores, uid: str, item: Any, field: str
) -> None:
    if isinstance(item, dict) and "user_id" not in item:
        item = {**item, "user_id": uid}
    submitted = stores.worker.stats.submitted
    with pytest.raises(ValidationError) as err:
        await memory.store(item)
    assert err.value.field == field
    assert stores.worker.stats.submitted == submitted
    await memory.flush()
    assert await _count(stores, "memory_entities", uid) == 0


async def test_add_entity_validation_writes_nothing(memory: EntityMemory, stores: Stores, uid: str) -> None:
    bad: Sequence[tuple[dict[str, Any], str]] = [
        ({"name": "", "entity_type": "person"}, "name"),
        ({"name": "X", "entity_type": "spaceship"}, "entity_type"),
        ({"name": "X", "entity_type": "person", "aliases": "Y"}, "aliases"),
        ({"name": "X", "entity_type": "person", "attributes": ["job"]}, "attributes"),
    ]
    for kwargs, field in bad:
        with pytest.raises(ValidationError) as err:
            await memory.add_entity(user_id=uid, **kwargs)
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        await memory.add_relationship("A", "B", "knows", user_id=uid, weight=0)
    assert err.value.field == "weight"
    assert await _count(stores, "memory_entities", uid) == 0


# --- extractor failure -------------------------------------------------------------------------------------
class _BrokenExtractor:
    name = "broken-llm"

    def __init__(self) -> None:
        self.calls = 0

    async def extract(
        self, text: str, *, entity_types: Sequence[str], known_entities: Sequence[str] = ()
    ) -> Extraction:
        self.calls += 1
        raise ProviderError("model down", status=500, retryable=True)


async def test_provider_failure_falls_back_to_rule_based_extractor(
    base_config: dict[str, Any], stores: Stores, uid: str
) -> None:
    broken = _BrokenExtractor()
    m = EntityMemory(base_config, stores=stores, extractor=broken)
    await m.initialize()
    result = await m.process("I work at Mercy Hospital.", user_id=uid)
    assert broken.calls == 1 and result.fallback and result.extractor == "rule-based"
    assert await m.get_entity("Mercy Hospital", user_id=uid) is not None
    assert m.stats["fallbacks"] == 1
    health = await m.health_check()
    assert health["status"] == "healthy" and health["details"]["extractor"] == "broken-llm"


def test_render_entity_line() -> None:
    line = render_entity(
        {
            "name": "Ana",
            "type": "person",
            "aliases": [],
            "attributes": {"job": "nurse", "city": "Dallas"},
            "relationships": [
                {"type": "works_at", "other": "Mercy Hospital", "direction": "out"},
                {"type": "has_sister", "other": "User", "direction": "in"},
            ],
        }
    )
    assert line == "Ana (person): job=nurse; city=Dallas; works_at Mercy Hospital; User has_sister it"
