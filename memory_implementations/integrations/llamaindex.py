"""A LlamaIndex chat store backed by the conversation tier: ``MemoryChatStore``.

It has LlamaIndex's ``BaseChatStore`` method set (``set_messages``, ``get_messages``, ``add_message``,
``delete_messages``, ``delete_message``, ``delete_last_message``, ``get_keys`` and the async twins
``aset_messages``, ``aget_messages``, ``async_add_message``, ``adelete_messages``, ``adelete_message``,
``adelete_last_message``, ``aget_keys``). A chat key is a session id; the tenant (``user_id``) is fixed
by the constructor, so one store never reads another user's sessions.

llama-index-core is optional: when it is importable the class subclasses its ``BaseChatStore`` and
speaks ``ChatMessage``; otherwise it is a plain class speaking ``{"role", "content"}`` dicts (dicts are
accepted in both cases). Async methods run on the caller's event loop against the given tier; sync
methods run on a private loop thread against a tier of their own (same class and config), because
connections cannot cross event loops.

``llama_index.core.memory.Memory`` does not take a ``BaseChatStore`` (its short-term queue needs an
``AsyncDBChatStore`` with active/archived message states); to give it the orchestrator's long-term
memory use ``OrchestratorMemoryBlock`` from ``llamaindex_block``.
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
    as_item,
    dict_to_item,
    item_to_dict,
    json_safe,
    normalise_role,
    resolve_tier,
    tier_factory,
)
from ._portal import Portal

try:  # optional: the [llamaindex] extra
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.llms import ChatMessage, TextBlock
    from llama_index.core.storage.chat_store.base import BaseChatStore

    LLAMA_INDEX_AVAILABLE = True
except ImportError:  # pragma: no cover - exercised when llama-index-core is absent
    LLAMA_INDEX_AVAILABLE = False

T = TypeVar("T")


class _Core:
    """The state behind a chat store: its conversation tier, tenant and sync portal."""

    def __init__(self, source: ConversationSource, user_id: str, *, native: bool) -> None:
        self.tier, self.owned = resolve_tier(source)
        self.conversations = Conversations(self.tier, user_id)
        self.native = native
        make_tier = tier_factory(self.tier)

        async def make() -> Conversations:
            return Conversations(await make_tier(), user_id)

        async def close(conv: Conversations) -> None:
            await conv.tier.close()

        self.portal: Portal[Conversations] = Portal(make, close, name="memory-chat-store")

    async def run(self, op: Callable[[Conversations], Awaitable[T]]) -> T:
        return await op(self.conversations)

    def run_sync(self, op: Callable[[Conversations], Awaitable[T]]) -> T:
        return self.portal.call(op)

    # conversions -------------------------------------------------------------------------------
    def to_item(self, message: Any, index: int | None = None) -> dict[str, Any]:
        """A ChatMessage, a ``{"role", "content"}`` dict or a Message as a tier item."""
        if isinstance(message, Message):
            return {"role": message.role, "content": message.content, "metadata": dict(message.metadata)}
        if isinstance(message, Mapping):
            return dict_to_item(message, index)
        if LLAMA_INDEX_AVAILABLE and isinstance(message, ChatMessage):
            return _chat_message_item(message, index)
        at = f"messages[{index}]" if index is not None else "message"
        raise ValidationError(
            f"{at} must be a ChatMessage or a {{'role', 'content'}} dict, got {type(message).__name__}", field=at
        )

    def from_message(self, message: Message) -> Any:
        """A stored message as a ChatMessage (llama-index-core installed) or a plain dict."""
        if not self.native:
            return item_to_dict(message)
        extra = message.metadata.get(META_KEY)
        extra = dict(extra) if isinstance(extra, Mapping) else {}
        role = extra.pop("role", message.role)
        kwargs = dict(extra.pop("additional_kwargs", None) or {})
        blocks = extra.pop("blocks", None)
        extra.pop("content", None)
        kwargs.update(extra)  # keys of a stored dict message (name, tool_calls, ...) become additional_kwargs
        if blocks:
            return ChatMessage.model_validate({"role": role, "blocks": blocks, "additional_kwargs": kwargs})
        return ChatMessage(role=role, content=message.content, additional_kwargs=kwargs)

    def items(self, messages: Sequence[Any]) -> list[dict[str, Any]]:
        if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
            raise ValidationError("'messages' must be a list of messages", field="messages")
        return [self.to_item(m, i) for i, m in enumerate(messages)]

    # operations (each an async function of the Conversations it runs on) ------------------------
    def op_set(self, key: str, messages: Sequence[Any]) -> Callable[[Conversations], Awaitable[None]]:
        items = self.items(messages)

        async def op(conv: Conversations) -> None:
            await conv.replace(key, items)

        return op

    def op_get(self, key: str) -> Callable[[Conversations], Awaitable[list[Any]]]:
        async def op(conv: Conversations) -> list[Any]:
            return [self.from_message(m) for m in await conv.get(key)]

        return op

    def op_add(self, key: str, message: Any, idx: int | None) -> Callable[[Conversations], Awaitable[None]]:
        item = self.to_item(message)
        if idx is not None and (isinstance(idx, bool) or not isinstance(idx, int)):
            raise ValidationError("'idx' must be an integer", field="idx")

        async def op(conv: Conversations) -> None:
            if idx is None:
                await conv.add(key, [item])
                return
            current = [as_item(m) for m in await conv.get(key)]
            current.insert(idx, item)
            await conv.replace(key, current)

        return op

    def op_delete_all(self, key: str) -> Callable[[Conversations], Awaitable[list[Any] | None]]:
        async def op(conv: Conversations) -> list[Any] | None:
            current = await conv.get(key)
            if not current:
                return None
            await conv.clear(key)
            return [self.from_message(m) for m in current]

        return op

    def op_delete_at(self, key: str, idx: int | None) -> Callable[[Conversations], Awaitable[Any | None]]:
        async def op(conv: Conversations) -> Any | None:
            removed = await conv.pop(key, -1 if idx is None else idx)
            return self.from_message(removed) if removed is not None else None

        return op

    @staticmethod
    async def op_keys(conv: Conversations) -> list[str]:
        return await conv.sessions()

    async def aclose(self) -> None:
        if self.owned:
            await self.tier.close()
        await asyncio.to_thread(self.portal.close)


def _chat_message_item(message: Any, index: int | None) -> dict[str, Any]:
    """A LlamaIndex ChatMessage as a tier item; what the tier cannot hold goes to the metadata."""
    at = f"messages[{index}]." if index is not None else ""
    role, original = normalise_role(message.role, f"{at}role")
    extra: dict[str, Any] = {}
    if original is not None:
        extra["role"] = original
    if message.additional_kwargs:
        extra["additional_kwargs"] = json_safe(message.additional_kwargs)
    if any(not isinstance(b, TextBlock) for b in message.blocks):
        extra["blocks"] = json_safe([b.model_dump(mode="json") for b in message.blocks])
    return {"role": role, "content": message.content or "", "metadata": {META_KEY: extra} if extra else {}}


class _ChatStoreMethods:
    """The BaseChatStore method set over a ``_Core`` (mixed into the public class)."""

    def _c(self) -> _Core:
        core: _Core | None = getattr(self, "_core", None)
        if core is None:  # pragma: no cover - only if __init__ was bypassed
            raise RuntimeError("MemoryChatStore was not initialised")
        return core

    # sync ----------------------------------------------------------------------------------------
    def set_messages(self, key: str, messages: list[Any]) -> None:
        """Replace every message of ``key`` (validated first; nothing is deleted on bad input)."""
        self._c().run_sync(self._c().op_set(key, messages))

    def get_messages(self, key: str, **kwargs: Any) -> list[Any]:
        """Every message of ``key``, oldest first (empty when the key is unknown)."""
        return self._c().run_sync(self._c().op_get(key))

    def add_message(self, key: str, message: Any, idx: int | None = None) -> None:
        """Append ``message`` to ``key`` (or insert it at ``idx``, which rewrites the session)."""
        self._c().run_sync(self._c().op_add(key, message, idx))

    def delete_messages(self, key: str) -> list[Any] | None:
        """Delete every message of ``key``; return them (None when there were none)."""
        return self._c().run_sync(self._c().op_delete_all(key))

    def delete_message(self, key: str, idx: int) -> Any | None:
        """Delete the message at ``idx``; return it (None when out of range)."""
        return self._c().run_sync(self._c().op_delete_at(key, idx))

    def delete_last_message(self, key: str) -> Any | None:
        """Delete the newest message of ``key``; return it (None when the key is empty)."""
        return self._c().run_sync(self._c().op_delete_at(key, None))

    def get_keys(self) -> list[str]:
        """The user's chat keys (session ids), oldest first."""
        return self._c().run_sync(_Core.op_keys)

    # async ---------------------------------------------------------------------------------------
    async def aset_messages(self, key: str, messages: list[Any]) -> None:
        """Async :meth:`set_messages`."""
        await self._c().run(self._c().op_set(key, messages))

    async def aget_messages(self, key: str, **kwargs: Any) -> list[Any]:
        """Async :meth:`get_messages`."""
        return await self._c().run(self._c().op_get(key))

    async def async_add_message(self, key: str, message: Any, idx: int | None = None) -> None:
        """Async :meth:`add_message`."""
        await self._c().run(self._c().op_add(key, message, idx))

    async def aadd_message(self, key: str, message: Any, idx: int | None = None) -> None:
        """Alias of :meth:`async_add_message`."""
        await self.async_add_message(key, message, idx)

    async def adelete_messages(self, key: str) -> list[Any] | None:
        """Async :meth:`delete_messages`."""
        return await self._c().run(self._c().op_delete_all(key))

    async def adelete_message(self, key: str, idx: int) -> Any | None:
        """Async :meth:`delete_message`."""
        return await self._c().run(self._c().op_delete_at(key, idx))

    async def adelete_last_message(self, key: str) -> Any | None:
        """Async :meth:`delete_last_message`."""
        return await self._c().run(self._c().op_delete_at(key, None))

    async def aget_keys(self) -> list[str]:
        """Async :meth:`get_keys`."""
        return await self._c().run(_Core.op_keys)

    # lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the sync portal (and its tier); a tier built from a config is closed by :meth:`aclose`."""
        self._c().portal.close()

    async def aclose(self) -> None:
        """Close the tier this store built (not one passed in) and the sync portal."""
        await self._c().aclose()


