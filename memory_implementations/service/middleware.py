"""ASGI middleware: request id + access log + metrics (outermost), and the request body size limit."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import structlog
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .metrics import ServiceMetrics

log = structlog.get_logger("memory_implementations.service")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class PayloadTooLargeSignal(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (an HTTPException, so FastAPI re-raises it)."""

    def __init__(self, max_bytes: int) -> None:
        """Describe the limit that was passed."""
        super().__init__(
            status_code=413,
            detail=f"the request body is more than {max_bytes} bytes; the limit is {max_bytes} bytes (max_body_bytes)",
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/memories/{memory_id}``), or ``<unmatched>``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"


class RequestContextMiddleware:
    """Binds a request id to every log line, echoes it as X-Request-ID, records metrics, never leaks a 500's cause."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        """Wrap ``app``."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500, "sent": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                present = {bytes(k).lower() for k, _ in headers}
                extra = (scope.get("state") or {}).get("extra_headers") or {}
                for name, value in extra.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), str(value).encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled_error", method=scope.get("method"), path=scope.get("path"))
            if not status["sent"]:
                response = error_response(
                    500, "internal_error", f"internal error (request id {request_id}); the server log has the details"
                )
                await response(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = str(scope.get("method", ""))
            self.metrics.observe_request(method, route, int(status["code"]), elapsed)
            state = scope.get("state") or {}
            principal = state.get("principal")
            log.info(
                "request",
                method=method,
                route=route,
                path=scope.get("path"),
                status=status["code"],
                duration_ms=round(elapsed * 1000, 3),
                caller=getattr(principal, "label", None),
            )
            structlog.contextvars.clear_contextvars()


class ConcurrencyLimitMiddleware:
    """Serves at most ``limit`` ``/v1`` requests at once; the rest wait in line (503 after ``queue_timeout``).

    Tiers answer under per-tier deadlines: letting every request in at once makes them compete for the
    PostgreSQL pool, miss their deadlines and come back degraded. Waiting in line here keeps each
    admitted request within its budget and the throughput at the pool's capacity.
    """

    def __init__(self, app: ASGIApp, limit: int, queue_timeout: float, metrics: ServiceMetrics) -> None:
        """Wrap ``app``."""
        self.app = app
        self.limit = limit
        self.queue_timeout = queue_timeout
        self.metrics = metrics
        self._slots = asyncio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Queue ``/v1`` requests for a slot; everything else passes straight through."""
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        self.metrics.queued.inc()
        try:
            await asyncio.wait_for(self._slots.acquire(), self.queue_timeout)
        except TimeoutError:
            self.metrics.overloaded.inc()
            response = error_response(
                503,
                "overloaded",
                f"the server is busy: no request slot freed within {self.queue_timeout:g}s (max_concurrent_requests="
                f"{self.limit}); retry later",
                headers={"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        finally:
            self.metrics.queued.dec()
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with 413: by Content-Length up front, and while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        """Wrap ``app``."""
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, scope: Scope, got: int | None) -> Any:
        size = f"{got} bytes" if got is not None else f"more than {self.max_bytes} bytes"
        return error_response(
            413,
            "payload_too_large",
            f"the request body is {size}; the limit is {self.max_bytes} bytes (max_body_bytes)",
            "body",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count the streamed bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await error_response(400, "bad_request", "invalid Content-Length header", "content-length")(
                    scope, receive, send
                )
                return
            if length > self.max_bytes:
                await self._too_large(scope, length)(scope, receive, send)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLargeSignal(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLargeSignal:
            if not started:
                await self._too_large(scope, None)(scope, receive, send)


__all__ = [
    "BodyLimitMiddleware",
    "ConcurrencyLimitMiddleware",
    "PayloadTooLargeSignal",
    "RequestContextMiddleware",
    "route_template",
]
