"""Which embedder a configuration selects and its dimension: one answer for the embedder factory and the schema.

Light on purpose (no numpy, no SDKs): migrations, ``Stores`` and the CLI ask it for the dimension of
``memory_vectors.embedding`` without building an embedder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import MemoryConfig

OPENAI_DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
GEMINI_DEFAULT_EMBEDDING_MODEL = "gemini-embedding-001"
LOCAL_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
LEXICAL_EMBEDDING_MODEL = "lexical-hash-v1"
DEFAULT_DIMS = {"openai": 1536, "gemini": 768, "local": 384, "lexical": 384}
# OpenAI models that ignore the `dimensions` parameter
OPENAI_FIXED_DIM_MODELS = {"text-embedding-ada-002": 1536}
_DEFAULT_MODELS = {
    "openai": OPENAI_DEFAULT_EMBEDDING_MODEL,
    "gemini": GEMINI_DEFAULT_EMBEDDING_MODEL,
    "local": LOCAL_EMBEDDING_MODEL,
    "lexical": LEXICAL_EMBEDDING_MODEL,
}


def resolve_embedding_provider(config: MemoryConfig) -> str:
    """The concrete provider for ``config``: "auto" becomes openai, gemini or local by available keys."""
    provider = config.embedding_provider
    if provider != "auto":
        return provider
    if config.secret("openai_api_key"):
        return "openai"
    if config.secret("google_api_key"):
        return "gemini"
    return "local"


def embedding_dim_for(config: MemoryConfig, provider: str) -> int:
    """The dimension ``provider``'s embedder has under ``config``: ``embedding_dim`` when set, else its model's."""
    if config.embedding_dim:
        return config.embedding_dim
    if provider == "openai":
        return OPENAI_FIXED_DIM_MODELS.get(config.embedding_model or "", DEFAULT_DIMS["openai"])
    return DEFAULT_DIMS.get(provider, DEFAULT_DIMS["local"])


def configured_embedding_dim(config: MemoryConfig) -> int:
    """The dimension of the embedder ``config`` selects (384 with no key, the model's with OpenAI/Gemini keys)."""
    return embedding_dim_for(config, resolve_embedding_provider(config))


def describe_embedder(config: MemoryConfig) -> str:
    """The configured embedder in words, e.g. "the configured embedder (local all-MiniLM-L6-v2, 384 dimensions)"."""
    provider = resolve_embedding_provider(config)
    model = _DEFAULT_MODELS.get(provider, "") if provider == "local" else config.embedding_model
    model = model or _DEFAULT_MODELS.get(provider, "")
    return f"the configured embedder ({provider} {model}, {embedding_dim_for(config, provider)} dimensions)"


__all__ = [
    "DEFAULT_DIMS",
    "GEMINI_DEFAULT_EMBEDDING_MODEL",
    "OPENAI_DEFAULT_EMBEDDING_MODEL",
    "OPENAI_FIXED_DIM_MODELS",
    "configured_embedding_dim",
    "describe_embedder",
    "embedding_dim_for",
    "resolve_embedding_provider",
]
