"""The summary and entity tiers with OpenAI and Gemini, through the real SDKs against the local protocol server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from protocol_server import ProtocolServer

from memory_implementations.errors import ProviderError
from memory_implementations.memories.entity import EntityMemory
from memory_implementations.memories.summary import ConversationSummaryMemory
from memory_implementations.stores import Stores

pytest_plugins = ("conftest_providers",)

WINDOW = 4
BATCH = 2
PROVIDERS = ("openai", "gemini")


def model_config(base_config: dict[str, Any], server: ProtocolServer, provider: str, **extra: Any) -> dict[str, Any]:
    """The test backends with the LLM pointed at the protocol server; no provider-level retries (the worker retries)."""
    cfg: dict[str, Any] = {
        **base_config,
        "llm_provider": provider,
        "provider_max_retries": 0,
        "provider_requests_per_second": 1000,
        "buffer_window_size": WINDOW,
        "max_total_tokens": 1000,
    }
    if provider == "openai":
        cfg.update(openai_api_key="sk-test", openai_base_url=server.openai_base_url)
    else:
        cfg.update(google_api_key="g-test", google_base_url=server.base_url)
    cfg.update(extra)
    return cfg


def chat_path(provider: str) -> str:
    return "/v1/chat/completions" if provider == "openai" else ":generateContent"


def request_text(provider: str, body: dict[str, Any]) -> str:
    """Everything the model was sent, as one string."""
    if provider == "openai":
        return "\n".join(str(m["content"]) for m in body["messages"])
    parts = [p.get("text", "") for c in body["contents"] for p in c["parts"]]
    system = body.get("systemInstruction") or body.get("system_instruction") or {}
    parts += [p.get("text", "") for p in system.get("parts", [])]
    return "\n".join(parts)


def turns(sid: str, uid: str, start: int, n: int) -> list[dict[str, str]]:
    return [
        {
            "session_id": sid,
            "user_id": uid,
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"turn {i}: note {i}",
        }
        for i in range(start, start + n)
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_summary_tier_uses_the_model_and_keeps_previous_summary_on_500(
    provider: str, protocol_server: ProtocolServer, base_config: dict[str, Any], stores: Stores, sid: str, uid: str
) -> None:
    memory = ConversationSummaryMemory(
        model_config(base_config, protocol_server, provider), stores=stores, batch_size=BATCH
    )
    await memory.initialize()
    assert memory.summarizer.name.startswith("llm:")

    protocol_server.reply_next("MODEL SUMMARY v1: the user is taking notes 0 and 1.")
    await memory.store_many(turns(sid, uid, 0, WINDOW + BATCH))
    await memory.flush()
    latest = await memory.get_summary(sid, uid)
    assert latest is not None
    assert (latest["version"], latest["summary"]) == (1, "MODEL SUMMARY v1: the user is taking notes 0 and 1.")
    assert latest["model"] == memory.summarizer.name
    calls = protocol_server.requests_to(chat_path(provider))
    assert len(calls) == 1
    sent = request_text(provider, calls[0].body)
    assert "turn 0: note 0" in sent and "turn 1: note 1" in sent
    assert f"turn {WINDOW + BATCH - 1}" not in sent  # the window is not summarised
    ctx = await memory.get_context({"session_id": sid, "user_id": uid})
    assert ctx.get("summary") == "MODEL SUMMARY v1: the user is taking notes 0 and 1."
    assert ctx.items[0]["section"] == "summary"

    # the model fails with 500 on every call: the summary stays, context falls back to raw turns
    protocol_server.fail_next(50, 500)
    await memory.store_many(turns(sid, uid, WINDOW + BATCH, 2 * BATCH))
    await memory.flush()
    assert [h["version"] for h in await memory.get_summary_history(sid, uid)] == [1]
    failed = [r for r in protocol_server.requests_to(chat_path(provider)) if r.answered == 500]
    assert len(failed) >= 2  # attempted and retried
    ctx = await memory.get_context({"session_id": sid, "user_id": uid})
    assert ctx.get("summary") == "MODEL SUMMARY v1: the user is taking notes 0 and 1."
    raw = [i for i in ctx.items if i["section"] == "recent_conversation"]
    assert len(raw) == WINDOW + 2 * BATCH  # more than the window: the unsummarised older turns too
    with pytest.raises(ProviderError) as err:
        await memory.summarize_now(sid, uid)
    assert err.value.status == 500

    # the model is back
    protocol_server.reset()
    protocol_server.reply_next("MODEL SUMMARY v2")
    await memory.summarize_now(sid, uid)
    history = await memory.get_summary_history(sid, uid)
    assert [h["summary"] for h in history] == [
        "MODEL SUMMARY v1: the user is taking notes 0 and 1.",
        "MODEL SUMMARY v2",
    ]
    sent = request_text(provider, protocol_server.requests_to(chat_path(provider))[0].body)
    assert "MODEL SUMMARY v1" in sent  # the previous summary was folded forward


def extraction_reply() -> str:
    return json.dumps(
        {
            "entities": [
                {
                    "name": "Ana Lopez",
                    "type": "person",
                    "aliases": ["Ana"],
                    "attributes": [{"key": "job", "value": "nurse"}],
                },
                {"name": "Mercy Hospital", "type": "organization", "aliases": [], "attributes": []},
                {"name": "Mars", "type": "planet", "aliases": [], "attributes": []},
            ],
            "relationships": [{"source": "Ana Lopez", "target": "Mercy Hospital", "type": "works at", "weight": 2}],
        }
    )


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_entity_tier_uses_the_model_and_falls_back_on_500(
    provider: str, protocol_server: ProtocolServer, base_config: dict[str, Any], stores: Stores, uid: str
) -> None:
    memory = EntityMemory(model_config(base_config, protocol_server, provider), stores=stores)
    await memory.initialize()
    assert memory.extractor.name.startswith("llm:")

    protocol_server.reply_next(extraction_reply())
    await memory.store({"user_id": uid, "content": "Ana is a nurse at the hospital downtown."})
    await memory.flush()
    ana = await memory.get_entity("Ana", user_id=uid)
    assert ana is not None and ana["name"] == "Ana Lopez"
    assert ana["attributes"] == {"job": "nurse"}
    assert [(r["type"], r["other"], r["weight"]) for r in ana["relationships"]] == [("works_at", "Mercy Hospital", 2.0)]
    assert await memory.get_entity("Mars", user_id=uid) is None  # a type outside entity_types is dropped
    calls = protocol_server.requests_to(chat_path(provider))
    assert len(calls) == 1
    assert "Ana is a nurse at the hospital downtown." in request_text(provider, calls[0].body)
    if provider == "openai":
        assert calls[0].body["response_format"]["type"] == "json_schema"
    else:
        assert calls[0].body["generationConfig"]["responseMimeType"] == "application/json"

    # the model answers 500: the rule-based extractor takes over and the text is not lost
    protocol_server.fail_next(10, 500)
    result = await memory.process("I work at Acme Corporation.", user_id=uid)
    assert result.fallback and result.extractor == "rule-based"
    assert await memory.get_entity("ACME", user_id=uid) is not None
    assert memory.stats["fallbacks"] == 1
    assert any(r.answered == 500 for r in protocol_server.requests_to(chat_path(provider)))

    # the known entities are passed to the model as hints
    protocol_server.reset()
    protocol_server.reply_next(json.dumps({"entities": [], "relationships": []}))
    await memory.process("Anything new?", user_id=uid)
    assert "Ana Lopez" in request_text(provider, protocol_server.requests_to(chat_path(provider))[0].body)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_vector_tier_embeds_through_the_provider(
    provider: str, protocol_server: ProtocolServer, base_config: dict[str, Any], stores: Stores, uid: str
) -> None:
    from memory_implementations.memories.vector import VectorDatabaseMemory

    cfg = model_config(base_config, protocol_server, provider, embedding_provider=provider, embedding_dim=384)
    memory = VectorDatabaseMemory(cfg, stores=stores)
    await memory.initialize()
    assert memory.embedder.kind == "remote" and memory.embedder.dim == 384
    fact = f"User keeps bees on the roof ({uid[:8]})"
    await memory.store({"content": fact, "user_id": uid})
    await memory.store({"content": f"User dislikes rainy Mondays ({uid[:8]})", "user_id": uid})
    path = "/v1/embeddings" if provider == "openai" else "batchEmbedContents"
    sent = protocol_server.requests_to(path)
    assert sent, "the embedder never reached the provider"
    # the protocol server's embeddings are a deterministic function of the text: the same text is the best match
    hits = await memory.search(fact, user_id=uid, k=2, threshold=-1.0)
    assert hits[0]["content"] == fact
    await memory.clear(user_id=uid)
