"""OpenAI embeddings and chat through the official ``openai`` SDK (retries are ours, not the SDK's)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, ProviderError
from .embedding_dim import OPENAI_FIXED_DIM_MODELS, embedding_dim_for
from .failures import exception_kind, http_failure, malformed_response, parse_retry_after, sdk_call, transport_failure

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from ..config import MemoryConfig

PROVIDER = "OpenAI"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
DEFAULT_CHAT_MODEL = "gpt-4o-mini"
DEFAULT_DIM = 1536
_FIXED_DIM_MODELS = OPENAI_FIXED_DIM_MODELS


def openai_client(config: MemoryConfig) -> AsyncOpenAI:
    """An ``AsyncOpenAI`` client for ``config`` with SDK retries off."""
    from openai import AsyncOpenAI

    key = config.secret("openai_api_key")
    if not key:
        raise ConfigError("the OpenAI provider needs openai_api_key (or OPENAI_API_KEY)", field="openai_api_key")
    return AsyncOpenAI(
        api_key=key, base_url=config.openai_base_url, max_retries=0, timeout=config.provider_timeout_seconds
    )


def translate_openai_error(exc: Exception, model: str, model_field: str) -> ProviderError:
    """Map an ``openai`` SDK exception to a ProviderError (transient for 429/5xx/timeouts)."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        return http_failure(
            PROVIDER,
            model,
            exc.status_code,
            getattr(exc, "message", str(exc)),
            key_field="openai_api_key",
            model_field=model_field,
            retry_after=parse_retry_after(exc.response.headers),
        )
    kind = exception_kind(exc)
    if kind is not None:
        return transport_failure(PROVIDER, model, exc, timeout=kind == "timeout")
    return malformed_response(PROVIDER, model, f"{type(exc).__name__}: {exc}")


class OpenAIEmbeddingBackend:
    """``POST /v1/embeddings``; sends ``dimensions`` for models that support it."""

    provider = PROVIDER
    kind = "remote"

    def __init__(self, client: AsyncOpenAI, *, model: str = DEFAULT_EMBEDDING_MODEL, dim: int = DEFAULT_DIM) -> None:
        """Use ``client`` for ``model`` at ``dim`` dimensions."""
        self.client = client
        self.model = model
        self.dim = dim
        self._send_dimensions = model not in _FIXED_DIM_MODELS

    @classmethod
    def from_config(cls, config: MemoryConfig) -> OpenAIEmbeddingBackend:
        """Build from ``openai_api_key``, ``openai_base_url``, ``embedding_model`` and ``embedding_dim``."""
        model = config.embedding_model or DEFAULT_EMBEDDING_MODEL
        dim = embedding_dim_for(config, "openai")
        return cls(openai_client(config), model=model, dim=dim)

    async def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch in one request."""
        extra: dict[str, Any] = {"dimensions": self.dim} if self._send_dimensions else {}
        response = await sdk_call(
            lambda: self.client.embeddings.create(model=self.model, input=texts, encoding_format="float", **extra),
            lambda exc: translate_openai_error(exc, self.model, "embedding_model"),
        )
        try:
            items = sorted(response.data, key=lambda d: d.index)
            rows = [_vector(item.embedding) for item in items]
        except (AttributeError, TypeError, ValueError) as exc:
            raise malformed_response(PROVIDER, self.model, f"embeddings unreadable: {exc}") from exc
        if len(rows) != len(texts):
            raise malformed_response(PROVIDER, self.model, f"{len(rows)} embeddings for {len(texts)} inputs")
        if len({len(r) for r in rows}) > 1:
            raise malformed_response(PROVIDER, self.model, "embeddings of different lengths")
        return np.asarray(rows, dtype=np.float32)


def _vector(value: Any) -> np.ndarray:
    if isinstance(value, str):  # base64 float32, if a server answers that way
        return np.frombuffer(base64.b64decode(value), dtype="<f4")
    vector = np.asarray(value, dtype=np.float32)
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(f"embedding is {type(value).__name__}, not a list of numbers")
    return vector


class OpenAIChatBackend:
    """``POST /v1/chat/completions``; JSON output via ``response_format`` json_schema."""

    provider = PROVIDER

    def __init__(self, client: AsyncOpenAI, *, model: str = DEFAULT_CHAT_MODEL) -> None:
        """Use ``client`` for chat ``model``."""
        self.client = client
        self.model = model

    @classmethod
    def from_config(cls, config: MemoryConfig) -> OpenAIChatBackend:
        """Build from ``openai_api_key``, ``openai_base_url`` and ``summarization_model``."""
        return cls(openai_client(config), model=config.summarization_model or DEFAULT_CHAT_MODEL)

    async def chat(
        self, messages: list[dict[str, str]], *, max_tokens: int | None = None, schema: dict[str, Any] | None = None
    ) -> str:
        """One completion; returns the assistant's text."""
        extra: dict[str, Any] = {}
        if max_tokens is not None:
            extra["max_completion_tokens"] = max_tokens
        if schema is not None:
            name = str(schema.get("title") or "result").replace(" ", "_")[:64]
            extra["response_format"] = {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
        response = await sdk_call(
            lambda: self.client.chat.completions.create(model=self.model, messages=messages, **extra),  # type: ignore[arg-type]
            lambda exc: translate_openai_error(exc, self.model, "summarization_model"),
        )
        try:
            choice = response.choices[0]
            content = choice.message.content
        except (AttributeError, IndexError, TypeError) as exc:
            raise malformed_response(PROVIDER, self.model, f"no choices in the completion: {exc}") from exc
        if not content:
            reason = getattr(choice, "finish_reason", None)
            raise malformed_response(PROVIDER, self.model, f"empty completion (finish_reason={reason})")
        return str(content)


__all__ = [
    "DEFAULT_CHAT_MODEL",
    "DEFAULT_DIM",
    "DEFAULT_EMBEDDING_MODEL",
    "OpenAIChatBackend",
    "OpenAIEmbeddingBackend",
    "openai_client",
    "translate_openai_error",
]
