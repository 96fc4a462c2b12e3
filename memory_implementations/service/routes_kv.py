"""Key-value routes: preferences and facts per user and namespace, with version history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from ..context import jsonable
from ..errors import NotFound
from ..types import MemoryType, Stopwatch
from .deps import PrincipalDep, StateDep, get_memory, get_orchestrator, get_principal
from .schemas import KVPut

router = APIRouter(prefix="/v1/kv", tags=["key-value"], dependencies=[Depends(get_principal)])
NameParam = Annotated[str, Path(min_length=1, max_length=256)]
UserQuery = Annotated[str | None, Query(min_length=1, max_length=256, description="Default: the key's only user.")]
_MISSING = object()


def _kv(request: Request) -> Any:
    return get_memory(get_orchestrator(request), MemoryType.KEY_VALUE_STORE)


@router.get("/{namespace}", summary="Live keys of a namespace and their values")
async def list_keys(
    namespace: NameParam,
    principal: PrincipalDep,
    state: StateDep,
    request: Request,
    user_id: UserQuery = None,
    prefix: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """Every live key (optionally starting with ``prefix``) with its value."""
    user = principal.resolve_user(user_id)
    watch = Stopwatch()
    values = await _kv(request).list(namespace, prefix, user_id=user, limit=limit)
    state.metrics.observe_tier(MemoryType.KEY_VALUE_STORE.value, watch.ms / 1000.0)
    return {"namespace": namespace, "user_id": user, "items": jsonable(values)}


@router.get("/{namespace}/{key}", summary="One value")
async def get_value(
    namespace: NameParam,
    key: NameParam,
    principal: PrincipalDep,
    state: StateDep,
    request: Request,
    user_id: UserQuery = None,
) -> dict[str, Any]:
    """The current value (404 when absent or expired)."""
    user = principal.resolve_user(user_id)
    watch = Stopwatch()
    value = await _kv(request).get(key, _MISSING, namespace=namespace, user_id=user)
    state.metrics.observe_tier(MemoryType.KEY_VALUE_STORE.value, watch.ms / 1000.0)
    if value is _MISSING:
        raise NotFound(f"key {key!r} does not exist in namespace {namespace!r}", field="key")
    return {"namespace": namespace, "key": key, "user_id": user, "value": jsonable(value)}


@router.put("/{namespace}/{key}", summary="Set a value (the old one moves to history); 201 when new")
async def put_value(
    namespace: NameParam, key: NameParam, body: KVPut, principal: PrincipalDep, request: Request, response: Response
) -> dict[str, Any]:
    """Write through to PostgreSQL, then Redis."""
    user = principal.resolve_user(body.user_id)
    ref = await _kv(request).set(key, body.value, namespace=namespace, user_id=user, ttl=body.ttl_seconds)
    response.status_code = 201 if ref.created else 200
    return {"namespace": namespace, "key": key, "user_id": user, "created": bool(ref.created)}


@router.delete("/{namespace}/{key}", summary="Delete a key (its last value moves to history)")
async def delete_value(
    namespace: NameParam, key: NameParam, principal: PrincipalDep, request: Request, user_id: UserQuery = None
) -> dict[str, Any]:
    """Delete; 404 when absent."""
    user = principal.resolve_user(user_id)
    if not await _kv(request).delete(key, namespace=namespace, user_id=user):
        raise NotFound(f"key {key!r} does not exist in namespace {namespace!r}", field="key")
    return {"namespace": namespace, "key": key, "deleted": True}


@router.get("/{namespace}/{key}/history", summary="Earlier values of a key, oldest first")
async def value_history(
    namespace: NameParam,
    key: NameParam,
    principal: PrincipalDep,
    request: Request,
    user_id: UserQuery = None,
    include_current: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    """Superseded values with version, valid_from and superseded_at."""
    user = principal.resolve_user(user_id)
    rows = await _kv(request).history(key, namespace=namespace, user_id=user, include_current=include_current)
    return {"namespace": namespace, "key": key, "user_id": user, "history": jsonable(rows)}


__all__ = ["router"]
