"""ConversationBufferMemory: a session's recent window, Redis in front of PostgreSQL.

PostgreSQL (``memory_messages``) is the record: a message is INSERTed and committed before
``store`` returns. Redis keeps, per session, a list of the last ``cache_size`` messages (JSON) and a
small ``meta`` hash: ``total`` (messages the session has, as of the last sync) and ``gen`` (bumped by
every write). A read is one pipelined round trip (HMGET meta, LLEN, LRANGE, EXPIRE x2). The cache is
trusted only when ``meta.total`` exists and the list holds exactly ``min(total, cache_size)``
entries; anything else (eviction, flush, TTL, restart, a list truncated by a crash) rehydrates the
window from PostgreSQL and re-populates Redis, guarded by ``gen`` so a rebuild never overwrites a
concurrent write. Writes append only to a warm cache; a cold one is rebuilt by the next read. Reads
go through ``Stores.redis_batch``, so the other tiers' reads of the same turn share the round trip.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..base import BaseMemory
from ..config import MemoryConfig
from ..errors import BackendUnavailable, ValidationError
from ..stores import Stores
from ..types import ContextRequest, MemoryContext, MemoryType, Message, Stopwatch, StoredRef, utcnow
from . import _shared as sh

MIN_CACHE = 200
_DEDUPE_SLACK = 8

# KEYS: list, meta. ARGV: ttl, cap, force ("1": create the cache, durability="redis"), n, blob1..n
_PUSH_LUA = """
local ttl, cap, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
redis.call('HINCRBY', KEYS[2], 'gen', 1)
local pushed = 0
if ARGV[3] == '1' or redis.call('HEXISTS', KEYS[2], 'total') == 1 then
  for i = 1, n do redis.call('RPUSH', KEYS[1], ARGV[4 + i]) end
  pushed = n
  redis.call('HINCRBY', KEYS[2], 'total', n)
  redis.call('LTRIM', KEYS[1], -cap, -1)
end
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl); redis.call('EXPIRE', KEYS[2], ttl) end
return pushed
"""

# KEYS: list, meta. ARGV: expected gen ('' = none), ttl, total, blob1..n
_REBUILD_LUA = """
local gen = redis.call('HGET', KEYS[2], 'gen') or ''
if gen ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
for i = 4, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('HSET', KEYS[2], 'total', ARGV[3])
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl); redis.call('EXPIRE', KEYS[2], ttl) end
return 1
"""

_COLS = "id, role, content, metadata, token_count, created_at"
_INSERT = f"""
INSERT INTO memory_messages (user_id, session_id, role, content, metadata, token_count, created_at)
SELECT u, s, r, c, m::jsonb, t, coalesce(ts::timestamptz, now())
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::text[])
     WITH ORDINALITY AS x(u, s, r, c, m, t, ts, ord)
