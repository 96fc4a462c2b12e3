"""Public data types: memory kinds, messages, requests, contexts and health reports."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from .errors import (
    BackendUnavailable,
    ConfigError,
    MemoryError,
    NotFound,
    ProviderError,
    SchemaMismatch,
    ValidationError,
)

Role = Literal["user", "assistant", "system", "tool"]
ROLES: tuple[str, ...] = ("user", "assistant", "system", "tool")
HealthState = Literal["healthy", "degraded", "unhealthy"]


class MemoryType(StrEnum):
    """The six memory tiers."""

    CONVERSATION_BUFFER = "conversation_buffer"
    CONVERSATION_SUMMARY = "conversation_summary"
    VECTOR_DATABASE = "vector_database"
    WORKING_MEMORY = "working_memory"
    KEY_VALUE_STORE = "key_value_store"
    ENTITY_MEMORY = "entity_memory"


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _require_str(data: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise ValidationError(f"'{name}' is required and must be a non-empty string", field=name)
    if not isinstance(value, str):
        raise ValidationError(f"'{name}' must be a string, got {type(value).__name__}", field=name)
    return value


@dataclass(slots=True)
class Message:
    """One conversation message as stored by the conversation tiers."""

    session_id: str
    role: str
    content: str
    user_id: str = "default"
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    id: int | None = None
    token_count: int | None = None

    @classmethod
    def from_any(cls, item: Mapping[str, Any] | Message, *, max_chars: int | None = None) -> Message:
        """Validate a seed-style dict (or a Message) into a Message; raise ValidationError naming the field."""
        if isinstance(item, Message):
            data: Mapping[str, Any] = asdict(item)
        elif isinstance(item, Mapping):
            data = item
        else:
            raise ValidationError(f"a message must be a mapping or Message, got {type(item).__name__}", field="item")
        session_id = _require_str(data, "session_id")
        user_id = _require_str(data, "user_id", optional=True) or "default"
        role = data.get("role", "user")
        if role not in ROLES:
            raise ValidationError(f"'role' must be one of {', '.join(ROLES)}; got {role!r}", field="role")
        content = data.get("content")
        if not isinstance(content, str):
            raise ValidationError("'content' is required and must be a string", field="content")
        if max_chars is not None and len(content) > max_chars:
            raise ValidationError(
                f"'content' is {len(content)} characters; the limit is {max_chars} (max_message_chars)",
                field="content",
            )
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ValidationError("'metadata' must be a mapping", field="metadata")
        created = data.get("created_at") or data.get("timestamp")
        if isinstance(created, str):
            try:
                created = datetime.fromisoformat(created)
            except ValueError as exc:
                raise ValidationError(f"'created_at' is not an ISO timestamp: {created!r}", field="created_at") from exc
        if created is not None and not isinstance(created, datetime):
            raise ValidationError("'created_at' must be a datetime or ISO string", field="created_at")
        return cls(
            session_id=str(session_id),
            role=str(role),
            content=content,
            user_id=user_id,
            metadata=dict(metadata),
            created_at=created,
            id=data.get("id"),
            token_count=data.get("token_count"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the message as a JSON-ready dict (the seed's shape)."""
        return {
            "id": self.id,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "role": self.role,
            "content": self.content,
            "metadata": self.metadata,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "token_count": self.token_count,
        }


