"""The per-client memory binding behind ``with_memory``: where memory runs, ``ClientMemory``, proxy bases.

The orchestrator's connections belong to the event loop that opened them. ``_Runner`` runs memory
coroutines there: directly on that loop, through ``run_coroutine_threadsafe`` from other threads, or on
a private loop thread (a :class:`~._portal.Portal` per orchestrator) when no loop is given. A sync call
on the memory loop's own thread raises :class:`MemoryLoopError` instead of deadlocking.
``ClientMemory`` (``client.memory``) holds a wrapped client's identity and options, fetches the context
and hands turns to the fail-open writer; ``_Proxy`` passes every other attribute to the SDK object.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Literal, TypeVar

import structlog

from ..context import ComprehensiveContext
from ..errors import BackendUnavailable, ValidationError
from ..orchestrator import MemoryOrchestrator
from ._portal import SYNC_CALL_TIMEOUT_S, Portal
from .failopen import TURNS_TOTAL, MemoryAugmentedLLM

log = structlog.get_logger("memory_implementations.integrations.clients")

T = TypeVar("T")
InjectMode = Literal["system", "messages"]
INJECT_MODES: tuple[str, ...] = ("system", "messages")
#: Extra seconds a sync call waits for the memory loop beyond the memory deadline (a busy or stuck loop).
SYNC_MARGIN_S = 5.0

_PORTALS: weakref.WeakKeyDictionary[MemoryOrchestrator, Portal[MemoryOrchestrator]] = weakref.WeakKeyDictionary()
_PORTALS_LOCK = threading.Lock()
#: A coroutine function run against the fail-open writer on the memory loop.
WriterJob = Callable[["MemoryAugmentedLLM"], Coroutine[Any, Any, T]]


class MemoryLoopError(RuntimeError):
    """A sync wrapped call was made on the thread whose event loop runs the memory (it would deadlock)."""


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _has_connections(orchestrator: MemoryOrchestrator) -> bool:
    try:
        orchestrator.stores  # noqa: B018 - raises while the orchestrator has no connections
    except BackendUnavailable:
        return False
    return True


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"'{field}' must be a non-empty string", field=field)
    return value


# --- where the memory coroutines run -----------------------------------------------------------------


class _Runner:
    """Runs coroutines against the fail-open writer on the loop the orchestrator's connections belong to."""

    def __init__(self, orchestrator: MemoryOrchestrator, wrapper: MemoryAugmentedLLM,
                 loop: asyncio.AbstractEventLoop | None) -> None:
        self.orchestrator = orchestrator
        self.wrapper = wrapper
        self.loop = loop

    def _portal(self) -> Portal[MemoryOrchestrator]:
        with _PORTALS_LOCK:
            portal = _PORTALS.get(self.orchestrator)
            if portal is None:
                if _has_connections(self.orchestrator):
                    raise ValidationError(
                        "the orchestrator's connections belong to the event loop that opened them: pass loop= "
                        "(the loop it runs on) to with_memory", field="loop")
                orchestrator = self.orchestrator

                async def make() -> MemoryOrchestrator:
                    return orchestrator

                async def close(o: MemoryOrchestrator) -> None:
                    await o.close()

                portal = _PORTALS[orchestrator] = Portal(make, close, name="memory-llm-client")
            return portal

    @property
    def private(self) -> bool:
        """True when memory runs on the private loop thread (no ``loop`` given)."""
        return self.loop is None and self.orchestrator in _PORTALS

    def sync_call(self, fn: WriterJob[T], timeout: float) -> T:
        """Run ``fn(wrapper)`` on the memory loop from a thread that does not run it; block for the result."""
        loop = self.loop
        if loop is None:
            return self._portal().call(lambda _o: fn(self.wrapper), timeout=timeout)
        if _running_loop() is loop:
            raise MemoryLoopError(
                "a sync memory-wrapped client was called on the thread of the event loop its memory runs on, "
                "which would deadlock: use the async client (AsyncOpenAI / client.aio), or call it from a worker "
                "thread (await asyncio.to_thread(...))")
        if loop.is_closed() or not loop.is_running():
            raise BackendUnavailable("the event loop memory runs on (loop=) is not running", field="loop")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(fn(self.wrapper), loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    async def async_call(self, fn: WriterJob[T]) -> T:
        """Await ``fn(wrapper)`` on the memory loop (directly when it is the running loop)."""
        loop = self.loop
        if loop is None:
            portal = _PORTALS.get(self.orchestrator)
            if portal is None:
                return await fn(self.wrapper)
            return await asyncio.to_thread(portal.call, lambda _o: fn(self.wrapper))
        if loop is asyncio.get_running_loop():
            return await fn(self.wrapper)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fn(self.wrapper), loop))

    def close_private(self) -> None:
        """Close the orchestrator on the private loop thread and stop it (when memory runs there)."""
        with _PORTALS_LOCK:
            portal = _PORTALS.pop(self.orchestrator, None) if self.loop is None else None
        if portal is not None:
            portal.close()


# --- the per-client memory binding ---------------------------------------------------------------------


