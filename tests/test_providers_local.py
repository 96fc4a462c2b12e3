"""The offline embedders: MiniLM (int8 ONNX) quality and plumbing, and the lexical hashing fallback."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import structlog

from memory_implementations.config import MemoryConfig
from memory_implementations.errors import ConfigError, ProviderError
from memory_implementations.providers import CachedEmbedder, LexicalHashEmbedder, MiniLMEmbedder, build_embedder
from memory_implementations.providers import local_embedder as local_module
from memory_implementations.providers.lexical import lexical_features

PARAPHRASES = [
    ("I moved to Dallas last month", "I recently relocated to Dallas"),
    ("How do I reset my password?", "I forgot my password, how can I change it?"),
    ("My favourite drink is green tea", "I really like drinking tea"),
    ("The weather is sunny today", "It's a bright and clear day outside"),
]
UNRELATED = [
    ("I moved to Dallas last month", "How do I reset my password?"),
    ("My favourite drink is green tea", "The stock market fell sharply"),
    ("The weather is sunny today", "I work as a nurse at the hospital"),
    ("I recently relocated to Dallas", "I really like drinking tea"),
]

pytest_plugins = ("conftest_providers",)


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def cos(matrix: np.ndarray) -> float:
    return float(matrix[0] @ matrix[1])


async def test_minilm_paraphrases_beat_unrelated_pairs(minilm):
    para = [cos(await minilm.embed(list(p))) for p in PARAPHRASES]
    unrel = [cos(await minilm.embed(list(p))) for p in UNRELATED]
    assert min(para) > 0.5, para
    assert max(unrel) < 0.3, unrel
    assert min(para) - max(unrel) > 0.3


async def test_minilm_shape_norm_order_and_empty(minilm):
    texts = ["short", "a much longer sentence about a nurse who moved to Dallas last month", "", "tea"]
    batch = await minilm.embed(texts)
    assert batch.shape == (4, 384) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-5)
    for i, text in enumerate(texts):  # length-sorted batching must restore the input order
        np.testing.assert_allclose(batch[i], (await minilm.embed([text]))[0], atol=1e-4)
    assert (await minilm.embed([])).shape == (0, 384)
    assert minilm.load_seconds is not None and minilm.kind == "semantic" and minilm.model == "all-MiniLM-L6-v2"


def test_pinned_files_are_installed_and_verified(tmp_path):
    assert local_module.local_model_problem() is None
    assert local_module.MODEL_FILE.path() is not None and local_module.TOKENIZER_FILE.path() is not None
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not the model")
    with pytest.raises(ProviderError, match="sha256"):
        local_module._verified(bad, local_module.MODEL_FILE.sha256)


def test_auto_without_keys_is_minilm_and_local_checks_dims():
    embedder = build_embedder(MemoryConfig.from_any({}))
    assert embedder.kind == "semantic" and embedder.dim == 384 and isinstance(embedder, CachedEmbedder)
    with pytest.raises(ConfigError) as info:
        build_embedder(MemoryConfig.from_any({"embedding_provider": "local", "embedding_dim": 768}))
    assert info.value.field == "embedding_dim"
    with pytest.raises(ConfigError):
        build_embedder(MemoryConfig.from_any({"embedding_provider": "local", "embedding_model": "bge-small"}))


def test_auto_falls_back_to_lexical_with_a_warning(monkeypatch):
    monkeypatch.setattr(local_module, "local_model_problem", lambda: "the onnxruntime package is not installed")
    with structlog.testing.capture_logs() as logs:
        embedder = build_embedder(MemoryConfig.from_any({"embedding_dim": 256}))
    assert embedder.kind == "lexical" and embedder.dim == 256 and embedder.model == "lexical-hash-v1"
    assert any(e["event"] == "embedder_fallback_lexical" and e["log_level"] == "warning" for e in logs)
    with pytest.raises(ConfigError) as info:
        build_embedder(MemoryConfig.from_any({"embedding_provider": "local"}))
    assert info.value.field == "embedding_provider" and "onnxruntime" in str(info.value)


async def test_local_embedder_uses_redis_cache(provider_redis, monkeypatch):
    embedder = build_embedder(MemoryConfig.from_any({"embedding_provider": "local"}), redis=provider_redis)
    assert isinstance(embedder, CachedEmbedder)
    text = f"cache me {uuid.uuid4().hex}"
    first = await embedder.embed([text])
    assert await provider_redis.exists(embedder.cache.key(text)) == 1
    fresh = build_embedder(MemoryConfig.from_any({"embedding_provider": "local"}), redis=provider_redis)
    assert isinstance(fresh, CachedEmbedder)

    async def boom(texts):
        raise AssertionError("the model must not run for a cached text")

    monkeypatch.setattr(fresh.backend, "embed_batch", boom)
    np.testing.assert_allclose(await fresh.embed([text]), first, atol=1e-7)
    await provider_redis.delete(embedder.cache.key(text))


async def test_lexical_embedder_properties():
    lex = LexicalHashEmbedder(dim=384)
    a = await lex.embed(
        ["I moved to Dallas last month", "I moved to Dallas last month", "Dallas move", "stock market fell"]
    )
    assert a.shape == (4, 384) and lex.kind == "lexical"
    np.testing.assert_allclose(a[0], a[1])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    assert float(a[0] @ a[2]) > float(a[0] @ a[3]) + 0.1
    assert float(a[0] @ a[2]) > 0.15  # shared word + trigrams of "move"/"moved"
    empty = await lex.embed([""])
    assert not empty.any()
    feats = lexical_features("New York")
    assert {"w:new", "w:york", "b:new york", "c:#ne"} <= set(feats)
    # deterministic across instances (hashing, not randomness)
    np.testing.assert_array_equal((await LexicalHashEmbedder(dim=384).embed(["abc"]))[0], (await lex.embed(["abc"]))[0])


def test_lexical_config_and_caches_nothing_in_redis():
    embedder = build_embedder(MemoryConfig.from_any({"embedding_provider": "lexical"}), redis=object())  # type: ignore[arg-type]
    assert isinstance(embedder, CachedEmbedder)
    assert embedder.kind == "lexical" and embedder.dim == 384 and embedder.cache.redis is None
