"""Fail-open memory around an LLM call: ``MemoryAugmentedLLM`` and ``call_with_memory``.

Per call: fetch memory context under a deadline (``timeout_ms``, initialisation included), call the
application's async LLM function with the augmented messages, return its reply, and store the turn
in the background. Memory can only make the answer better, never block or fail it:

* memory down, slow or erroring → the LLM is called without memory (query and system prompt only), a
  warning is logged and ``last_degraded`` / ``MemoryReply.degraded`` say why; a tier that degrades
  inside the orchestrator (``ctx.degraded``) is reported the same way while the others still help;
* storing the turn never delays the reply; when it fails the turn goes to a bounded in-process retry
  queue (``max_pending`` turns, default 1000), retried with exponential backoff, per session in order
  (a session with queued turns queues its new ones behind them). When the queue is full the oldest
  turn is dropped and logged at ERROR with its ids (``stats["dropped"]``); a turn the tier rejects as
  invalid is logged at ERROR and not retried (``stats["rejected"]``). ``pending_turns()`` hands the
  queue to the application, ``flush()`` retries now, ``aclose()`` flushes and logs what is left.
  The queue lives in this process: a crash loses it. A store that timed out after its commit is
  retried, so a turn may be stored twice (at-least-once).
* the LLM's own errors propagate unchanged and nothing is stored for that call (the application
  retries the whole call).

After a memory failure a circuit breaker skips memory reads for ``breaker_s`` (1 s, doubling per
consecutive failure up to ``breaker_max_s``, 30 s): while memory is down, calls pay nothing for it;
the first call after the window probes, and success closes the breaker.

Prometheus counters in the default registry: ``memory_llm_failopen_total{reason}`` (a call went ahead
without memory: ``timeout``, ``backend_unavailable``, ``error``, or ``circuit_open`` when skipped)
and ``memory_llm_turns_total{outcome}`` (``stored``, ``queued``, ``dropped``, ``rejected``). The SDK
client wrappers (``integrations.clients``) run on the same machinery.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import redis.exceptions
import structlog
from prometheus_client import REGISTRY, Counter

from ..context import ComprehensiveContext
from ..errors import BackendUnavailable, ValidationError
from ..orchestrator import MemoryOrchestrator
from ..types import ContextRequest, utcnow
from ._breaker import CircuitBreaker
from ._conversation import text_of_content
from .tools import PromptFormat, build_memory_prompt, render_prompt

log = structlog.get_logger("memory_implementations.integrations.failopen")

#: The application's model call: ``await llm_call(messages)`` (OpenAI format) or
#: ``await llm_call(messages, system=...)`` (Anthropic format). It may return a string or an SDK response.
LLMCall = Callable[..., Awaitable[Any]]
DEFAULT_TIMEOUT_MS = 1000.0
DEFAULT_MAX_PENDING = 1000


def registered_counter(name: str, documentation: str, labels: tuple[str, ...]) -> Counter:
    """A Counter in prometheus_client's default registry, reused when already registered (module re-import)."""
    existing = REGISTRY._names_to_collectors.get(name)
    if isinstance(existing, Counter):
        return existing
    return Counter(name, documentation, list(labels))


#: Calls that went ahead without memory, by reason (``timeout``, ``backend_unavailable``, ``error``).
FAILOPEN_TOTAL = registered_counter(
    "memory_llm_failopen_total", "LLM calls that went ahead without memory (memory slow, down or failing).",
    ("reason",))
#: Turns handed to the fail-open writer, by outcome (``stored``, ``queued``, ``dropped``, ``rejected``).
TURNS_TOTAL = registered_counter(
    "memory_llm_turns_total", "Turns of memory-wrapped LLM calls by store outcome.", ("outcome",))


def failopen_reason(exc: BaseException) -> str:
    """The ``reason`` label of a memory failure: ``timeout``, ``backend_unavailable`` or ``error``."""
    if isinstance(exc, TimeoutError | redis.exceptions.TimeoutError):
        return "timeout"
    if isinstance(exc, BackendUnavailable | OSError | psycopg.OperationalError | redis.exceptions.ConnectionError):
        return "backend_unavailable"
    return "error"


