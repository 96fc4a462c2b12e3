"""A LangChain chat message history backed by the conversation tier: ``MemoryChatMessageHistory``.

It has ``BaseChatMessageHistory``'s surface: the ``messages`` property, ``aget_messages``,
``add_message`` / ``add_messages`` / ``aadd_messages``, ``add_user_message`` / ``add_ai_message``,
``clear`` / ``aclear``. One instance is one session of one user, which is what
``RunnableWithMessageHistory``'s ``get_session_history(session_id)`` factory returns.

langchain-core is optional: when importable the class subclasses its ``BaseChatMessageHistory`` and
speaks ``BaseMessage`` (serialised with LangChain's own ``message_to_dict``, so tool calls, names and ids
round-trip); otherwise it is a plain class speaking ``{"role", "content"}`` dicts. As in the LlamaIndex
store, async methods use the given tier on the caller's loop and sync ones a private loop thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from ..errors import ValidationError
from ..types import Message
from ._conversation import (
    META_KEY,
    Conversations,
    ConversationSource,
    ConversationTier,
    close_shared_portal,
    dict_to_item,
    item_to_dict,
    json_safe,
    normalise_role,
    require_session,
    resolve_tier,
    shared_tier_portal,
    text_of_content,
)
from ._portal import Portal

T = TypeVar("T")

try:  # optional: the [langchain] extra
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import BaseMessage, message_chunk_to_message, messages_from_dict

    LANGCHAIN_AVAILABLE = True
except ImportError:  # pragma: no cover - exercised when langchain-core is absent
    LANGCHAIN_AVAILABLE = False

#: LangChain message types and the tier role each is stored as.
LC_TYPE_ROLES: dict[str, str] = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool",
                                 "function": "tool"}
#: Tier roles and the LangChain type a message without LangChain metadata is read back as.
ROLE_LC_TYPES: dict[str, str] = {"user": "human", "assistant": "ai", "system": "system"}


def _lc_item(message: Any, index: int | None) -> dict[str, Any]:
    """A LangChain message as a tier item; its other fields (tool calls, ids, names) go to the metadata."""
    at = f"messages[{index}]." if index is not None else ""
    message = message_chunk_to_message(message)
    kind = message.type
    if kind == "chat":
        role, _ = normalise_role(message.role, f"{at}role")
    elif kind in LC_TYPE_ROLES:
        role = LC_TYPE_ROLES[kind]
    else:
        raise ValidationError(f"{at}type: LangChain message type {kind!r} cannot be stored", field=f"{at}type")
    data = {k: v for k, v in message.model_dump().items() if k not in ("content", "type") and v}
    extra: dict[str, Any] = {"lc_type": kind, "data": json_safe(data)}
    if not isinstance(message.content, str):
        extra["content"] = json_safe(message.content)
    return {"role": role, "content": text_of_content(message.content), "metadata": {META_KEY: extra}}


def _lc_message(message: Message) -> Any:
    """A stored message as a LangChain message (rebuilt exactly when LangChain wrote it)."""
    extra = message.metadata.get(META_KEY)
    if isinstance(extra, Mapping) and extra.get("lc_type"):
        data = dict(extra.get("data") or {})
        data["content"] = extra["content"] if "content" in extra else message.content
        return messages_from_dict([{"type": extra["lc_type"], "data": data}])[0]
    kind = ROLE_LC_TYPES.get(message.role)
    if kind is None:  # e.g. a tool message without its tool_call_id: keep the role on a generic message
        return messages_from_dict([{"type": "chat", "data": {"content": message.content, "role": message.role}}])[0]
    return messages_from_dict([{"type": kind, "data": {"content": message.content}}])[0]


class _PlainHistoryBase:
    """Stand-in base when langchain-core is not installed."""

    def add_user_message(self, message: Any) -> None:
        """Add a user message (a string or a message)."""
        self.add_messages([{"role": "user", "content": message} if isinstance(message, str) else message])

    def add_ai_message(self, message: Any) -> None:
        """Add an assistant message (a string or a message)."""
        self.add_messages([{"role": "assistant", "content": message} if isinstance(message, str) else message])

    def add_messages(self, messages: Sequence[Any]) -> None:
        """Add messages (implemented by the subclass)."""
        raise NotImplementedError


_Base: Any = BaseChatMessageHistory if LANGCHAIN_AVAILABLE else _PlainHistoryBase


class MemoryChatMessageHistory(_Base):
    """LangChain chat history of one session of one user, stored in the conversation tier.

    ``MemoryChatMessageHistory(session_id, orchestrator, user_id="u1")`` (writes go through the summary tier
    when enabled), a conversation tier instead of the orchestrator, or a config dict (builds a
    ``ConversationBufferMemory``; close with ``await history.aclose()``).
    """

    def __init__(self, session_id: str, memory: ConversationSource = None, *, user_id: str = "default") -> None:
        """Bind the session, the tenant and the conversation tier of ``memory`` (no I/O yet)."""
        super().__init__()
        self.session_id = require_session(session_id)
        self.user_id = user_id
        self.native = LANGCHAIN_AVAILABLE
        self._tier, self._owned = resolve_tier(memory)
        self._conversations = Conversations(self._tier, user_id)
        # sync calls run on one private loop per source tier, shared by every history of it
        self._portal: Portal[ConversationTier] = shared_tier_portal(self._tier, name="memory-chat-history")

    def _sync(self, op: Callable[[Conversations], Awaitable[T]]) -> T:
        """Run ``op`` on the shared portal's copy of the tier (sync methods)."""
        user_id = self.user_id

        async def run(tier: ConversationTier) -> T:
            return await op(Conversations(tier, user_id))

        return self._portal.call(run)

    # conversions -------------------------------------------------------------------------------
    def _items(self, messages: Sequence[Any]) -> list[dict[str, Any]]:
        if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
            raise ValidationError("'messages' must be a list of messages", field="messages")
        out: list[dict[str, Any]] = []
        for i, m in enumerate(messages):
            if isinstance(m, Mapping):
                out.append(dict_to_item(m, i))
            elif LANGCHAIN_AVAILABLE and isinstance(m, BaseMessage):
                out.append(_lc_item(m, i))
            else:
                raise ValidationError(
                    f"messages[{i}] must be a BaseMessage or a {{'role', 'content'}} dict, got {type(m).__name__}",
                    field=f"messages[{i}]",
                )
        return out

    def _out(self, messages: list[Message]) -> list[Any]:
        return [_lc_message(m) if self.native else item_to_dict(m) for m in messages]

    # reads ---------------------------------------------------------------------------------------
    @property
    def messages(self) -> list[Any]:
        """Every message of the session, oldest first (sync: runs on the private loop thread)."""
        session = self.session_id

        async def op(conv: Conversations) -> list[Message]:
            return await conv.get(session)

        return self._out(self._sync(op))

    async def aget_messages(self) -> list[Any]:
        """Every message of the session, oldest first."""
        return self._out(await self._conversations.get(self.session_id))

    # writes --------------------------------------------------------------------------------------
    def add_message(self, message: Any) -> None:
        """Add one message."""
        self.add_messages([message])

    def add_messages(self, messages: Sequence[Any]) -> None:
        """Add messages in one durable write (all or nothing on bad input)."""
        items, session = self._items(messages), self.session_id

        async def op(conv: Conversations) -> None:
            await conv.add(session, items)

        self._sync(op)

    async def aadd_messages(self, messages: Sequence[Any]) -> None:
        """Async :meth:`add_messages`."""
        await self._conversations.add(self.session_id, self._items(messages))

    def clear(self) -> None:
        """Delete every message of the session."""
        session = self.session_id

        async def op(conv: Conversations) -> int:
            return await conv.clear(session)

        self._sync(op)

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        await self._conversations.clear(self.session_id)

    # lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the sync portal of this history's source (shared by every history of that source)."""
        close_shared_portal(self._tier)

    async def aclose(self) -> None:
        """Close the tier this history built (not one passed in) and the sync portal."""
        if self._owned:
            await self._tier.close()
        await asyncio.to_thread(close_shared_portal, self._tier)


__all__ = ["LANGCHAIN_AVAILABLE", "MemoryChatMessageHistory"]
