"""Per-turn routes: ``POST /v1/context`` (compose context) and ``POST /v1/turns`` (store a turn)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..context import jsonable
from ..types import ContextRequest, MemoryType, Stopwatch
from .deps import PrincipalDep, StateDep, get_orchestrator, get_principal
from .schemas import ContextIn, TurnIn

TIER_NAMES = frozenset(m.value for m in MemoryType)
router = APIRouter(prefix="/v1", tags=["turns"], dependencies=[Depends(get_principal)])


@router.post(
    "/context",
    summary="Compose this turn's token-budgeted context from every enabled tier",
    response_model=None,
    responses={200: {"description": "The ComprehensiveContext as JSON (messages, text, sections, budgets, degraded)"}},
)
async def post_context(body: ContextIn, principal: PrincipalDep, state: StateDep, request: Request) -> JSONResponse:
    """Return the ComprehensiveContext (``messages``, ``text``, sections, budgets, degraded tiers) as JSON."""
    user_id = principal.resolve_user(body.user_id)
    orchestrator = get_orchestrator(request)
    req = ContextRequest(
        query=body.query,
        session_id=body.session_id,
        user_id=user_id,
        max_total_tokens=body.max_total_tokens,
        namespace=body.namespace,
        model=body.model,
        weights=body.weights,
        filters=dict(body.filters),
        memory_types=list(body.memory_types) if body.memory_types is not None else None,
    )
    watch = Stopwatch()
    ctx = await orchestrator.get_comprehensive_context(req, explain=body.explain)
    record_context_metrics(state, ctx, watch.ms)
    return JSONResponse(ctx.to_dict())  # already JSON-ready: skip FastAPI's re-encoding on the hot path


def record_context_metrics(state: Any, ctx: Any, total_ms: float) -> None:
    """Per-tier read latency, degraded tiers and context size of one composed context."""
    metrics = state.metrics
    for tier, ms in (getattr(ctx, "latency_ms", None) or {}).items():
        name = str(getattr(tier, "value", tier))
        if name in TIER_NAMES and isinstance(ms, int | float):
            metrics.observe_tier(name, float(ms) / 1000.0)
    degraded = getattr(ctx, "degraded", None) or {}
    metrics.count_degraded(list(degraded))
    total = getattr(ctx, "total_tokens", None)
    if isinstance(total, int):
        metrics.context_tokens.observe(total)


@router.post("/turns", status_code=201, summary="Store one turn (user message + assistant reply) in every tier")
async def post_turn(body: TurnIn, principal: PrincipalDep, request: Request) -> dict[str, Any]:
    """Write the turn durably; slow work (embedding, summaries, entities) continues in the background."""
    user_id = principal.resolve_user(body.user_id)
    orchestrator = get_orchestrator(request)
    result = await orchestrator.store_turn(
        session_id=body.session_id,
        user_id=user_id,
        user_message=body.user_message,
        assistant_message=body.assistant_message,
        metadata=body.metadata,
        created_at=body.created_at,
    )
    out: dict[str, Any] = jsonable(result)
    return out


__all__ = ["record_context_metrics", "router"]
