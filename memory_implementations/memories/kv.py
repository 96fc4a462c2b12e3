"""KeyValueStoreMemory: preferences and facts, Redis in front of PostgreSQL ``memory_kv``.

Write-through: one PostgreSQL transaction (per-key advisory lock) copies the current value to
``memory_kv_history`` (``valid_from`` = when it became current, ``superseded_at`` = now) and upserts
the new one with ``version + 1``; only then is Redis updated. Redis holds each value as a hash
``{v: version, d: flag byte + payload}`` (zlib above ``compression_threshold``), written by a script
that refuses to replace a newer version, so racing writers and cache warms cannot leave a stale
value. A delete leaves a short-lived tombstone (``v`` without ``d``) for the same reason. A miss
warms from PostgreSQL; rows past ``expires_at`` are never returned and Redis never outlives them.
A namespace snapshot for ``get_context`` is cached the same way, invalidated by a generation counter.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from ..base import BaseMemory
from ..errors import ValidationError
from ..types import ContextRequest, MemoryContext, MemoryType, Message, Stopwatch, StoredRef
from . import _shared as sh

CONTEXT_LIMIT = 200
TOMBSTONE_TTL_MS = 3_600_000

# KEYS: value hash. ARGV: version, blob ('' = tombstone), ttl ms (0 = none)
_FILL = """
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] == '' then redis.call('HSET', KEYS[1], 'v', ARGV[1])
else redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2]) end
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"""

# KEYS: namespace snapshot hash. ARGV: expected gen ('' = none), blob, ttl ms
_NS_FILL = """
local gen = redis.call('HGET', KEYS[1], 'gen') or ''
if gen ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"""

_KEY = "user_id = %s AND namespace = %s AND key = %s"
_LIVE = "(expires_at IS NULL OR expires_at > now())"
_REMAINING = "ceil(extract(epoch FROM (expires_at - now())) * 1000)::bigint"
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
_TO_HISTORY = f"""
INSERT INTO memory_kv_history (user_id, namespace, key, value, version, valid_from)
SELECT user_id, namespace, key, value, version, updated_at FROM memory_kv WHERE {_KEY}
"""
_UPSERT = f"""
INSERT INTO memory_kv (user_id, namespace, key, value, version, expires_at)
VALUES (%s, %s, %s, %s::jsonb,
        (SELECT coalesce(max(version), 0) + 1 FROM memory_kv_history WHERE {_KEY}),
        now() + %s::int * interval '1 second')
