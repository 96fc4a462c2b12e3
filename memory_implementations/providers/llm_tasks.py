"""LLM-backed summariser and entity extractor (callers fall back to the offline ones on ProviderError)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ProviderError
from ..tokens import get_tokenizer
from ..types import Message
from .interfaces import USER_ENTITY, ExtractedEntity, ExtractedRelationship, Extraction

if TYPE_CHECKING:
    from .llm import LLM

_SUMMARY_SYSTEM = (
    "You maintain the running memory summary of a conversation between a user and an assistant. "
    "Keep durable facts about the user (name, job, employer, city, family, preferences, plans), decisions, "
    "commitments and open questions; drop small talk. Attribute statements ('User: ...', 'Assistant: ...'). "
    "Answer with the updated summary only, in at most {max_tokens} tokens."
)


def render_transcript(messages: Sequence[Message]) -> str:
    """``Role: content`` lines."""
    return "\n".join(f"{m.role.capitalize()}: {m.content.strip()}" for m in messages if m.content.strip())


class LLMSummarizer:
    """Asks the LLM to fold new messages into the previous summary; output cut to ``max_tokens``."""

    def __init__(self, llm: LLM, *, tokenizer_model: str | None = None) -> None:
        """Summarise with ``llm``; count tokens with ``tokenizer_model``."""
        self.llm = llm
        self.name = f"llm:{llm.model}"
        self.tokenizer = get_tokenizer(tokenizer_model)

    async def summarize(self, previous_summary: str | None, messages: list[Message], *, max_tokens: int) -> str:
        """Return the updated summary, at most ``max_tokens`` tokens."""
        if max_tokens <= 0:
            return ""
        prompt = (
            f"Previous summary:\n{(previous_summary or '(none)').strip()}\n\n"
            f"New messages:\n{render_transcript(messages) or '(none)'}\n\nWrite the updated summary."
        )
        text = await self.llm.complete(
            [
                {"role": "system", "content": _SUMMARY_SYSTEM.format(max_tokens=max_tokens)},
                {"role": "user", "content": prompt},
            ],
            max_tokens=max_tokens,
        )
        return self.tokenizer.truncate(text.strip(), max_tokens)


def extraction_schema(entity_types: Sequence[str]) -> dict[str, Any]:
    """The JSON schema the extractor asks for (attributes as key/value pairs: portable to Gemini)."""
    pair = {
        "type": "object",
        "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
        "required": ["key", "value"],
    }
    entity = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "type": {"type": "string", "enum": list(entity_types)},
            "aliases": {"type": "array", "items": {"type": "string"}},
            "attributes": {"type": "array", "items": pair},
        },
        "required": ["name", "type"],
    }
    relationship = {
        "type": "object",
        "properties": {
            "source": {"type": "string"},
            "target": {"type": "string"},
            "type": {"type": "string"},
            "weight": {"type": "number"},
        },
        "required": ["source", "target", "type"],
    }
    return {
        "title": "entity_extraction",
        "type": "object",
        "properties": {
            "entities": {"type": "array", "items": entity},
            "relationships": {"type": "array", "items": relationship},
        },
        "required": ["entities", "relationships"],
    }


_EXTRACT_SYSTEM = (
    'Extract entities of these types only: {types}. The speaker is the entity "User" (type person): put facts '
    "about them (name, job, employer, city, preferences) in User's attributes. Relationships use snake_case verbs "
    "such as works_at, lives_in, moved_to, knows, has_sister, prefers. Known entities: {known}. Answer JSON."
)


class LLMEntityExtractor:
    """Extraction by the LLM's JSON mode; the answer is validated and filtered to the configured types."""

    def __init__(self, llm: LLM) -> None:
        """Extract with ``llm``."""
        self.llm = llm
        self.name = f"llm:{llm.model}"

    async def extract(
        self, text: str, *, entity_types: Sequence[str], known_entities: Sequence[str] = ()
    ) -> Extraction:
        """Return the entities and relationships in ``text``; ProviderError if the answer is unusable."""
        types = [t.lower() for t in entity_types]
        if not text.strip():
            return Extraction()
        system = _EXTRACT_SYSTEM.format(types=", ".join(types), known=", ".join(known_entities[:50]) or "none")
        data = await self.llm.complete_json(
            [{"role": "system", "content": system}, {"role": "user", "content": text}], extraction_schema(types)
        )
        return parse_extraction(data, types, model=self.llm.model)


def parse_extraction(data: dict[str, Any], entity_types: Sequence[str], *, model: str) -> Extraction:
    """Validate an extraction answer; entities of other types and dangling relationships are dropped."""
    raw_entities, raw_rels = data.get("entities"), data.get("relationships", [])
    if not isinstance(raw_entities, list) or not isinstance(raw_rels, list):
        raise ProviderError(f"model {model!r} answered without an 'entities' list", status=200)
    allowed = set(entity_types)
    entities: dict[str, ExtractedEntity] = {}
    for item in raw_entities:
        if not isinstance(item, dict):
            continue
        name, kind = str(item.get("name") or "").strip(), str(item.get("type") or "").strip().lower()
        if not name or kind not in allowed:
            continue
        entity = entities.setdefault(name.lower(), ExtractedEntity(name=name, type=kind))
        entity.aliases.extend(str(a) for a in item.get("aliases") or [] if str(a).strip() and a not in entity.aliases)
        entity.attributes.update(_attributes(item.get("attributes")))
    names = set(entities) | ({USER_ENTITY.lower()} if "person" in allowed else set())
    relationships: list[ExtractedRelationship] = []
    for item in raw_rels:
        if not isinstance(item, dict):
            continue
        source, target = str(item.get("source") or "").strip(), str(item.get("target") or "").strip()
        rel_type = str(item.get("type") or "").strip().lower().replace(" ", "_")
        if source.lower() in names and target.lower() in names and rel_type:
            weight = item.get("weight", 1.0)
            relationships.append(
                ExtractedRelationship(
                    source, target, rel_type, float(weight) if isinstance(weight, (int, float)) else 1.0
                )
            )
    return Extraction(entities=list(entities.values()), relationships=relationships)


def _attributes(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items()}
    out: dict[str, Any] = {}
    for pair in raw or []:
        if isinstance(pair, dict) and pair.get("key"):
            out[str(pair["key"])] = pair.get("value")
    return out


__all__ = ["LLMEntityExtractor", "LLMSummarizer", "extraction_schema", "parse_extraction", "render_transcript"]
