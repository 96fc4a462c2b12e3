"""A loud warning when a process exits with background work that never ran.

``store_turn`` returns once the messages are committed; embedding, entity extraction and
summarisation run afterwards on the background worker, and ``close()`` waits for them. A program
that ends without ``close()`` (``asyncio.run`` cancels what is left) drops those jobs. At interpreter
exit this module counts them, for every ``Stores`` opened and never closed, and reports them twice:
a WARNING on the ``memory_implementations`` logger, and a :class:`DroppedWorkWarning` — a
``RuntimeWarning``, which Python prints by default, where the library's logging (a NullHandler
unless the application configures logging) and a ``ResourceWarning`` (hidden by default) would print
nothing.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import warnings
from collections.abc import Awaitable, Callable

import structlog

from .background import BackgroundWorker

log = structlog.get_logger("memory_implementations.exit_guard")

#: What becomes of each kind of dropped job.
AFTERMATH = {
    "turn_embedding": "embeddings are caught up on the next start (reindex_on_start)",
    "catch_up": "embeddings are caught up on the next start (reindex_on_start)",
    "summarize": "summaries are caught up at the session's next stored turn",
    "entity_extraction": "entity extraction of those turns is lost",
}

_lock = threading.Lock()
_workers: dict[int, BackgroundWorker] = {}
_registered = False


class DroppedWorkWarning(RuntimeWarning):
    """The process exited before background jobs ran: ``await orchestrator.close()`` at shutdown."""


def watch(worker: BackgroundWorker) -> None:
    """Count ``worker``'s unfinished jobs at interpreter exit unless :func:`release` is called first."""
    global _registered
    with _lock:
        _workers[id(worker)] = worker
        if not _registered:
            atexit.register(warn_at_exit)
            _registered = True


def release(worker: BackgroundWorker) -> None:
    """``worker`` was closed (drained) properly: nothing to report for it."""
    with _lock:
        _workers.pop(id(worker), None)


def on_loop_teardown(release: Callable[[], Awaitable[object]]) -> asyncio.Task[None]:
    """A task that idles until its event loop is torn down (``asyncio.run`` ending), then awaits ``release``.

    ``asyncio.run`` cancels every task left at the end of a program that never called ``close()``; this
    one then closes the connection pools, whose maintenance tasks would otherwise keep the loop (and
    the program) from ending. Cancel the task (``close()`` does) when the connections are closed anyway.
    """

    async def idle() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            try:
                await release()
            except Exception as exc:  # at teardown: report, never raise
                log.debug("teardown_release_failed", error=str(exc))
            raise

    return asyncio.get_running_loop().create_task(idle(), name="mi-loop-teardown")


def dropped_jobs() -> dict[str, int]:
    """Unfinished jobs by name over the watched (never closed) workers."""
    totals: dict[str, int] = {}
    with _lock:
        workers = list(_workers.values())
    for worker in workers:
        for name, count in worker.stats.unfinished_by_name.items():
            totals[name] = totals.get(name, 0) + count
    return totals


def dropped_message(dropped: dict[str, int]) -> str:
    """The warning's text for ``dropped`` (unfinished jobs by name)."""
    total = sum(dropped.values())
    kinds = ", ".join(f"{name}: {n}" for name, n in sorted(dropped.items()))
    fates = sorted({AFTERMATH.get(name, f"{name} jobs are lost") for name in dropped})
    return (
        f"memory_implementations: the process exited with {total} background job(s) not run ({kinds}) because "
        f"close() was never awaited; {'; '.join(fates)}. Call `await orchestrator.close()` (or use "
        f"`async with MemoryOrchestrator(...)`) before exiting."
    )


def warn_at_exit() -> None:
    """At interpreter exit: log and warn about the jobs dropped by workers that were never closed."""
    dropped = dropped_jobs()
    if not dropped:
        return
    message = dropped_message(dropped)
    log.warning("background_jobs_dropped_at_exit", dropped=dropped, total=sum(dropped.values()))
    warnings.warn(message, DroppedWorkWarning, stacklevel=1)


__all__ = [
    "DroppedWorkWarning",
    "dropped_jobs",
    "dropped_message",
    "on_loop_teardown",
    "release",
    "warn_at_exit",
    "watch",
]
