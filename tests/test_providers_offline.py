"""The offline summariser and rule-based entity extractor, and the factories' offline choices."""

from __future__ import annotations

from protocol_server import FAST_RETRIES

from memory_implementations.config import MemoryConfig
from memory_implementations.errors import ProviderError
from memory_implementations.providers import (
    ExtractiveSummarizer,
    RetryPolicy,
    RuleBasedEntityExtractor,
    TransientProviderError,
    build_entity_extractor,
    build_llm,
    build_summarizer,
)
from memory_implementations.providers.failures import http_failure, parse_retry_after
from memory_implementations.tokens import get_tokenizer
from memory_implementations.types import Message

ALL_TYPES = ["person", "organization", "location", "concept"]


def conversation() -> list[Message]:
    turns = [
        ("user", "Hi there!"),
        ("assistant", "Hello! How can I help you today?"),
        ("user", "My name is Ana and I work as a nurse. I moved to Dallas last month."),
        ("assistant", "Nice to meet you, Ana! Dallas is a great city with a lot of hospitals and good food."),
        ("user", "What's the weather usually like there in summer?"),
        ("assistant", "Summers in Dallas are hot, often above 95F, with humid afternoons and occasional storms."),
        ("user", "I prefer tea to coffee, by the way. Can you recommend a tea shop?"),
        ("assistant", "Sure! There are several popular tea shops downtown near Deep Ellum."),
        ("user", "ok thanks"),
    ]
    return [Message("s1", role, content) for role, content in turns]


async def test_extractive_summary_keeps_facts_within_budget():
    summarizer = ExtractiveSummarizer(tokenizer_model="gpt-4o")
    tokenizer = get_tokenizer("gpt-4o")
    summary = await summarizer.summarize(None, conversation(), max_tokens=40)
    assert 0 < tokenizer.count(summary) <= 40
    assert "User: My name is Ana and I work as a nurse." in summary
    assert "tea" in summary
    assert "Hi there" not in summary and "ok thanks" not in summary
    assert all(line.startswith(("User: ", "Assistant: ")) for line in summary.splitlines())


async def test_extractive_summary_folds_previous_summary():
    summarizer = ExtractiveSummarizer()
    first = await summarizer.summarize(None, conversation(), max_tokens=60)
    follow_up = [
        Message("s1", "user", "My sister Maria is visiting next week."),
        Message("s1", "assistant", "That sounds lovely! Do you have plans?"),
        Message("s1", "user", "Not yet."),
    ]
    second = await summarizer.summarize(first, follow_up, max_tokens=60)
    assert "My name is Ana" in second and "My sister Maria is visiting next week." in second
    assert summarizer.tokenizer.count(second) <= 60
    for budget in (1, 5, 12):
        tiny = await summarizer.summarize(first, follow_up, max_tokens=budget)
        assert summarizer.tokenizer.count(tiny) <= budget
    assert await summarizer.summarize(None, [], max_tokens=50) == ""


async def test_rule_extractor_user_facts_and_relationships():
    extractor = RuleBasedEntityExtractor()
    text = (
        "Hi! My name is Ana and I work as a nurse at St. Mary Hospital. I moved to Dallas last month. "
        "Maria is my sister and she lives in Paris. I prefer tea over coffee."
    )
    result = await extractor.extract(text, entity_types=ALL_TYPES)
    user = result.entity("User")
    assert user is not None and user.type == "person"
    assert user.attributes == {
        "name": "Ana",
        "job": "nurse",
        "employer": "St. Mary Hospital",
        "city": "Dallas",
        "prefers": "tea",
    }
    assert "Ana" in user.aliases and result.entity("Ana") is None
    types = {e.name: e.type for e in result.entities}
    assert types["St. Mary Hospital"] == "organization" and types["Dallas"] == "location"
    assert types["Maria"] == "person" and types["Paris"] == "location" and types["tea"] == "concept"
    rels = {(r.source, r.type, r.target) for r in result.relationships}
    assert {
        ("User", "works_at", "St. Mary Hospital"),
        ("User", "moved_to", "Dallas"),
        ("User", "has_sister", "Maria"),
        ("User", "knows", "Maria"),
        ("User", "prefers", "tea"),
    } <= rels
    assert "Hi" not in types and "I" not in types


