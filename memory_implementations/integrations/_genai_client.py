"""Gemini ``generate_content`` / ``generate_content_stream`` with memory: ``MemoryGenAI`` and ``MemoryAsyncGenAI``.

The query is the last user content with text (function responses are not user text); the memory
block is merged into ``config.system_instruction`` (a new config; the caller's is not modified), and
with ``inject="messages"`` the recent conversation goes before ``contents``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..context import ComprehensiveContext
from ._client_memory import ClientMemory, InjectMode, _ClientProxy, _Proxy, _Turn
from ._streams import AsyncMemoryStream, MemoryStream, genai_chunk, genai_text


def _genai_contents(contents: Any) -> list[Any] | None:
    """``contents`` as a list of ``types.Content`` (None when the SDK would refuse them: it reports that)."""
    from google.genai import _transformers

    try:
        return list(_transformers.t_contents(contents))
    except Exception:
        return None


def _genai_turn(contents: list[Any]) -> tuple[str | None, str | None]:
    """``(query, user message to store)`` from normalised contents (function responses are not user text)."""
    for i in range(len(contents) - 1, -1, -1):
        content = contents[i]
        if (content.role or "user") != "user":
            continue
        texts = [p.text for p in content.parts or () if isinstance(p.text, str) and not p.thought]
        text = "\n".join(t for t in texts if t).strip()
        if not text:
            continue
        return text, (text if i == len(contents) - 1 else None)
    return None, None


def _merge_instruction(existing: Any, block: str) -> Any:
    from google.genai import types

    if existing is None or (isinstance(existing, str) and not existing.strip()):
        return block
    if isinstance(existing, str):
        return f"{existing}\n\n{block}"
    if isinstance(existing, Mapping):
        try:
            existing = types.Content.model_validate(existing)
        except Exception:
            existing = types.Part.model_validate(existing)
    if isinstance(existing, types.Content):
        return existing.model_copy(update={"parts": [*(existing.parts or []), types.Part(text=block)]})
    if isinstance(existing, types.Part):
        return [existing, types.Part(text=block)]
    if isinstance(existing, list | tuple):
        return [*existing, block]
    return block


def _genai_config(config: Any, block: str) -> Any:
    """``config`` with ``block`` merged into its ``system_instruction`` (a new object; the caller's is kept)."""
    from google.genai import types

    if not block:
        return config
    if config is None:
        return types.GenerateContentConfig(system_instruction=block)
    if isinstance(config, Mapping):
        key = "systemInstruction" if "systemInstruction" in config and "system_instruction" not in config \
            else "system_instruction"
        return {**config, key: _merge_instruction(config.get(key), block)}
    existing = getattr(config, "system_instruction", None)
    return config.model_copy(update={"system_instruction": _merge_instruction(existing, block)})


def inject_genai(kwargs: dict[str, Any], contents: list[Any], ctx: ComprehensiveContext, inject: InjectMode) -> None:
    """Inject the memory context into a Gemini request's ``config`` (and ``contents`` for ``inject="messages"``)."""
    from google.genai import types

    if inject == "system":
        kwargs["config"] = _genai_config(kwargs.get("config"), ctx.text)
        return
    kwargs["config"] = _genai_config(kwargs.get("config"), ctx.system)
    history = [types.Content(role="model" if m["role"] == "assistant" else "user",
                             parts=[types.Part(text=m["content"])])
               for m in ctx.conversation if m.get("content")]
    if history:
        kwargs["contents"] = [*history, *contents]


def _genai_request(memory: ClientMemory, kwargs: dict[str, Any]) -> tuple[_Turn | None, list[Any] | None]:
    turn = memory.turn(kwargs)
    if turn is None:
        return None, None
    contents = _genai_contents(kwargs.get("contents"))
    if contents is not None:
        turn.query, turn.user_message = _genai_turn(contents)
    return turn, contents


class _GenAIModels(_Proxy):
    def _prepare(self, kwargs: dict[str, Any]) -> _Turn | None:
        turn, contents = _genai_request(self._memory, kwargs)
        if turn is not None:
            ctx = self._memory.context_sync(turn, kwargs.get("model"))
            if ctx is not None and contents is not None:
                inject_genai(kwargs, contents, ctx, self._memory.inject)
        return turn

    def generate_content(self, **kwargs: Any) -> Any:
        """``models.generate_content`` with memory in and the turn stored."""
        turn = self._prepare(kwargs)
        result = self._target.generate_content(**kwargs)
        if turn is not None:
            self._memory.store_sync(turn, genai_text(result))
        return result

    def generate_content_stream(self, **kwargs: Any) -> Any:
        """``models.generate_content_stream`` with memory in; the turn is stored when the stream completes."""
        turn = self._prepare(kwargs)
        stream = self._target.generate_content_stream(**kwargs)
        if turn is None:
            return stream
        memory = self._memory
        return MemoryStream(stream, genai_chunk, lambda text: memory.store_sync(turn, text))


class _AsyncGenAIModels(_Proxy):
    async def _prepare(self, kwargs: dict[str, Any]) -> _Turn | None:
        turn, contents = _genai_request(self._memory, kwargs)
        if turn is not None:
            ctx = await self._memory.context_async(turn, kwargs.get("model"))
            if ctx is not None and contents is not None:
                inject_genai(kwargs, contents, ctx, self._memory.inject)
        return turn

    async def generate_content(self, **kwargs: Any) -> Any:
        """``aio.models.generate_content`` with memory in and the turn stored."""
        turn = await self._prepare(kwargs)
        result = await self._target.generate_content(**kwargs)
        if turn is not None:
            await self._memory.store_async(turn, genai_text(result))
        return result

    async def generate_content_stream(self, **kwargs: Any) -> Any:
        """``aio.models.generate_content_stream`` with memory in; the turn is stored when the stream completes."""
        turn = await self._prepare(kwargs)
        stream = await self._target.generate_content_stream(**kwargs)
        if turn is None:
            return stream
        memory = self._memory

        async def stored(text: str) -> None:
            await memory.store_async(turn, text)

        return AsyncMemoryStream(stream, genai_chunk, stored)


class MemoryAsyncGenAI(_ClientProxy):
    """A ``google.genai`` ``AsyncClient`` (``client.aio``) whose ``models.generate_content*`` have memory."""

    @property
    def models(self) -> Any:
        """``models`` with memory-augmented ``generate_content`` and ``generate_content_stream``."""
        return _AsyncGenAIModels(self._target.models, self._memory)


class MemoryGenAI(_ClientProxy):
    """A ``google.genai.Client`` whose ``models.generate_content*`` (and ``aio.models.*``) have memory."""

    @property
    def models(self) -> Any:
        """``models`` with memory-augmented ``generate_content`` and ``generate_content_stream``."""
        return _GenAIModels(self._target.models, self._memory)

    @property
    def aio(self) -> MemoryAsyncGenAI:
        """``aio`` (the async client) with memory."""
        return MemoryAsyncGenAI(self._target.aio, self._memory)


__all__ = ["MemoryAsyncGenAI", "MemoryGenAI", "inject_genai"]
