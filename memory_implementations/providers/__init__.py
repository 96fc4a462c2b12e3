"""Embedding and LLM providers: OpenAI, Gemini and offline fallbacks behind small protocols."""

from __future__ import annotations

from .embedding_cache import EmbeddingCache
from .embeddings import CachedEmbedder, Embedder, EmbeddingBackend, build_embedder, resolve_embedding_provider
from .extractive_summarizer import ExtractiveSummarizer
from .failures import TransientProviderError
from .interfaces import (
    USER_ENTITY,
    EntityExtractor,
    ExtractedEntity,
    ExtractedRelationship,
    Extraction,
    Summarizer,
)
from .lexical import LexicalHashEmbedder
from .llm import LLM, ChatBackend, GuardedLLM, build_entity_extractor, build_llm, build_summarizer, resolve_llm_provider
from .llm_tasks import LLMEntityExtractor, LLMSummarizer
from .local_embedder import MiniLMEmbedder, local_model_problem
from .retry import CallGuard, RetryPolicy
from .rule_extractor import RuleBasedEntityExtractor

__all__ = [
    "LLM",
    "USER_ENTITY",
    "CachedEmbedder",
    "CallGuard",
    "ChatBackend",
    "Embedder",
    "EmbeddingBackend",
    "EmbeddingCache",
    "EntityExtractor",
    "ExtractedEntity",
    "ExtractedRelationship",
    "Extraction",
    "ExtractiveSummarizer",
    "GuardedLLM",
    "LLMEntityExtractor",
    "LLMSummarizer",
    "LexicalHashEmbedder",
    "MiniLMEmbedder",
    "RetryPolicy",
    "RuleBasedEntityExtractor",
    "Summarizer",
    "TransientProviderError",
    "build_embedder",
    "build_entity_extractor",
    "build_llm",
    "build_summarizer",
    "local_model_problem",
    "resolve_embedding_provider",
    "resolve_llm_provider",
]
