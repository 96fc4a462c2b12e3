"""Gemini paths through the real ``google-genai`` SDK against the local protocol server."""

from __future__ import annotations

import json
import uuid

import httpx
import numpy as np
import pytest
from protocol_server import FAST_RETRIES, fake_embedding

from memory_implementations.config import MemoryConfig
from memory_implementations.errors import ProviderError
from memory_implementations.providers import build_embedder, build_llm, resolve_embedding_provider, resolve_llm_provider

pytest_plugins = ("conftest_providers",)


def make_config(server, **extra) -> MemoryConfig:
    values = {
        "google_api_key": "g-test",
        "google_base_url": server.base_url,
        "embedding_dim": 32,
        "provider_requests_per_second": 1000,
    }
    values.update(extra)
    return MemoryConfig.from_any(values)


def uniq(n: int) -> list[str]:
    tag = uuid.uuid4().hex
    return [f"gemini text {i} {tag}" for i in range(n)]


def test_auto_picks_gemini_with_only_a_google_key(protocol_server):
    config = make_config(protocol_server)
    assert resolve_embedding_provider(config) == "gemini" and resolve_llm_provider(config) == "gemini"
    both = make_config(protocol_server, openai_api_key="sk")
    assert resolve_embedding_provider(both) == "openai" and resolve_llm_provider(both) == "openai"


async def test_batch_embed_contents(protocol_server):
    embedder = build_embedder(make_config(protocol_server, embedding_batch_size=2), policy=FAST_RETRIES)
    texts = uniq(5)
    out = await embedder.embed(texts)
    reqs = protocol_server.requests
    assert all(r.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents" for r in reqs)
    assert sorted(len(r.body["requests"]) for r in reqs) == [1, 2, 2]
    first = reqs[0].body["requests"][0]
    assert first["outputDimensionality"] == 32 and first["model"] == "models/gemini-embedding-001"
    assert reqs[0].headers["x-goog-api-key"] == "g-test"
    assert out.shape == (5, 32)
    np.testing.assert_allclose(out[4], fake_embedding(texts[4], 32), atol=1e-6)


async def test_default_dimension_is_768(protocol_server):
    embedder = build_embedder(make_config(protocol_server, embedding_dim=None), policy=FAST_RETRIES)
    assert (await embedder.embed(uniq(1))).shape == (1, 768)
    assert protocol_server.requests[0].body["requests"][0]["outputDimensionality"] == 768


async def test_429_retried_and_401_not(protocol_server):
    embedder = build_embedder(make_config(protocol_server), policy=FAST_RETRIES)
    protocol_server.fail_next(1, 429, retry_after="3")
    assert (await embedder.embed(uniq(1))).shape == (1, 32)
    assert [r.answered for r in protocol_server.requests] == [429, 200]
    protocol_server.reset()
    protocol_server.fail_next(1, 401)
    with pytest.raises(ProviderError) as info:
        await embedder.embed(uniq(1))
    assert info.value.status == 401 and "Gemini rejected the API key (401)" in str(info.value)
    assert "google_api_key" in str(info.value) and len(protocol_server.requests) == 1


async def test_403_and_500_exhausted(protocol_server):
    embedder = build_embedder(make_config(protocol_server), policy=FAST_RETRIES)
    protocol_server.fail_next(1, 403)
    with pytest.raises(ProviderError, match=r"refused access \(403\)"):
        await embedder.embed(uniq(1))
    protocol_server.reset()
    protocol_server.fail_next(20, 500)
    with pytest.raises(ProviderError, match="gave up"):
        await embedder.embed(uniq(1))
    assert len(protocol_server.requests) == FAST_RETRIES.max_retries + 1


async def test_malformed_and_wrong_dimension(protocol_server):
    embedder = build_embedder(make_config(protocol_server), policy=FAST_RETRIES)
    protocol_server.malformed_next(1)
    with pytest.raises(ProviderError, match="malformed"):
        await embedder.embed(uniq(1))
    protocol_server.malformed_next(1, body=json.dumps({"embeddings": []}))
    with pytest.raises(ProviderError, match="0 usable embeddings for 1"):
        await embedder.embed(uniq(1))
    protocol_server.state.force_dim = 8
    with pytest.raises(ProviderError) as info:
        await embedder.embed(uniq(1))
    assert info.value.field == "embedding_dim"


async def test_generate_content_text(protocol_server):
    llm = build_llm(make_config(protocol_server), policy=FAST_RETRIES)
    assert llm is not None and llm.model == "gemini-2.5-flash"
    protocol_server.reply_next("Ana lives in Dallas.")
    messages = [
        {"role": "system", "content": "You summarise."},
        {"role": "user", "content": "I moved to Dallas"},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Summarise"},
    ]
    assert await llm.complete(messages, max_tokens=64) == "Ana lives in Dallas."
    req = protocol_server.requests[0]
    assert req.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req.body["systemInstruction"]["parts"][0]["text"] == "You summarise."
    assert [c["role"] for c in req.body["contents"]] == ["user", "model", "user"]
    assert req.body["generationConfig"]["maxOutputTokens"] == 64
    thinking = req.body["generationConfig"]["thinkingConfig"]
    assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 0  # the SDK sends the proto field name


async def test_generate_content_json(protocol_server):
    llm = build_llm(make_config(protocol_server, summarization_model="gemini-2.5-pro"), policy=FAST_RETRIES)
    assert llm is not None
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    assert await llm.complete_json([{"role": "user", "content": "where?"}], schema) == {"city": "sample"}
    gen = protocol_server.requests[0].body["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert gen["responseSchema"]["properties"]["city"]["type"].upper() == "STRING"
    assert "thinkingConfig" not in gen
    protocol_server.reply_next("{broken", "{broken again")
    with pytest.raises(ProviderError, match="malformed JSON"):
        await llm.complete_json([{"role": "user", "content": "where?"}], schema)


async def test_generate_content_503_retried(protocol_server):
    llm = build_llm(make_config(protocol_server), policy=FAST_RETRIES)
    assert llm is not None
    protocol_server.fail_next(1, 503)
    protocol_server.reply_next("ok")
    assert await llm.complete([{"role": "user", "content": "x"}]) == "ok"
    assert [r.answered for r in protocol_server.requests] == [503, 200]


async def test_server_embed_content_endpoint(protocol_server):
    """The SDK uses batchEmbedContents on the Developer API; the single-text endpoint speaks the same protocol."""
    async with httpx.AsyncClient(base_url=protocol_server.base_url) as client:
        resp = await client.post(
            "/v1beta/models/gemini-embedding-001:embedContent",
            json={"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 12},
        )
        assert resp.status_code == 200
        assert resp.json()["embedding"]["values"] == pytest.approx(fake_embedding("hello", 12))
        protocol_server.fail_next(1, 429, retry_after="2")
        resp = await client.post("/v1beta/models/m:embedContent", json={"content": {"parts": [{"text": "x"}]}})
        assert resp.status_code == 429 and resp.headers["retry-after"] == "2"
        assert resp.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
