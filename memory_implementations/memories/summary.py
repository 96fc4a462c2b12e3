"""``ConversationSummaryMemory``: recent turns verbatim plus a progressive summary of everything older.

Messages are stored by a composed :class:`ConversationBufferMemory` (same stores): ``store`` returns
once the message row is committed. Messages that have left the ``buffer_window_size`` window and are
not yet covered by the summary are folded into it by the shared background worker, in batches
(``batch_size`` messages, or fewer when they already outweigh the summary budget), one session at a
time (a Redis ``SET NX`` lock with a re-run flag, plus an insert that only succeeds on top of the
version it read, so two writers can never fork the history).

Summaries are versioned rows in ``memory_summaries``; ``covers_from_id`` .. ``covers_to_id`` is the
range of message ids folded in so far (cumulative) and messages are never deleted. A failed
summarisation leaves the previous summary in place; the worker retries, the next ``store`` triggers
again, and meanwhile ``get_context`` shows every uncovered message that fits the budget instead.
The latest summary is cached in Redis (never overwritten by an older version), PostgreSQL otherwise.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from .._json import loads as fast_loads
from ..base import BaseMemory
from ..config import MemoryConfig
from ..errors import BackendUnavailable, ValidationError
from ..providers.interfaces import Summarizer
from ..stores import Stores
from ..types import ContextRequest, MemoryContext, MemoryType, Message, Stopwatch, StoredRef
from . import _shared as sh
from ._provider_key import provider_key
from .buffer import _DEDUPE_SLACK, ConversationBufferMemory

DEFAULT_BATCH_SIZE = 4
DEFAULT_MAX_BATCH = 50
MIN_SUMMARY_TOKENS = 32
SUMMARY_HEADER = "Summary of the earlier conversation:"
RECENT_HEADER = "Recent messages:"
SUMMARY_SCORE = 0.75
#: Seconds the "no summary yet" marker stays cached.
NO_SUMMARY_TTL = 60

# KEYS: cache key. ARGV: json, version, ttl. Writes only when the cached version is older (or absent).
_SET_IF_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, obj = pcall(cjson.decode, cur)
  if ok and type(obj) == 'table' and tonumber(obj['version'] or 0) >= tonumber(ARGV[2]) then return 0 end
end
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
else redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""
# KEYS: lock key. ARGV: token. Deletes the lock only if we still own it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_SUMMARY_COLS = "version, summary, covers_from_id, covers_to_id, message_count, token_count, model, created_at"
_LATEST = f"""
SELECT {_SUMMARY_COLS} FROM memory_summaries WHERE user_id = %s AND session_id = %s ORDER BY version DESC LIMIT 1
"""
_HISTORY = f"""
SELECT {_SUMMARY_COLS} FROM memory_summaries WHERE user_id = %s AND session_id = %s ORDER BY version LIMIT %s
"""
_INSERT = """
INSERT INTO memory_summaries
  (user_id, session_id, version, summary, covers_from_id, covers_to_id, message_count, token_count, model)
