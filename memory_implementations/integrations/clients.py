"""Memory for LLM SDK clients: ``with_memory(client, orchestrator, user_id=..., session_id=...)``.

Wraps an ``openai.OpenAI`` / ``openai.AsyncOpenAI`` or a ``google.genai.Client`` (or its ``.aio``) and
returns a client used exactly like the original::

    client = with_memory(OpenAI(), orchestrator, user_id="u1", session_id="s1")
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])

Augmented calls: OpenAI ``chat.completions.create`` and ``responses.create`` (``stream=True`` too); Gemini
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
from collections.abc import Mapping
from typing import Any

from ..errors import ValidationError
from ..orchestrator import MemoryOrchestrator
from ._client_memory import (
    _PORTALS,
    INJECT_MODES,
    ClientMemory,
    InjectMode,
    MemoryLoopError,
    _ClientProxy,
    _has_connections,
    _name,
    _running_loop,
)
from ._genai_client import MemoryAsyncGenAI, MemoryGenAI, inject_genai
from ._openai_client import MemoryAsyncOpenAI, MemoryOpenAI, inject_openai
from .failopen import MemoryAugmentedLLM, failopen_wrapper

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
