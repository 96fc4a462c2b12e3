"""Two-level embedding cache: an in-process LRU in front of Redis (``mi:emb:{model}:{dim}:{sha256}``)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

if TYPE_CHECKING:
    import redis.asyncio

log = structlog.get_logger("memory_implementations.providers")
DEFAULT_TTL_SECONDS = 30 * 24 * 3600


def text_digest(text: str) -> str:
    """sha256 hex of the UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Caches L2-normalised float32 vectors of one model and dimension; Redis failures are logged, not raised."""

    def __init__(
        self,
        *,
        model: str,
        dim: int,
        redis: redis.asyncio.Redis | None = None,
        prefix: str = "mi",
        lru_size: int = 10_000,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
    ) -> None:
        """Create the cache; ``redis=None`` keeps it in process only."""
        self.dim = dim
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lru_size = lru_size
        self._namespace = f"{prefix}:emb:{model}:{dim}:"

    def key(self, text: str) -> str:
        """The Redis key of ``text``'s vector."""
        return self._namespace + text_digest(text)

    async def get_many(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors already cached, by text (LRU first, then one MGET)."""
        found: dict[str, np.ndarray] = {}
        remote: list[str] = []
        for text in texts:
            vec = self._lru.get(text)
            if vec is None:
                remote.append(text)
            else:
                self._lru.move_to_end(text)
                found[text] = vec
        if remote and self.redis is not None:
            try:
                raw: list[Any] = await self.redis.mget([self.key(t) for t in remote])
            except Exception as exc:
                log.warning("embedding_cache_read_failed", error=str(exc))
                return found
            for text, blob in zip(remote, raw, strict=True):
                vec = self._decode(blob)
                if vec is not None:
                    found[text] = vec
                    self._remember(text, vec)
        return found

    async def set_many(self, items: dict[str, np.ndarray]) -> None:
        """Store vectors in the LRU and (pipelined SET with TTL) in Redis."""
        for text, vec in items.items():
            self._remember(text, vec)
        if not items or self.redis is None:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for text, vec in items.items():
                    pipe.set(self.key(text), np.asarray(vec, dtype="<f4").tobytes(), ex=self.ttl_seconds)
                await pipe.execute()
        except Exception as exc:
            log.warning("embedding_cache_write_failed", error=str(exc))

    def _remember(self, text: str, vec: np.ndarray) -> None:
        self._lru[text] = vec
        self._lru.move_to_end(text)
        while len(self._lru) > self._lru_size:
            self._lru.popitem(last=False)

    def _decode(self, blob: Any) -> np.ndarray | None:
        if not isinstance(blob, (bytes, bytearray)) or len(blob) != 4 * self.dim:
            return None
        return np.frombuffer(bytes(blob), dtype="<f4").astype(np.float32)


__all__ = ["DEFAULT_TTL_SECONDS", "EmbeddingCache", "text_digest"]
