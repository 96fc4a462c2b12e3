"""Request bodies of the HTTP API (pydantic; unknown fields are refused with 422 naming them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from ..types import MemoryType

Name = Field(min_length=1, max_length=256)
OptName = Field(None, min_length=1, max_length=256)
Role = Literal["user", "assistant", "system", "tool"]


class _Body(BaseModel):
    """Base of every request body: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ContextIn(_Body):
    """``POST /v1/context``: what memory should answer for this turn."""

    query: str = Field("", max_length=100_000, description="The user's current message (steers search).")
    session_id: str = Field(min_length=1, max_length=256, description="The conversation this turn belongs to.")
    user_id: str | None = Field(None, min_length=1, max_length=256, description="Default: the key's only user.")
    max_total_tokens: int | None = Field(None, gt=0, le=1_000_000)
    namespace: str | None = Field(None, min_length=1, max_length=256)
    model: str | None = Field(None, max_length=128, description="Tokenizer model for the budget.")
    weights: dict[str, float] | None = Field(None, description="Per-section weights overriding the server's.")
    filters: dict[str, Any] = Field(default_factory=dict, description="Metadata filters for vector search.")
    memory_types: list[MemoryType] | None = Field(None, description="Only these tiers answer.")
    explain: bool = Field(False, description="Add `explanation`: every candidate's fate and why, per section and tier.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"query": "where do I live?", "session_id": "s-1", "max_total_tokens": 1500}},
    )


class TurnIn(_Body):
    """``POST /v1/turns``: one user message and the assistant's reply."""

    session_id: str = Name
    user_id: str | None = OptName
    user_message: str = Field(max_length=1_000_000)
    assistant_message: str = Field(max_length=1_000_000)
    metadata: dict[str, Any] | None = None
    created_at: AwareDatetime | None = Field(
        None, description="When the turn happened (importing history); default now. Rendered as its date."
    )


class MessageItem(_Body):
    """One conversation message."""

    role: Role = "user"
    content: str = Field(max_length=1_000_000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class MessagesIn(_Body):
    """``POST /v1/sessions/{session_id}/messages``: one message (role + content) or ``messages: [...]``."""

    user_id: str | None = OptName
    role: Role | None = None
    content: str | None = Field(None, max_length=1_000_000)
    metadata: dict[str, Any] | None = None
    messages: list[MessageItem] | None = Field(None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _one_form(self) -> MessagesIn:
        if self.messages is None and self.content is None:
            raise ValueError("send 'content' (one message) or 'messages' (a list)")
        if self.messages is not None and (self.content is not None or self.role is not None):
            raise ValueError("send either 'content' or 'messages', not both")
        return self

    def to_items(self) -> list[MessageItem]:
        """The messages to store, in order."""
        if self.messages is not None:
            return list(self.messages)
        return [MessageItem(role=self.role or "user", content=self.content or "", metadata=self.metadata or {})]


class MemoryIn(_Body):
    """A semantic memory to store (``text`` is accepted for ``content``)."""

    content: str = Field(validation_alias=AliasChoices("content", "text"), max_length=1_000_000)
    user_id: str | None = OptName
    session_id: str | None = OptName
    namespace: str | None = OptName
    metadata: dict[str, Any] | None = None
    topics: list[str] | None = Field(None, description="Stored in metadata.topics; searchable with topics=[...].")


class MemoryBatchIn(_Body):
    """``POST /v1/memories/batch``: up to 1000 memories, embedded in one call."""

    user_id: str | None = Field(None, min_length=1, max_length=256, description="Default user of the items.")
    memories: list[MemoryIn] = Field(min_length=1, max_length=1000)


class SearchIn(_Body):
    """``POST /v1/memories/search``: semantic search with filters."""

    query: str = Field(validation_alias=AliasChoices("query", "text"), min_length=1, max_length=100_000)
    user_id: str | None = OptName
    k: int | None = Field(None, ge=1, le=1000, validation_alias=AliasChoices("k", "limit"))
    threshold: float | None = Field(
        None, ge=-1, le=1, validation_alias=AliasChoices("threshold", "min_relevance_score")
    )
    filters: dict[str, Any] | None = Field(None, description='Metadata containment filter, e.g. {"kind": "pref"}.')
    topics: list[str] | None = Field(None, description="Only memories tagged with all of these topics.")
    namespace: str | None = OptName
    session_id: str | None = OptName
    created_after: datetime | None = None
    created_before: datetime | None = None
    hybrid: bool | None = None
    mmr_lambda: float | None = Field(None, ge=0, le=1)


class MemoryPatch(_Body):
    """``PATCH /v1/memories/{id}``: new content (re-embedded) and/or new metadata."""

    content: str | None = Field(None, validation_alias=AliasChoices("content", "text"), max_length=1_000_000)
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _something(self) -> MemoryPatch:
        if self.content is None and self.metadata is None:
            raise ValueError("send 'content' and/or 'metadata'")
        return self


class KVPut(_Body):
    """``PUT /v1/kv/{namespace}/{key}``: any JSON value, optionally expiring."""

    value: Any = Field(description="Any JSON value.")
    user_id: str | None = OptName
    ttl_seconds: int | None = Field(None, ge=1, le=10 * 365 * 86400)


class WorkingItemIn(_Body):
    """``POST /v1/working/{namespace}/items``: one item of a task's working memory (same key: replaced)."""

    content: Any = Field(validation_alias=AliasChoices("content", "value"), description="Text or any JSON value.")
    key: str | None = Field(None, min_length=1, max_length=256, description="Item key (default: generated).")
    user_id: str | None = OptName
    importance: float | None = Field(None, ge=0, le=1)
    ttl_seconds: int | None = Field(None, ge=1, le=365 * 86400)
    metadata: dict[str, Any] | None = None


class ReasoningStepIn(_Body):
    """``POST /v1/working/{namespace}/reasoning``: one step of the namespace's reasoning chain."""

    content: str = Field(validation_alias=AliasChoices("content", "step", "thought"), min_length=1, max_length=100_000)
    step_type: str = Field("thought", max_length=32, description="thought, action, observation or result")
    user_id: str | None = OptName


__all__ = [
    "ContextIn",
    "KVPut",
    "MemoryBatchIn",
    "MemoryIn",
    "MemoryPatch",
    "MessageItem",
    "MessagesIn",
    "ReasoningStepIn",
    "SearchIn",
    "TurnIn",
    "WorkingItemIn",
]
