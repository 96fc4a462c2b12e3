"""FastAPI dependencies: the service state, the authenticated caller (plus its rate limit), the orchestrator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..types import MemoryType
from .auth import INSECURE_PRINCIPAL, Principal
from .errors import TierDisabled, Unauthorized
from .state import ServiceState

if TYPE_CHECKING:
    from ..orchestrator import MemoryOrchestrator

bearer_scheme = HTTPBearer(auto_error=False, description="Authorization: Bearer mi_<prefix>_<secret>")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: mi_<prefix>_<secret>")


def get_state(request: Request) -> ServiceState:
    """The app's ServiceState."""
    state: ServiceState = request.app.state.service
    return state


async def get_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Principal:
    """Authenticate the caller (401), then take a rate-limit token (429)."""
    state = get_state(request)
    if not state.settings.auth_enabled:
        principal = INSECURE_PRINCIPAL
    else:
        authenticator = state.require_authenticator()
        presented = api_key.strip() if api_key else (bearer.credentials.strip() if bearer else None)
        if presented is None and request.headers.get("authorization"):
            state.metrics.auth_failures.labels("bad_scheme").inc()
            raise Unauthorized("the Authorization header must be 'Bearer <key>'", field="authorization")
        try:
            principal = await authenticator.authenticate(presented)
        except Unauthorized as exc:
            state.metrics.auth_failures.labels(_reason(exc.message)).inc()
            raise
    request.state.principal = principal
    decision = await state.check_rate(principal, request.client.host if request.client else None)
    if decision is not None:  # added to the response by RequestContextMiddleware, whatever the route returns
        request.state.extra_headers = decision.headers()
    return principal


def _reason(message: str) -> str:
    for word in ("missing", "malformed", "revoked", "unknown"):
        if word in message:
            return word
    return "other"


def get_orchestrator(request: Request) -> MemoryOrchestrator:
    """The ready orchestrator (503 while a backend is down)."""
    return get_state(request).require_orchestrator()


def get_memory(orchestrator: MemoryOrchestrator, memory_type: MemoryType) -> Any:
    """The orchestrator's tier of ``memory_type``; 501 when this server does not enable it."""
    memories = getattr(orchestrator, "memories", {}) or {}
    memory = memories.get(memory_type)
    if memory is None:
        raise TierDisabled(
            f"the {memory_type.value} tier is not enabled on this server (enabled_memories)", field="enabled_memories"
        )
    return memory


PrincipalDep = Annotated[Principal, Depends(get_principal)]
StateDep = Annotated[ServiceState, Depends(get_state)]


__all__ = ["PrincipalDep", "StateDep", "get_memory", "get_orchestrator", "get_principal", "get_state"]
