"""Session routes: messages (append, read, clear), the running summary and session statistics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from ..context import jsonable
from ..errors import NotFound
from ..types import MemoryType, Stopwatch
from .deps import PrincipalDep, StateDep, get_memory, get_orchestrator, get_principal
from .schemas import MessagesIn

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], dependencies=[Depends(get_principal)])
SessionId = Annotated[str, Path(min_length=1, max_length=256)]
UserQuery = Annotated[str | None, Query(min_length=1, max_length=256, description="Default: the key's only user.")]


def _conversation(request: Request) -> tuple[Any, Any]:
    """``(writer, reader)``: the summary tier writes (so summaries get scheduled) when enabled; its buffer reads."""
    orchestrator = get_orchestrator(request)
    memories = getattr(orchestrator, "memories", {}) or {}
    summary = memories.get(MemoryType.CONVERSATION_SUMMARY)
    buffer = memories.get(MemoryType.CONVERSATION_BUFFER)
    if summary is not None:
        return summary, buffer if buffer is not None else summary.buffer
    if buffer is not None:
        return buffer, buffer
    return get_memory(orchestrator, MemoryType.CONVERSATION_BUFFER), None


@router.post("/{session_id}/messages", status_code=201, summary="Append one message or a list of messages")
async def post_messages(
    session_id: SessionId, body: MessagesIn, principal: PrincipalDep, request: Request
) -> dict[str, Any]:
    """Store messages in the session (durable in PostgreSQL before the reply)."""
    user_id = principal.resolve_user(body.user_id)
    writer, _ = _conversation(request)
    items = [
        {"session_id": session_id, "user_id": user_id, "role": m.role, "content": m.content, "metadata": m.metadata}
        for m in body.to_items()
    ]
    refs = await writer.store_many(items)
    return {
        "session_id": session_id,
        "user_id": user_id,
        "stored": [{"id": str(r.id), "durable": r.durable} for r in refs],
    }


@router.get("/{session_id}/messages", summary="The session's messages, oldest first")
async def get_messages(
    session_id: SessionId,
    principal: PrincipalDep,
    state: StateDep,
    request: Request,
    user_id: UserQuery = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    after_id: Annotated[int | None, Query(ge=0, description="Only messages with a larger id.")] = None,
) -> dict[str, Any]:
    """Newest ``limit`` messages (all when absent) or those after ``after_id``."""
    user = principal.resolve_user(user_id)
    _, buffer = _conversation(request)
    watch = Stopwatch()
    msgs = await buffer.get_messages(session_id, user, limit, after_id=after_id)
    state.metrics.observe_tier(buffer.memory_type.value, watch.ms / 1000.0)
    return {"session_id": session_id, "user_id": user, "messages": [m.to_dict() for m in msgs]}


@router.delete("/{session_id}/messages", summary="Delete the session's messages (Redis and PostgreSQL)")
async def delete_messages(
    session_id: SessionId, principal: PrincipalDep, request: Request, user_id: UserQuery = None
) -> dict[str, Any]:
    """Remove every message of the session; returns how many were deleted."""
    user = principal.resolve_user(user_id)
    writer, _ = _conversation(request)
    removed = await writer.clear(session_id=session_id, user_id=user)
    return {"session_id": session_id, "user_id": user, "deleted": removed}


@router.get("/{session_id}/summary", summary="The session's running summary")
async def get_summary(
    session_id: SessionId, principal: PrincipalDep, state: StateDep, request: Request, user_id: UserQuery = None
) -> dict[str, Any]:
    """The latest progressive summary (404 when the session has none yet)."""
    user = principal.resolve_user(user_id)
    memory = get_memory(get_orchestrator(request), MemoryType.CONVERSATION_SUMMARY)
    watch = Stopwatch()
    summary = await memory.get_summary(session_id, user)
    state.metrics.observe_tier(MemoryType.CONVERSATION_SUMMARY.value, watch.ms / 1000.0)
    if summary is None or summary == "":
        raise NotFound(f"session {session_id!r} has no summary yet", field="session_id")
    if isinstance(summary, str):
        return {"session_id": session_id, "user_id": user, "summary": summary}
    out = jsonable(summary)
    if isinstance(out, dict):
        out.setdefault("session_id", session_id)
        out.setdefault("user_id", user)
        return out
    return {"session_id": session_id, "user_id": user, "summary": out}


@router.post("/{session_id}/summary", summary="Summarise the session's unsummarised messages now")
async def summarize_now(
    session_id: SessionId, principal: PrincipalDep, request: Request, user_id: UserQuery = None
) -> dict[str, Any]:
    """Fold pending messages into the summary immediately (normally done in the background)."""
    user = principal.resolve_user(user_id)
    memory = get_memory(get_orchestrator(request), MemoryType.CONVERSATION_SUMMARY)
    summary = await memory.summarize_now(session_id, user)
    if summary is None:
        raise NotFound(
            f"session {session_id!r} has nothing to summarise yet: only messages older than the last "
            f"buffer_window_size ({memory.config.buffer_window_size}) are folded into the summary",
            field="session_id",
        )
    out: dict[str, Any] = jsonable(summary)
    return out


@router.get("/{session_id}/stats", summary="Message count, tokens, first/last timestamps, counts per role")
async def get_stats(
    session_id: SessionId, principal: PrincipalDep, request: Request, user_id: UserQuery = None
) -> dict[str, Any]:
    """Session statistics from PostgreSQL (the record)."""
    user = principal.resolve_user(user_id)
    _, buffer = _conversation(request)
    stats: dict[str, Any] = jsonable(await buffer.get_session_stats(session_id, user))
    return stats


__all__ = ["router"]