@dataclass
class PendingTurn:
    """A turn whose store failed, waiting in the retry queue."""

    user_id: str
    session_id: str
    user_message: str | None
    assistant_message: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    queued_at: datetime = field(default_factory=utcnow)
    attempts: int = 0
    last_error: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """The (user, session) the turn belongs to."""
        return (self.user_id, self.session_id)


@dataclass
class MemoryReply:
    """One augmented call: the LLM's reply as it returned it, and what memory did."""

    reply: Any
    text: str | None
    degraded: dict[str, str]
    used_memory: bool
    request: Any
    context: ComprehensiveContext | None = None


def reply_text(reply: Any) -> str | None:
    """The text of a model reply (str, OpenAI, Anthropic, LlamaIndex or LangChain shape); None without text."""
    if reply is None:
        return None
    if isinstance(reply, str):
        return reply

    def get(obj: Any, key: str) -> Any:
        return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)

    choices = get(reply, "choices")
    if choices:
        message = get(choices[0], "message")
        content = get(message, "content") if message is not None else None
        return text_of_content(content) if content is not None else None
    message = get(reply, "message")  # LlamaIndex ChatResponse
    if message is not None and not isinstance(message, str):
        content = get(message, "content")
        return text_of_content(content) if content is not None else None
    output_text = get(reply, "output_text")
    if isinstance(output_text, str):
        return output_text
    content = get(reply, "content")
    if content is not None:
        return text_of_content(content)
    return None