ORDER BY ord
RETURNING {_COLS}
"""
_WHERE = "WHERE user_id = %s AND session_id = %s"
_OWNERS = "SELECT DISTINCT user_id FROM memory_messages WHERE session_id = %s LIMIT 2"
_RECENT = f"SELECT {_COLS}, count(*) OVER () FROM memory_messages {_WHERE} ORDER BY id DESC LIMIT %s"
_TOKENS_WINDOW = f"""
SELECT {_COLS} FROM (
  SELECT {_COLS}, sum(token_count) OVER (ORDER BY id DESC) AS running FROM memory_messages {_WHERE}
) w WHERE running <= %s ORDER BY id
"""
_TIME_WINDOW = f"SELECT {_COLS} FROM memory_messages {_WHERE} AND created_at >= %s ORDER BY id"
_AFTER = f"SELECT {_COLS} FROM memory_messages {_WHERE} AND id > %s ORDER BY id LIMIT %s"
_STATS = f"""
SELECT role, count(*), coalesce(sum(token_count), 0), min(created_at), max(created_at)
FROM memory_messages {_WHERE} GROUP BY role
"""


@dataclass(slots=True)
class _CacheRead:
    messages: list[Message]
    total: int | None
    length: int
    gen: str
    valid: bool
    extra: bytes | None = None


class ConversationBufferMemory(BaseMemory):
    """Recent conversation window (turns, tokens or seconds) with TTL; PostgreSQL is the record."""

    memory_type = MemoryType.CONVERSATION_BUFFER

    def __init__(self, config: Mapping[str, Any] | MemoryConfig | None = None, *, stores: Stores | None = None) -> None:
        """Validate the configuration; no I/O until ``initialize``."""
        super().__init__(config, stores=stores)
        self._stale: set[tuple[str, str]] = set()
        self._last_local_id = 0

    @property
    def cache_size(self) -> int:
        """How many recent messages of a session Redis keeps."""
        if self.config.window_type == "turns":
            return max(self.config.window_size, MIN_CACHE)
        return MIN_CACHE

    @property
    def pg_durable(self) -> bool:
        """True unless ``durability="redis"`` opted out of the PostgreSQL record."""
        return self.config.durability == "postgres"

    async def _setup(self) -> None:
        redis = self.stores.redis
        self._push_script = redis.register_script(_PUSH_LUA)
        self._rebuild_script = redis.register_script(_REBUILD_LUA)

    def _keys(self, user_id: str, session_id: str) -> tuple[str, str]:
        kb = self.stores.keys
        return kb.key(user_id, session_id, "buffer", "messages"), kb.key(user_id, session_id, "buffer", "meta")

    # writes ----------------------------------------------------------------------------------
    def validate(self, item: Mapping[str, Any] | Message) -> Message:
        """Validate one item into a Message with its token count; ValidationError names the field."""
        msg = Message.from_any(item, max_chars=self.config.max_message_chars)
        sh.require_name(msg.session_id, "session_id")
        sh.require_name(msg.user_id, "user_id")
        sh.check_text(msg.content, "content")
        sh.parse_metadata(msg.metadata)
        if msg.created_at is not None:
            msg.created_at = sh.as_utc(msg.created_at)
        msg.id = None
        msg.token_count = self.tokenizer.count(msg.content)
        return msg

    async def store(self, item: Mapping[str, Any] | Message) -> StoredRef:
        """Store one message: committed to PostgreSQL, then appended to the Redis window."""
        return (await self.store_many([item]))[0]

    async def store_many(self, items: Iterable[Mapping[str, Any] | Message]) -> list[StoredRef]:
        """Store many messages with one multi-row INSERT and one Redis pipeline; all or nothing on bad input."""
        msgs: list[Message] = []
        for i, item in enumerate(items):
            try:
                msgs.append(self.validate(item))
            except ValidationError as exc:
                raise ValidationError(f"item {i}: {exc.message}", field=exc.field) from None
        if not msgs:
            return []
        stores = await self._ensure()
        if self.pg_durable:
            rows = await sh.pg_fetch(stores, _INSERT, self._insert_params(msgs))
            for msg, row in zip(msgs, sorted(rows, key=lambda r: r[0]), strict=True):
                msg.id, msg.created_at = row[0], row[5]
        else:
            now = utcnow()
            for msg in msgs:
                msg.id = self._local_id()
                msg.created_at = msg.created_at or now
        try:
            await self._push(msgs)
        except sh.REDIS_DOWN as exc:
            if not self.pg_durable:
                raise BackendUnavailable(f"Redis write failed (durability='redis'): {exc}", field="redis_url") from exc
            self._stale.update((m.user_id, m.session_id) for m in msgs)
            self.log.warning("buffer_redis_write_failed", error=str(exc), messages=len(msgs))
        return [StoredRef(id=str(m.id), memory_type=self.memory_type, durable=self.pg_durable) for m in msgs]

    @staticmethod
    def _insert_params(msgs: Sequence[Message]) -> tuple[list[Any], ...]:
        return (
            [m.user_id for m in msgs],
            [m.session_id for m in msgs],
            [m.role for m in msgs],
            [m.content for m in msgs],
            [sh.dumps(m.metadata, "metadata") for m in msgs],
            [m.token_count for m in msgs],
            [sh.iso(m.created_at) for m in msgs],
        )

    def _local_id(self) -> int:
        """Monotonic ids (microseconds) for ``durability="redis"``, where PostgreSQL assigns none."""
        self._last_local_id = max(self._last_local_id + 1, time.time_ns() // 1000)
        return self._last_local_id

    async def _push(self, msgs: Sequence[Message]) -> None:
        groups: dict[tuple[str, str], list[Message]] = {}
        for m in msgs:
            groups.setdefault((m.user_id, m.session_id), []).append(m)
        force = "0" if self.pg_durable else "1"
        async with self.stores.redis.pipeline(transaction=False) as pipe:
            for (user_id, session_id), group in groups.items():
                args: list[Any] = [self.config.ttl_seconds, self.cache_size, force, len(group), *map(_encode, group)]
                await self._push_script(keys=self._keys(user_id, session_id), args=args, client=pipe)
            await pipe.execute()

    # reads -----------------------------------------------------------------------------------
    async def _read_cache(
        self, user_id: str, session_id: str, start: int, *, also_get: str | None = None
    ) -> _CacheRead:
        """One pipelined read of the cached window from ``start``; ``also_get`` adds a GET of another key."""
        list_key, meta_key = self._keys(user_id, session_id)
        ttl = self.config.ttl_seconds
        commands: list[tuple[Any, ...]] = [("HMGET", meta_key, "total", "gen"), ("LLEN", list_key),
                                           ("LRANGE", list_key, start, -1)]
        if also_get is not None:
            commands.append(("GET", also_get))
        if ttl > 0:
            commands += [("EXPIRE", list_key, ttl), ("EXPIRE", meta_key, ttl)]
        # auto-pipelined: shares its round trip with the other tiers' reads of the same turn
        res = await self.stores.redis_batch.execute(*commands)
        (total_raw, gen_raw), length, raw = res[0], int(res[1]), res[2]
        extra = res[3] if also_get is not None else None
        total = int(total_raw) if total_raw is not None else None
        valid = total is not None and length == min(total, self.cache_size) and (user_id, session_id) not in self._stale
        trusted = valid or not self.pg_durable  # with durability="redis" the cache is all there is
        messages = _dedupe(_decode(b, user_id, session_id) for b in raw) if trusted else []
        gen = sh.text(gen_raw) or ""
        return _CacheRead(messages, total, length, gen, valid, extra)

    async def _window(self, user_id: str, session_id: str) -> list[Message]:
        """The configured window, from Redis when it holds it, else rehydrated from PostgreSQL."""
        start = -(self.config.window_size + _DEDUPE_SLACK) if self.config.window_type == "turns" else 0
        try:
            cache = await self._read_cache(user_id, session_id, start)
        except sh.REDIS_DOWN as exc:
            if not self.pg_durable:
                raise BackendUnavailable(f"Redis read failed (durability='redis'): {exc}", field="redis_url") from exc
            self.log.warning("buffer_redis_read_failed", error=str(exc), session_id=session_id)
            return await self._pg_window(user_id, session_id)
        if cache.valid or not self.pg_durable:
            window, bounded = self._select(cache.messages)
            if bounded or not self.pg_durable or cache.length >= (cache.total or 0):
                return window
            return await self._pg_window(user_id, session_id)
        reason = "miss" if cache.total is None else "stale" if (user_id, session_id) in self._stale else "partial"
        rows, total = await self._rehydrate(user_id, session_id, cache.gen, reason)
        window, bounded = self._select(rows)
        if bounded or len(rows) >= total:
            return window
        return await self._pg_window(user_id, session_id)

    async def _rehydrate(self, user_id: str, session_id: str, gen: str, reason: str) -> tuple[list[Message], int]:
        """Load the newest ``cache_size`` messages from PostgreSQL and re-populate Redis (unless a write raced)."""
        rows = await sh.pg_fetch(self.stores, _RECENT, (user_id, session_id, self.cache_size))
        total = int(rows[0][6]) if rows else 0
        msgs = [_row_message(r, user_id, session_id) for r in reversed(rows)]
        args: list[Any] = [gen, self.config.ttl_seconds, total, *map(_encode, msgs)]
        try:
            rebuilt = await self._rebuild_script(keys=self._keys(user_id, session_id), args=args)
            self._stale.discard((user_id, session_id))
            self.log.info("buffer_rehydrated", reason=reason, session_id=session_id, messages=len(msgs), cached=rebuilt)
        except sh.REDIS_DOWN as exc:
            self.log.warning("buffer_rehydrate_cache_failed", error=str(exc), session_id=session_id)
        return msgs, total

    def _select(self, msgs: list[Message]) -> tuple[list[Message], bool]:
        """Apply the window to chronological ``msgs``; ``bounded`` is True when its start lies inside them."""
        size, kind = self.config.window_size, self.config.window_type
        if kind == "turns":
            return msgs[-size:], len(msgs) >= size
        if kind == "tokens":
            used = 0
            for i in range(len(msgs) - 1, -1, -1):
                used += msgs[i].token_count or 0
                if used > size:
                    return msgs[i + 1 :], True
            return msgs, False
        cutoff = utcnow() - timedelta(seconds=size)
        inside = [m for m in msgs if m.created_at is not None and m.created_at >= cutoff]
        return inside, len(inside) < len(msgs)

    async def _pg_window(self, user_id: str, session_id: str) -> list[Message]:
        """The window straight from PostgreSQL (Redis down, or a window longer than the cache)."""
        if not self.pg_durable:
            return []
        size, kind = self.config.window_size, self.config.window_type
        if kind == "turns":
            rows = list(reversed(await sh.pg_fetch(self.stores, _RECENT, (user_id, session_id, size))))
        elif kind == "tokens":
            rows = await sh.pg_fetch(self.stores, _TOKENS_WINDOW, (user_id, session_id, size))
        else:
            cutoff = utcnow() - timedelta(seconds=size)
            rows = await sh.pg_fetch(self.stores, _TIME_WINDOW, (user_id, session_id, cutoff))
        return [_row_message(r, user_id, session_id) for r in rows]

    async def get_window(
        self, session_id: str, user_id: str = "default", max_tokens: int | None = None
    ) -> list[Message]:
        """The session's window (chronological), trimmed oldest-first to ``max_tokens`` when given."""
        await self._ensure()
        window = await self._window(sh.require_name(user_id, "user_id"), sh.require_name(session_id, "session_id"))
        if max_tokens is None:
            return window
        keep = sh.fit_tail([_line(m) for m in window], max_tokens, self.tokenizer)
        return window[len(window) - keep :]

    async def get_messages(
        self, session_id: str, user_id: str = "default", limit: int | None = None, *, after_id: int | None = None
    ) -> list[Message]:
        """The session's newest ``limit`` messages (all when None), or those after ``after_id``, oldest first."""
        stores = await self._ensure()
        user_id, session_id = sh.require_name(user_id, "user_id"), sh.require_name(session_id, "session_id")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValidationError("'limit' must be a positive integer", field="limit")
        if limit is not None and after_id is None:
            try:
                cache = await self._read_cache(user_id, session_id, -(limit + _DEDUPE_SLACK))
                if cache.valid and (len(cache.messages) >= limit or cache.length >= (cache.total or 0)):
                    return cache.messages[-limit:]
            except sh.REDIS_DOWN as exc:
                self.log.warning("buffer_redis_read_failed", error=str(exc), session_id=session_id)
        if not self.pg_durable:
            cache = await self._read_cache(user_id, session_id, 0)
            msgs = [m for m in cache.messages if after_id is None or (m.id or 0) > after_id]
            return msgs[-limit:] if limit else msgs
        if after_id is not None:
            rows = await sh.pg_fetch(stores, _AFTER, (user_id, session_id, after_id, limit))
        else:
            rows = list(reversed(await sh.pg_fetch(stores, _RECENT, (user_id, session_id, limit))))
        return [_row_message(r, user_id, session_id) for r in rows]

    async def session_owner(self, session_id: str) -> str | None:
        """The one user who owns ``session_id`` (None when unknown or shared by several users)."""
        stores = await self._ensure()
        rows = await sh.pg_fetch(stores, _OWNERS, (session_id,))
        return str(rows[0][0]) if len(rows) == 1 else None

    async def resolve_request(self, query: Mapping[str, Any] | ContextRequest | None) -> ContextRequest:
        """Validate a query; when a seed-style dict omits ``user_id``, use the session's only owner."""
        req = sh.context_request(query)
        if sh.user_omitted(query) and req.session_id:
            req.user_id = await self.session_owner(req.session_id) or req.user_id
        return req

    async def get_context(
        self, query: Mapping[str, Any] | ContextRequest | None = None, *, max_tokens: int | None = None
    ) -> MemoryContext:
        """The recent window as tier items, ``role: content`` text and the seed's ``messages`` list."""
        watch = Stopwatch()
        req = await self.resolve_request(query)
        session_id = sh.require_name(req.session_id, "session_id")
        window = await self.get_window(session_id, req.user_id)
        budget = max_tokens if max_tokens is not None else req.max_total_tokens or self.config.max_total_tokens
        lines = [_line(m) for m in window]
        keep = sh.fit_tail(lines, budget, self.tokenizer)
        kept, lines = window[len(window) - keep :], lines[len(lines) - keep :]
        text = "\n".join(lines)
        items = [
            {
                "section": "recent_conversation",
                "id": str(m.id),
                "role": m.role,
                "content": m.content,
                "score": round((i + 1) / len(kept), 6),
                "created_at": sh.iso(m.created_at),
                "token_count": m.token_count,
            }
            for i, m in enumerate(kept)
        ]
        return MemoryContext(
            memory_type=self.memory_type,
            items=items,
            text=text,
            token_count=self.tokenizer.count(text),
            latency_ms=round(watch.ms, 3),
            truncated=keep < len(window),
            extra={"messages": [m.to_dict() for m in kept], "session_id": session_id},
        )

    # stats, clear, health ----------------------------------------------------------------------
    async def get_session_stats(self, session_id: str, user_id: str = "default") -> dict[str, Any]:
        """Message count, tokens, first/last timestamps and counts per role (from PostgreSQL, the record)."""
        stores = await self._ensure()
        user_id, session_id = sh.require_name(user_id, "user_id"), sh.require_name(session_id, "session_id")
        list_key, _ = self._keys(user_id, session_id)
        try:
            cached: int | None = int(await stores.redis.llen(list_key))
        except sh.REDIS_DOWN:
            cached = None
        if self.pg_durable:
            rows = await sh.pg_fetch(stores, _STATS, (user_id, session_id))
            roles = {r[0]: int(r[1]) for r in rows}
            tokens = sum(int(r[2]) for r in rows)
            first = min((r[3] for r in rows), default=None)
            last = max((r[4] for r in rows), default=None)
        else:
            msgs = (await self._read_cache(user_id, session_id, 0)).messages
            roles = {}
            for m in msgs:
                roles[m.role] = roles.get(m.role, 0) + 1
            tokens = sum(m.token_count or 0 for m in msgs)
            first, last = (msgs[0].created_at, msgs[-1].created_at) if msgs else (None, None)
        return {
            "session_id": session_id,
            "user_id": user_id,
            "message_count": sum(roles.values()),
            "total_tokens": tokens,
            "first_message_at": sh.iso(first),
            "last_message_at": sh.iso(last),
            "roles": roles,
            "cached_messages": cached,
            "window_type": self.config.window_type,
            "window_size": self.config.window_size,
            "source": "postgres" if self.pg_durable else "redis",
        }

    async def clear(
        self, *, session_id: str | None = None, user_id: str | None = None, namespace: str | None = None
    ) -> int:
        """Delete a session's (or, with only ``user_id``, all of a user's) messages from Redis and PostgreSQL."""
        stores = await self._ensure()
        if session_id is None and user_id is None:
            raise ValidationError("clear needs session_id or user_id", field="session_id")
        user = sh.require_name(user_id, "user_id", default="default")
        if session_id is not None:
            sh.require_name(session_id, "session_id")
            removed = await sh.pg_rowcount(stores, f"DELETE FROM memory_messages {_WHERE}", (user, session_id))
            self._stale.discard((user, session_id))
        else:
            removed = await sh.pg_rowcount(stores, "DELETE FROM memory_messages WHERE user_id = %s", (user,))
            self._stale = {s for s in self._stale if s[0] != user}
        if session_id is not None:
            list_key, meta_key = self._keys(user, session_id)
            if not self.pg_durable:
                removed = int(await stores.redis.llen(list_key))
            await stores.redis.unlink(list_key, meta_key)
        else:
            await sh.delete_pattern(stores, stores.keys.pattern(user, None, "buffer"))
        return removed

    async def _health_details(self) -> dict[str, Any]:
        return {
            "window_type": self.config.window_type,
            "window_size": self.config.window_size,
            "durability": self.config.durability,
            "tokenizer": self.tokenizer.method,
        }


