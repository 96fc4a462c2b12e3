"""Provider usage counters (calls and tokens) that any module can record into; the service exports them.

One :class:`ProviderUsage` per :class:`~memory_implementations.stores.Stores` (``provider_usage(stores)``),
so there is no process-wide state: an embedder or LLM wrapper that has the stores records
``provider_usage(stores).record("openai", "text-embedding-3-small", "embed", tokens=812)`` and the
service's ``/metrics`` exposes ``memory_provider_calls_total`` and ``memory_provider_tokens_total``.
This module imports nothing heavy, so providers can use it without pulling in FastAPI.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..stores import Stores

UsageKey = tuple[str, str, str, str]  # provider, model, operation, outcome


class ProviderUsage:
    """Thread-safe counters of provider calls and tokens by provider, model, operation and outcome."""

    def __init__(self) -> None:
        """Start every counter at zero."""
        self._lock = threading.Lock()
        self._calls: dict[UsageKey, int] = {}
        self._tokens: dict[tuple[str, str, str], int] = {}

    def record(self, provider: str, model: str | None, operation: str, *, tokens: int = 0, outcome: str = "ok") -> None:
        """Count one call (``outcome`` e.g. ok / error / retry) and the tokens it used."""
        model_name = model or "unknown"
        with self._lock:
            key = (provider, model_name, operation, outcome)
            self._calls[key] = self._calls.get(key, 0) + 1
            if tokens > 0:
                tkey = (provider, model_name, operation)
                self._tokens[tkey] = self._tokens.get(tkey, 0) + int(tokens)

    def calls(self) -> dict[UsageKey, int]:
        """A snapshot of the call counters."""
        with self._lock:
            return dict(self._calls)

    def tokens(self) -> dict[tuple[str, str, str], int]:
        """A snapshot of the token counters."""
        with self._lock:
            return dict(self._tokens)


class CountingEmbeddingBackend:
    """Wraps an embedding backend (``embed_batch``) to count its calls and input tokens into a ProviderUsage."""

    def __init__(self, inner: Any, usage: ProviderUsage, count_tokens: Callable[[str], int]) -> None:
        """Count ``inner``'s calls into ``usage``; ``count_tokens`` sizes each input text."""
        self._inner = inner
        self._usage = usage
        self._count = count_tokens

    def __getattr__(self, name: str) -> Any:
        """Everything but ``embed_batch`` is the wrapped backend's."""
        return getattr(self._inner, name)

    async def embed_batch(self, texts: list[str]) -> Any:
        """Embed through the wrapped backend and record the call (and its tokens, or an error)."""
        provider = str(getattr(self._inner, "provider", "unknown"))
        model = getattr(self._inner, "model", None)
        try:
            out = await self._inner.embed_batch(texts)
        except Exception:
            self._usage.record(provider, model, "embed", outcome="error")
            raise
        self._usage.record(provider, model, "embed", tokens=sum(self._count(t) for t in texts))
        return out


def instrument_embedder(embedder: Any, usage: ProviderUsage, count_tokens: Callable[[str], int]) -> bool:
    """Count the calls of a ``CachedEmbedder``-like object (with a ``backend``); idempotent; False if impossible."""
    backend = getattr(embedder, "backend", None)
    if backend is None or not hasattr(backend, "embed_batch"):
        return False
    if not isinstance(backend, CountingEmbeddingBackend):
        embedder.backend = CountingEmbeddingBackend(backend, usage, count_tokens)
    return True


def provider_usage(stores: Stores) -> ProviderUsage:
    """The usage counters shared by everything that uses ``stores``."""
    return stores.shared("provider_usage", ProviderUsage)


__all__ = ["CountingEmbeddingBackend", "ProviderUsage", "instrument_embedder", "provider_usage"]
