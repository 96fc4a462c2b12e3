"""Memory for LLM SDK clients: ``with_memory(client, orchestrator, user_id=..., session_id=...)``.

Wraps an ``openai.OpenAI`` / ``openai.AsyncOpenAI`` or a ``google.genai.Client`` (or its ``.aio``) and
returns a client used exactly like the original::

    client = with_memory(OpenAI(), orchestrator, user_id="u1", session_id="s1")
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])

Augmented calls: OpenAI ``chat.completions.create`` (``stream=True`` too); Gemini
``models.generate_content`` / ``generate_content_stream`` and ``aio.models.*``. Every other attribute
passes through to the SDK untouched. Per call:

1. the context for (user, session) is fetched with the last user message's text as the query, under
   the wrapper's deadline (``timeout_ms``);
2. it is injected: ``inject="system"`` merges the memory block (``ComprehensiveContext.text``) into the
   first system/developer message (OpenAI; one is inserted when there is none) or into
   ``config.system_instruction`` (Gemini); ``inject="messages"`` puts the context's messages (a
   system message with the memory sections, then the recent conversation) after the request's leading
   system messages (OpenAI), or the memory sections into ``system_instruction`` and the conversation
   before ``contents`` (Gemini);
3. the real SDK method is called with everything else as given; its errors propagate unchanged and
   nothing is stored;
4. the turn (the last user message when the request ends with it, plus the reply's text) is stored in
   the background by the orchestrator's fail-open writer (:func:`failopen_wrapper`: ordered per
   session, bounded retry queue). Streams are passed through chunk by chunk and the turn is stored once
   the model's finish reason arrived and the stream ended or was closed; a stream that raises or is
   abandoned before that stores nothing.

Memory is fail-open: slow or down memory means the call goes ahead without it (structlog warning,
``memory_llm_failopen_total{reason}``). Per-call keyword arguments, removed before the SDK sees them:
``memory=False`` (plain call), ``memory_session_id=``, ``memory_user_id=``; OpenAI's own ``user=`` also
names the memory user and is still forwarded.

Sync clients and the event loop: the orchestrator is async and its connections belong to the loop that
opened them. ``loop=`` (or, by default, the loop running where ``with_memory`` is called) is where
memory runs; sync calls from other threads are handed to it. Without one, memory runs on a private loop
thread per orchestrator (``client.memory.close()`` then closes the orchestrator there). A sync call on
the thread of the loop memory runs on raises ``RuntimeError`` instead of deadlocking.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal, TypeVar

import structlog

from ..context import ComprehensiveContext
from ..errors import BackendUnavailable, ValidationError
from ..orchestrator import MemoryOrchestrator
from ._conversation import text_of_content
from ._portal import SYNC_CALL_TIMEOUT_S, Portal
from ._streams import AsyncMemoryStream, MemoryStream, genai_chunk, genai_text, openai_chunk
from .failopen import TURNS_TOTAL, MemoryAugmentedLLM, failopen_wrapper, reply_text

log = structlog.get_logger("memory_implementations.integrations.clients")

T = TypeVar("T")
InjectMode = Literal["system", "messages"]
INJECT_MODES: tuple[str, ...] = ("system", "messages")
#: Extra seconds a sync call waits for the memory loop beyond the memory deadline (a busy or stuck loop).
SYNC_MARGIN_S = 5.0
_SYSTEM_ROLES = ("system", "developer")

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


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


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


# OpenAI -------------------------------------------------------------------------------------------------


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


# Gemini -------------------------------------------------------------------------------------------------


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


# --- the entry point -------------------------------------------------------------------------------------


def _client_kind(client: Any) -> tuple[type[_ClientProxy], bool]:
    """The proxy class for ``client`` and whether it has sync methods."""
    module = type(client).__module__
    if module.startswith("openai"):
        import openai

        if isinstance(client, openai.AsyncOpenAI):
            return MemoryAsyncOpenAI, False
        if isinstance(client, openai.OpenAI):
            return MemoryOpenAI, True
    if module.startswith("google.genai"):
        from google import genai
        from google.genai.client import AsyncClient

        if isinstance(client, genai.Client):
            return MemoryGenAI, True
        if isinstance(client, AsyncClient):
            return MemoryAsyncGenAI, False
    if isinstance(client, _ClientProxy):
        raise ValidationError("the client already has memory (with_memory was applied to it)", field="client")
    raise ValidationError(
        f"'client' must be an openai.OpenAI, openai.AsyncOpenAI, google.genai.Client or its .aio; "
        f"got {type(client).__name__}", field="client")


def with_memory(
    client: Any,
    orchestrator: MemoryOrchestrator,
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    inject: InjectMode = "system",
    timeout_ms: float | None = None,
    max_total_tokens: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    store: bool = True,
    wrapper: MemoryAugmentedLLM | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Any:
    """Wrap an OpenAI or Gemini SDK client so its chat calls read and write ``orchestrator``'s memory (fail-open).

    ``user_id`` / ``session_id`` are the defaults of every call (overridable per call); ``timeout_ms``
    bounds the context read (default: the writer's, 1000 ms); ``max_total_tokens`` the memory context;
    ``metadata`` is stored with every turn; ``store=False`` only reads. ``wrapper`` is the fail-open
    writer (default :func:`failopen_wrapper`, shared per orchestrator); ``loop`` the event loop the
    orchestrator runs on, for sync clients (see the module docstring).
    """
    if not isinstance(orchestrator, MemoryOrchestrator):
        raise ValidationError(f"'orchestrator' must be a MemoryOrchestrator, got {type(orchestrator).__name__}",
                              field="orchestrator")
    proxy, has_sync = _client_kind(client)
    if user_id is not None:
        _name(user_id, "user_id")
    if session_id is not None:
        _name(session_id, "session_id")
    if inject not in INJECT_MODES:
        raise ValidationError(f"'inject' must be one of {', '.join(INJECT_MODES)}; got {inject!r}", field="inject")
    if timeout_ms is not None and (isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float)
                                   or timeout_ms <= 0):
        raise ValidationError("'timeout_ms' must be a positive number", field="timeout_ms")
    if max_total_tokens is not None and (isinstance(max_total_tokens, bool) or not isinstance(max_total_tokens, int)
                                         or max_total_tokens <= 0):
        raise ValidationError("'max_total_tokens' must be a positive integer", field="max_total_tokens")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ValidationError("'metadata' must be a mapping", field="metadata")
    if not isinstance(store, bool):
        raise ValidationError("'store' must be True or False", field="store")
    if wrapper is not None and (not isinstance(wrapper, MemoryAugmentedLLM)
                                or wrapper.orchestrator is not orchestrator):
        raise ValidationError("'wrapper' must be a MemoryAugmentedLLM of the same orchestrator", field="wrapper")
    if loop is not None and (not isinstance(loop, asyncio.AbstractEventLoop) or loop.is_closed()):
        raise ValidationError("'loop' must be an open asyncio event loop", field="loop")
    if loop is None and has_sync:
        loop = _running_loop()
        if loop is None and orchestrator not in _PORTALS and _has_connections(orchestrator):
            raise ValidationError(
                "the orchestrator already has connections, which belong to the event loop that opened them: pass "
                "loop= (the loop it runs on), or wrap it before it is initialized", field="loop")
    memory = ClientMemory(
        orchestrator, user_id=user_id, session_id=session_id, inject=inject,
        timeout_ms=float(timeout_ms) if timeout_ms is not None else None, max_total_tokens=max_total_tokens,
        metadata=metadata, store=store, wrapper=wrapper or failopen_wrapper(orchestrator), loop=loop)
    return proxy(client, memory)


__all__ = [
    "INJECT_MODES",
    "ClientMemory",
    "InjectMode",
    "MemoryAsyncGenAI",
    "MemoryAsyncOpenAI",
    "MemoryGenAI",
    "MemoryLoopError",
    "MemoryOpenAI",
    "inject_genai",
    "inject_openai",
    "with_memory",
]
