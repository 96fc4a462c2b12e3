"""Pass-through wrappers of SDK response streams that collect the reply's text for memory.

``MemoryStream`` (sync) and ``AsyncMemoryStream`` hand every chunk to the caller unchanged, in order,
and keep the text of the first choice / candidate. When the stream has delivered the model's finish
reason and then ends (exhausted, or closed by the caller) the collected text is handed to
``on_complete`` once. A stream that raises, or is closed or abandoned before the finish reason, stores
nothing: the reply is incomplete and the application usually retries the whole call. The stream's own
context-manager protocol (``with``/``async with``) and any other attribute (``response``, ...) keep
working.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import structlog

log = structlog.get_logger("memory_implementations.integrations.clients")

#: ``extract(chunk) -> (text or None, finished)`` for one chunk of a stream.
ChunkReader = Callable[[Any], tuple[str | None, bool]]


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def openai_chunk(chunk: Any) -> tuple[str | None, bool]:
    """Text delta and finish flag of an OpenAI ``ChatCompletionChunk`` (first choice only)."""
    for choice in _get(chunk, "choices") or ():
        if (_get(choice, "index") or 0) != 0:
            continue
        delta = _get(choice, "delta")
        content = _get(delta, "content") if delta is not None else None
        return (content if isinstance(content, str) else None), _get(choice, "finish_reason") is not None
    return None, False


def responses_event(event: Any) -> tuple[str | None, bool]:
    """Text delta and finish flag of one Responses API stream event (``response.completed`` finishes)."""
    kind = _get(event, "type")
    if kind == "response.output_text.delta":
        delta = _get(event, "delta")
        return (delta if isinstance(delta, str) else None), False
    return None, kind == "response.completed"


def genai_text(response: Any) -> str | None:
    """Text of a Gemini ``GenerateContentResponse`` (first candidate, thought parts left out); None without text."""
    candidates = _get(response, "candidates") or ()
    if not candidates:
        return None
    content = _get(candidates[0], "content")
    parts = (_get(content, "parts") if content is not None else None) or ()
    texts = [t for p in parts if not _get(p, "thought") and isinstance(t := _get(p, "text"), str)]
    return "".join(texts) if texts else None


def genai_chunk(chunk: Any) -> tuple[str | None, bool]:
    """Text and finish flag of one Gemini stream chunk (``CONTINUATION`` is not a finish)."""
    candidates = _get(chunk, "candidates") or ()
    reason = _get(candidates[0], "finish_reason") if candidates else None
    finished = reason is not None and getattr(reason, "name", str(reason)) != "CONTINUATION"
    return genai_text(chunk), finished


class _Collector:
    """The text seen so far and whether the model finished."""

    def __init__(self, read: ChunkReader) -> None:
        self.read = read
        self.parts: list[str] = []
        self.finished = False
        self.settled = False

    def feed(self, chunk: Any) -> None:
        text, finished = self.read(chunk)
        if text:
            self.parts.append(text)
        self.finished = self.finished or finished

    def settle(self, how: str) -> str | None:
        """The reply text to store, once: None when already settled or the model did not finish."""
        if self.settled:
            return None
        self.settled = True
        if not self.finished:
            log.warning("memory_stream_incomplete", how=how, chars=sum(map(len, self.parts)),
                        detail="the stream ended before the model's finish reason; the turn is not stored")
            return None
        return "".join(self.parts)


class MemoryStream:
    """A sync SDK stream, passed through chunk by chunk; the turn is stored when it completes."""

    def __init__(self, stream: Any, read: ChunkReader, on_complete: Callable[[str], None]) -> None:
        """Wrap ``stream``; ``on_complete(text)`` runs once when the model finished and the stream ended."""
        self._stream = stream
        self._iterator: Iterator[Any] | None = None
        self._collector = _Collector(read)
        self._on_complete = on_complete

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __iter__(self) -> MemoryStream:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = iter(self._stream)
        try:
            chunk = next(self._iterator)
        except StopIteration:
            self._settle("exhausted")
            raise
        except BaseException:
            self._collector.settled = True  # an error mid-stream: store nothing
            raise
        self._collector.feed(chunk)
        return chunk

    def _settle(self, how: str) -> None:
        text = self._collector.settle(how)
        if text is not None:
            self._on_complete(text)

    def close(self) -> None:
        """Close the underlying stream; the turn is stored if the model had finished."""
        if not self._collector.settled:
            self._settle("closed")
        close = getattr(self._stream, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> MemoryStream:
        enter = getattr(self._stream, "__enter__", None)
        if callable(enter):
            enter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is not None:
            self._collector.settled = True
        self.close()


class AsyncMemoryStream:
    """An async SDK stream, passed through chunk by chunk; the turn is stored when it completes."""

    def __init__(self, stream: Any, read: ChunkReader, on_complete: Callable[[str], Awaitable[None]]) -> None:
        """Wrap ``stream``; ``await on_complete(text)`` runs once when the model finished and the stream ended."""
        self._stream = stream
        self._iterator: AsyncIterator[Any] | None = None
        self._collector = _Collector(read)
        self._on_complete = on_complete

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __aiter__(self) -> AsyncMemoryStream:
        return self

    async def __anext__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._stream.__aiter__()
        assert self._iterator is not None
        try:
            chunk = await self._iterator.__anext__()
        except StopAsyncIteration:
            await self._settle("exhausted")
            raise
        except BaseException:
            self._collector.settled = True  # an error mid-stream: store nothing
            raise
        self._collector.feed(chunk)
        return chunk

    async def _settle(self, how: str) -> None:
        text = self._collector.settle(how)
        if text is not None:
            await self._on_complete(text)

    async def close(self) -> None:
        """Close the underlying stream (``close`` or ``aclose``); the turn is stored if the model had finished."""
        if not self._collector.settled:
            await self._settle("closed")
        close = getattr(self._stream, "close", None) or getattr(self._stream, "aclose", None)
        if callable(close):
            await close()

    async def aclose(self) -> None:
        """Same as :meth:`close` (the async-generator spelling)."""
        await self.close()

    async def __aenter__(self) -> AsyncMemoryStream:
        enter = getattr(self._stream, "__aenter__", None)
        if callable(enter):
            await enter()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is not None:
            self._collector.settled = True
        await self.close()


__all__ = ["AsyncMemoryStream", "ChunkReader", "MemoryStream", "genai_chunk", "genai_text", "openai_chunk"]
