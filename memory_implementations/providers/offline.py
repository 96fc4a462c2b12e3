"""Offline (no-LLM) summariser and entity extractor, re-exported from their modules."""

from __future__ import annotations

from .extractive_summarizer import ExtractiveSummarizer
from .rule_extractor import RuleBasedEntityExtractor

__all__ = ["ExtractiveSummarizer", "RuleBasedEntityExtractor"]