@dataclass(slots=True)
class ContextRequest:
    """What a caller asks memory for on one turn."""

    query: str = ""
    session_id: str | None = None
    user_id: str = "default"
    max_total_tokens: int | None = None
    namespace: str | None = None
    model: str | None = None
    weights: dict[str, float] | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    memory_types: list[MemoryType] | None = None

    def __post_init__(self) -> None:
        """Refuse a malformed request before any tier reads (ValidationError naming the field).

        ``query`` may be empty: no search, each tier returns what it has without one (recent
        conversation, profile, most recent memories). ``session_id`` may be omitted: no conversation
        section, long-term memory only.
        """
        if not isinstance(self.query, str):
            raise ValidationError(
                f"'query' must be a string (\"\" for no search), got {type(self.query).__name__}", field="query"
            )
        _check_name(self.user_id, "user_id")
        if self.session_id is not None:
            _check_name(self.session_id, "session_id")
        if self.namespace is not None:
            _check_name(self.namespace, "namespace")
        mtt = self.max_total_tokens
        if mtt is not None and (not isinstance(mtt, int) or isinstance(mtt, bool) or mtt <= 0):
            raise ValidationError(
                f"'max_total_tokens' must be a positive integer, got {mtt!r}", field="max_total_tokens"
            )
        if self.weights is not None and not isinstance(self.weights, Mapping):
            raise ValidationError("'weights' must be a mapping of section name to number", field="weights")
        if not isinstance(self.filters, Mapping):
            raise ValidationError(f"'filters' must be a mapping, got {type(self.filters).__name__}", field="filters")

    @classmethod
    def from_any(cls, query: Mapping[str, Any] | ContextRequest | str | None) -> ContextRequest:
        """Build a request from the seed's dict, a plain query string, or a request."""
        if isinstance(query, ContextRequest):
            return query
        if query is None:
            return cls()
        if isinstance(query, str):
            return cls(query=query)
        if not isinstance(query, Mapping):
            raise ValidationError(f"a context query must be a mapping, got {type(query).__name__}", field="query")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(query) - known
        filters = dict(query.get("filters") or {})
        for key in unknown:
            filters[key] = query[key]
        q = query.get("query")
        return cls(
            query="" if q is None else q,
            session_id=query.get("session_id"),
            user_id="default" if query.get("user_id") is None else query["user_id"],
            max_total_tokens=query.get("max_total_tokens"),
            namespace=query.get("namespace"),
            model=query.get("model"),
            weights=query.get("weights"),
            filters=filters,
            memory_types=query.get("memory_types"),
        )


def _check_name(value: Any, name: str) -> None:
    """A user, session or namespace id: a non-blank string without NUL characters."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"'{name}' must be a non-empty string, got {value!r}", field=name)
    if "\x00" in value:
        raise ValidationError(f"'{name}' must not contain NUL characters", field=name)


@dataclass(slots=True)
class StoredRef:
    """Where a stored item landed."""

    id: str
    memory_type: MemoryType
    durable: bool = True
    created: bool = True


@dataclass
class MemoryContext:
    """A tier's answer to ``get_context``: typed, and readable as the seed's dict (``ctx.get("messages")``)."""

    memory_type: MemoryType
    items: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    token_count: int = 0
    latency_ms: float = 0.0
    truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the seed-style dict view."""
        out: dict[str, Any] = {
            "memory_type": self.memory_type.value,
            "items": self.items,
            "text": self.text,
            "token_count": self.token_count,
            "latency_ms": self.latency_ms,
            "truncated": self.truncated,
        }
        out.update(self.extra)
        return out

    def get(self, key: str, default: Any = None) -> Any:
        """Read a key of the seed-style dict view (``summary``, ``messages``, ``items``, ...)."""
        return self.as_dict().get(key, default)

    def keys(self) -> list[str]:
        """Keys of the seed-style dict view."""
        return list(self.as_dict())

    def __getitem__(self, key: str) -> Any:
        """Look a key up in the seed-style dict view."""
        return self.as_dict()[key]

    def __contains__(self, key: object) -> bool:
        """Whether the seed-style dict view has ``key``."""
        return key in self.as_dict()


@dataclass
class HealthStatus(Mapping[str, Any]):
    """A health report: status, latency, details and timestamp; readable as a dict."""

    status: HealthState
    latency_ms: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    timestamp: str = field(default_factory=lambda: utcnow().isoformat())

    def as_dict(self) -> dict[str, Any]:
        """Return the dict view."""
        return {
            "status": self.status,
            "latency_ms": self.latency_ms,
            "details": self.details,
            "timestamp": self.timestamp,
        }

    def __getitem__(self, key: str) -> Any:
        """Look a key up in the dict view."""
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        """Iterate the dict view's keys."""
        return iter(self.as_dict())

    def __len__(self) -> int:
        """Number of keys in the dict view."""
        return 4


class Stopwatch:
    """Milliseconds since creation, for latency reports."""

    __slots__ = ("_t0",)

    def __init__(self) -> None:
        """Start the watch."""
        self._t0 = time.perf_counter()

    @property
    def ms(self) -> float:
        """Elapsed milliseconds."""
        return (time.perf_counter() - self._t0) * 1000.0


__all__ = [
    "ROLES",
    "BackendUnavailable",
    "ConfigError",
    "ContextRequest",
    "HealthStatus",
    "MemoryContext",
    "MemoryError",
    "MemoryType",
    "Message",
    "NotFound",
    "ProviderError",
    "SchemaMismatch",
    "Stopwatch",
    "StoredRef",
    "ValidationError",
    "utcnow",
]
