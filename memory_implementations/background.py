"""A bounded background worker for slow model work (embedding, summaries, entity extraction).

Jobs run off the caller's path with bounded concurrency and retries with backoff (tenacity).
``flush()`` waits until everything submitted so far is done; ``close()`` drains and stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from .errors import ProviderError, ValidationError

log = structlog.get_logger("memory_implementations.background")

Job = Callable[[], Awaitable[object]]


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, ValidationError):
        return False
    if isinstance(exc, ProviderError):
        return exc.retryable
    return isinstance(exc, Exception)


@dataclass
class WorkerStats:
    """Counters of the worker's life so far."""

    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    last_error: str | None = None
    failures_by_name: dict[str, int] = field(default_factory=dict)
    # submitted and neither succeeded nor failed (pending, or cancelled when the loop ended), by job name
    unfinished_by_name: dict[str, int] = field(default_factory=dict)


class BackgroundWorker:
    """Runs submitted coroutine factories with bounded concurrency; never blocks the submitter."""

    def __init__(self, concurrency: int = 4, *, max_attempts: int = 3, max_wait: float = 2.0) -> None:
        """Create a worker running at most ``concurrency`` jobs at once."""
        self._sem = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._max_attempts = max_attempts
        self._max_wait = max_wait
        self._closed = False
        self.stats = WorkerStats()

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished (the queue depth)."""
        return len(self._tasks)

    def submit(self, job: Job, *, name: str = "job") -> asyncio.Task[None]:
        """Schedule ``job`` (a zero-argument coroutine factory); return its task."""
        if self._closed:
            raise RuntimeError("the background worker is closed")
        self.stats.submitted += 1
        self.stats.unfinished_by_name[name] = self.stats.unfinished_by_name.get(name, 0) + 1
        task = asyncio.get_running_loop().create_task(self._run(job, name), name=f"mi-bg-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, job: Job, name: str) -> None:
        async with self._sem:
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self._max_attempts),
                    wait=wait_exponential_jitter(initial=0.05, max=self._max_wait),
                    retry=retry_if_exception(_retryable),
                    reraise=True,
                ):
                    with attempt:
                        if attempt.retry_state.attempt_number > 1:
                            self.stats.retried += 1
                        await job()
                self.stats.succeeded += 1
            except Exception as exc:
                self.stats.failed += 1
                self.stats.last_error = f"{name}: {exc}"
                self.stats.failures_by_name[name] = self.stats.failures_by_name.get(name, 0) + 1
                log.warning("background_job_failed", job=name, error=str(exc))
            left = self.stats.unfinished_by_name.get(name, 1) - 1
            if left > 0:
                self.stats.unfinished_by_name[name] = left
            else:
                self.stats.unfinished_by_name.pop(name, None)

    async def flush(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - mirrors asyncio.wait_for
        """Wait until every job submitted so far (and any they submit) has finished."""

        async def _drain() -> None:
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

        await asyncio.wait_for(_drain(), timeout)

    async def close(self, timeout: float | None = 30.0) -> None:  # noqa: ASYNC109 - drain deadline
        """Drain outstanding jobs, then refuse new ones."""
        try:
            await self.flush(timeout)
        finally:
            self._closed = True
            for task in list(self._tasks):
                task.cancel()


__all__ = ["BackgroundWorker", "WorkerStats"]
