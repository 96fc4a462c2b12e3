"""A LlamaIndex memory block serving the orchestrator's context: ``OrchestratorMemoryBlock``.

``llama_index.core.memory.Memory`` keeps a short-term FIFO of chat messages and asks its memory blocks
for long-term content on every ``aget``; messages pushed out of the FIFO are handed to the blocks'
``aput``. This block answers ``aget`` with the orchestrator's comprehensive context for the latest user
message (``ComprehensiveContext.text``: summary, entities, facts, working memory, vector hits and the
stored conversation) and stores flushed messages as turns with ``store_turn`` (conversation tier, then
embedding and entity extraction in the background)::

    block = OrchestratorMemoryBlock(orchestrator, user_id="u1")
    memory = Memory.from_defaults(session_id="s1", memory_blocks=[block], token_limit=4000)

Both directions are fail-open, never an exception in the agent: a failed read gives an empty block and
a logged warning; a flushed turn that cannot be stored because a backend is down goes to the
orchestrator's fail-open writer (``failopen_wrapper``), which retries it in order, and a turn the tier
rejects as invalid is logged at ERROR and counted in ``failed_writes``.

The block is async-only: it calls the orchestrator on the caller's event loop, so use ``Memory.aget``
/ ``aput`` (the sync ``Memory.get`` runs a new loop, where the orchestrator's pooled connections
cannot be used, and would get an empty block).

Needs llama-index-core (``pip install 'memory-implementations[llamaindex]'``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from ..errors import ValidationError
from ..memories import _shared as sh
from ..orchestrator import MemoryOrchestrator
from ..types import ContextRequest, MemoryType
from .failopen import failopen_wrapper

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.llms import ChatMessage
    from llama_index.core.memory.memory import BaseMemoryBlock
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without llama-index-core
    raise ImportError(
        "OrchestratorMemoryBlock needs llama-index-core: pip install 'memory-implementations[llamaindex]'"
    ) from exc

log = structlog.get_logger("memory_implementations.integrations.llamaindex_block")

#: Metadata stored with every turn this block writes.
SOURCE = "llamaindex_memory"


def _role(message: ChatMessage) -> str:
    role = message.role
    return str(getattr(role, "value", role))


def _text(message: ChatMessage) -> str:
    return (message.content or "").strip()


def latest_user_text(messages: Sequence[ChatMessage] | None) -> str:
    """The text of the newest user message in ``messages`` ("" when there is none)."""
    for message in reversed(list(messages or [])):
        if _role(message) == "user" and _text(message):
            return _text(message)
    return ""


def turns_of(messages: Sequence[ChatMessage]) -> list[tuple[str | None, str | None]]:
    """``messages`` as ``(user text, assistant text)`` turns; tool, system and empty messages are skipped.

    A user message starts a turn; the text of the assistant messages after it (several when tools were
    called in between) is joined into the turn's answer.
    """
    out: list[tuple[str | None, str | None]] = []
    user: str | None = None
    answer: list[str] = []

    def close() -> None:
        if user is not None or answer:
            out.append((user, "\n\n".join(answer) or None))

    for message in messages:
        role, text = _role(message), _text(message)
        if not text:
            continue
        if role == "user":
            close()
            user, answer = text, []
        elif role == "assistant":
            answer.append(text)
    close()
    return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    return f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"


class OrchestratorMemoryBlock(BaseMemoryBlock[str]):
    """A ``Memory`` block whose content is the orchestrator's context and which stores flushed turns.

    ``session_id`` defaults to the session of the ``Memory`` using the block; ``max_tokens`` caps the
    context (default: the orchestrator's ``max_total_tokens``); ``memory_types`` limits the tiers read;
    ``timeout_s`` bounds the whole read (the tiers also have their own deadlines); ``store_flushed=False``
    makes the block read-only (when the application stores turns itself).
    """

    name: str = Field(default="memory", description="The name/identifier of the memory block.")
    orchestrator: Any = Field(exclude=True, description="The MemoryOrchestrator serving and storing memory.")
    user_id: str = Field(description="The tenant whose memory is read and written.")
    session_id: str | None = Field(default=None, description="Session id; default: the Memory's session.")
    max_tokens: int | None = Field(default=None, description="Token budget of the context.")
    memory_types: list[MemoryType] | None = Field(default=None, description="Tiers to read; default: all enabled.")
    model: str | None = Field(default=None, description="Model whose tokenizer counts the context.")
    timeout_s: float | None = Field(default=None, description="Deadline of one read, in seconds.")
    store_flushed: bool = Field(default=True, description="Store messages flushed from short-term memory.")

    _last_error: str | None = PrivateAttr(default=None)
    _last_context: Any = PrivateAttr(default=None)
    _failed_writes: int = PrivateAttr(default=0)

    def __init__(self, orchestrator: MemoryOrchestrator, /, *, user_id: str, **data: Any) -> None:
        """Bind the orchestrator and the tenant; bad arguments raise ValidationError naming the field."""
        if not isinstance(orchestrator, MemoryOrchestrator):
            raise ValidationError(
                f"'orchestrator' must be a MemoryOrchestrator, got {type(orchestrator).__name__}", field="orchestrator"
            )
        sh.require_name(user_id, "user_id")
        if data.get("session_id") is not None:
            sh.require_name(data["session_id"], "session_id")
        if "name" in data and (not isinstance(data["name"], str) or not data["name"].strip()):
            raise ValidationError("'name' must be a non-empty string", field="name")
        max_tokens = data.get("max_tokens")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens <= 0):
            raise ValidationError("'max_tokens' must be a positive integer", field="max_tokens")
        timeout = data.get("timeout_s")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
            raise ValidationError("'timeout_s' must be a number > 0", field="timeout_s")
        if data.get("memory_types") is not None:
            data["memory_types"] = self._memory_types(data["memory_types"], orchestrator)
        data.update(orchestrator=orchestrator, user_id=user_id)
        super().__init__(**data)

    @staticmethod
    def _memory_types(value: Any, orchestrator: MemoryOrchestrator) -> list[MemoryType]:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise ValidationError("'memory_types' must be a list of memory types", field="memory_types")
        out: list[MemoryType] = []
        for i, item in enumerate(value):
            try:
                mt = MemoryType(item)
            except ValueError:
                raise ValidationError(f"'memory_types[{i}]' is not a memory type: {item!r}",
                                      field=f"memory_types[{i}]") from None
            if mt not in orchestrator.enabled:
                raise ValidationError(f"'memory_types[{i}]': {mt.value} is not enabled in the orchestrator",
                                      field=f"memory_types[{i}]")
            out.append(mt)
        return out

    @property
    def last_error(self) -> str | None:
        """Why the latest read or write failed (None after a success)."""
        return self._last_error

    @property
    def last_context(self) -> Any:
        """The ComprehensiveContext of the latest successful read (None before one)."""
        return self._last_context

    @property
    def failed_writes(self) -> int:
        """How many flushed turns were rejected as invalid (never stored) since the block was made."""
        return self._failed_writes

    def _session(self, given: Any) -> str | None:
        if self.session_id is not None:
            return self.session_id
        return given if isinstance(given, str) and given.strip() else None

    async def _aget(self, messages: list[ChatMessage] | None = None, **block_kwargs: Any) -> str:
        """The orchestrator's context text for the latest user message ("" when memory fails)."""
        request = ContextRequest(
            query=latest_user_text(messages),
            session_id=self._session(block_kwargs.get("session_id")),
            user_id=self.user_id,
            max_total_tokens=self.max_tokens,
            model=self.model,
            memory_types=list(self.memory_types) if self.memory_types is not None else None,
        )
        try:
            ctx = await asyncio.wait_for(self.orchestrator.get_comprehensive_context(request), self.timeout_s)
        except Exception as exc:
            self._last_error = _reason(exc)
            log.warning("memory_block_read_failed", reason=self._last_error, user_id=self.user_id,
                        session_id=request.session_id)
            return ""
        self._last_error = None
        self._last_context = ctx
        return str(ctx.text)

    async def _aput(self, messages: list[ChatMessage]) -> None:
        """Store the flushed messages as turns in the orchestrator (failures are logged, not raised)."""
        if not self.store_flushed:
            return
        session = self.session_id
        if session is None:
            given = next((m.additional_kwargs.get("session_id") for m in messages
                          if m.additional_kwargs.get("session_id")), None)
            session = self._session(given)
        if session is None:
            self._last_error = "no session id: set session_id on the block or use it in a Memory"
            self._failed_writes += len(turns_of(messages))
            log.error("memory_block_write_failed", reason=self._last_error, user_id=self.user_id)
            return
        self._last_error = None
        writer = failopen_wrapper(self.orchestrator)
        for user, answer in turns_of(messages):
            turn: dict[str, Any] = {"session_id": session, "user_id": self.user_id, "user_message": user,
                    "assistant_message": answer, "metadata": {"source": SOURCE}}
            if any(t.key == (self.user_id, session) for t in writer.pending_turns()):
                await writer.submit_turn(**turn)  # behind the session's queued turns, in order
                continue
            try:
                await self.orchestrator.store_turn(**turn)
            except ValidationError as exc:  # retrying cannot help
                self._last_error = _reason(exc)
                self._failed_writes += 1
                log.error("memory_block_write_failed", reason=self._last_error, user_id=self.user_id,
                          session_id=session)
            except Exception as exc:  # a backend is down: the writer's retry queue keeps the turn
                self._last_error = _reason(exc)
                log.warning("memory_block_write_queued", reason=self._last_error, user_id=self.user_id,
                            session_id=session)
                await writer.submit_turn(**turn)


__all__ = ["OrchestratorMemoryBlock", "latest_user_text", "turns_of"]
