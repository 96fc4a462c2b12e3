"""Direct tier routes: working memory, entities, and forgetting a user everywhere (key-value: routes_kv)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from ..context import jsonable
from ..errors import NotFound
from ..types import MemoryType, Stopwatch
from .deps import PrincipalDep, StateDep, get_memory, get_orchestrator, get_principal
from .schemas import ReasoningStepIn, WorkingItemIn

router = APIRouter(prefix="/v1", dependencies=[Depends(get_principal)])
NameParam = Annotated[str, Path(min_length=1, max_length=256)]
UserQuery = Annotated[str | None, Query(min_length=1, max_length=256, description="Default: the key's only user.")]


# working memory --------------------------------------------------------------------------------
def _working(request: Request) -> Any:
    return get_memory(get_orchestrator(request), MemoryType.WORKING_MEMORY)


@router.post(
    "/working/{namespace}/items",
    status_code=201,
    tags=["working memory"],
    summary="Put an item (capacity-limited; evicts by importance, LRU or FIFO)",
)
async def put_working_item(
    namespace: NameParam, body: WorkingItemIn, principal: PrincipalDep, request: Request
) -> dict[str, Any]:
    """Store the item; ``created`` is false when the key already existed (it is replaced)."""
    user = principal.resolve_user(body.user_id)
    item: dict[str, Any] = {
        "namespace": namespace,
        "user_id": user,
        "key": body.key or uuid.uuid4().hex,
        "content": body.content,
    }
    for name in ("importance", "ttl_seconds", "metadata"):
        value = getattr(body, name)
        if value is not None:
            item[name] = value
    ref = await _working(request).store(item)
    return {"namespace": namespace, "user_id": user, "key": str(ref.id), "created": bool(ref.created)}


@router.get("/working/{namespace}", tags=["working memory"], summary="The namespace's items and statistics")
async def get_working(
    namespace: NameParam, principal: PrincipalDep, state: StateDep, request: Request, user_id: UserQuery = None
) -> dict[str, Any]:
    """Items (insertion order), reasoning chain and counters of the namespace."""
    user = principal.resolve_user(user_id)
    memory = _working(request)
    watch = Stopwatch()
    stats = await memory.get_namespace_stats(namespace, user_id=user)
    ctx = await memory.get_context({"namespace": namespace, "user_id": user}, max_tokens=10**9)
    state.metrics.observe_tier(MemoryType.WORKING_MEMORY.value, watch.ms / 1000.0)
    extra = ctx.extra if hasattr(ctx, "extra") else {}
    return {
        "namespace": namespace,
        "user_id": user,
        "items": jsonable(extra.get("items", [])),
        "reasoning_chain": jsonable(extra.get("reasoning_chain", [])),
        "stats": jsonable(stats),
    }


@router.get("/working/{namespace}/items/{key}", tags=["working memory"], summary="One item")
async def get_working_item(
    namespace: NameParam, key: NameParam, principal: PrincipalDep, request: Request, user_id: UserQuery = None
) -> dict[str, Any]:
    """The item (404 when absent or expired)."""
    user = principal.resolve_user(user_id)
    item = await _working(request).get(namespace, key, user_id=user)
    if item is None:
        raise NotFound(f"working memory {namespace!r} has no item {key!r}", field="key")
    out: dict[str, Any] = jsonable(item)
    return out


@router.delete("/working/{namespace}/items/{key}", tags=["working memory"], summary="Remove one item")
async def delete_working_item(
    namespace: NameParam, key: NameParam, principal: PrincipalDep, request: Request, user_id: UserQuery = None
) -> dict[str, Any]:
    """Delete the item (404 when absent)."""
    user = principal.resolve_user(user_id)
    if not await _working(request).delete(namespace, key, user_id=user):
        raise NotFound(f"working memory {namespace!r} has no item {key!r}", field="key")
    return {"namespace": namespace, "key": key, "deleted": True}


@router.post(
    "/working/{namespace}/reasoning",
    status_code=201,
    tags=["working memory"],
    summary="Append a step (thought, action, observation, result) to the reasoning chain",
)
async def add_reasoning_step(
    namespace: NameParam, body: ReasoningStepIn, principal: PrincipalDep, request: Request
) -> dict[str, Any]:
    """Append; returns the step's number."""
    user = principal.resolve_user(body.user_id)
    step = await _working(request).add_reasoning_step(namespace, body.step_type, body.content, user_id=user)
    return {"namespace": namespace, "user_id": user, "step": step}


@router.get("/working/{namespace}/reasoning", tags=["working memory"], summary="The reasoning chain in order")
async def get_reasoning_chain(
    namespace: NameParam, principal: PrincipalDep, request: Request, user_id: UserQuery = None
) -> dict[str, Any]:
    """Every step: number, type, content, time."""
    user = principal.resolve_user(user_id)
    chain = await _working(request).get_reasoning_chain(namespace, user_id=user)
    return {"namespace": namespace, "user_id": user, "steps": jsonable(chain)}


# entities --------------------------------------------------------------------------------------
def _entities(request: Request) -> Any:
    return get_memory(get_orchestrator(request), MemoryType.ENTITY_MEMORY)


@router.get("/entities", tags=["entities"], summary="The user's entities by importance")
async def list_entities(
    principal: PrincipalDep,
    state: StateDep,
    request: Request,
    user_id: UserQuery = None,
    entity_type: Annotated[str | None, Query(alias="type", max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """Entities (optionally of one type), most important first."""
    user = principal.resolve_user(user_id)
    watch = Stopwatch()
    rows = await _entities(request).list_entities(user_id=user, entity_type=entity_type, limit=limit)
    state.metrics.observe_tier(MemoryType.ENTITY_MEMORY.value, watch.ms / 1000.0)
    return {"user_id": user, "entities": jsonable(rows)}


@router.get("/entities/analytics", tags=["entities"], summary="Totals, counts by type, top entities")
async def entity_analytics(
    principal: PrincipalDep, request: Request, user_id: UserQuery = None, top: Annotated[int, Query(ge=1, le=1000)] = 10
) -> dict[str, Any]:
    """Entity analytics of the user."""
    user = principal.resolve_user(user_id)
    out: dict[str, Any] = jsonable(await _entities(request).get_entity_analytics(user, top=top))
    out.setdefault("user_id", user)
    return out


@router.get("/entities/{name}", tags=["entities"], summary="One entity (by name or alias) with relationships")
async def get_entity(
    name: NameParam,
    principal: PrincipalDep,
    request: Request,
    user_id: UserQuery = None,
    history: Annotated[bool, Query(description="Include superseded attribute values.")] = False,
) -> dict[str, Any]:
    """The entity, its attributes, aliases and relationships (404 when unknown)."""
    user = principal.resolve_user(user_id)
    memory = _entities(request)
    entity = await memory.get_entity(name, user_id=user)
    if entity is None:
        raise NotFound(f"no entity named {name!r} for user {user!r}", field="name")
    out: dict[str, Any] = jsonable(entity)
    if history:
        out["attribute_history"] = jsonable(await memory.get_attribute_history(name, user_id=user))
    return out


# users -----------------------------------------------------------------------------------------
@router.delete(
    "/users/{user_id}", tags=["users"], summary="Forget a user everywhere (every tier, Redis and PostgreSQL)"
)
async def forget_user(user_id: NameParam, principal: PrincipalDep, request: Request) -> dict[str, Any]:
    """Delete everything stored for ``user_id``; returns what each tier removed."""
    principal.require(user_id)
    result = await get_orchestrator(request).forget(user_id)
    return {"user_id": user_id, "deleted": jsonable(result)}


__all__ = ["router"]
