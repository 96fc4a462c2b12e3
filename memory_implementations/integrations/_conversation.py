"""One user's conversations on the conversation tier: the storage behind the chat-store integrations.

The tier is the orchestrator's conversation writer (the summary tier when enabled — it writes through
its buffer and keeps summaries up to date — else the buffer), a tier passed in, or a buffer built from
a config. Reads are ``get_messages`` (every message of the session, oldest first, from PostgreSQL),
writes are ``store_many`` (one INSERT, then the Redis window). Deleting one message rewrites the
session (``clear`` + ``store_many`` of the rest, keeping timestamps and metadata), because the tiers
offer no per-message delete: message ids change and a writer racing on the same session may interleave.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from ..base import BaseMemory
from ..config import MemoryConfig
from ..context import jsonable
from ..errors import ConfigError, ValidationError
from ..memories import _shared as sh
from ..memories.buffer import ConversationBufferMemory
from ..memories.summary import ConversationSummaryMemory
from ..orchestrator import MemoryOrchestrator
from ..types import ROLES, MemoryType, Message
from ._portal import Portal

#: What a chat store / history may be built on.
ConversationSource = MemoryOrchestrator | BaseMemory | Mapping[str, Any] | MemoryConfig | None
ConversationTier = ConversationBufferMemory | ConversationSummaryMemory

#: Framework role names and the tier role each is stored as (the original is kept in the metadata).
ROLE_ALIASES: dict[str, str] = {
    "human": "user",
    "ai": "assistant",
    "developer": "system",
    "function": "tool",
    "chatbot": "assistant",
    "model": "assistant",
}
#: Metadata key holding what is needed to rebuild a framework message exactly.
META_KEY = "chat_message"

_SESSIONS = """
SELECT session_id FROM memory_messages WHERE user_id = %s GROUP BY session_id ORDER BY min(id)
"""


def resolve_tier(source: ConversationSource) -> tuple[ConversationTier, bool]:
    """The conversation tier of ``source`` and whether the caller owns it (built here, so closed by the caller)."""
    if isinstance(source, MemoryOrchestrator):
        for mt in (MemoryType.CONVERSATION_SUMMARY, MemoryType.CONVERSATION_BUFFER):
            tier = source.memories.get(mt)
            if isinstance(tier, ConversationBufferMemory | ConversationSummaryMemory):
                return tier, False
        raise ConfigError(
            "the orchestrator enables no conversation tier: add conversation_buffer or conversation_summary "
            "to enabled_memories",
            field="enabled_memories",
        )
    if isinstance(source, ConversationBufferMemory | ConversationSummaryMemory):
        return source, False
    if isinstance(source, BaseMemory):
        raise ConfigError(
            f"a chat store needs a conversation tier, got {type(source).__name__} "
            f"(use ConversationBufferMemory, ConversationSummaryMemory or a MemoryOrchestrator)",
            field="memory",
        )
    return ConversationBufferMemory(source), True


def tier_factory(tier: ConversationTier) -> Callable[[], Awaitable[ConversationTier]]:
    """A builder of a fresh tier like ``tier`` (same class and config, its own connections) for another loop."""
    cls, config = type(tier), tier.config

    async def make() -> ConversationTier:
        fresh = cls(config)
        await fresh.initialize()
        return fresh

    return make


_SHARED: weakref.WeakKeyDictionary[Any, Portal[Any]] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def shared_tier_portal(tier: ConversationTier, *, name: str) -> Portal[ConversationTier]:
    """The one private loop thread (with its own copy of ``tier``) that every sync wrapper of ``tier`` uses.

    Frameworks build a wrapper per call (LangChain's ``get_session_history`` lambda): one portal per
    wrapper would start a thread and open connections per call and never close them. It lives as long
    as ``tier`` (a daemon thread; its tier is closed by ``close_shared_portal`` or at exit).
    """
    with _SHARED_LOCK:
        portal = _SHARED.get(tier)
        if portal is None:
            async def close(copy: ConversationTier) -> None:
                await copy.close()

            portal = _SHARED[tier] = Portal(tier_factory(tier), close, name=name)
        return portal


def close_shared_portal(tier: ConversationTier) -> None:
    """Stop ``tier``'s shared portal (closing its copy of the tier); the next sync call starts a new one."""
    with _SHARED_LOCK:
        portal = _SHARED.pop(tier, None)
    if portal is not None:
        portal.close()


def require_session(key: Any) -> str:
    """A chat key (session id): a non-empty string."""
    return sh.require_name(key, "key")


class Conversations:
    """Async reads and writes of one user's conversation sessions on a conversation tier."""

    def __init__(self, tier: ConversationTier, user_id: str) -> None:
        """Bind ``tier`` and the tenant ``user_id``."""
        self.tier = tier
        self.user_id = sh.require_name(user_id, "user_id")

    async def get(self, session_id: str) -> list[Message]:
        """Every message of the session, oldest first."""
        return await self.tier.get_messages(require_session(session_id), self.user_id)

    async def add(self, session_id: str, items: Sequence[Mapping[str, Any]]) -> None:
        """Append messages (role, content, metadata, created_at) in one durable write."""
        session_id = require_session(session_id)
        if items:
            await self.tier.store_many([{**item, "session_id": session_id, "user_id": self.user_id} for item in items])

    async def clear(self, session_id: str) -> int:
        """Delete the session's messages (and, on the summary tier, its summaries); return how many."""
        return await self.tier.clear(session_id=require_session(session_id), user_id=self.user_id)

    async def replace(self, session_id: str, items: Sequence[Mapping[str, Any]]) -> None:
        """Make ``items`` the session's whole history (validated before anything is deleted)."""
        session_id = require_session(session_id)
        checked = [{**item, "session_id": session_id, "user_id": self.user_id} for item in items]
        await self.tier.initialize()
        buffer = self.tier if isinstance(self.tier, ConversationBufferMemory) else self.tier.buffer
        for i, item in enumerate(checked):
            try:
                buffer.validate(item)
            except ValidationError as exc:
                raise ValidationError(f"messages[{i}]: {exc.message}", field=exc.field) from None
        await self.clear(session_id)
        await self.add(session_id, items)

    async def pop(self, session_id: str, index: int) -> Message | None:
        """Remove the message at ``index`` (negative counts from the end); None when out of range."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValidationError("'idx' must be an integer", field="idx")
        messages = await self.get(session_id)
        if not -len(messages) <= index < len(messages):
            return None
        removed = messages.pop(index)
        await self.replace(session_id, [as_item(m) for m in messages])
        return removed

    async def sessions(self) -> list[str]:
        """The user's session ids, oldest first (Redis keys when ``durability="redis"`` keeps no PostgreSQL rows)."""
        await self.tier.initialize()
        stores = self.tier.stores
        if self.tier.config.durability == "postgres":
            rows = await sh.pg_fetch(stores, _SESSIONS, (self.user_id,))
            return [str(r[0]) for r in rows]
        found: list[str] = []
        async for raw in stores.redis.scan_iter(match=stores.keys.pattern(self.user_id, None, "buffer", "meta")):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            inner = key[key.index("{") + 1 : key.rindex("}")]
            found.append(unquote(inner.split(":", 1)[1]))
        return sorted(found)


def as_item(message: Message) -> dict[str, Any]:
    """A stored message as an item to store again (timestamps and metadata kept)."""
    return {
        "role": message.role,
        "content": message.content,
        "metadata": dict(message.metadata),
        "created_at": message.created_at,
    }


def normalise_role(role: Any, field: str = "role") -> tuple[str, str | None]:
    """``(tier role, original role or None)`` for a framework role name; ValidationError when unknown."""
    name = getattr(role, "value", role)
    if not isinstance(name, str):
        raise ValidationError(f"'{field}' must be a string, got {type(name).__name__}", field=field)
    if name in ROLES:
        return name, None
    if name in ROLE_ALIASES:
        return ROLE_ALIASES[name], name
    allowed = ", ".join([*ROLES, *ROLE_ALIASES])
    raise ValidationError(f"'{field}' must be one of {allowed}; got {name!r}", field=field)


def json_safe(value: Any) -> Any:
    """``value`` as JSON-ready data (pydantic models dumped, other objects made JSON-compatible)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return json_safe(dump(mode="json"))
        except Exception:  # a model that cannot dump as JSON: fall back to the generic conversion
            pass
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    converted = jsonable(value)
    try:
        json.dumps(converted)
    except (TypeError, ValueError):
        return str(converted)
    return converted


def dict_to_item(message: Mapping[str, Any], index: int | None = None) -> dict[str, Any]:
    """A plain ``{"role", "content", ...}`` message as a tier item; other keys are kept for the round trip."""
    at = f"messages[{index}]." if index is not None else ""
    if not isinstance(message, Mapping):
        raise ValidationError(f"a message must be a mapping with 'role' and 'content', got {type(message).__name__}",
                              field=f"{at}message")
    role, original = normalise_role(message.get("role", "user"), f"{at}role")
    content = message.get("content")
    if content is None:
        content = ""
    extra: dict[str, Any] = {k: json_safe(v) for k, v in message.items() if k not in ("role", "content")}
    if not isinstance(content, str):
        extra["content"] = json_safe(content)
        content = text_of_content(content)
    if original is not None:
        extra["role"] = original
    return {"role": role, "content": content, "metadata": {META_KEY: extra} if extra else {}}


def item_to_dict(message: Message) -> dict[str, Any]:
    """A stored message as a plain dict message (the inverse of :func:`dict_to_item`)."""
    extra = message.metadata.get(META_KEY)
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if isinstance(extra, Mapping):
        out.update(extra)
    return out


def text_of_content(content: Any) -> str:
    """The text of a message content: a string, or the text parts of a list of content blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        return str(content.get("text") or "")
    if isinstance(content, list | tuple):
        parts = [text_of_content(p) if not isinstance(p, str) else p for p in content]
        return "\n".join(p for p in parts if p)
    text = getattr(content, "text", None)
    return text if isinstance(text, str) else ""


__all__ = [
    "META_KEY",
    "ROLE_ALIASES",
    "ConversationSource",
    "ConversationTier",
    "Conversations",
    "as_item",
    "dict_to_item",
    "item_to_dict",
    "json_safe",
    "normalise_role",
    "require_session",
    "resolve_tier",
    "text_of_content",
    "tier_factory",
]
