"""``ComprehensiveContext``: what the orchestrator returns for one turn, typed and readable as a dict."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any
from uuid import UUID


def jsonable(value: Any) -> Any:
    """Return ``value`` converted to JSON-ready types (datetimes as ISO strings, UUIDs as str, enums by value)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k.value if isinstance(k, Enum) else k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return jsonable(value.tolist())
    return str(value)


@dataclasses.dataclass
class SectionContext:
    """One section of the composed context: the items that made it in and the budget accounting.

    ``tokens`` is what the section costs in the rendering (header + item lines), ``budget`` the tokens
    it was allowed after reflow, ``share`` its weighted share of the budget before reflow, ``demand``
    what all its candidates would have cost, and ``granularity`` the bound of the composer's guarantee:
    ``tokens >= min(demand, share) - granularity``.
    """

    name: str
    title: str
    items: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    tokens: int = 0
    budget: int = 0
    share: float = 0.0
    demand: int = 0
    weight: float = 0.0
    granularity: int = 0
    dropped: int = 0
    deduplicated: int = 0
    truncated: bool = False
    tiers: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the section as a JSON-ready dict."""
        return {
            "name": self.name,
            "title": self.title,
            "items": jsonable(self.items),
            "tokens": self.tokens,
            "budget": self.budget,
            "share": round(self.share, 3),
            "demand": self.demand,
            "weight": self.weight,
            "granularity": self.granularity,
            "dropped": self.dropped,
            "deduplicated": self.deduplicated,
            "truncated": self.truncated,
            "tiers": list(self.tiers),
        }

    @property
    def contents(self) -> list[str]:
        """The rendered content of each item, in rendering order."""
        return [str(i.get("content", "")) for i in self.items]

    def __getitem__(self, key: str) -> Any:
        """Look a key up in the dict view (``section["items"]``)."""
        return self.to_dict()[key]


@dataclasses.dataclass
class ComprehensiveContext(Mapping[str, Any]):
    """The orchestrator's answer for one turn: sections, renderings and accounting.

    Sections appear in the stable order ``summary, entities, key_value, working_memory,
    vector_search, recent_conversation`` (only sections of enabled tiers). Renderings:
    ``messages`` (OpenAI style: one system message holding the memory sections, then the recent
    conversation as user/assistant messages), ``anthropic()`` (``{"system", "messages"}``) and
    ``text`` (one block). ``token_counts`` holds each rendering's size counted by the tokenizer of
    the request's model; each is ``<= max_total_tokens``.
    """

    max_total_tokens: int
    sections: dict[str, SectionContext] = dataclasses.field(default_factory=dict)
    system: str = ""
    messages: list[dict[str, str]] = dataclasses.field(default_factory=list)
    anthropic_system: str = ""
    anthropic_messages: list[dict[str, str]] = dataclasses.field(default_factory=list)
    text: str = ""
    token_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    overhead_tokens: int = 0
    tokenizer_model: str = ""
    tokenizer_method: str = ""
    query: str = ""
    session_id: str | None = None
    user_id: str | None = None
    latency_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    degraded: dict[str, str] = dataclasses.field(default_factory=dict)
    entities: list[str] = dataclasses.field(default_factory=list)
    trimmed_after_render: int = 0
    explanation: dict[str, Any] | None = None  # get_comprehensive_context(..., explain=True); see ``explain``

    @property
    def total_tokens(self) -> int:
        """The largest of the renderings' token counts (each is within ``max_total_tokens``)."""
        return max(self.token_counts.values(), default=0)

    @property
    def budgets(self) -> dict[str, int]:
        """Token budget each section was allowed after reflow."""
        return {name: s.budget for name, s in self.sections.items()}

    @property
    def section_tokens(self) -> dict[str, int]:
        """Tokens each section costs in the rendering."""
        return {name: s.tokens for name, s in self.sections.items()}

    @property
    def conversation(self) -> list[dict[str, str]]:
        """The recent conversation as OpenAI-style messages (``messages`` without the system message)."""
        if self.system and self.messages and self.messages[0]["role"] == "system":
            return [dict(m) for m in self.messages[1:]]
        return [dict(m) for m in self.messages]

    def chat(self, query: str | None = None, *, system_prompt: str | None = None, format: str = "openai") -> Any:
        """The request to send: memory, then the user's ``query`` (default: this context's query) last.

        ``messages`` is the memory alone (system message + recent conversation); this adds the new
        question, exactly as ``orchestrator.turn(...).messages`` does. ``format="anthropic"`` gives
        ``{"system": ..., "messages": [...]}``; ``system_prompt`` is merged into the system message.
        """
        from .integrations.tools import render_prompt

        text = self.query if query is None else query
        if not isinstance(text, str) or not text.strip():
            from .errors import ValidationError

            raise ValidationError("'query' must be a non-empty string: the question to send", field="query")
        return render_prompt(self, text, format=format, system_prompt=system_prompt)  # type: ignore[arg-type]

    def anthropic(self) -> dict[str, Any]:
        """Anthropic Messages API form: ``{"system": str, "messages": [...]}`` (first message is the user's)."""
        return {"system": self.anthropic_system, "messages": [dict(m) for m in self.anthropic_messages]}

    def section(self, name: str) -> SectionContext | None:
        """One section by name (None when that section is not enabled)."""
        return self.sections.get(name)

    def to_dict(self) -> dict[str, Any]:
        """Return everything as a JSON-ready dict."""
        return {
            "query": self.query,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "max_total_tokens": self.max_total_tokens,
            "total_tokens": self.total_tokens,
            "token_counts": dict(self.token_counts),
            "overhead_tokens": self.overhead_tokens,
            "tokenizer": {"model": self.tokenizer_model, "method": self.tokenizer_method},
            "sections": {name: s.to_dict() for name, s in self.sections.items()},
            "budgets": self.budgets,
            "section_tokens": self.section_tokens,
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "degraded": dict(self.degraded),
            "entities": list(self.entities),
            "trimmed_after_render": self.trimmed_after_render,
            "system": self.system,
            "messages": [dict(m) for m in self.messages],
            "anthropic": self.anthropic(),
            "text": self.text,
            **({"explanation": self.explanation} if self.explanation is not None else {}),
        }

    def to_json(self) -> str:
        """Return ``to_dict()`` serialised as JSON."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def __getitem__(self, key: str) -> Any:
        """Look a key up in the dict view."""
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        """Iterate the dict view's keys."""
        return iter(self.to_dict())

    def __len__(self) -> int:
        """Number of keys in the dict view."""
        return len(self.to_dict())


__all__ = ["ComprehensiveContext", "SectionContext", "jsonable"]
