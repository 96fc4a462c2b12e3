"""Vector (semantic) memory routes: store, batch store, search with filters, get, update, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from ..errors import NotFound
from ..types import MemoryType, Stopwatch
from .auth import Principal
from .deps import PrincipalDep, StateDep, get_memory, get_orchestrator, get_principal
from .schemas import MemoryBatchIn, MemoryIn, MemoryPatch, SearchIn

router = APIRouter(prefix="/v1/memories", tags=["memories"], dependencies=[Depends(get_principal)])
MemoryId = Annotated[str, Path(min_length=1, max_length=64, description="The memory's UUID.")]
UserQuery = Annotated[str | None, Query(min_length=1, max_length=256, description="Default: the key's only user.")]


def _vector(request: Request) -> Any:
    return get_memory(get_orchestrator(request), MemoryType.VECTOR_DATABASE)


def _item(m: MemoryIn, principal: Principal, default_user: str | None) -> dict[str, Any]:
    user = principal.resolve_user(m.user_id or default_user)
    metadata = dict(m.metadata or {})
    if m.topics is not None:
        metadata["topics"] = list(m.topics)
    item: dict[str, Any] = {"content": m.content, "user_id": user, "metadata": metadata}
    if m.session_id is not None:
        item["session_id"] = m.session_id
    if m.namespace is not None:
        item["namespace"] = m.namespace
    return item


def _ref(ref: Any, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(ref.id),
        "created": bool(ref.created),
        "user_id": item["user_id"],
        "namespace": item.get("namespace", "default"),
    }


@router.post("", status_code=201, summary="Store one semantic memory (embedded; a repeat refreshes the row)")
async def create_memory(body: MemoryIn, principal: PrincipalDep, request: Request) -> dict[str, Any]:
    """Embed and store; ``created`` is false when the same content already existed for the user."""
    item = _item(body, principal, None)
    ref = await _vector(request).store(item)
    return _ref(ref, item)


@router.post("/batch", status_code=201, summary="Store up to 1000 memories in one embedding call")
async def create_memories(body: MemoryBatchIn, principal: PrincipalDep, request: Request) -> dict[str, Any]:
    """Embed and store every memory; the answer lists ids in input order."""
    items = [_item(m, principal, body.user_id) for m in body.memories]
    refs = await _vector(request).store_many(items)
    return {"memories": [_ref(r, i) for r, i in zip(refs, items, strict=True)]}


@router.post("/search", summary="Semantic search with metadata, namespace, session and time filters")
async def search_memories(body: SearchIn, principal: PrincipalDep, state: StateDep, request: Request) -> dict[str, Any]:
    """Top-k memories of the user by similarity (optionally hybrid full-text + MMR)."""
    user = principal.resolve_user(body.user_id)
    filters = dict(body.filters or {})
    if body.topics:
        filters["topics"] = list(body.topics)
    memory = _vector(request)
    watch = Stopwatch()
    results = await memory.search(
        body.query,
        user_id=user,
        k=body.k,
        threshold=body.threshold,
        filters=filters or None,
        namespace=body.namespace,
        session_id=body.session_id,
        created_after=body.created_after,
        created_before=body.created_before,
        hybrid=body.hybrid,
        mmr_lambda=body.mmr_lambda,
    )
    state.metrics.observe_tier(MemoryType.VECTOR_DATABASE.value, watch.ms / 1000.0)
    return {"user_id": user, "query": body.query, "memories": [r.as_dict() for r in results]}


@router.get("/{memory_id}", summary="One memory by id")
async def get_memory_by_id(
    memory_id: MemoryId, principal: PrincipalDep, request: Request, user_id: UserQuery = None
) -> dict[str, Any]:
    """The memory (404 when absent or another user's)."""
    user = principal.resolve_user(user_id)
    found: dict[str, Any] | None = await _vector(request).get(memory_id, user_id=user)
    if found is None:
        raise NotFound(f"memory {memory_id} does not exist for user {user!r}", field="memory_id")
    return found


@router.patch("/{memory_id}", summary="Change a memory's content (re-embedded) and/or metadata")
async def patch_memory(
    memory_id: MemoryId, body: MemoryPatch, principal: PrincipalDep, request: Request, user_id: UserQuery = None
) -> dict[str, Any]:
    """Update in place; 409 when the new content duplicates another memory of the user."""
    user = principal.resolve_user(user_id)
    updated: dict[str, Any] = await _vector(request).update(memory_id, body.content, body.metadata, user_id=user)
    return updated


@router.delete("/{memory_id}", summary="Delete one memory")
async def delete_memory(
    memory_id: MemoryId, principal: PrincipalDep, request: Request, user_id: UserQuery = None
) -> dict[str, Any]:
    """Delete; 404 when absent or another user's."""
    user = principal.resolve_user(user_id)
    if not await _vector(request).delete(memory_id, user_id=user):
        raise NotFound(f"memory {memory_id} does not exist for user {user!r}", field="memory_id")
    return {"id": memory_id, "deleted": True}


__all__ = ["router"]