def _line(m: Message) -> str:
    return f"{m.role}: {m.content}"


def _encode(m: Message) -> str:
    return sh.dumps(
        {
            "id": m.id,
            "role": m.role,
            "content": m.content,
            "metadata": m.metadata,
            "created_at": sh.iso(m.created_at),
            "token_count": m.token_count,
        }
    )


def _decode(raw: bytes, user_id: str, session_id: str) -> Message:
    d = sh.loads(raw)
    return Message(
        session_id=session_id,
        role=d["role"],
        content=d["content"],
        user_id=user_id,
        metadata=d.get("metadata") or {},
        created_at=sh.parse_iso(d.get("created_at")),
        id=d.get("id"),
        token_count=d.get("token_count"),
    )


def _dedupe(msgs: Iterable[Message]) -> list[Message]:
    """Sort by id and drop duplicates (a rebuild racing a write can push a message twice)."""
    seen: dict[Any, Message] = {}
    for m in msgs:
        seen.setdefault(m.id, m)
    return sorted(seen.values(), key=lambda m: m.id or 0)


def _row_message(row: Sequence[Any], user_id: str, session_id: str) -> Message:
    created: datetime = row[5]
    return Message(
        session_id=session_id,
        role=row[1],
        content=row[2],
        user_id=user_id,
        metadata=dict(row[3] or {}),
        created_at=created,
        id=int(row[0]),
        token_count=int(row[4]),
    )


__all__ = ["ConversationBufferMemory"]
