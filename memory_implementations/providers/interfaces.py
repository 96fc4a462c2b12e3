"""Protocols and result types of the summarisers and entity extractors (LLM-backed or offline)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..types import Message

USER_ENTITY = "User"


@dataclass
class ExtractedEntity:
    """An entity found in text."""

    name: str
    type: str
    aliases: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExtractedRelationship:
    """A directed, typed link between two extracted entities (by name)."""

    source: str
    target: str
    type: str
    weight: float = 1.0


@dataclass
class Extraction:
    """Entities and relationships found in one text."""

    entities: list[ExtractedEntity] = field(default_factory=list)
    relationships: list[ExtractedRelationship] = field(default_factory=list)

    def entity(self, name: str) -> ExtractedEntity | None:
        """The entity called ``name`` (case-insensitive), if any."""
        low = name.lower()
        return next((e for e in self.entities if e.name.lower() == low), None)


@runtime_checkable
class Summarizer(Protocol):
    """Folds new messages into a running summary within a token budget."""

    name: str

    async def summarize(self, previous_summary: str | None, messages: list[Message], *, max_tokens: int) -> str:
        """Return the updated summary, at most ``max_tokens`` tokens."""
        ...


@runtime_checkable
class EntityExtractor(Protocol):
    """Finds entities (of the configured types) and relationships in text."""

    name: str

    async def extract(
        self, text: str, *, entity_types: Sequence[str], known_entities: Sequence[str] = ()
    ) -> Extraction:
        """Return the entities and relationships in ``text``."""
        ...


__all__ = [
    "USER_ENTITY",
    "EntityExtractor",
    "ExtractedEntity",
    "ExtractedRelationship",
    "Extraction",
    "Summarizer",
]
