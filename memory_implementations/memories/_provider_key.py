"""The ``Stores.shared`` key of a model-backed helper, so tiers with different model settings never share one."""

from __future__ import annotations

import hashlib

from ..config import MemoryConfig


def provider_key(kind: str, config: MemoryConfig) -> str:
    """``kind`` plus a digest of every setting that changes which model answers and how."""
    parts = [
        config.llm_provider,
        config.summarization_model or "",
        config.openai_base_url or "",
        config.google_base_url or "",
        config.secret("openai_api_key") or "",
        config.secret("google_api_key") or "",
        config.tokenizer_model,
        config.embedding_provider,
        config.embedding_model or "",
        str(config.embedding_dim),
        str(config.embedding_batch_size),
        str(config.provider_max_retries),
        str(config.provider_timeout_seconds),
        str(config.provider_requests_per_second),
    ]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
    return f"{kind}:{digest}"


__all__ = ["provider_key"]
