"""Rate limiting (asyncio-throttle) and retries with backoff + jitter (tenacity), shared by every provider."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import structlog
from asyncio_throttle import Throttler
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from ..errors import ProviderError
from .failures import TransientProviderError

if TYPE_CHECKING:
    from ..config import MemoryConfig

log = structlog.get_logger("memory_implementations.providers")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry transient provider failures."""

    max_retries: int = 4
    initial_delay: float = 0.5
    max_delay: float = 20.0
    retry_after_cap: float = 30.0
    jitter: float = 0.5

    @classmethod
    def from_config(cls, config: MemoryConfig) -> RetryPolicy:
        """The policy for ``config`` (``provider_max_retries``; default delays)."""
        return cls(max_retries=config.provider_max_retries)

    def wait_seconds(self, attempt: int, error: BaseException | None) -> float:
        """Delay before retry number ``attempt`` (1-based): Retry-After if given (capped), else backoff."""
        hint = getattr(error, "retry_after", None)
        if isinstance(hint, (int, float)) and hint >= 0:
            return float(min(hint, self.retry_after_cap))
        backoff = min(self.max_delay, self.initial_delay * (2 ** (attempt - 1)))
        return backoff + random.uniform(0, self.jitter * backoff)


def make_throttler(requests_per_second: float) -> Throttler:
    """A throttler allowing ``requests_per_second`` (fractions become one request per period)."""
    if requests_per_second >= 1:
        return Throttler(rate_limit=max(1, round(requests_per_second)), period=1.0)
    return Throttler(rate_limit=1, period=1.0 / requests_per_second)


class CallGuard:
    """Runs provider calls under one rate limit and one retry policy."""

    def __init__(self, *, policy: RetryPolicy, requests_per_second: float | None = None) -> None:
        """Create the guard; ``requests_per_second=None`` disables rate limiting (local models)."""
        self.policy = policy
        self._throttler = make_throttler(requests_per_second) if requests_per_second else None

    async def run(self, op: Callable[[], Awaitable[T]], *, what: str) -> T:
        """Await ``op()``, retrying TransientProviderError; raise ProviderError once retries are exhausted."""
        attempts = self.policy.max_retries + 1

        def _wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.policy.wait_seconds(state.attempt_number, error)

        def _before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning("provider_retry", what=what, attempt=state.attempt_number, error=str(error))

        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            retry=retry_if_exception_type(TransientProviderError),
            wait=_wait,
            before_sleep=_before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if self._throttler is not None:
                        await self._throttler.acquire()
                    return await op()
        except TransientProviderError as exc:
            raise ProviderError(
                f"{exc.message} — gave up after {attempts} attempt(s) (provider_max_retries={self.policy.max_retries})",
                field=exc.field,
                status=exc.status,
                retryable=True,
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["CallGuard", "RetryPolicy", "make_throttler"]
