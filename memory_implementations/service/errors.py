"""HTTP errors of the service and the handlers that render every error as ``{"error": {code, message, field}}``."""

from __future__ import annotations

import json
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    BackendUnavailable,
    ConfigError,
    MemoryError,
    NotFound,
    ProviderError,
    SchemaMismatch,
    ValidationError,
)
from ..errors import (
    Conflict as RecordConflict,
)

log = structlog.get_logger("memory_implementations.service")


class ServiceError(MemoryError):
    """An error raised by the HTTP layer itself; ``status`` is its HTTP status."""

    status: int = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, headers: dict[str, str] | None = None) -> None:
        """Create the error with optional response ``headers`` (e.g. Retry-After)."""
        super().__init__(message, field=field)
        self.headers = headers or {}


class Unauthorized(ServiceError):
    """No API key, or one that is unknown or revoked."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str, *, field: str | None = None, headers: dict[str, str] | None = None) -> None:
        """Create the error with a ``WWW-Authenticate: Bearer`` challenge."""
        super().__init__(message, field=field, headers={"WWW-Authenticate": 'Bearer realm="memory"', **(headers or {})})


class Forbidden(ServiceError):
    """The key is valid but may not touch this tenant's data."""

    status = 403
    code = "forbidden"


class Conflict(ServiceError):
    """The request conflicts with the current state (e.g. a stale version)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ServiceError):
    """The request body is larger than ``max_body_bytes``."""

    status = 413
    code = "payload_too_large"


class RateLimited(ServiceError):
    """The key has used up its token bucket."""

    status = 429
    code = "rate_limited"


class ServiceUnavailable(ServiceError):
    """The service is not ready (a backend is down)."""

    status = 503
    code = "backend_unavailable"


class TierDisabled(ServiceError):
    """The route needs a tier this server does not enable (``enabled_memories``)."""

    status = 501
    code = "tier_disabled"


def status_for(exc: MemoryError) -> int:
    """The HTTP status of one of the package's errors."""
    if isinstance(exc, ServiceError):
        return exc.status
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, RecordConflict):
        return 409
    if isinstance(exc, SchemaMismatch):
        return 503
    if isinstance(exc, ValidationError | ConfigError):
        return 400
    if isinstance(exc, BackendUnavailable):
        return 503
    if isinstance(exc, ProviderError):
        return 503 if exc.retryable else 502
    return 500


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """The JSON error shape every non-2xx response uses."""
    err: dict[str, Any] = {"code": code, "message": message, "field": field}
    err.update(extra)
    return {"error": err}


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A JSONResponse in the error shape."""
    return JSONResponse(error_body(code, message, field, **extra), status_code=status, headers=headers)


async def _memory_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MemoryError)
    status = status_for(exc)
    headers = dict(getattr(exc, "headers", {}) or {})
    if status == 503:
        headers.setdefault("Retry-After", "5")
    if status >= 500:
        log.warning("request_failed", code=exc.code, status=status, error=exc.message, field=exc.field)
    return error_response(status, exc.code, exc.message, exc.field, headers=headers or None)


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if errors and errors[0].get("type") == "json_invalid":
        ctx = errors[0].get("ctx") or {}
        return error_response(
            400, "invalid_json", f"the request body is not valid JSON: {ctx.get('error', 'parse error')}", "body"
        )
    details = []
    for err in errors:
        loc = tuple(err.get("loc") or ())
        details.append(
            {
                "field": _field_of(loc),
                "location": str(loc[0]) if loc else None,
                "message": str(err.get("msg", "invalid value")),
                "type": err.get("type"),
            }
        )
    first = details[0] if details else {"field": None, "message": "invalid request"}
    where = f"'{first['field']}'" if first["field"] else "the request"
    message = f"{where}: {first['message']}"
    if len(details) > 1:
        message += f" (and {len(details) - 1} more problem(s), see error.details)"
    return error_response(422, "invalid_request", message, first["field"], details=_jsonable(details))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    else:
        message = str(exc.detail)
    field = "body" if exc.status_code == 413 else None
    return error_response(exc.status_code, code, message, field, headers=getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn errors into the JSON error shape."""
    app.add_exception_handler(MemoryError, _memory_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


__all__ = [
    "Conflict",
    "Forbidden",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceError",
    "ServiceUnavailable",
    "TierDisabled",
    "Unauthorized",
    "error_body",
    "error_response",
    "install_error_handlers",
    "status_for",
]