ON CONFLICT (user_id, namespace, key) DO UPDATE
SET value = EXCLUDED.value, version = memory_kv.version + 1, expires_at = EXCLUDED.expires_at, updated_at = now()
RETURNING version, (xmax = 0)
"""
_DELETE = f"DELETE FROM memory_kv WHERE {_KEY} RETURNING version"
_GET = f"SELECT value, version, {_REMAINING} FROM memory_kv WHERE {_KEY} AND {_LIVE}"
_LIST = f"""
SELECT key, value, version, updated_at, {_REMAINING} FROM memory_kv
WHERE user_id = %s AND namespace = %s AND {_LIVE} AND (%s::text IS NULL OR starts_with(key, %s::text))
ORDER BY key LIMIT %s
"""
_HISTORY = f"""
SELECT value, version, valid_from, superseded_at FROM memory_kv_history WHERE {_KEY}
UNION ALL
SELECT value, version, updated_at, NULL FROM memory_kv WHERE {_KEY} AND {_LIVE} AND %s
ORDER BY 2
"""


class KeyValueStoreMemory(BaseMemory):
    """Versioned key-value facts per user and namespace, with history, TTL, JSON and compression."""

    memory_type = MemoryType.KEY_VALUE_STORE

    async def _setup(self) -> None:
        self._fill = self.stores.redis.register_script(_FILL)
        self._ns_fill = self.stores.redis.register_script(_NS_FILL)

    def _scope(self, key: Any, namespace: Any, user_id: Any) -> tuple[str, str, str]:
        return (
            sh.require_name(key, "key"),
            sh.require_name(namespace, "namespace", default=self.config.namespace),
            sh.require_name(user_id, "user_id", default="default"),
        )

    def _rkey(self, user_id: str, namespace: str, key: str) -> str:
        return self.stores.keys.key(user_id, namespace, "kv", key)

    def _nskey(self, user_id: str, namespace: str) -> str:
        return self.stores.keys.key(user_id, namespace, "kvns", "all")

    def _blob(self, value: Any) -> bytes:
        as_json = self.config.serialize_json or not isinstance(value, str | bytes | bytearray)
        return sh.encode_blob(value, serialize_json=as_json, threshold=self.config.compression_threshold)

    def _cache_ms(self, remaining_ms: int | None) -> int:
        """Redis TTL: the cache lifetime (``ttl_seconds``), never past the value's own expiry."""
        limits = [ms for ms in (self.config.ttl_seconds * 1000, remaining_ms) if ms]
        return max(1, min(limits)) if limits else 0

    # writes ----------------------------------------------------------------------------------
    async def set(
        self, key: str, value: Any, *, namespace: str | None = None, user_id: str = "default", ttl: int | None = None
    ) -> StoredRef:
        """Write ``value`` through to PostgreSQL (superseding the old value into history), then Redis."""
        key, namespace, user_id = self._scope(key, namespace, user_id)
        ttl = sh.parse_ttl(ttl, "ttl", allow_zero=False)
        pg_value = sh.to_pg_json(value, serialize_json=self.config.serialize_json)
        blob = self._blob(value)
        stores = await self._ensure()
        ident = (user_id, namespace, key)
        async with sh.pg_connection(stores, transaction=True) as conn, conn.pipeline():
            await conn.execute(_LOCK, (sh.dumps(list(ident)),))
            await conn.execute(_TO_HISTORY, ident)
            cur = await conn.execute(_UPSERT, (*ident, pg_value, *ident, ttl))
            row = await cur.fetchone()
        assert row is not None
        version, inserted = int(row[0]), bool(row[1])
        await self._sync_cache(user_id, namespace, key, version, blob, self._cache_ms(ttl * 1000 if ttl else None))
        return StoredRef(id=key, memory_type=self.memory_type, durable=True, created=inserted)

    async def store(self, item: Mapping[str, Any] | Message) -> StoredRef:
        """The seed's ``store({"key", "value", "namespace"?, "user_id"?, "ttl"?})``: same as :meth:`set`."""
        if isinstance(item, Message):
            raise ValidationError("the key-value tier stores {'key', 'value'} items, not messages", field="item")
        data = sh.require_mapping(item)
        if "value" not in data:
            raise ValidationError("an item needs 'value'", field="value")
        ttl = data.get("ttl", data.get("ttl_seconds"))
        return await self.set(
            data.get("key"),  # type: ignore[arg-type]  # validated in set
            data["value"],
            namespace=data.get("namespace"),
            user_id=data.get("user_id") or "default",
            ttl=ttl,
        )

    async def delete(self, key: str, *, namespace: str | None = None, user_id: str = "default") -> bool:
        """Delete a key (its last value moves to history); True when it existed."""
        key, namespace, user_id = self._scope(key, namespace, user_id)
        stores = await self._ensure()
        ident = (user_id, namespace, key)
        async with sh.pg_connection(stores, transaction=True) as conn, conn.pipeline():
            await conn.execute(_LOCK, (sh.dumps(list(ident)),))
            await conn.execute(_TO_HISTORY, ident)
            cur = await conn.execute(_DELETE, ident)
            row = await cur.fetchone()
        if row is None:
            return False
        ttl = self._cache_ms(None) or TOMBSTONE_TTL_MS
        await self._sync_cache(user_id, namespace, key, int(row[0]) + 1, b"", ttl)
        return True

    async def _sync_cache(self, user_id: str, namespace: str, key: str, version: int, blob: bytes, ttl_ms: int) -> None:
        """After the commit: write the versioned value (or tombstone) and invalidate the namespace snapshot."""
        nskey = self._nskey(user_id, namespace)
        try:
            async with self.stores.redis.pipeline(transaction=False) as pipe:
                await self._fill(keys=[self._rkey(user_id, namespace, key)], args=[version, blob, ttl_ms], client=pipe)
                pipe.hincrby(nskey, "gen", 1)
                pipe.hdel(nskey, "d")
                if self.config.ttl_seconds:
                    pipe.expire(nskey, self.config.ttl_seconds)
                await pipe.execute()
        except sh.REDIS_DOWN as exc:
            self.log.warning("kv_redis_write_failed", error=str(exc), key=key)

    # reads -----------------------------------------------------------------------------------
    async def get(
        self, key: str, default: Any = None, *, namespace: str | None = None, user_id: str = "default"
    ) -> Any:
        """The current value (``default`` when absent or expired): Redis, else PostgreSQL (then warmed)."""
        key, namespace, user_id = self._scope(key, namespace, user_id)
        stores = await self._ensure()
        rkey = self._rkey(user_id, namespace, key)
        redis_up = True
        try:
            version, blob = await stores.redis.hmget(rkey, "v", "d")
            if version is not None:
                return sh.decode_blob(blob) if blob is not None else default
        except sh.REDIS_DOWN as exc:
            redis_up = False
            self.log.warning("kv_redis_read_failed", error=str(exc), key=key)
        rows = await sh.pg_fetch(stores, _GET, (user_id, namespace, key))
        if not rows:
            return default
        raw, version, remaining = rows[0]
        value = sh.from_pg_json(raw, serialize_json=self.config.serialize_json)
        if redis_up:
            try:
                await self._fill(keys=[rkey], args=[int(version), self._blob(value), self._cache_ms(remaining)])
            except sh.REDIS_DOWN as exc:
                self.log.warning("kv_redis_warm_failed", error=str(exc), key=key)
        return value

    async def list(
        self, namespace: str | None = None, prefix: str | None = None, *, user_id: str = "default", limit: int = 1000
    ) -> dict[str, Any]:
        """Live keys of a namespace (optionally starting with ``prefix``) and their values, from PostgreSQL."""
        rows = await self._rows(namespace, prefix, user_id, limit)
        return {r[0]: sh.from_pg_json(r[1], serialize_json=self.config.serialize_json) for r in rows}

    async def _rows(self, namespace: str | None, prefix: str | None, user_id: str, limit: int) -> builtins.list[Any]:
        _, namespace, user_id = self._scope("-", namespace, user_id)
        if prefix is not None and not isinstance(prefix, str):
            raise ValidationError("'prefix' must be a string", field="prefix")
        stores = await self._ensure()
        return await sh.pg_fetch(stores, _LIST, (user_id, namespace, prefix, prefix, limit))

    async def history(
        self, key: str, *, namespace: str | None = None, user_id: str = "default", include_current: bool = False
    ) -> builtins.list[dict[str, Any]]:
        """Earlier values of ``key``, oldest first, each with version, ``valid_from`` and ``superseded_at``."""
        key, namespace, user_id = self._scope(key, namespace, user_id)
        stores = await self._ensure()
        ident = (user_id, namespace, key)
        rows = await sh.pg_fetch(stores, _HISTORY, (*ident, *ident, include_current))
        return [
            {
                "value": sh.from_pg_json(r[0], serialize_json=self.config.serialize_json),
                "version": int(r[1]),
                "valid_from": sh.iso(r[2]),
                "superseded_at": sh.iso(r[3]),
            }
            for r in rows
        ]

    async def _snapshot(self, namespace: str, user_id: str) -> dict[str, dict[str, Any]]:
        """The namespace's live values for ``get_context``: cached in Redis, rebuilt from PostgreSQL on a miss."""
        stores = await self._ensure()
        nskey = self._nskey(user_id, namespace)
        gen: str | None = None
        try:
            ((gen_raw, blob),) = await stores.redis_batch.execute(("HMGET", nskey, "gen", "d"))
            if blob is not None:
                return sh.decode_blob(blob)
            gen = sh.text(gen_raw) or ""
        except sh.REDIS_DOWN as exc:
            self.log.warning("kv_redis_read_failed", error=str(exc), namespace=namespace)
        rows = await sh.pg_fetch(stores, _LIST, (user_id, namespace, None, None, CONTEXT_LIMIT))
        snap = {r[0]: {"value": r[1], "version": int(r[2]), "updated_at": sh.iso(r[3])} for r in rows}
        if gen is not None:
            ttl = self._cache_ms(min((int(r[4]) for r in rows if r[4] is not None), default=None))
            blob = sh.encode_blob(snap, serialize_json=True, threshold=self.config.compression_threshold)
            try:
                await self._ns_fill(keys=[nskey], args=[gen, blob, ttl])
            except sh.REDIS_DOWN as exc:
                self.log.warning("kv_redis_warm_failed", error=str(exc), namespace=namespace)
        return snap

    async def get_context(
        self, query: Mapping[str, Any] | ContextRequest | None = None, *, max_tokens: int | None = None
    ) -> MemoryContext:
        """The namespace's facts as ``key: value`` items (recent and query-mentioned first), within ``max_tokens``."""
        watch = Stopwatch()
        req = sh.context_request(query)
        _, namespace, user_id = self._scope("-", req.namespace, req.user_id)
        snap = await self._snapshot(namespace, user_id)
        order = sorted(snap, key=lambda k: snap[k]["updated_at"] or "")
        rank = {k: (i + 1) / len(order) for i, k in enumerate(order)}
        query_text = req.query.lower()
        values = {k: sh.from_pg_json(v["value"], serialize_json=self.config.serialize_json) for k, v in snap.items()}
        candidates = [
            {
                "section": "key_value",
                "id": f"{namespace}/{k}",
                "key": k,
                "content": f"{k}: {sh.render_value(values[k])}",
                "score": round(0.4 + 0.4 * rank[k] + (0.2 if query_text and k.lower() in query_text else 0.0), 6),
                "version": snap[k]["version"],
                "updated_at": snap[k]["updated_at"],
            }
            for k in snap
        ]
        candidates.sort(key=lambda c: c["score"], reverse=True)

        def render(kept: builtins.list[int]) -> str:
            if not kept:
                return ""
            return "\n".join([f"Known facts ({namespace}):", *(f"- {candidates[i]['content']}" for i in kept)])

        budget = max_tokens if max_tokens is not None else req.max_total_tokens or self.config.max_total_tokens
        kept = sh.fit_ranked([c["content"] for c in candidates], budget, self.tokenizer, render)
        text = render(kept)
        chosen = [candidates[i] for i in kept]
        return MemoryContext(
            memory_type=self.memory_type,
            items=chosen,
            text=text,
            token_count=self.tokenizer.count(text),
            latency_ms=round(watch.ms, 3),
            truncated=len(kept) < len(candidates),
            extra={"namespace": namespace, "values": {c["key"]: values[c["key"]] for c in chosen}},
        )

    # clear, health ---------------------------------------------------------------------------
    async def clear(
        self, *, session_id: str | None = None, user_id: str | None = None, namespace: str | None = None
    ) -> int:
        """Delete a namespace (or with only ``user_id`` all of a user's), history included; return keys removed."""
        if namespace is None and user_id is None:
            if session_id is not None:
                return 0  # key-value data is not session-scoped
            raise ValidationError("clear needs namespace or user_id", field="namespace")
        stores = await self._ensure()
        user = sh.require_name(user_id, "user_id", default="default")
        where, params = "user_id = %s", [user]
        if namespace is not None:
            where, params = where + " AND namespace = %s", [user, sh.require_name(namespace, "namespace")]
        async with sh.pg_connection(stores, transaction=True) as conn:
            cur = await conn.execute(f"DELETE FROM memory_kv WHERE {where}".encode(), params)
            removed = max(cur.rowcount, 0)
            await conn.execute(f"DELETE FROM memory_kv_history WHERE {where}".encode(), params)
        for tier in ("kv", "kvns"):
            await sh.delete_pattern(stores, stores.keys.pattern(user, namespace, tier))
        return removed

    async def _health_details(self) -> dict[str, Any]:
        return {
            "namespace": self.config.namespace,
            "serialize_json": self.config.serialize_json,
            "compression_threshold": self.config.compression_threshold,
        }


__all__ = ["KeyValueStoreMemory"]
