"""Auto-pipelining for Redis reads: commands issued in the same event-loop iteration share one round trip.

The orchestrator queries its tiers concurrently; the buffer, summary, key-value and working-memory
tiers each need one Redis read for a turn. Sent separately that is four round trips (and four trips
through redis-py's connection pool and parser); through :class:`RedisBatcher` the commands issued
before the loop next polls for I/O go out as one pipeline (``transaction=False``: no MULTI, each
command still succeeds or fails on its own). A tier used alone pays nothing extra: its commands form
a pipeline of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis


class RedisBatcher:
    """Coalesces the commands of concurrent callers into one non-transactional pipeline per loop iteration."""

    def __init__(self, client: Callable[[], aioredis.Redis]) -> None:
        """``client`` returns the Redis client to use (read at send time, so a replaced client is honoured)."""
        self._client = client
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()
        self.round_trips = 0
        self.commands = 0

    async def execute(self, *commands: Sequence[Any]) -> list[Any]:
        """Run ``commands`` (each ``(name, *args)``) with whatever else is queued; return their replies in order.

        A command's own error (e.g. NOSCRIPT) is raised for that caller only; a connection failure is
        raised to every caller of the batch.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop: nothing queued on the old one can be sent any more
            self._loop, self._pending, self._scheduled = loop, [], False
        futures: list[asyncio.Future[Any]] = []
        for cmd in commands:
            fut: asyncio.Future[Any] = loop.create_future()
            self._pending.append((tuple(cmd), fut))
            futures.append(fut)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return list(await asyncio.gather(*futures))

    def _flush(self) -> None:
        batch, self._pending, self._scheduled = self._pending, [], False
        batch = [(cmd, fut) for cmd, fut in batch if not fut.done()]  # cancelled callers
        if not batch:
            return
        task = asyncio.ensure_future(self._send(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        self.round_trips += 1
        self.commands += len(batch)
        try:
            async with self._client().pipeline(transaction=False) as pipe:
                for cmd, _ in batch:
                    pipe.execute_command(*cmd)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # connection-level failure: every caller sees it
            for _, fut in batch:
                if fut.done():
                    continue
                if isinstance(exc, Exception):
                    fut.set_exception(exc)
                else:
                    fut.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), reply in zip(batch, replies, strict=True):
            if fut.done():
                continue
            if isinstance(reply, Exception):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)


__all__ = ["RedisBatcher"]
