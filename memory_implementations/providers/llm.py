"""The LLM protocol (text + JSON) over OpenAI or Gemini, and the factories for summariser and extractor."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog

from ..errors import ConfigError, ProviderError
from .interfaces import (
    EntityExtractor,
    ExtractedEntity,
    ExtractedRelationship,
    Extraction,
    Summarizer,
)
from .retry import CallGuard, RetryPolicy

if TYPE_CHECKING:
    from ..config import MemoryConfig

log = structlog.get_logger("memory_implementations.providers")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


@runtime_checkable
class LLM(Protocol):
    """A chat model that answers with text or with a JSON object."""

    model: str

    async def complete(self, messages: list[dict[str, str]], *, max_tokens: int | None = None) -> str:
        """Return the model's answer to ``messages``."""
        ...

    async def complete_json(self, messages: list[dict[str, str]], schema: dict[str, Any]) -> dict[str, Any]:
        """Return the model's answer as a JSON object following ``schema``."""
        ...


class ChatBackend(Protocol):
    """One provider's raw chat call, wrapped by :class:`GuardedLLM`."""

    provider: str
    model: str

    async def chat(
        self, messages: list[dict[str, str]], *, max_tokens: int | None = None, schema: dict[str, Any] | None = None
    ) -> str:
        """One completion (no retries); JSON-constrained when ``schema`` is given."""
        ...


def parse_json_object(text: str, *, provider: str, model: str) -> dict[str, Any]:
    """Parse a model's JSON answer (code fences tolerated); ProviderError unless it is an object."""
    match = _FENCE.match(text)
    body = match.group(1) if match else text
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise ProviderError(f"{provider} model {model!r} answered with malformed JSON: {exc}", status=200) from exc
    if not isinstance(value, dict):
        raise ProviderError(
            f"{provider} model {model!r} answered JSON {type(value).__name__}, not an object", status=200
        )
    return value


class GuardedLLM:
    """An :class:`LLM` over a :class:`ChatBackend` with rate limiting and retries."""

    def __init__(self, backend: ChatBackend, *, guard: CallGuard, json_attempts: int = 2) -> None:
        """Wrap ``backend``; malformed JSON is asked for again ``json_attempts - 1`` times."""
        self.backend = backend
        self.model = backend.model
        self.provider = backend.provider
        self.guard = guard
        self.json_attempts = max(1, json_attempts)

    async def complete(self, messages: list[dict[str, str]], *, max_tokens: int | None = None) -> str:
        """Return the model's text answer."""
        return await self.guard.run(
            lambda: self.backend.chat(messages, max_tokens=max_tokens), what=f"complete:{self.model}"
        )

    async def complete_json(self, messages: list[dict[str, str]], schema: dict[str, Any]) -> dict[str, Any]:
        """Return the model's JSON object; malformed output is retried once, then ProviderError."""
        error: ProviderError | None = None
        for attempt in range(self.json_attempts):
            text = await self.guard.run(
                lambda: self.backend.chat(messages, schema=schema), what=f"complete_json:{self.model}"
            )
            try:
                return parse_json_object(text, provider=self.provider, model=self.model)
            except ProviderError as exc:
                log.warning("llm_malformed_json", model=self.model, attempt=attempt + 1, error=exc.message)
                error = exc
        assert error is not None
        raise error


def resolve_llm_provider(config: MemoryConfig) -> str:
    """ "openai", "gemini" or "offline" for ``config`` ("auto" picks by available keys)."""
    if config.llm_provider != "auto":
        return config.llm_provider
    if config.secret("openai_api_key"):
        return "openai"
    if config.secret("google_api_key"):
        return "gemini"
    return "offline"


def build_llm(config: MemoryConfig, *, policy: RetryPolicy | None = None) -> LLM | None:
    """The configured LLM, or None when no key is set or ``llm_provider="offline"``."""
    provider = resolve_llm_provider(config)
    backend: ChatBackend
    if provider == "offline":
        return None
    if provider == "openai":
        from .openai_provider import OpenAIChatBackend

        backend = OpenAIChatBackend.from_config(config)
    elif provider == "gemini":
        from .gemini_provider import GeminiChatBackend

        backend = GeminiChatBackend.from_config(config)
    else:  # pragma: no cover - config validation forbids other values
        raise ConfigError(f"unknown llm_provider {provider!r}", field="llm_provider")
    guard = CallGuard(
        policy=policy or RetryPolicy.from_config(config), requests_per_second=config.provider_requests_per_second
    )
    return GuardedLLM(backend, guard=guard)


def build_summarizer(config: MemoryConfig, *, llm: LLM | None = None) -> Summarizer:
    """An LLM-backed summariser when an LLM is configured (or given), else the extractive one."""
    from .llm_tasks import LLMSummarizer
    from .offline import ExtractiveSummarizer

    llm = llm if llm is not None else build_llm(config)
    if llm is None:
        return ExtractiveSummarizer(tokenizer_model=config.tokenizer_model)
    return LLMSummarizer(llm, tokenizer_model=config.tokenizer_model)


def build_entity_extractor(config: MemoryConfig, *, llm: LLM | None = None) -> EntityExtractor:
    """An LLM JSON extractor when an LLM is configured (or given), else the rule-based one."""
    from .llm_tasks import LLMEntityExtractor
    from .offline import RuleBasedEntityExtractor

    llm = llm if llm is not None else build_llm(config)
    if llm is None:
        return RuleBasedEntityExtractor()
    return LLMEntityExtractor(llm)


__all__ = [
    "LLM",
    "ChatBackend",
    "EntityExtractor",
    "ExtractedEntity",
    "ExtractedRelationship",
    "Extraction",
    "GuardedLLM",
    "Summarizer",
    "build_entity_extractor",
    "build_llm",
    "build_summarizer",
    "parse_json_object",
    "resolve_llm_provider",
]
