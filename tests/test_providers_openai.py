"""OpenAI paths through the real ``openai`` SDK against the local protocol server."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from protocol_server import FAST_RETRIES, fake_embedding

from memory_implementations.config import MemoryConfig
from memory_implementations.errors import ConfigError, ProviderError
from memory_implementations.providers import (
    CachedEmbedder,
    LLMEntityExtractor,
    LLMSummarizer,
    build_embedder,
    build_entity_extractor,
    build_llm,
    build_summarizer,
)
from memory_implementations.types import Message

pytest_plugins = ("conftest_providers",)


def make_config(server, **extra) -> MemoryConfig:
    values = {
        "openai_api_key": "sk-test",
        "openai_base_url": server.openai_base_url,
        "embedding_provider": "openai",
        "embedding_dim": 16,
        "provider_requests_per_second": 1000,
    }
    values.update(extra)
    return MemoryConfig.from_any(values)


def uniq(n: int) -> list[str]:
    tag = uuid.uuid4().hex
    return [f"text {i} {tag}" for i in range(n)]


async def test_batches_split_requests_and_dedupe(protocol_server):
    embedder = build_embedder(make_config(protocol_server, embedding_batch_size=3), policy=FAST_RETRIES)
    texts = uniq(7)
    out = await embedder.embed([*texts, texts[0]])
    reqs = protocol_server.requests_to("/v1/embeddings")
    assert sorted(len(r.body["input"]) for r in reqs) == [1, 3, 3]
    assert sorted(t for r in reqs for t in r.body["input"]) == sorted(texts)  # the duplicate was sent once
    assert all(r.body["dimensions"] == 16 and r.body["model"] == "text-embedding-3-small" for r in reqs)
    assert out.shape == (8, 16) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out[0], out[7])
    np.testing.assert_allclose(out[3], fake_embedding(texts[3], 16), atol=1e-6)
    assert embedder.kind == "remote" and embedder.dim == 16


async def test_empty_input_makes_no_request(protocol_server):
    embedder = build_embedder(make_config(protocol_server), policy=FAST_RETRIES)
    out = await embedder.embed([])
    assert out.shape == (0, 16)
    assert protocol_server.requests == []


async def test_default_dimension_is_1536(protocol_server):
    embedder = build_embedder(make_config(protocol_server, embedding_dim=None), policy=FAST_RETRIES)
    out = await embedder.embed(uniq(1))
    assert out.shape == (1, 1536)
    assert protocol_server.requests[0].body["dimensions"] == 1536


async def test_redis_cache_serves_second_call(protocol_server, provider_redis):
    config = make_config(protocol_server)
    texts = uniq(4)
    first = await build_embedder(config, redis=provider_redis, policy=FAST_RETRIES).embed(texts)
    assert len(protocol_server.requests) == 1
    # a fresh embedder (empty in-process LRU) reads the vectors back from Redis: no new request
    fresh = build_embedder(config, redis=provider_redis, policy=FAST_RETRIES)
    second = await fresh.embed(texts)
    assert len(protocol_server.requests) == 1
    np.testing.assert_allclose(first, second, atol=1e-7)
    assert isinstance(fresh, CachedEmbedder)
    key = fresh.cache.key(texts[0])
    assert key.startswith("mi:emb:text-embedding-3-small:16:") and len(key.rsplit(":", 1)[1]) == 64
    assert len(await provider_redis.get(key)) == 16 * 4
    assert 0 < await provider_redis.ttl(key) <= 30 * 24 * 3600
    # a mix of cached and new texts sends only the new one
    extra = uniq(1)[0]
    await fresh.embed([texts[1], extra])
    assert protocol_server.requests[-1].body["input"] == [extra]
    await provider_redis.delete(*[fresh.cache.key(t) for t in [*texts, extra]])


async def test_in_process_cache_without_redis(protocol_server):
    embedder = build_embedder(make_config(protocol_server), policy=FAST_RETRIES)
    texts = uniq(3)
    await embedder.embed(texts)
    await embedder.embed(list(reversed(texts)))
    assert len(protocol_server.requests) == 1


async def test_429_then_success_is_retried(protocol_server):
    protocol_server.fail_next(1, 429, retry_after="7")
    out = await build_embedder(make_config(protocol_server), policy=FAST_RETRIES).embed(uniq(2))
    assert out.shape == (2, 16)
    assert [r.answered for r in protocol_server.requests] == [429, 200]


async def test_500s_exhaust_retries(protocol_server):
    protocol_server.fail_next(10, 500)
    with pytest.raises(ProviderError) as info:
        await build_embedder(make_config(protocol_server), policy=FAST_RETRIES).embed(uniq(1))
    assert info.value.status == 500 and info.value.retryable
    assert "gave up after 4 attempt" in str(info.value) and "OpenAI" in str(info.value)
    assert len(protocol_server.requests) == FAST_RETRIES.max_retries + 1


async def test_401_fails_at_once(protocol_server):
    protocol_server.state.required_key = "sk-right"
    with pytest.raises(ProviderError) as info:
        await build_embedder(make_config(protocol_server), policy=FAST_RETRIES).embed(uniq(1))
    err = info.value
    assert err.status == 401 and not err.retryable and err.field == "openai_api_key"
    assert "OpenAI rejected the API key (401)" in str(err) and "check openai_api_key" in str(err)
    assert len(protocol_server.requests) == 1


async def test_right_key_is_accepted(protocol_server):
    protocol_server.state.required_key = "sk-test"
    out = await build_embedder(make_config(protocol_server), policy=FAST_RETRIES).embed(uniq(1))
    assert out.shape == (1, 16)
    assert protocol_server.requests[0].headers["authorization"] == "Bearer sk-test"


async def test_400_fails_at_once(protocol_server):
    protocol_server.fail_next(1, 400)
    with pytest.raises(ProviderError) as info:
        await build_embedder(make_config(protocol_server), policy=FAST_RETRIES).embed(uniq(1))
    assert info.value.status == 400 and "embedding_model" in str(info.value)
    assert len(protocol_server.requests) == 1


async def test_malformed_json_is_a_provider_error(protocol_server):
    protocol_server.malformed_next(1)
    with pytest.raises(ProviderError, match="malformed"):
        await build_embedder(make_config(protocol_server), policy=FAST_RETRIES).embed(uniq(1))
    assert len(protocol_server.requests) == 1


async def test_missing_fields_are_a_provider_error(protocol_server):
    protocol_server.malformed_next(1, body=json.dumps({"object": "list", "data": [{"index": 0}]}))
    with pytest.raises(ProviderError):
        await build_embedder(make_config(protocol_server), policy=FAST_RETRIES).embed(uniq(1))


async def test_wrong_dimension_names_embedding_dim(protocol_server):
    protocol_server.state.force_dim = 12
    with pytest.raises(ProviderError) as info:
        await build_embedder(make_config(protocol_server), policy=FAST_RETRIES).embed(uniq(2))
    assert info.value.field == "embedding_dim" and "12-dimensional" in str(info.value)


async def test_unreachable_server_is_retried_then_fails():
    config = MemoryConfig.from_any(
        {"openai_api_key": "k", "openai_base_url": "http://127.0.0.1:9/v1", "embedding_provider": "openai"}
    )
    with pytest.raises(ProviderError) as info:
        await build_embedder(config, policy=FAST_RETRIES).embed(["x"])
    assert "could not be reached" in str(info.value) and info.value.retryable


def test_openai_without_key_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        build_embedder(MemoryConfig.from_any({"embedding_provider": "openai"}))
    assert info.value.field == "openai_api_key"


async def test_chat_complete(protocol_server):
    llm = build_llm(make_config(protocol_server), policy=FAST_RETRIES)
    assert llm is not None and llm.model == "gpt-4o-mini"
    protocol_server.reply_next("Hello, Ana.")
    answer = await llm.complete(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], max_tokens=20
    )
    assert answer == "Hello, Ana."
    body = protocol_server.requests[0].body
    assert body["max_completion_tokens"] == 20 and body["messages"][0]["role"] == "system"
    assert "response_format" not in body


async def test_chat_json_schema(protocol_server):
    llm = build_llm(make_config(protocol_server, summarization_model="gpt-x"), policy=FAST_RETRIES)
    assert llm is not None
    schema = {
        "title": "person",
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    }
    protocol_server.reply_next('```json\n{"name": "Ana", "age": 31}\n```')
    assert await llm.complete_json([{"role": "user", "content": "who?"}], schema) == {"name": "Ana", "age": 31}
    fmt = protocol_server.requests[0].body["response_format"]
    assert (
        fmt["type"] == "json_schema"
        and fmt["json_schema"]["schema"] == schema
        and fmt["json_schema"]["name"] == "person"
    )
    assert protocol_server.requests[0].body["model"] == "gpt-x"


async def test_malformed_model_json_retried_once(protocol_server):
    llm = build_llm(make_config(protocol_server), policy=FAST_RETRIES)
    assert llm is not None
    protocol_server.reply_next("not json", '{"ok": true}')
    assert await llm.complete_json([{"role": "user", "content": "x"}], {"type": "object"}) == {"ok": True}
    protocol_server.reply_next("still not json", "[1, 2]")
    with pytest.raises(ProviderError, match="not an object"):
        await llm.complete_json([{"role": "user", "content": "x"}], {"type": "object"})
    assert len(protocol_server.requests) == 4


async def test_chat_429_retried(protocol_server):
    llm = build_llm(make_config(protocol_server), policy=FAST_RETRIES)
    assert llm is not None
    protocol_server.fail_next(2, 503, retry_after="1")
    protocol_server.reply_next("fine")
    assert await llm.complete([{"role": "user", "content": "x"}]) == "fine"
    assert [r.answered for r in protocol_server.requests] == [503, 503, 200]


async def test_llm_summarizer_and_extractor(protocol_server):
    config = make_config(protocol_server)
    summarizer = build_summarizer(config)
    assert isinstance(summarizer, LLMSummarizer)
    protocol_server.reply_next("User is Ana, a nurse in Dallas. " * 50)
    summary = await summarizer.summarize(
        "User: hi", [Message("s", "user", "I'm Ana, a nurse in Dallas")], max_tokens=20
    )
    assert summary.startswith("User is Ana") and summarizer.tokenizer.count(summary) <= 20
    prompt = protocol_server.requests[-1].body["messages"][1]["content"]
    assert "User: hi" in prompt and "User: I'm Ana, a nurse in Dallas" in prompt

    extractor = build_entity_extractor(config)
    assert isinstance(extractor, LLMEntityExtractor)
    protocol_server.reply_next(
        json.dumps(
            {
                "entities": [
                    {"name": "User", "type": "person", "attributes": [{"key": "city", "value": "Dallas"}]},
                    {"name": "Dallas", "type": "location"},
                    {"name": "Sunshine", "type": "weather"},
                ],
                "relationships": [
                    {"source": "User", "target": "Dallas", "type": "moved to"},
                    {"source": "User", "target": "Sunshine", "type": "likes"},
                ],
            }
        )
    )
    result = await extractor.extract("I moved to Dallas", entity_types=["person", "location"])
    assert [e.name for e in result.entities] == ["User", "Dallas"]
    assert result.entity("user").attributes == {"city": "Dallas"}
    assert [(r.source, r.target, r.type) for r in result.relationships] == [("User", "Dallas", "moved_to")]
    schema = protocol_server.requests[-1].body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["entities"]["items"]["properties"]["type"]["enum"] == ["person", "location"]