SELECT %(u)s, %(s)s, %(v)s, %(summary)s, %(from)s, %(to)s, %(count)s, %(tokens)s, %(model)s
WHERE coalesce((SELECT max(version) FROM memory_summaries WHERE user_id = %(u)s AND session_id = %(s)s), 0) = %(prev)s
ON CONFLICT (user_id, session_id, version) DO NOTHING
RETURNING created_at
"""


class ConversationSummaryMemory(BaseMemory):
    """Short-term buffer plus a progressive summary, composed within ``max_total_tokens``."""

    memory_type: ClassVar[MemoryType] = MemoryType.CONVERSATION_SUMMARY

    def __init__(
        self,
        config: Mapping[str, Any] | MemoryConfig | None = None,
        *,
        stores: Stores | None = None,
        summarizer: Summarizer | None = None,
        batch_size: int | None = None,
        max_batch_messages: int = DEFAULT_MAX_BATCH,
        lock_ttl_seconds: float = 300.0,
    ) -> None:
        """Configure the tier; ``summarizer`` overrides the configured one; ``batch_size`` evictions trigger it."""
        super().__init__(config, stores=stores)
        size = batch_size if batch_size is not None else getattr(self.config, "summary_batch_size", DEFAULT_BATCH_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValidationError("batch_size must be a positive integer", field="batch_size")
        if max_batch_messages < size:
            raise ValidationError("max_batch_messages must be >= batch_size", field="max_batch_messages")
        self.batch_size = size
        self.max_batch_messages = max_batch_messages
        self.lock_ttl_ms = int(lock_ttl_seconds * 1000)
        self._summarizer = summarizer
        self._buffer: ConversationBufferMemory | None = None
        self.stats: dict[str, int] = {"summaries_written": 0, "summary_failures": 0, "lock_contended": 0}
        #: How many messages the last context read fetched (reads are bounded by the window, not the session).
        self.last_read_messages = 0

    # --- set-up --------------------------------------------------------------------------------------
    @property
    def window(self) -> int:
        """Messages always kept verbatim (``buffer_window_size``)."""
        return self.config.buffer_window_size

    @property
    def summary_budget(self) -> int:
        """Tokens the summariser may write: ``summary_context_weight`` of ``max_total_tokens``."""
        return max(MIN_SUMMARY_TOKENS, int(self.config.max_total_tokens * self.config.summary_context_weight))

    @property
    def buffer(self) -> ConversationBufferMemory:
        """The composed buffer that owns message storage (after ``initialize``)."""
        if self._buffer is None:
            raise BackendUnavailable(f"{type(self).__name__} is not initialized: await memory.initialize() first")
        return self._buffer

    @property
    def summarizer(self) -> Summarizer:
        """The summariser in use (after ``initialize``)."""
        if self._summarizer is None:
            raise BackendUnavailable(f"{type(self).__name__} is not initialized: await memory.initialize() first")
        return self._summarizer

    async def _setup(self) -> None:
        stores = self.stores
        buffer_cfg = self.config.model_copy(update={"window_size": self.window, "window_type": "turns"})
        self._buffer = ConversationBufferMemory(buffer_cfg, stores=stores)
        await self._buffer.initialize()
        if self._summarizer is None:
            from ..providers.llm import build_summarizer

            cfg = self.config
            self._summarizer = stores.shared(provider_key("summarizer", cfg), lambda: build_summarizer(cfg))
        self._set_if_newer = stores.redis.register_script(_SET_IF_NEWER)
        self._release = stores.redis.register_script(_RELEASE)

    def _key(self, user_id: str, session_id: str, name: str) -> str:
        return self.stores.keys.key(user_id, session_id, "summary", name)

    # --- writes --------------------------------------------------------------------------------------
    async def store(self, item: Mapping[str, Any] | Message) -> StoredRef:
        """Store one message durably (through the buffer) and schedule summarisation when a batch is due."""
        return (await self.store_many([item]))[0]

    async def store_many(self, items: Iterable[Mapping[str, Any] | Message]) -> list[StoredRef]:
        """Store many messages in one write (all or nothing on bad input), then schedule summarisation."""
        await self._ensure()
        msgs = [self.buffer.validate(item) for item in items]
        refs = await self.buffer.store_many(msgs)
        sessions: dict[tuple[str, str], int] = {}
        for m in msgs:
            sessions[(m.user_id, m.session_id)] = sessions.get((m.user_id, m.session_id), 0) + 1
        for (user_id, session_id), n in sessions.items():
            await self.notify_stored(session_id, user_id, n)
        return [StoredRef(id=r.id, memory_type=self.memory_type, durable=r.durable) for r in refs]

    async def notify_stored(self, session_id: str, user_id: str = "default", count: int = 1) -> bool:
        """Count new messages of a session (stored here or by a buffer on these stores); True if a job was scheduled."""
        stores = await self._ensure()
        try:
            pending = int(await stores.redis.incrby(self._key(user_id, session_id, "pending"), count))
        except sh.REDIS_DOWN as exc:
            self.log.warning("summary_pending_counter_unavailable", error=str(exc))
            pending = self.batch_size
        if pending < self.batch_size:
            return False

        async def job() -> None:
            await self._run_locked(user_id, session_id, force=False)

        stores.worker.submit(job, name="summarize")
        return True

    async def flush(self) -> None:
        """Wait until scheduled summarisation (and other background work on these stores) has finished."""
        stores = await self._ensure()
        await stores.worker.flush()

    async def summarize_now(self, session_id: str, user_id: str = "default") -> dict[str, Any] | None:
        """Fold every message older than the window into the summary now (any batch size); return the latest."""
        await self._ensure()
        sh.require_name(session_id, "session_id")
        sh.require_name(user_id, "user_id")
        await self._run_locked(user_id, session_id, force=True, wait=True)
        return await self.get_summary(session_id, user_id)

    # --- summarisation -------------------------------------------------------------------------------
    async def _run_locked(self, user_id: str, session_id: str, *, force: bool, wait: bool = False) -> None:
        """Summarise under the per-session lock.

        A background job that finds the lock taken leaves a re-run flag for the holder and returns;
        with ``wait`` (``summarize_now``) the caller waits for the lock instead.
        """
        redis = self.stores.redis
        lock_key, rerun_key = self._key(user_id, session_id, "lock"), self._key(user_id, session_id, "rerun")
        for _ in range(20):
            token = uuid.uuid4().hex
            try:
                got = bool(await redis.set(lock_key, token, nx=True, px=self.lock_ttl_ms))
                if not got:
                    self.stats["lock_contended"] += 1
                    if wait:
                        await self._wait_for_lock(lock_key, token)
                    else:
                        await redis.set(rerun_key, "1", px=self.lock_ttl_ms)
                        got = bool(await redis.set(lock_key, token, nx=True, px=self.lock_ttl_ms))
                        if not got:
                            return  # the holder re-runs when it sees the flag
            except sh.REDIS_DOWN as exc:  # no lock service: the versioned insert still prevents forks
                self.log.warning("summary_lock_unavailable", error=str(exc))
                await self._summarize_pending(user_id, session_id, force=force)
                return
            try:
                await self._summarize_pending(user_id, session_id, force=force)
            finally:
                try:
                    await self._release(keys=[lock_key], args=[token])
                except sh.REDIS_DOWN as exc:
                    self.log.warning("summary_lock_release_failed", error=str(exc))
            try:
                if not await redis.getdel(rerun_key):
                    return
            except sh.REDIS_DOWN:
                return

    async def _wait_for_lock(self, lock_key: str, token: str) -> None:
        """Poll (with backoff) until the lock is ours; BackendUnavailable after one lock lifetime."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lock_ttl_ms / 1000
        delay = 0.01
        while loop.time() < deadline:
            await asyncio.sleep(delay)
            if await self.stores.redis.set(lock_key, token, nx=True, px=self.lock_ttl_ms):
                return
            delay = min(delay * 2, 0.5)
        raise BackendUnavailable("timed out waiting for the session's summary lock", field="session_id")

    async def _summarize_pending(self, user_id: str, session_id: str, *, force: bool) -> int:
        """Fold uncovered messages older than the window into new summary versions; return how many were written."""
        written = 0
        while True:
            latest = await self._latest_pg(user_id, session_id)
            covers_to = int(latest["covers_to_id"]) if latest else 0
            limit = self.max_batch_messages + self.window
            rows = await self.buffer.get_messages(session_id, user_id, limit, after_id=covers_to)
            if len(rows) >= limit:
                evicted = rows[: self.max_batch_messages]
            else:
                evicted = rows[: max(0, len(rows) - self.window)]
            evicted_tokens = sum(m.token_count or self.tokenizer.count(m.content) for m in evicted)
            due = len(evicted) >= self.batch_size or evicted_tokens >= self.summary_budget or (force and evicted)
            if not due:
                await self._set_pending(user_id, session_id, len(evicted))
                return written
            try:
                text = await self.summarizer.summarize(
                    latest["summary"] if latest else None, evicted, max_tokens=self.summary_budget
                )
            except Exception:
                self.stats["summary_failures"] += 1
                raise
            text = self.tokenizer.truncate(text.strip(), self.summary_budget)
            row = await self._insert(user_id, session_id, latest, evicted, text)
            if row is None:  # another writer got there first: its version stands
                return written
            written += 1
            self.stats["summaries_written"] += 1
            await self._cache(user_id, session_id, row)

    async def _insert(
        self, user_id: str, session_id: str, prev: dict[str, Any] | None, evicted: list[Message], text: str
    ) -> dict[str, Any] | None:
        version = (int(prev["version"]) if prev else 0) + 1
        row = {
            "version": version,
            "summary": text,
            "covers_from_id": prev["covers_from_id"] if prev and prev["covers_from_id"] else evicted[0].id,
            "covers_to_id": evicted[-1].id,
            "message_count": (int(prev["message_count"]) if prev else 0) + len(evicted),
            "token_count": self.tokenizer.count(text),
            "model": self.summarizer.name,
        }
        params = {
            "u": user_id,
            "s": session_id,
            "v": version,
            "summary": text,
            "from": row["covers_from_id"],
            "to": row["covers_to_id"],
            "count": row["message_count"],
            "tokens": row["token_count"],
            "model": row["model"],
            "prev": version - 1,
        }
        result = await sh.pg_fetch(self.stores, _INSERT, params)  # type: ignore[arg-type]
        if not result:
            return None
        row["created_at"] = sh.iso(result[0][0])
        return row

    async def _set_pending(self, user_id: str, session_id: str, value: int) -> None:
        try:
            await self.stores.redis.set(self._key(user_id, session_id, "pending"), value)
        except sh.REDIS_DOWN as exc:
            self.log.warning("summary_pending_counter_unavailable", error=str(exc))

    async def _cache(self, user_id: str, session_id: str, row: Mapping[str, Any]) -> None:
        ttl = self.config.ttl_seconds
        if not row.get("version"):  # the "no summary yet" marker lives briefly (a lost overwrite heals fast)
            ttl = min(ttl, NO_SUMMARY_TTL) if ttl > 0 else NO_SUMMARY_TTL
        try:
            await self._set_if_newer(
                keys=[self._key(user_id, session_id, "latest")],
                args=[json.dumps(row, default=str), int(row["version"]), ttl],
            )
        except sh.REDIS_DOWN as exc:
            self.log.warning("summary_cache_write_failed", error=str(exc))

    # --- reads ---------------------------------------------------------------------------------------
    async def _latest_pg(self, user_id: str, session_id: str) -> dict[str, Any] | None:
        rows = await sh.pg_fetch(self.stores, _LATEST, (user_id, session_id))
        return _summary_row(rows[0]) if rows else None

    async def get_summary(self, session_id: str, user_id: str = "default") -> dict[str, Any] | None:
        """The latest summary of a session (Redis cache, else PostgreSQL), or None before the first one."""
        stores = await self._ensure()
        sh.require_name(session_id, "session_id")
        sh.require_name(user_id, "user_id")
        key = self._key(user_id, session_id, "latest")
        try:
            raw = await stores.redis.get(key)
            if raw:
                return _cached_summary(raw)
        except sh.REDIS_DOWN as exc:
            self.log.warning("summary_cache_read_failed", error=str(exc))
            return await self._latest_pg(user_id, session_id)
        return await self._load_summary(user_id, session_id, mark_missing=False)

    async def _load_summary(self, user_id: str, session_id: str, *, mark_missing: bool) -> dict[str, Any] | None:
        """The latest summary from PostgreSQL, cached in Redis; with ``mark_missing`` "none yet" too (version 0).

        The version-0 marker (used by the per-turn context reads) spares sessions without a summary a
        PostgreSQL query per turn; the first real summary (version 1) replaces it, and the write script
        never lets it replace a summary.
        """
        latest = await self._latest_pg(user_id, session_id)
        if latest is not None or mark_missing:
            await self._cache(user_id, session_id, latest if latest is not None else {"version": 0})
        return latest

    async def _context_summary(self, user_id: str, session_id: str) -> dict[str, Any] | None:
        """The latest summary for a context read (as ``get_summary``, but remembering "none yet")."""
        try:
            (raw,) = await self.stores.redis_batch.execute(("GET", self._key(user_id, session_id, "latest")))
        except sh.REDIS_DOWN as exc:
            self.log.warning("summary_cache_read_failed", error=str(exc))
            return await self._latest_pg(user_id, session_id)
        if raw:
            return _cached_summary(raw)
        return await self._load_summary(user_id, session_id, mark_missing=True)

    async def get_summary_history(
        self, session_id: str, user_id: str = "default", limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Every summary version of a session, oldest first."""
        await self._ensure()
        sh.require_name(session_id, "session_id")
        sh.require_name(user_id, "user_id")
        rows = await sh.pg_fetch(self.stores, _HISTORY, (user_id, session_id, limit))
        return [_summary_row(r) for r in rows]

    async def get_messages(self, session_id: str, user_id: str = "default", limit: int | None = None) -> list[Message]:
        """The session's stored messages (newest ``limit``), oldest first — summarisation never removes any."""
        await self._ensure()
        return await self.buffer.get_messages(session_id, user_id, limit)

    async def get_context(
        self, query: Mapping[str, Any] | ContextRequest | None = None, *, max_tokens: int | None = None
    ) -> MemoryContext:
        """Summary plus the uncovered recent messages, newest kept first, within the token budget."""
        watch = Stopwatch()
        await self._ensure()
        req = await self.buffer.resolve_request(query)
        session_id = sh.require_name(req.session_id, "session_id")
        user_id = req.user_id
        budget = max_tokens if max_tokens is not None else req.max_total_tokens or self.config.max_total_tokens
        latest, candidates = await self._summary_and_uncovered(user_id, session_id)
        covers_to = int(latest["covers_to_id"]) if latest else 0
        summary_text = (latest or {}).get("summary") or ""
        comp = self._compose(summary_text, candidates, budget)
        items: list[dict[str, Any]] = []
        if comp.summary:
            items.append(
                {
                    "section": "summary",
                    "id": f"summary:{session_id}:v{latest['version'] if latest else 0}",
                    "content": comp.summary,
                    "score": SUMMARY_SCORE,
                    "token_count": self.tokenizer.count(comp.summary),
                    "version": latest["version"] if latest else None,
                    "covers_to_id": covers_to,
                }
            )
        n = len(comp.messages)
        for i, m in enumerate(comp.messages):
            items.append(
                {
                    "section": "recent_conversation",
                    "id": str(m.id),
                    "role": m.role,
                    "content": m.content,
                    "score": round((i + 1) / n, 6),
                    "created_at": sh.iso(m.created_at),
                    "token_count": m.token_count if m.token_count is not None else self.tokenizer.count(m.content),
                }
            )
        older = max(0, len(candidates) - self.window)
        return MemoryContext(
            memory_type=self.memory_type,
            items=items,
            text=comp.text,
            token_count=self.tokenizer.count(comp.text),
            latency_ms=round(watch.ms, 3),
            truncated=comp.truncated,
            extra={
                "summary": comp.summary,
                "messages": [
                    {"id": m.id, "role": m.role, "content": m.content, "created_at": sh.iso(m.created_at)}
                    for m in comp.messages
                ],
                "session_id": session_id,
                "user_id": user_id,
                "summary_version": latest["version"] if latest else None,
                "covers_to_id": covers_to or None,
                "unsummarized_older_messages": older,
                "budget": {
                    "total": budget,
                    "summary_share": comp.summary_share,
                    "summary_tokens": comp.summary_tokens,
                    "message_tokens": comp.message_tokens,
                },
            },
        )

    @property
    def _uncovered_cap(self) -> int:
        """At most this many uncovered messages are considered (the newest)."""
        return max(self.window + self.max_batch_messages, 200)

    async def _summary_and_uncovered(
        self, user_id: str, session_id: str
    ) -> tuple[dict[str, Any] | None, list[Message]]:
        """The latest summary and the messages it does not cover (newest ``_uncovered_cap``), oldest first.

        One Redis round trip in the steady state: the summary's cache entry and the newest
        ``window + batch_size`` cached messages are read in one pipeline; that is all of the uncovered
        messages whenever one of them is already covered (or the cache holds the whole session). Only
        when summarisation lags further (or the cache is cold) are more messages read — so the read
        cost is bounded by the window, not by the session's length.
        """
        buffer = self.buffer
        first = min(self.window + self.batch_size, self._uncovered_cap)
        cache = None
        try:
            cache = await buffer._read_cache(
                user_id, session_id, -(first + _DEDUPE_SLACK), also_get=self._key(user_id, session_id, "latest")
            )
        except sh.REDIS_DOWN as exc:
            self.log.warning("summary_cache_read_failed", error=str(exc))
        latest: dict[str, Any] | None = None
        if cache is not None and cache.extra:
            latest = _cached_summary(cache.extra)
        elif cache is not None:
            latest = await self._load_summary(user_id, session_id, mark_missing=True)
        else:
            latest = await self._latest_pg(user_id, session_id)
        covers_to = int(latest["covers_to_id"]) if latest else 0
        if cache is not None and cache.valid:
            msgs = cache.messages
            uncovered = [m for m in msgs if (m.id or 0) > covers_to]
            whole_session = cache.length >= (cache.total or 0) and cache.length <= first + _DEDUPE_SLACK
            if len(uncovered) < len(msgs) or whole_session:
                self.last_read_messages = len(msgs)
                return latest, uncovered[-self._uncovered_cap :]
        if cache is not None and not cache.valid and buffer.pg_durable:
            # a cold or partial cache: reload it from PostgreSQL once, so later reads are one round trip
            rows, _ = await buffer._rehydrate(user_id, session_id, cache.gen, "summary_read")
            self.last_read_messages = len(rows)
            return latest, [m for m in rows[-self._uncovered_cap :] if (m.id or 0) > covers_to]
        # summarisation lags (or Redis is down): the newest messages, as before
        rows = await buffer.get_messages(session_id, user_id, self._uncovered_cap)
        self.last_read_messages = len(rows)
        return latest, [m for m in rows if (m.id or 0) > covers_to]

    async def get_summary_context(
        self, query: Mapping[str, Any] | ContextRequest | None = None, *, max_tokens: int | None = None
    ) -> MemoryContext:
        """Only the summary, as one "summary" item within the budget: one Redis GET, no messages read.

        For callers whose recent messages come from elsewhere (the orchestrator, when the buffer tier
        supplies "recent_conversation").
        """
        watch = Stopwatch()
        await self._ensure()
        req = await self.buffer.resolve_request(query)
        session_id = sh.require_name(req.session_id, "session_id")
        user_id = req.user_id
        budget = max_tokens if max_tokens is not None else req.max_total_tokens or self.config.max_total_tokens
        latest = await self._context_summary(user_id, session_id)
        self.last_read_messages = 0
        full = (latest or {}).get("summary") or ""
        kept = self._fit_summary(full, budget)
        covers_to = int(latest["covers_to_id"]) if latest else 0
        tok = self.tokenizer
        items: list[dict[str, Any]] = []
        if kept:
            items.append(
                {
                    "section": "summary",
                    "id": f"summary:{session_id}:v{latest['version'] if latest else 0}",
                    "content": kept,
                    "score": SUMMARY_SCORE,
                    "token_count": tok.count(kept),
                    "version": latest["version"] if latest else None,
                    "covers_to_id": covers_to,
                }
            )
        text = _render(kept, [])
        return MemoryContext(
            memory_type=self.memory_type,
            items=items,
            text=text,
            token_count=tok.count(text),
            latency_ms=round(watch.ms, 3),
            truncated=kept != full,
            extra={
                "summary": kept,
                "messages": [],
                "session_id": session_id,
                "user_id": user_id,
                "summary_version": latest["version"] if latest else None,
                "covers_to_id": covers_to or None,
            },
        )

    def _compose(self, summary: str, candidates: list[Message], budget: int) -> _Composition:
        """Split ``budget`` between summary and messages by weight; unused share flows to the other side."""
        tok = self.tokenizer
        share = int(budget * self.config.summary_context_weight)
        full_summary_cost = tok.count(_summary_block(summary)) + 1 if summary else 0
        msg_budget = budget - min(full_summary_cost, share)
        header = tok.count(RECENT_HEADER) + 1
        chosen: list[Message] = []
        used = header if candidates else 0
        for m in reversed(candidates):
            cost = tok.count(_line(m)) + 1
            if used + cost > msg_budget:
                break
            chosen.append(m)
            used += cost
        chosen.reverse()
        if not chosen:
            used = 0
        dropped = len(chosen) < len(candidates)
        summary_room = budget - used
        if dropped and full_summary_cost > share:
            summary_room = min(summary_room, share)
        kept_summary = self._fit_summary(summary, summary_room)
        text = _render(kept_summary, chosen)
        while chosen and tok.count(text) > budget:  # joins can cost a token more than counted
            chosen.pop(0)
            dropped = True
            text = _render(kept_summary, chosen)
        if tok.count(text) > budget:
            kept_summary = self._fit_summary(summary, budget - (tok.count(text) - tok.count(_render(kept_summary, []))))
            text = _render(kept_summary, chosen)
        return _Composition(
            summary=kept_summary,
            messages=chosen,
            text=text,
            truncated=dropped or kept_summary != summary,
            summary_share=share,
            summary_tokens=tok.count(kept_summary),
            message_tokens=sum(tok.count(m.content) for m in chosen),
        )

    def _fit_summary(self, summary: str, room: int) -> str:
        """The summary cut so that its rendered block costs at most ``room`` tokens."""
        if not summary or room <= 0:
            return ""
        tok = self.tokenizer
        overhead = tok.count(_summary_block("")) + 2
        if tok.count(_summary_block(summary)) + 1 <= room:
            return summary
        cut = tok.truncate(summary, room - overhead)
        while cut and tok.count(_summary_block(cut)) + 1 > room:
            cut = tok.truncate(cut, max(0, tok.count(cut) - 1))
        return cut

    # --- maintenance ---------------------------------------------------------------------------------
    async def clear(
        self, *, session_id: str | None = None, user_id: str | None = None, namespace: str | None = None
    ) -> int:
        """Delete a session's (or a user's) messages, summaries and cached state; return the rows removed."""
        stores = await self._ensure()
        if session_id is None and user_id is None:
            raise ValidationError("clear needs session_id or user_id", field="session_id")
        user = sh.require_name(user_id, "user_id", default="default")
        removed = await self.buffer.clear(session_id=session_id, user_id=user)
        if session_id is not None:
            removed += await sh.pg_rowcount(
                stores, "DELETE FROM memory_summaries WHERE user_id = %s AND session_id = %s", (user, session_id)
            )
            await stores.redis.unlink(*(self._key(user, session_id, n) for n in ("latest", "pending", "lock", "rerun")))
        else:
            removed += await sh.pg_rowcount(stores, "DELETE FROM memory_summaries WHERE user_id = %s", (user,))
            await sh.delete_pattern(stores, stores.keys.pattern(user, None, "summary"))
        return removed

    async def _health_details(self) -> dict[str, Any]:
        worker = self.stores.worker.stats
        return {
            "summarizer": self._summarizer.name if self._summarizer else None,
            "buffer_window_size": self.window,
            "batch_size": self.batch_size,
            "tokenizer": self.tokenizer.method,
            "stats": dict(self.stats),
            "pending_jobs": self.stores.worker.pending,
            "failed_summary_jobs": worker.failures_by_name.get("summarize", 0),
        }


class _Composition:
    """The outcome of fitting a summary and messages into one budget."""

    __slots__ = ("message_tokens", "messages", "summary", "summary_share", "summary_tokens", "text", "truncated")

    def __init__(
        self,
        *,
        summary: str,
        messages: list[Message],
        text: str,
        truncated: bool,
        summary_share: int,
        summary_tokens: int,
        message_tokens: int,
    ) -> None:
        self.summary = summary
        self.messages = messages
        self.text = text
        self.truncated = truncated
        self.summary_share = summary_share
        self.summary_tokens = summary_tokens
        self.message_tokens = message_tokens


def _line(m: Message) -> str:
    return f"{m.role}: {m.content}"


def _summary_block(summary: str) -> str:
    return f"{SUMMARY_HEADER}\n{summary}"


def _render(summary: str, messages: list[Message]) -> str:
    parts = []
    if summary:
        parts.append(_summary_block(summary))
    if messages:
        parts.append(RECENT_HEADER + "\n" + "\n".join(_line(m) for m in messages))
    return "\n\n".join(parts)


def _cached_summary(raw: bytes | str) -> dict[str, Any] | None:
    """A summary read from the Redis cache (None for the "no summary yet" marker, version 0)."""
    cached: dict[str, Any] = fast_loads(raw)
    return cached if cached.get("version") else None


def _summary_row(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "version": int(r[0]),
        "summary": r[1],
        "covers_from_id": r[2],
        "covers_to_id": r[3],
        "message_count": int(r[4]),
        "token_count": int(r[5]),
        "model": r[6],
        "created_at": sh.iso(r[7]),
    }


__all__ = ["ConversationSummaryMemory"]
