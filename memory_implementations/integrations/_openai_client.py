"""OpenAI ``chat.completions.create`` with memory: the proxies ``MemoryOpenAI`` and ``MemoryAsyncOpenAI``.

The query is the last user message's text; the memory block goes into the first system/developer
message (``inject="system"``) or the context's messages go after the leading system messages
(``inject="messages"``). Streams are wrapped so the turn is stored once the model finished.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..context import ComprehensiveContext
from ._client_memory import ClientMemory, InjectMode, _ClientProxy, _Proxy, _Turn
from ._conversation import text_of_content
from ._streams import AsyncMemoryStream, MemoryStream, openai_chunk
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


def _openai_request(memory: ClientMemory, kwargs: dict[str, Any]) -> _Turn | None:
    turn = memory.turn(kwargs, sdk_user=True)
    if turn is None:
        return None
    messages = kwargs.get("messages")
    if messages is None or isinstance(messages, str | bytes | Mapping):
        return turn  # not a message list: the SDK reports it
    kwargs["messages"] = messages = list(messages)
    turn.query, turn.user_message = _openai_turn(messages)
    return turn


class _OpenAICompletions(_Proxy):
    def create(self, *args: Any, **kwargs: Any) -> Any:
        """``chat.completions.create`` with memory in and the turn stored (see the module docstring)."""
        memory = self._memory
        turn = _openai_request(memory, kwargs)
        if turn is None:
            return self._target.create(*args, **kwargs)
        ctx = memory.context_sync(turn, kwargs.get("model"))
        if ctx is not None:
            kwargs["messages"] = inject_openai(kwargs["messages"], ctx, memory.inject)
        result = self._target.create(*args, **kwargs)
        if kwargs.get("stream") is True:
            return MemoryStream(result, openai_chunk, lambda text: memory.store_sync(turn, text))
        memory.store_sync(turn, reply_text(result))
        return result


class _AsyncOpenAICompletions(_Proxy):
    async def create(self, *args: Any, **kwargs: Any) -> Any:
        """``chat.completions.create`` with memory in and the turn stored (see the module docstring)."""
        memory = self._memory
        turn = _openai_request(memory, kwargs)
        if turn is None:
            return await self._target.create(*args, **kwargs)
        ctx = await memory.context_async(turn, kwargs.get("model"))
        if ctx is not None:
            kwargs["messages"] = inject_openai(kwargs["messages"], ctx, memory.inject)
        result = await self._target.create(*args, **kwargs)
        if kwargs.get("stream") is True:

            async def stored(text: str) -> None:
                await memory.store_async(turn, text)

            return AsyncMemoryStream(result, openai_chunk, stored)
        await memory.store_async(turn, reply_text(result))
        return result


class _OpenAIChat(_Proxy):
    def __init__(self, target: Any, memory: ClientMemory, completions: type[_Proxy]) -> None:
        super().__init__(target, memory)
        self._completions = completions

    @property
    def completions(self) -> Any:
        """``chat.completions`` with a memory-augmented ``create``."""
        return self._completions(self._target.completions, self._memory)


class MemoryOpenAI(_ClientProxy):
    """An ``openai.OpenAI`` whose ``chat.completions.create`` has memory; everything else is the SDK's."""

    @property
    def chat(self) -> Any:
        """``chat`` with a memory-augmented ``completions.create``."""
        return _OpenAIChat(self._target.chat, self._memory, _OpenAICompletions)


class MemoryAsyncOpenAI(_ClientProxy):
    """An ``openai.AsyncOpenAI`` whose ``chat.completions.create`` has memory; everything else is the SDK's."""

    @property
    def chat(self) -> Any:
        """``chat`` with a memory-augmented ``completions.create``."""
        return _OpenAIChat(self._target.chat, self._memory, _AsyncOpenAICompletions)


__all__ = ["MemoryAsyncOpenAI", "MemoryOpenAI", "inject_openai"]
