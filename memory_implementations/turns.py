"""``orchestrator.turn()``: memory for a custom LLM node as an async context manager (or a decorator).

::

    async with orchestrator.turn(session_id, user_id, query) as t:
        reply = await my_model(t.messages)       # memory + the query, ready to send
        t.record(reply_text)

On entry the turn's context is fetched under a deadline; memory that is slow, down or erroring gives
an empty context (``t.used_memory`` False, ``t.degraded`` says why) and the block runs anyway. On a
normal exit the exchange (the query and what was recorded; the query alone when nothing was) is handed
to the orchestrator's fail-open writer: stored in the background, retried in order when a backend is
down, never raising into the application. When the block raises, nothing is stored and the exception
propagates unchanged (the application retries the whole turn). ``await t.stored()`` waits for the
write when the application wants it done before going on.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ValidationError

if TYPE_CHECKING:
    from .context import ComprehensiveContext
    from .integrations.failopen import MemoryAugmentedLLM
    from .orchestrator import MemoryOrchestrator

R = TypeVar("R")


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"'{field}' must be a non-empty string", field=field)
    return value


class MemoryTurn:
    """One chat turn with memory: context in on entry, the exchange stored on exit (fail-open both ways)."""

    def __init__(
        self,
        orchestrator: MemoryOrchestrator,
        session_id: str,
        user_id: str,
        query: str,
        *,
        timeout_ms: float | None = None,
        max_total_tokens: int | None = None,
        system_prompt: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        store: bool = True,
    ) -> None:
        """Validate the turn's identity and options (no I/O until entered)."""
        self.session_id = _text(session_id, "session_id")
        self.user_id = _text(user_id, "user_id")
        self.query = _text(query, "query")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ValidationError("'metadata' must be a mapping", field="metadata")
        if timeout_ms is not None and (isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float)
                                       or timeout_ms <= 0):
            raise ValidationError("'timeout_ms' must be a positive number", field="timeout_ms")
        self.orchestrator = orchestrator
        self.timeout_ms = timeout_ms
        self.max_total_tokens = max_total_tokens
        self.system_prompt = system_prompt
        self.metadata = dict(metadata or {})
        self.store = store
        self.context: ComprehensiveContext | None = None
        self.messages: list[dict[str, Any]] = []
        self.degraded: dict[str, str] = {}
        self.assistant_text: str | None = None
        self._entered = False
        self._write: asyncio.Task[None] | None = None

    @property
    def _writer(self) -> MemoryAugmentedLLM:
        from .integrations.failopen import failopen_wrapper

        return failopen_wrapper(self.orchestrator)

    @property
    def used_memory(self) -> bool:
        """True when memory answered (possibly degraded per tier), False when the turn runs without it."""
        return self.context is not None

    @property
    def text(self) -> str:
        """The memory context as plain text ('' without memory)."""
        return self.context.text if self.context is not None else ""

    def record(self, assistant_text: Any) -> None:
        """Set the assistant's reply to store with the query (a string or an SDK/framework reply object)."""
        from .integrations.failopen import reply_text

        text = reply_text(assistant_text)
        if text is None or not text.strip():
            raise ValidationError("'assistant_text' must be a non-empty string (or a reply with text)",
                                  field="assistant_text")
        self.assistant_text = text

    async def __aenter__(self) -> MemoryTurn:
        """Fetch the turn's context (fail-open) and build ``messages``."""
        if self._entered:
            raise ValidationError("a MemoryTurn can be entered once", field="turn")
        self._entered = True
        writer = self._writer
        deadline = self.timeout_ms if self.timeout_ms is not None else writer.timeout_ms
        request, self.context, self.degraded = await writer.fetch_context(
            self.query, user_id=self.user_id, session_id=self.session_id, timeout_ms=deadline,
            system_prompt=self.system_prompt, max_total_tokens=self.max_total_tokens)
        self.messages = list(request)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        """Store the exchange in the background on success; store nothing when the block raised."""
        if exc_type is not None or not self.store:
            return
        self._write = asyncio.ensure_future(self._writer.submit_turn(
            user_id=self.user_id, session_id=self.session_id, user_message=self.query,
            assistant_message=self.assistant_text, metadata=self.metadata))

    async def stored(self) -> None:
        """Wait until the exchange was stored or queued for retry (never raises for a backend failure)."""
        if self._write is not None:
            await asyncio.shield(self._write)


def remember_turn(
    orchestrator: MemoryOrchestrator, *, query_arg: str = "query", session_arg: str = "session_id",
    user_arg: str = "user_id", **turn_options: Any,
) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    """Decorate an async node ``fn(..., query=, session_id=, user_id=, memory=MemoryTurn)`` to run inside a turn.

    The decorated function receives the entered turn as its ``memory`` keyword argument; its return
    value is recorded as the assistant's reply when it has text.
    """

    def decorate(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> R:
            from .integrations.failopen import reply_text

            missing = [a for a in (query_arg, session_arg, user_arg) if a not in kwargs]
            if missing:
                raise ValidationError(f"{fn.__name__}() must be called with keyword argument {missing[0]!r}",
                                      field=missing[0])
            turn = MemoryTurn(orchestrator, kwargs[session_arg], kwargs[user_arg], kwargs[query_arg],
                              **turn_options)
            async with turn:
                result = await fn(*args, **{**kwargs, "memory": turn})
                text = reply_text(result)
                if turn.assistant_text is None and text and text.strip():
                    turn.assistant_text = text
            return result

        return run

    return decorate


__all__ = ["MemoryTurn", "remember_turn"]