def _reason(exc: BaseException, timeout_ms: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timeout: no memory context within {timeout_ms:g} ms"
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


class MemoryAugmentedLLM:
    """Wraps an async LLM call with fail-open memory: context in (bounded), turn out (background, retried).

    ``llm = MemoryAugmentedLLM(orchestrator, call_model, timeout_ms=800)``, then per turn
    ``reply = await llm("question", user_id="u1", session_id="s1")`` (the reply as ``call_model``
    returned it) or ``result = await llm.complete(...)`` for a ``MemoryReply``. ``last_degraded`` holds
    the degradation of the most recent call ({} when memory fully answered).
    """

    def __init__(
        self,
        orchestrator: MemoryOrchestrator,
        llm_call: LLMCall | None = None,
        *,
        timeout_ms: float = DEFAULT_TIMEOUT_MS,
        format: PromptFormat = "openai",
        system_prompt: str | None = None,
        max_total_tokens: int | None = None,
        model: str | None = None,
        store: bool = True,
        store_timeout_s: float = 30.0,
        max_pending: int = DEFAULT_MAX_PENDING,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 60.0,
        text_of: Callable[[Any], str | None] = reply_text,
        breaker_s: float = 1.0,
        breaker_max_s: float = 30.0,
    ) -> None:
        """Configure the wrapper (no I/O); ``text_of`` extracts the text to store from the LLM's reply.

        After a memory failure reads are skipped for ``breaker_s`` seconds (doubling per consecutive
        failure up to ``breaker_max_s``; 0 disables): see :class:`~._breaker.CircuitBreaker`.
        """
        if format not in ("openai", "anthropic"):
            raise ValidationError(f"'format' must be 'openai' or 'anthropic'; got {format!r}", field="format")
        for name, value in (("timeout_ms", timeout_ms), ("store_timeout_s", store_timeout_s),
                            ("retry_initial_s", retry_initial_s), ("retry_max_s", retry_max_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValidationError(f"'{name}' must be a positive number", field=name)
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValidationError("'max_pending' must be a positive integer", field="max_pending")
        for name, value in (("breaker_s", breaker_s), ("breaker_max_s", breaker_max_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValidationError(f"'{name}' must be a number >= 0", field=name)
        self.breaker = CircuitBreaker(breaker_s, breaker_max_s)
        self.orchestrator = orchestrator
        self.llm_call = llm_call
        self.timeout_ms = float(timeout_ms)
        self.format: PromptFormat = format
        self.system_prompt = system_prompt
        self.max_total_tokens = max_total_tokens
        self.model = model
        self.store = store
        self.store_timeout_s = float(store_timeout_s)
        self.max_pending = max_pending
        self.retry_initial_s = float(retry_initial_s)
        self.retry_max_s = float(retry_max_s)
        self.text_of = text_of
        self.last_degraded: dict[str, str] = {}
        self.stats: dict[str, int] = {"calls": 0, "degraded": 0, "stored": 0, "retried": 0, "queued": 0,
                                      "dropped": 0, "rejected": 0}
        self._queue: collections.deque[PendingTurn] = collections.deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}
        self._drain_lock: asyncio.Lock | None = None
        self._retry_task: asyncio.Task[None] | None = None
        self._init_task: asyncio.Task[None] | None = None

    # reading ----------------------------------------------------------------------------------------
    async def _initialized(self) -> None:
        """Initialize the orchestrator once, in a task a deadline cannot cancel half-way; retried after a failure."""
        task = self._init_task
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._init_task = asyncio.ensure_future(self.orchestrator.initialize())
            task.add_done_callback(_consume_exception)
        await asyncio.shield(task)

    async def _memory_request(
        self, query: str, user_id: str, session_id: str | None, timeout_ms: float, fmt: PromptFormat,
        system_prompt: str | None, max_total_tokens: int | None,
    ) -> tuple[Any, ComprehensiveContext | None, dict[str, str]]:
        if not self.breaker.allow():
            degraded = self._skipped(user_id, session_id)
            return render_prompt(None, query, format=fmt, system_prompt=system_prompt), None, degraded
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                await self._initialized()
                request, ctx = await build_memory_prompt(
                    self.orchestrator, query, user_id=user_id, session_id=session_id,
                    max_total_tokens=max_total_tokens, format=fmt, model=self.model, system_prompt=system_prompt)
            if self._all_failed(ctx):
                self._count_all_failed(ctx, user_id, session_id)
            else:
                self.breaker.success()
            return request, ctx, dict(ctx.degraded)
        except Exception as exc:  # fail-open: any memory failure means "answer without memory"
            degraded = self.record_failopen(exc, timeout_ms, user_id=user_id, session_id=session_id)
            return render_prompt(None, query, format=fmt, system_prompt=system_prompt), None, degraded

    def record_failopen(self, exc: BaseException, timeout_ms: float, *, user_id: str | None,
                        session_id: str | None) -> dict[str, str]:
        """Log and count a call going ahead without memory (and open the breaker); return its ``degraded`` entry."""
        reason = _reason(exc, timeout_ms)
        FAILOPEN_TOTAL.labels(reason=failopen_reason(exc)).inc()
        self.breaker.failure(reason)
        log.warning("memory_unavailable", reason=reason, user_id=user_id, session_id=session_id,
                    skip_memory_s=round(self.breaker.remaining_s(), 3))
        return {"memory": reason}

    def _skipped(self, user_id: str | None, session_id: str | None) -> dict[str, str]:
        """A read skipped while the breaker is open: counted, logged at debug (no log flood), explained."""
        FAILOPEN_TOTAL.labels(reason="circuit_open").inc()
        log.debug("memory_skipped", reason="circuit_open", last_failure=self.breaker.last_failure,
                  user_id=user_id, session_id=session_id)
        return {"memory": f"skipped for {self.breaker.remaining_s():.1f} s more after a failure "
                          f"({self.breaker.last_failure})"}

    def _all_failed(self, ctx: ComprehensiveContext) -> bool:
        """True when every tier of the orchestrator degraded (the context is empty: memory is down)."""
        tiers = {mt.value for mt in self.orchestrator.memories}
        return bool(tiers) and tiers <= set(ctx.degraded)

    def _count_all_failed(self, ctx: ComprehensiveContext, user_id: str | None, session_id: str | None) -> None:
        reasons = list(ctx.degraded.values())
        label = "timeout" if all(r.startswith("timeout") for r in reasons) else "backend_unavailable"
        FAILOPEN_TOTAL.labels(reason=label).inc()
        self.breaker.failure("every memory tier failed")
        log.warning("memory_unavailable", reason="every memory tier failed", tiers=dict(ctx.degraded),
                    user_id=user_id, session_id=session_id)

    async def fetch_context(
        self, query: str, *, user_id: str, session_id: str | None, timeout_ms: float | None = None,
        format: PromptFormat | None = None, system_prompt: str | None = None, max_total_tokens: int | None = None,
    ) -> tuple[Any, ComprehensiveContext | None, dict[str, str]]:
        """``(prompt, context or None, degraded)``: the memory prompt for ``query``, or the bare prompt (fail-open)."""
        deadline = float(timeout_ms) if timeout_ms is not None else self.timeout_ms
        return await self._memory_request(
            query, user_id, session_id, deadline, format or self.format, system_prompt or self.system_prompt,
            max_total_tokens or self.max_total_tokens)

    async def context(
        self, query: str, *, user_id: str, session_id: str | None, timeout_ms: float | None = None,
        max_total_tokens: int | None = None, model: str | None = None,
    ) -> tuple[ComprehensiveContext | None, dict[str, str]]:
        """The orchestrator's context for ``query`` within the deadline, or ``(None, {"memory": why})`` (fail-open)."""
        deadline = float(timeout_ms) if timeout_ms is not None else self.timeout_ms
        if not self.breaker.allow():
            return None, self._skipped(user_id, session_id)
        try:
            async with asyncio.timeout(deadline / 1000):
                await self._initialized()
                ctx = await self.orchestrator.get_comprehensive_context(ContextRequest(
                    query=query, session_id=session_id, user_id=user_id,
                    max_total_tokens=max_total_tokens or self.max_total_tokens, model=model or self.model))
        except Exception as exc:  # fail-open: any memory failure means "answer without memory"
            return None, self.record_failopen(exc, deadline, user_id=user_id, session_id=session_id)
        if self._all_failed(ctx):
            self._count_all_failed(ctx, user_id, session_id)
            return None, dict(ctx.degraded)
        self.breaker.success()
        return ctx, dict(ctx.degraded)

    async def complete(
        self,
        query: str,
        *,
        user_id: str,
        session_id: str,
        llm_call: LLMCall | None = None,
        timeout_ms: float | None = None,
        format: PromptFormat | None = None,
        system_prompt: str | None = None,
        max_total_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> MemoryReply:
        """Answer ``query`` with memory if it comes in time, else without; store the turn in the background."""
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("'query' must be a non-empty string", field="query")
        for name, value in (("user_id", user_id), ("session_id", session_id)):
            if not isinstance(value, str) or not value.strip():
                raise ValidationError(f"'{name}' must be a non-empty string", field=name)
        call = llm_call or self.llm_call
        if call is None:
            raise ValidationError("no LLM function: pass llm_call here or to the constructor", field="llm_call")
        fmt = format or self.format
        deadline = float(timeout_ms) if timeout_ms is not None else self.timeout_ms
        request, ctx, degraded = await self._memory_request(
            query, user_id, session_id, deadline, fmt, system_prompt or self.system_prompt,
            max_total_tokens or self.max_total_tokens)
        self.last_degraded = degraded
        self.stats["calls"] += 1
        if degraded:
            self.stats["degraded"] += 1
        if fmt == "anthropic":
            reply = await call(request["messages"], system=request["system"])
        else:
            reply = await call(request)
        text = self.text_of(reply)
        if self.store:
            turn = PendingTurn(user_id, session_id, query, text if text and text.strip() else None,
                               dict(metadata or {}))
            self._spawn(self._store_in_order(turn))
        return MemoryReply(reply=reply, text=text, degraded=degraded, used_memory=ctx is not None,
                           request=request, context=ctx)

    async def __call__(self, query: str, *, user_id: str, session_id: str, **options: Any) -> Any:
        """Like :meth:`complete`, returning only the LLM's reply (as the LLM function returned it)."""
        return (await self.complete(query, user_id=user_id, session_id=session_id, **options)).reply

    @property
    def degraded(self) -> bool:
        """True when the most recent call ran with degraded (or no) memory."""
        return bool(self.last_degraded)

    # writing ----------------------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def remember(
        self, *, user_id: str, session_id: str, user_message: str | None, assistant_message: str | None,
        metadata: Mapping[str, Any] | None = None,
    ) -> asyncio.Future[Any] | None:
        """Store a turn in the background (ordered per session, queued for retry on failure); call on the loop.

        Blank messages are left out; a turn with neither message is not stored (None is returned).
        """
        user = user_message if user_message and user_message.strip() else None
        assistant = assistant_message if assistant_message and assistant_message.strip() else None
        if user is None and assistant is None:
            return None
        turn = PendingTurn(user_id, session_id, user, assistant, dict(metadata or {}))
        return self._spawn(self._store_in_order(turn))

    def submit_turn(
        self, *, user_id: str, session_id: str, user_message: str | None, assistant_message: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> asyncio.Future[Any]:
        """Start storing a turn like :meth:`remember`; the future completes once it is stored or queued.

        The store starts at once (so :meth:`flush` waits for it); the future never fails for a backend.
        """
        task = self.remember(user_id=user_id, session_id=session_id, user_message=user_message,
                             assistant_message=assistant_message, metadata=metadata)
        if task is None:
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return task

    async def _store_in_order(self, turn: PendingTurn) -> None:
        """Store a turn after the earlier turns of its session (in-flight or queued)."""
        lock, users = self._locks.get(turn.key) or (asyncio.Lock(), 0)
        self._locks[turn.key] = (lock, users + 1)
        try:
            async with lock:
                if any(t.key == turn.key for t in self._queue):
                    self._enqueue(turn, "earlier turns of the session are waiting")
                elif not await self._try_store(turn):
                    self._enqueue(turn, turn.last_error or "store failed")
        finally:
            lock, users = self._locks[turn.key]
            if users <= 1:
                del self._locks[turn.key]
            else:
                self._locks[turn.key] = (lock, users - 1)

    async def _try_store(self, turn: PendingTurn) -> bool:
        """One store attempt; True when the turn is done with (stored, or rejected as invalid)."""
        try:
            async with asyncio.timeout(self.store_timeout_s):
                await self._initialized()
                await self.orchestrator.store_turn(
                    session_id=turn.session_id, user_id=turn.user_id, user_message=turn.user_message,
                    assistant_message=turn.assistant_message, metadata=turn.metadata)
        except ValidationError as exc:  # retrying cannot help: say so loudly
            self.stats["rejected"] += 1
            TURNS_TOTAL.labels(outcome="rejected").inc()
            log.error("memory_turn_rejected", error=exc.message, field=exc.field, user_id=turn.user_id,
                      session_id=turn.session_id)
            return True
        except Exception as exc:
            turn.attempts += 1
            turn.last_error = _reason(exc, self.store_timeout_s * 1000)
            return False
        self.stats["stored"] += 1
        self.breaker.success()  # a store got through: the backends are back, read memory again
        TURNS_TOTAL.labels(outcome="stored").inc()
        if turn.attempts:
            self.stats["retried"] += 1
        return True

    def _enqueue(self, turn: PendingTurn, why: str) -> None:
        if len(self._queue) >= self.max_pending:
            lost = self._queue.popleft()
            self.stats["dropped"] += 1
            TURNS_TOTAL.labels(outcome="dropped").inc()
            log.error("memory_turn_dropped", reason=f"retry queue full ({self.max_pending} turns)",
                      user_id=lost.user_id, session_id=lost.session_id, queued_at=lost.queued_at.isoformat(),
                      attempts=lost.attempts, last_error=lost.last_error)
        self._queue.append(turn)
        self.stats["queued"] += 1
        TURNS_TOTAL.labels(outcome="queued").inc()
        log.warning("memory_turn_queued", reason=why, user_id=turn.user_id, session_id=turn.session_id,
                    pending=len(self._queue))
        if self._retry_task is None or self._retry_task.done():
            self._retry_task = asyncio.ensure_future(self._retry_loop())

    async def _drain(self) -> bool:
        """Retry queued turns oldest first until one fails; True when at least one was stored."""
        if self._drain_lock is None:
            self._drain_lock = asyncio.Lock()
        progressed = False
        async with self._drain_lock:
            while self._queue:
                turn = self._queue[0]
                if not await self._try_store(turn):
                    break
                if self._queue and self._queue[0] is turn:
                    self._queue.popleft()
                progressed = True
        return progressed

    async def _retry_loop(self) -> None:
        delay = self.retry_initial_s
        while self._queue:
            await asyncio.sleep(delay)
            progressed = await self._drain()
            delay = self.retry_initial_s if progressed else min(delay * 2, self.retry_max_s)

    @property
    def pending(self) -> int:
        """Turns waiting in the retry queue."""
        return len(self._queue)

    def pending_turns(self) -> list[PendingTurn]:
        """A copy of the retry queue, oldest first (e.g. to persist it elsewhere before shutting down)."""
        return list(self._queue)

    async def flush(self) -> int:
        """Wait for in-flight stores, retry the queue once; return how many turns are still pending."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._drain()
        return len(self._queue)

    async def aclose(self) -> None:
        """Flush, stop retrying, and log (at ERROR) any turn that could not be stored."""
        await self.flush()
        if self._retry_task is not None:
            self._retry_task.cancel()
            await asyncio.gather(self._retry_task, return_exceptions=True)
            self._retry_task = None
        if self._queue:
            log.error("memory_turns_unsaved", count=len(self._queue),
                      sessions=sorted({f"{t.user_id}/{t.session_id}" for t in self._queue}))


def _consume_exception(task: asyncio.Task[Any]) -> None:
    """Retrieve a background initialisation's exception (it is reported where it is awaited)."""
    if not task.cancelled():
        task.exception()


_WRAPPERS: weakref.WeakKeyDictionary[MemoryOrchestrator, MemoryAugmentedLLM] = weakref.WeakKeyDictionary()


def failopen_wrapper(orchestrator: MemoryOrchestrator) -> MemoryAugmentedLLM:
    """The shared wrapper of ``orchestrator`` (one per orchestrator, so its retry queue persists).

    :func:`call_with_memory`, ``orchestrator.turn()`` and the SDK client wrappers use it.
    """
    wrapper = _WRAPPERS.get(orchestrator)
    if wrapper is None:
        wrapper = _WRAPPERS[orchestrator] = MemoryAugmentedLLM(orchestrator)
    return wrapper


async def call_with_memory(
    orchestrator: MemoryOrchestrator,
    llm_call: LLMCall,
    *,
    user_id: str,
    session_id: str,
    query: str,
    timeout_ms: float = DEFAULT_TIMEOUT_MS,
    format: PromptFormat = "openai",
    system_prompt: str | None = None,
    max_total_tokens: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> MemoryReply:
    """One fail-open augmented call (see :class:`MemoryAugmentedLLM`); ``failopen_wrapper(orchestrator)``
    gives the wrapper whose retry queue holds turns that could not be stored."""
    return await failopen_wrapper(orchestrator).complete(
        query, user_id=user_id, session_id=session_id, llm_call=llm_call, timeout_ms=timeout_ms, format=format,
        system_prompt=system_prompt, max_total_tokens=max_total_tokens, metadata=metadata)


__all__ = ["FAILOPEN_TOTAL", "TURNS_TOTAL", "LLMCall", "MemoryAugmentedLLM", "MemoryReply", "PendingTurn",
           "call_with_memory", "failopen_reason", "failopen_wrapper", "registered_counter", "reply_text"]
