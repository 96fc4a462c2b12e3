"""A private event loop in a daemon thread, so synchronous framework methods can call the async tiers.

Redis and PostgreSQL connections are bound to the event loop that opened them, so a sync call cannot
simply ``asyncio.run`` a tier that lives on another loop. ``Portal`` owns one loop in one thread and a
resource built on that loop (a conversation tier with its own connections); every sync call runs there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

R = TypeVar("R")
T = TypeVar("T")

#: Longest a sync call waits for its result, in seconds (the tiers have their own, shorter, timeouts).
SYNC_CALL_TIMEOUT_S = 120.0


class Portal(Generic[R]):
    """Runs coroutines on a private loop thread against a resource created (lazily) on that loop."""

    def __init__(self, make: Callable[[], Awaitable[R]], close: Callable[[R], Awaitable[None]], *, name: str) -> None:
        """``make`` builds the resource on the portal's loop; ``close`` releases it on ``close()``."""
        self._make = make
        self._close = close
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._resource: R | None = None
        self._ready: asyncio.Lock | None = None

    @property
    def started(self) -> bool:
        """True once the loop thread runs."""
        return self._loop is not None

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _resource_ready(self) -> R:
        if self._ready is None:
            self._ready = asyncio.Lock()
        async with self._ready:
            if self._resource is None:
                self._resource = await self._make()
            return self._resource

    def call(self, fn: Callable[[R], Awaitable[T]], *, timeout: float = SYNC_CALL_TIMEOUT_S) -> T:
        """Run ``fn(resource)`` on the portal loop and block until it returns (or raises)."""
        loop = self._start()
        if threading.current_thread() is self._thread:
            raise RuntimeError(f"{self._name}: a sync method was called from the portal's own loop")

        async def run() -> T:
            return await fn(await self._resource_ready())

        future: Future[T] = asyncio.run_coroutine_threadsafe(run(), loop)
        return future.result(timeout)

    def close(self, *, timeout: float = 30.0) -> None:
        """Release the resource on its loop, then stop the loop and join the thread; idempotent."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return

        async def shutdown() -> None:
            if self._resource is not None:
                resource, self._resource = self._resource, None
                await self._close(resource)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout)
            if not loop.is_running():
                loop.close()


__all__ = ["SYNC_CALL_TIMEOUT_S", "Portal"]
