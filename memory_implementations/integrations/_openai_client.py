"""OpenAI with memory: ``chat.completions.create`` and ``responses.create`` on ``MemoryOpenAI`` / ``MemoryAsyncOpenAI``.

Chat completions: the query is the last user message's text; the memory block goes into the first
system/developer message (``inject="system"``) or the context's messages go after the leading system
messages (``inject="messages"``). Responses API: the query is a string ``input`` or the last user
item's text; the memory block is appended to ``instructions`` (``inject="messages"`` also puts the
recent conversation before the input items). Streams are wrapped so the turn is stored once the
model finished (``finish_reason`` / ``response.completed``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..context import ComprehensiveContext
from ._client_memory import ClientMemory, InjectMode, _ClientProxy, _Proxy, _Turn
from ._conversation import text_of_content
from ._streams import AsyncMemoryStream, ChunkReader, MemoryStream, openai_chunk, responses_event
from .failopen import reply_text

_SYSTEM_ROLES = ("system", "developer")


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _openai_turn(messages: Sequence[Any]) -> tuple[str | None, str | None]:
    """``(query, user message to store)``: the last user message's text; stored only when it ends the request."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if _get(message, "role") != "user":
            continue
        text = text_of_content(_get(message, "content")).strip()
        if not text:
            return None, None
        return text, (text if i == len(messages) - 1 else None)
    return None, None


def _append_text(content: Any, block: str) -> Any:
    if isinstance(content, str):
        return f"{content}\n\n{block}" if content.strip() else block
    if isinstance(content, list | tuple):
        return [*content, {"type": "text", "text": block}]
    return block


def inject_openai(messages: Sequence[Any], ctx: ComprehensiveContext, inject: InjectMode) -> list[Any]:
    """``messages`` with the memory context injected (a new list; the caller's messages are not modified)."""
    out = list(messages)
    if inject == "system":
        block = ctx.text
        if not block:
            return out
        first = out[0] if out else None
        if isinstance(first, Mapping) and first.get("role") in _SYSTEM_ROLES:
            out[0] = {**first, "content": _append_text(first.get("content"), block)}
        else:
            out.insert(0, {"role": "system", "content": block})
        return out
    lead = 0
    while lead < len(out) and _get(out[lead], "role") in _SYSTEM_ROLES:
        lead += 1
    return [*out[:lead], *(dict(m) for m in ctx.messages), *out[lead:]]


def _chat_read(kwargs: dict[str, Any]) -> tuple[str | None, str | None] | None:
    """Query and user message of a ``chat.completions.create`` request (its message list is copied)."""
    messages = kwargs.get("messages")
    if messages is None or isinstance(messages, str | bytes | Mapping):
        return None  # not a message list: the SDK reports it
    kwargs["messages"] = messages = list(messages)
    return _openai_turn(messages)


def _chat_inject(kwargs: dict[str, Any], ctx: ComprehensiveContext, inject: InjectMode) -> None:
    kwargs["messages"] = inject_openai(kwargs["messages"], ctx, inject)


def _responses_read(kwargs: dict[str, Any]) -> tuple[str | None, str | None] | None:
    """Query and user message of a ``responses.create`` request: a string ``input`` or its last user item."""
    value = kwargs.get("input")
    if isinstance(value, str):
        text = value.strip()
        return (text, text) if text else (None, None)
    if value is None or isinstance(value, bytes | Mapping):
        return None
    kwargs["input"] = items = list(value)
    return _openai_turn(items)


def inject_responses(kwargs: dict[str, Any], ctx: ComprehensiveContext, inject: InjectMode) -> None:
    """Inject the memory context into a Responses API request: ``instructions`` (and ``input`` for "messages")."""
    block = ctx.text if inject == "system" else ctx.system
    if block:
        existing = kwargs.get("instructions")
        kwargs["instructions"] = _append_text(existing, block) if isinstance(existing, str) else block
    if inject == "messages" and ctx.conversation:
        value = kwargs.get("input")
        items = [{"role": "user", "content": value}] if isinstance(value, str) else list(value or [])
        history = [{"role": m["role"], "content": m["content"]} for m in ctx.conversation if m.get("content")]
        kwargs["input"] = [*history, *items]


