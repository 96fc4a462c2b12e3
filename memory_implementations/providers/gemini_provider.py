"""Gemini embeddings and generation through ``google-genai`` (``client.aio.models``), retries ours."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..errors import ConfigError, ProviderError
from .embedding_dim import embedding_dim_for
from .failures import exception_kind, http_failure, malformed_response, parse_retry_after, sdk_call, transport_failure

if TYPE_CHECKING:
    from google import genai

    from ..config import MemoryConfig

PROVIDER = "Gemini"
DEFAULT_EMBEDDING_MODEL = "gemini-embedding-001"
DEFAULT_CHAT_MODEL = "gemini-2.5-flash"
DEFAULT_DIM = 768
API_VERSION = "v1beta"
_ROLES = {"user": "user", "assistant": "model", "model": "model", "tool": "user"}


def gemini_client(config: MemoryConfig) -> genai.Client:
    """A ``genai.Client`` for the Gemini Developer API (``google_base_url`` honoured), SDK retries off."""
    from google import genai
    from google.genai import types

    key = config.secret("google_api_key")
    if not key:
        raise ConfigError("the Gemini provider needs google_api_key (or GOOGLE_API_KEY)", field="google_api_key")
    options = types.HttpOptions(
        base_url=config.google_base_url,
        api_version=API_VERSION,
        timeout=int(config.provider_timeout_seconds * 1000),
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key=key, http_options=options)


def translate_gemini_error(exc: Exception, model: str, model_field: str) -> ProviderError:
    """Map a ``google-genai`` exception to a ProviderError (transient for 429/5xx/timeouts)."""
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        headers = getattr(getattr(exc, "response", None), "headers", None)
        return http_failure(
            PROVIDER,
            model,
            int(exc.code or 0),
            exc.message or str(exc),
            key_field="google_api_key",
            model_field=model_field,
            retry_after=parse_retry_after(dict(headers) if headers is not None else None),
        )
    kind = exception_kind(exc)
    if kind is not None:
        return transport_failure(PROVIDER, model, exc, timeout=kind == "timeout")
    return malformed_response(PROVIDER, model, f"{type(exc).__name__}: {exc}")


class GeminiEmbeddingBackend:
    """``models/{model}:batchEmbedContents`` with ``outputDimensionality``."""

    provider = PROVIDER
    kind = "remote"

    def __init__(self, client: genai.Client, *, model: str = DEFAULT_EMBEDDING_MODEL, dim: int = DEFAULT_DIM) -> None:
        """Use ``client`` for ``model`` at ``dim`` dimensions."""
        self.client = client
        self.model = model
        self.dim = dim

    @classmethod
    def from_config(cls, config: MemoryConfig) -> GeminiEmbeddingBackend:
        """Build from ``google_api_key``, ``google_base_url``, ``embedding_model`` and ``embedding_dim``."""
        return cls(
            gemini_client(config),
            model=config.embedding_model or DEFAULT_EMBEDDING_MODEL,
            dim=embedding_dim_for(config, "gemini"),
        )

    async def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch in one request."""
        from google.genai import types

        config = types.EmbedContentConfig(output_dimensionality=self.dim)
        parts: Any = list(texts)  # the SDK's union of content shapes depends on optional packages (PIL)
        response = await sdk_call(
            lambda: self.client.aio.models.embed_content(model=self.model, contents=parts, config=config),
            lambda exc: translate_gemini_error(exc, self.model, "embedding_model"),
        )
        embeddings = response.embeddings or []
        if len(embeddings) != len(texts) or any(not e.values for e in embeddings):
            raise malformed_response(
                PROVIDER, self.model, f"{len(embeddings)} usable embeddings for {len(texts)} inputs"
            )
        rows = [e.values or [] for e in embeddings]
        if len({len(r) for r in rows}) > 1:
            raise malformed_response(PROVIDER, self.model, "embeddings of different lengths")
        return np.asarray(rows, dtype=np.float32)


def to_gemini_contents(messages: list[dict[str, str]]) -> tuple[str | None, list[dict[str, Any]]]:
    """Split chat messages into Gemini's system instruction and ``contents`` (assistant -> model)."""
    system = [m["content"] for m in messages if m.get("role") == "system"]
    contents = [
        {"role": _ROLES.get(m.get("role", "user"), "user"), "parts": [{"text": m.get("content", "")}]}
        for m in messages
        if m.get("role") != "system"
    ]
    return ("\n\n".join(system) if system else None), contents


class GeminiChatBackend:
    """``models/{model}:generateContent``; JSON via ``response_mime_type`` + ``response_schema``."""

    provider = PROVIDER

    def __init__(self, client: genai.Client, *, model: str = DEFAULT_CHAT_MODEL) -> None:
        """Use ``client`` for generation ``model``."""
        self.client = client
        self.model = model

    @classmethod
    def from_config(cls, config: MemoryConfig) -> GeminiChatBackend:
        """Build from ``google_api_key``, ``google_base_url`` and ``summarization_model``."""
        return cls(gemini_client(config), model=config.summarization_model or DEFAULT_CHAT_MODEL)

    async def chat(
        self, messages: list[dict[str, str]], *, max_tokens: int | None = None, schema: dict[str, Any] | None = None
    ) -> str:
        """One generation; returns the model's text."""
        from google.genai import types

        system, contents = to_gemini_contents(messages)
        settings: dict[str, Any] = {"system_instruction": system, "max_output_tokens": max_tokens}
        if schema is not None:
            settings.update(response_mime_type="application/json", response_schema=schema)
        if "flash" in self.model and "2.5" in self.model:
            settings["thinking_config"] = types.ThinkingConfig(thinking_budget=0)  # memory chores need no thinking
        config = types.GenerateContentConfig(**settings)
        response = await sdk_call(
            lambda: self.client.aio.models.generate_content(model=self.model, contents=cast(Any, contents),
                                                            config=config),
            lambda exc: translate_gemini_error(exc, self.model, "summarization_model"),
        )
        text = response.text
        if not text:
            candidates = response.candidates or []
            reason = candidates[0].finish_reason if candidates else None
            raise malformed_response(PROVIDER, self.model, f"no text in the answer (finish_reason={reason})")
        return text


__all__ = [
    "DEFAULT_CHAT_MODEL",
    "DEFAULT_DIM",
    "DEFAULT_EMBEDDING_MODEL",
    "GeminiChatBackend",
    "GeminiEmbeddingBackend",
    "gemini_client",
    "to_gemini_contents",
    "translate_gemini_error",
]