async def test_rule_extractor_spans_third_person_and_types_filter():
    extractor = RuleBasedEntityExtractor()
    text = "Yesterday I met John Smith at Google. John Smith works at Acme Corp. The University of Texas called."
    result = await extractor.extract(text, entity_types=ALL_TYPES)
    types = {e.name: e.type for e in result.entities}
    assert types == {
        "John Smith": "person",
        "Google": "organization",
        "Acme Corp": "organization",
        "University of Texas": "organization",
    }
    assert [(r.source, r.type, r.target) for r in result.relationships] == [("John Smith", "works_at", "Acme Corp")]
    only_places = await extractor.extract("I live in New York and I work for Microsoft.", entity_types=["location"])
    assert [(e.name, e.type) for e in only_places.entities] == [("New York", "location")]
    assert only_places.relationships == []  # the User (a person) is not an allowed type


async def test_rule_extractor_lowercase_name_known_entities_and_no_false_jobs():
    extractor = RuleBasedEntityExtractor()
    result = await extractor.extract(
        "my name is ana. I am a bit tired. We talked about Project Falcon and kubernetes.",
        entity_types=ALL_TYPES,
        known_entities=["Project Falcon"],
    )
    user = result.entity("User")
    assert user is not None and user.attributes == {"name": "Ana"}
    assert result.entity("Project Falcon") is not None and result.entity("kubernetes").type == "concept"
    empty = await extractor.extract("", entity_types=ALL_TYPES)
    assert empty.entities == [] and empty.relationships == []


async def test_rule_extractor_pets_are_not_people():
    extractor = RuleBasedEntityExtractor()
    for text, species, pet in (("My dog is called Biscuit and she is a greyhound.", "dog", "Biscuit"),
                               ("Miso is my cat.", "cat", "Miso"),
                               ("my guinea pig's name is Pip", "guinea_pig", "Pip")):
        found = await extractor.extract(text, entity_types=ALL_TYPES)
        user = found.entity("User")
        assert user is not None and user.attributes[species] == pet
        assert found.entity(pet) is None  # not typed as a person (or anything else) by the span pass
    # a known entity named like the pet is not re-typed either
    found = await extractor.extract("My dog is called Biscuit.", entity_types=ALL_TYPES, known_entities=["Biscuit"])
    assert found.entity("Biscuit") is None
    # with a pet type configured, the pet is an entity of its own
    found = await extractor.extract("My dog is called Biscuit.", entity_types=[*ALL_TYPES, "animal"])
    biscuit = found.entity("Biscuit")
    assert biscuit is not None and biscuit.type == "animal" and biscuit.attributes["species"] == "dog"
    assert [(r.source, r.target, r.type) for r in found.relationships] == [("User", "Biscuit", "has_pet")]
    # people are still people
    found = await extractor.extract("My sister is called Ines and I met Anna.", entity_types=ALL_TYPES)
    assert {e.name: e.type for e in found.entities if e.name != "User"} == {"Ines": "person", "Anna": "person"}


def test_offline_factories():
    config = MemoryConfig.from_any({"llm_provider": "offline", "openai_api_key": "sk"})
    assert build_llm(config) is None
    assert isinstance(build_summarizer(config), ExtractiveSummarizer)
    assert isinstance(build_entity_extractor(config), RuleBasedEntityExtractor)
    no_keys = MemoryConfig.from_any({})
    assert build_llm(no_keys) is None
    assert build_summarizer(no_keys).name == "extractive-textrank"


def test_retry_after_parsing_and_wait():
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({"Retry-After": "soon"}) is None and parse_retry_after(None) is None
    policy = RetryPolicy(initial_delay=0.5, max_delay=4.0, retry_after_cap=30.0, jitter=0.0)
    assert policy.wait_seconds(1, TransientProviderError("x", retry_after=3.0)) == 3.0
    assert policy.wait_seconds(1, TransientProviderError("x", retry_after=120.0)) == 30.0
    assert [policy.wait_seconds(n, TransientProviderError("x")) for n in (1, 2, 3, 5)] == [0.5, 1.0, 2.0, 4.0]
    assert RetryPolicy.from_config(MemoryConfig.from_any({"provider_max_retries": 7})).max_retries == 7
    assert FAST_RETRIES.max_retries == 3


def test_http_failure_classification():
    assert isinstance(http_failure("OpenAI", "m", 429, "slow", key_field="k", model_field="f"), TransientProviderError)
    assert isinstance(http_failure("OpenAI", "m", 502, "bad", key_field="k", model_field="f"), TransientProviderError)
    not_found = http_failure("Gemini", "m", 404, "nope", key_field="google_api_key", model_field="embedding_model")
    assert isinstance(not_found, ProviderError) and not isinstance(not_found, TransientProviderError)
    assert not_found.field == "embedding_model" and not_found.status == 404