@dataclass(frozen=True)
class _Api:
    """How one OpenAI endpoint carries the query, takes the memory, and streams its text."""

    read: Callable[[dict[str, Any]], tuple[str | None, str | None] | None]
    inject: Callable[[dict[str, Any], ComprehensiveContext, InjectMode], None]
    chunk: ChunkReader


CHAT = _Api(_chat_read, _chat_inject, openai_chunk)
RESPONSES = _Api(_responses_read, inject_responses, responses_event)


def _request(memory: ClientMemory, kwargs: dict[str, Any], api: _Api) -> _Turn | None:
    turn = memory.turn(kwargs, sdk_user=True)
    if turn is None:
        return None
    found = api.read(kwargs)
    if found is not None:
        turn.query, turn.user_message = found
    return turn


class _Create(_Proxy):
    """A sync ``create`` (chat completions or responses) with memory in and the turn stored."""

    def __init__(self, target: Any, memory: ClientMemory, api: _Api) -> None:
        super().__init__(target, memory)
        self._api = api

    def create(self, *args: Any, **kwargs: Any) -> Any:
        """The SDK's ``create`` with memory in and the turn stored (see the module docstring)."""
        memory, api = self._memory, self._api
        turn = _request(memory, kwargs, api)
        if turn is None:
            return self._target.create(*args, **kwargs)
        ctx = memory.context_sync(turn, kwargs.get("model"))
        if ctx is not None:
            api.inject(kwargs, ctx, memory.inject)
        result = self._target.create(*args, **kwargs)
        if kwargs.get("stream") is True:
            return MemoryStream(result, api.chunk, lambda text: memory.store_sync(turn, text))
        memory.store_sync(turn, reply_text(result))
        return result


class _AsyncCreate(_Create):
    """An async ``create`` (chat completions or responses) with memory in and the turn stored."""

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        """The SDK's ``create`` with memory in and the turn stored (see the module docstring)."""
        memory, api = self._memory, self._api
        turn = _request(memory, kwargs, api)
        if turn is None:
            return await self._target.create(*args, **kwargs)
        ctx = await memory.context_async(turn, kwargs.get("model"))
        if ctx is not None:
            api.inject(kwargs, ctx, memory.inject)
        result = await self._target.create(*args, **kwargs)
        if kwargs.get("stream") is True:

            async def stored(text: str) -> None:
                await memory.store_async(turn, text)

            return AsyncMemoryStream(result, api.chunk, stored)
        await memory.store_async(turn, reply_text(result))
        return result


class _OpenAIChat(_Proxy):
    def __init__(self, target: Any, memory: ClientMemory, create: type[_Create]) -> None:
        super().__init__(target, memory)
        self._create = create

    @property
    def completions(self) -> Any:
        """``chat.completions`` with a memory-augmented ``create``."""
        return self._create(self._target.completions, self._memory, CHAT)


class MemoryOpenAI(_ClientProxy):
    """An ``openai.OpenAI`` whose ``chat.completions.create`` and ``responses.create`` have memory."""

    @property
    def chat(self) -> Any:
        """``chat`` with a memory-augmented ``completions.create``."""
        return _OpenAIChat(self._target.chat, self._memory, _Create)

    @property
    def responses(self) -> Any:
        """``responses`` with a memory-augmented ``create`` (everything else is the SDK's)."""
        return _Create(self._target.responses, self._memory, RESPONSES)


class MemoryAsyncOpenAI(_ClientProxy):
    """An ``openai.AsyncOpenAI`` whose ``chat.completions.create`` and ``responses.create`` have memory."""

    @property
    def chat(self) -> Any:
        """``chat`` with a memory-augmented ``completions.create``."""
        return _OpenAIChat(self._target.chat, self._memory, _AsyncCreate)

    @property
    def responses(self) -> Any:
        """``responses`` with a memory-augmented ``create`` (everything else is the SDK's)."""
        return _AsyncCreate(self._target.responses, self._memory, RESPONSES)


__all__ = ["CHAT", "RESPONSES", "MemoryAsyncOpenAI", "MemoryOpenAI", "inject_openai", "inject_responses"]
