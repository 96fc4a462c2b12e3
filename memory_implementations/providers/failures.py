"""Turning provider HTTP/transport failures into clear ``ProviderError``s, and Retry-After parsing."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from ..errors import ProviderError

MAX_DETAIL_CHARS = 300
T = TypeVar("T")


class TransientProviderError(ProviderError):
    """A failure that retrying may fix (429, 408, 5xx, timeout, connection); may carry Retry-After."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None, field: str | None = None
    ) -> None:
        """Create the error; ``retry_after`` is the server's hint in seconds."""
        super().__init__(message, field=field, status=status, retryable=True)
        self.retry_after = retry_after


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or HTTP date); None if absent."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def http_failure(
    provider: str,
    model: str,
    status: int,
    detail: str,
    *,
    key_field: str,
    model_field: str,
    retry_after: float | None = None,
) -> ProviderError:
    """The error for an HTTP error status from ``provider``: transient for 408/429/5xx, final otherwise."""
    detail = " ".join(str(detail).split())[:MAX_DETAIL_CHARS]
    if status == 429:
        return TransientProviderError(
            f"{provider} rate-limited requests to model {model!r} (429): {detail}",
            status=status,
            retry_after=retry_after,
        )
    if status == 408 or status >= 500:
        return TransientProviderError(
            f"{provider} failed on model {model!r} ({status}): {detail}", status=status, retry_after=retry_after
        )
    if status == 401:
        return ProviderError(
            f"{provider} rejected the API key ({status}) for model {model!r}: check {key_field}",
            field=key_field,
            status=status,
        )
    if status == 403:
        return ProviderError(
            f"{provider} refused access ({status}) to model {model!r}: check that {key_field} may use it",
            field=key_field,
            status=status,
        )
    if status == 404:
        return ProviderError(
            f"{provider} does not know model {model!r} (404): check {model_field} and the base URL",
            field=model_field,
            status=status,
        )
    return ProviderError(
        f"{provider} rejected the request ({status}) for model {model!r}: {detail} "
        f"(check {model_field} and embedding_dim)",
        field=model_field,
        status=status,
    )


def transport_failure(provider: str, model: str, exc: BaseException, *, timeout: bool) -> TransientProviderError:
    """The error for a timeout or a connection failure (always transient)."""
    what = "timed out (check provider_timeout_seconds)" if timeout else "could not be reached (check the base URL)"
    return TransientProviderError(f"{provider} {what} for model {model!r}: {type(exc).__name__}: {exc}")


def malformed_response(provider: str, model: str, what: str) -> ProviderError:
    """The error for an answer that cannot be used (bad JSON, missing fields, wrong shape)."""
    return ProviderError(f"{provider} sent a malformed response for model {model!r}: {what}", status=200)


async def sdk_call(op: Callable[[], Awaitable[T]], translate: Callable[[Exception], ProviderError]) -> T:
    """Await ``op()``, turning any SDK exception into a ProviderError via ``translate``."""
    try:
        return await op()
    except ProviderError:
        raise
    except Exception as exc:
        raise translate(exc) from exc


def exception_kind(exc: BaseException) -> str | None:
    """ "timeout" or "connection" for httpx-style transport errors (httpx or httpx2), else None."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"TimeoutException", "TimeoutError", "APITimeoutError"}:
        return "timeout"
    if names & {"ConnectError", "NetworkError", "TransportError", "APIConnectionError", "ConnectionError"}:
        return "connection"
    return None


__all__ = [
    "TransientProviderError",
    "exception_kind",
    "http_failure",
    "malformed_response",
    "parse_retry_after",
    "sdk_call",
    "transport_failure",
]
