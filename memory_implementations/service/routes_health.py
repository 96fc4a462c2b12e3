"""Monitoring routes: ``/health`` (liveness), ``/health/ready`` (every tier and backend), ``/metrics``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ..context import jsonable
from ..logging import mask_value
from ..types import Stopwatch, utcnow
from .auth import presented_key
from .deps import StateDep
from .errors import Forbidden
from .state import ServiceState, as_dict, describe_exc

router = APIRouter(tags=["monitoring"])
STATUS_ORDER = {"healthy": 0, "degraded": 1, "unhealthy": 2}


@router.get("/health", summary="Liveness: the process is up (no backend calls)")
async def health() -> dict[str, Any]:
    """Liveness probe; never touches a backend."""
    return {"status": "ok", "timestamp": utcnow().isoformat()}


async def readiness(state: ServiceState) -> dict[str, Any]:
    """Every enabled tier and backend with status and latency; overall healthy, degraded or unhealthy."""
    watch = Stopwatch()
    if not state.ready or state.orchestrator is None:
        return {
            "status": "unhealthy",
            "latency_ms": round(watch.ms, 3),
            "error": state.init_error or "starting",
            "backends": {},
            "tiers": {},
            "auth": "enabled" if state.settings.auth_enabled else "disabled",
            "timestamp": utcnow().isoformat(),
        }
    try:
        raw = await asyncio.wait_for(state.orchestrator.health_check(), state.settings.ready_timeout_seconds)
        report = as_dict(raw)
    except Exception as exc:  # a hung or failing health check is itself unhealthy
        report = {"status": "unhealthy", "details": {"error": describe_exc(exc) or "health check timed out"}}
    status = str(report.get("status", "unhealthy"))
    if status not in STATUS_ORDER:
        status = "unhealthy"
    details = report.get("details") or {}
    out: dict[str, Any] = {
        "status": status,
        "latency_ms": round(watch.ms, 3),
        "backends": details.get("backends", {}),
        "tiers": details.get("memories", {}),
        "required": details.get("required", []),
        "reasons": details.get("reasons", []),
        "background": details.get("background", {}),
        "auth": "enabled" if state.settings.auth_enabled else "disabled",
        "timestamp": report.get("timestamp") or utcnow().isoformat(),
    }
    for key, value in details.items():
        if key not in ("backends", "memories", "required", "reasons", "background"):
            out[key] = value
    result: dict[str, Any] = mask_value(None, jsonable(out))  # error texts may quote URLs: mask passwords
    return result


@router.get(
    "/health/ready",
    summary="Readiness: each tier and backend with status and latency (200 healthy/degraded, 503 unhealthy)",
)
async def health_ready(state: StateDep) -> JSONResponse:
    """Readiness probe."""
    report = await readiness(state)
    state.metrics.ready.set(1 if report["status"] == "healthy" else 0)
    code = 503 if report["status"] == "unhealthy" else 200
    return JSONResponse(report, status_code=code)


@router.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
async def metrics(request: Request, state: StateDep) -> Response:
    """The app's Prometheus registry; with metrics_require_admin, only for admin keys."""
    if state.settings.metrics_require_admin and state.settings.auth_enabled:
        presented = request.headers.get("x-api-key") or None
        if presented is None:
            presented = presented_key(request.headers.get("authorization"), None)
        principal = await state.require_authenticator().authenticate(presented)
        if not principal.is_admin:
            raise Forbidden("GET /metrics needs an admin key on this server (metrics_require_admin)")
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


__all__ = ["readiness", "router"]