class _PlainBase:
    """Stand-in base when llama-index-core is not installed."""

    def __init__(self, *, user_id: str = "default") -> None:
        self.user_id = user_id


def _private() -> Any:
    return PrivateAttr(default=None) if LLAMA_INDEX_AVAILABLE else None


_Base: Any = BaseChatStore if LLAMA_INDEX_AVAILABLE else _PlainBase


class MemoryChatStore(_ChatStoreMethods, _Base):
    """LlamaIndex chat store on the conversation tier: one chat key per session of one user.

    ``MemoryChatStore(orchestrator, user_id="u1")`` (writes go through the summary tier when enabled),
    ``MemoryChatStore(buffer_or_summary_tier, user_id=...)`` or ``MemoryChatStore(config_dict, user_id=...)``
    (builds a ``ConversationBufferMemory``; close with ``await store.aclose()``).
    """

    user_id: str = "default"
    _core: Any = _private()

    def __init__(self, memory: ConversationSource = None, *, user_id: str = "default", **data: Any) -> None:
        """Bind the conversation tier of ``memory`` and the tenant ``user_id`` (no I/O yet)."""
        super().__init__(user_id=user_id, **data)
        self._core = _Core(memory, user_id, native=LLAMA_INDEX_AVAILABLE)

    @classmethod
    def class_name(cls) -> str:
        """Name LlamaIndex uses when serialising the store."""
        return "MemoryImplementationsChatStore"


__all__ = ["LLAMA_INDEX_AVAILABLE", "MemoryChatStore"]