class _Turn:
    """One call's memory identity, its query (the last user message) and the user message to store."""

    __slots__ = ("query", "session_id", "user_id", "user_message")

    def __init__(self, user_id: str, session_id: str) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self.query: str | None = None
        self.user_message: str | None = None


class ClientMemory:
    """What a wrapped client's memory is bound to (``client.memory``): identity, options, flush and close.

    ``last_context`` / ``last_degraded`` describe the most recent call ({} when memory fully answered;
    ``{"memory": why}`` when the call went ahead without it). Sync code uses ``flush()`` / ``close()`` /
    ``run(fn)``; async code ``await aflush()`` / ``aclose()`` / ``arun(fn)``.
    """

    def __init__(
        self,
        orchestrator: MemoryOrchestrator,
        *,
        user_id: str | None,
        session_id: str | None,
        inject: InjectMode,
        timeout_ms: float | None,
        max_total_tokens: int | None,
        metadata: Mapping[str, Any] | None,
        store: bool,
        wrapper: MemoryAugmentedLLM,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        """Bind the options (validated by :func:`with_memory`)."""
        self.orchestrator = orchestrator
        self.user_id = user_id
        self.session_id = session_id
        self.inject: InjectMode = inject
        self.timeout_ms = timeout_ms
        self.max_total_tokens = max_total_tokens
        self.metadata = dict(metadata or {})
        self.store = store
        self.wrapper = wrapper
        self.last_context: ComprehensiveContext | None = None
        self.last_degraded: dict[str, str] = {}
        self._runner = _Runner(orchestrator, wrapper, loop)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop memory runs on (None: the caller's loop for async calls, a private one for sync calls)."""
        return self._runner.loop

    # identity ------------------------------------------------------------------------------------------
    def turn(self, kwargs: dict[str, Any], *, sdk_user: bool = False) -> _Turn | None:
        """Pop the memory keyword arguments of a call; the call's (user, session), or None for ``memory=False``."""
        enabled = kwargs.pop("memory", True)
        session = kwargs.pop("memory_session_id", None)
        user = kwargs.pop("memory_user_id", None)
        if not isinstance(enabled, bool):
            raise ValidationError("'memory' must be True or False", field="memory")
        if session is not None:
            _name(session, "memory_session_id")
        if user is not None:
            _name(user, "memory_user_id")
        if sdk_user and user is None and kwargs.get("user") is not None:
            user = _name(kwargs["user"], "user")
        if not enabled:
            return None
        user = user or self.user_id
        session = session or self.session_id
        if user is None:
            raise ValidationError("no memory user: pass user_id= to with_memory, or memory_user_id= (OpenAI: user=) "
                                  "to the call", field="user_id")
        if session is None:
            raise ValidationError("no memory session: pass session_id= to with_memory, or memory_session_id= to "
                                  "the call", field="session_id")
        return _Turn(user, session)

    # reading -------------------------------------------------------------------------------------------
    def _context_fn(self, turn: _Turn, query: str, model: Any) -> WriterJob[Any]:
        model_name = model if isinstance(model, str) else None

        async def fetch(w: MemoryAugmentedLLM) -> tuple[ComprehensiveContext | None, dict[str, str]]:
            return await w.context(query, user_id=turn.user_id, session_id=turn.session_id, timeout_ms=self.timeout_ms,
                                   max_total_tokens=self.max_total_tokens, model=model_name)

        return fetch

    def _deadline_s(self) -> float:
        return (self.timeout_ms if self.timeout_ms is not None else self.wrapper.timeout_ms) / 1000

    def _settle_context(
        self, result: tuple[ComprehensiveContext | None, dict[str, str]],
    ) -> ComprehensiveContext | None:
        self.last_context, self.last_degraded = result
        return self.last_context

    def _bridge_failed(self, exc: Exception, turn: _Turn) -> None:
        self.last_context = None
        self.last_degraded = self.wrapper.record_failopen(exc, self._deadline_s() * 1000, user_id=turn.user_id,
                                                          session_id=turn.session_id)

    def context_sync(self, turn: _Turn, model: Any) -> ComprehensiveContext | None:
        """The call's memory context from a sync caller (None: no query, or memory unavailable)."""
        query = turn.query
        if query is None:
            self.last_context, self.last_degraded = None, {}
            return None
        try:
            result = self._runner.sync_call(self._context_fn(turn, query, model),
                                            timeout=self._deadline_s() + SYNC_MARGIN_S)
        except (MemoryLoopError, ValidationError):
            raise
        except Exception as exc:  # the memory loop is stuck or gone: fail open
            self._bridge_failed(exc, turn)
            return None
        return self._settle_context(result)

    async def context_async(self, turn: _Turn, model: Any) -> ComprehensiveContext | None:
        """The call's memory context from an async caller (None: no query, or memory unavailable)."""
        query = turn.query
        if query is None:
            self.last_context, self.last_degraded = None, {}
            return None
        try:
            async with asyncio.timeout(self._deadline_s() + SYNC_MARGIN_S):
                result = await self._runner.async_call(self._context_fn(turn, query, model))
        except ValidationError:
            raise
        except Exception as exc:  # the memory loop is stuck or gone: fail open
            self._bridge_failed(exc, turn)
            return None
        return self._settle_context(result)

    # writing -------------------------------------------------------------------------------------------
    def _remember_fn(self, turn: _Turn, assistant: str | None) -> WriterJob[None]:
        metadata = self.metadata

        async def remember(w: MemoryAugmentedLLM) -> None:
            w.remember(user_id=turn.user_id, session_id=turn.session_id, user_message=turn.user_message,
                       assistant_message=assistant, metadata=metadata)

        return remember

    def _storable(self, turn: _Turn, assistant: str | None) -> bool:
        return self.store and turn.query is not None and (turn.user_message is not None or bool(assistant))

    def _lost(self, exc: Exception, turn: _Turn) -> None:
        TURNS_TOTAL.labels(outcome="dropped").inc()
        log.error("memory_turn_dropped", reason=f"the memory loop did not take the turn: {exc!r}",
                  user_id=turn.user_id, session_id=turn.session_id)

    def store_sync(self, turn: _Turn, assistant: str | None) -> None:
        """Hand the turn to the fail-open writer from a sync caller (returns at once; never raises for memory)."""
        if not self._storable(turn, assistant):
            return
        try:
            self._runner.sync_call(self._remember_fn(turn, assistant), timeout=SYNC_CALL_TIMEOUT_S)
        except MemoryLoopError:
            raise
        except Exception as exc:
            self._lost(exc, turn)

    async def store_async(self, turn: _Turn, assistant: str | None) -> None:
        """Hand the turn to the fail-open writer from an async caller (returns at once; never raises for memory)."""
        if not self._storable(turn, assistant):
            return
        try:
            await self._runner.async_call(self._remember_fn(turn, assistant))
        except Exception as exc:
            self._lost(exc, turn)

    # lifecycle -----------------------------------------------------------------------------------------
    def run(self, fn: Callable[[MemoryOrchestrator], Awaitable[T]], *, timeout: float = SYNC_CALL_TIMEOUT_S) -> T:
        """Run ``fn(orchestrator)`` on the loop memory runs on and return its result (sync callers)."""
        orchestrator = self.orchestrator

        async def call(_w: MemoryAugmentedLLM) -> T:
            return await fn(orchestrator)

        return self._runner.sync_call(call, timeout)

    async def arun(self, fn: Callable[[MemoryOrchestrator], Awaitable[T]]) -> T:
        """Await ``fn(orchestrator)`` on the loop memory runs on (async callers)."""
        orchestrator = self.orchestrator

        async def call(_w: MemoryAugmentedLLM) -> T:
            return await fn(orchestrator)

        return await self._runner.async_call(call)

    def flush(self, *, timeout: float = SYNC_CALL_TIMEOUT_S) -> int:
        """Wait for in-flight stores and retry the queue once; return how many turns are still pending."""

        async def flush(w: MemoryAugmentedLLM) -> int:
            return await w.flush()

        return self._runner.sync_call(flush, timeout)

    async def aflush(self) -> int:
        """Async :meth:`flush`."""

        async def flush(w: MemoryAugmentedLLM) -> int:
            return await w.flush()

        return await self._runner.async_call(flush)

    @property
    def pending(self) -> int:
        """Turns waiting in the writer's retry queue."""
        return self.wrapper.pending

    def close(self) -> None:
        """Flush, stop retrying (unsaved turns are logged); on the private loop, close the orchestrator too."""

        async def close(w: MemoryAugmentedLLM) -> None:
            await w.aclose()

        try:
            self._runner.sync_call(close, SYNC_CALL_TIMEOUT_S)
        finally:
            self._runner.close_private()

    async def aclose(self) -> None:
        """Async :meth:`close`."""

        async def close(w: MemoryAugmentedLLM) -> None:
            await w.aclose()

        try:
            await self._runner.async_call(close)
        finally:
            if self._runner.loop is None and self.orchestrator in _PORTALS:
                await asyncio.to_thread(self._runner.close_private)


# --- proxies -------------------------------------------------------------------------------------------


class _Proxy:
    """Passes every attribute through to the wrapped SDK object."""

    def __init__(self, target: Any, memory: ClientMemory) -> None:
        self._target = target
        self._memory = memory

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} around {self._target!r}>"


class _ClientProxy(_Proxy):
    @property
    def memory(self) -> ClientMemory:
        """The memory binding: identity, options, ``flush``/``close``, ``last_context``/``last_degraded``."""
        return self._memory

    def with_options(self, **options: Any) -> Any:
        """The SDK's ``with_options`` / ``copy``, still with memory."""
        return type(self)(self._target.with_options(**options), self._memory)

    def copy(self, **options: Any) -> Any:
        """The SDK's ``copy``, still with memory."""
        return type(self)(self._target.copy(**options), self._memory)


__all__ = ["INJECT_MODES", "SYNC_MARGIN_S", "ClientMemory", "InjectMode", "MemoryLoopError", "WriterJob"]
