"""WorkingMemory: namespaced scratch items with importance, TTL, capacity/eviction and a reasoning chain.

Redis only. Per (user, namespace) the tier keeps: a hash of items (JSON), three sorted sets ordering
them for eviction (``imp``: importance then insertion, ``seq``: insertion, ``lru``: last access on a
logical clock), an ``exp`` sorted set of per-item expiry times, a ``meta`` hash (clock, evictions,
expired, step counter) and the reasoning chain list. Every operation is one Lua script, so capacity
holds under any concurrency; expired items are purged by each script (Redis 6.2 has no per-field
TTL), and every key of the namespace also expires ``ttl_seconds`` after its last write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.exceptions import NoScriptError

from ..base import BaseMemory
from ..errors import ValidationError
from ..types import ContextRequest, MemoryContext, MemoryType, Message, Stopwatch, StoredRef, utcnow
from . import _shared as sh

STEP_TYPES = ("thought", "action", "observation", "result")
MAX_CHAIN = 1000
_PARTS = ("items", "imp", "seq", "lru", "exp", "meta", "chain")

# KEYS: items, imp, seq, lru, exp, meta, chain
_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function drop(k)
  redis.call('HDEL', KEYS[1], k)
  for i = 2, 5 do redis.call('ZREM', KEYS[i], k) end
end
local function purge(now)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
  for _, k in ipairs(dead) do drop(k) end
  if #dead > 0 then redis.call('HINCRBY', KEYS[6], 'expired', #dead) end
end
local function refresh(ttl)
  if ttl > 0 then for i = 1, 7 do redis.call('EXPIRE', KEYS[i], ttl) end end
end
"""

# ARGV: key, json, importance, item ttl ms, capacity, policy, namespace ttl s
_PUT = (
    _PRELUDE
    + """
local now = now_ms()
purge(now)
local key = ARGV[1]
local exists = redis.call('HEXISTS', KEYS[1], key) == 1
local tick = redis.call('HINCRBY', KEYS[6], 'clock', 1)
local seq = tonumber(redis.call('ZSCORE', KEYS[3], key) or tick)
local evicted = {}
local imp = math.floor(tonumber(ARGV[3]) * 1000000 + 0.5)
if not exists then
  local order = KEYS[2]
  if ARGV[6] == 'lru' then order = KEYS[4] elseif ARGV[6] == 'fifo' then order = KEYS[3] end
  if ARGV[6] == 'importance' and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
    -- the least important item goes; when that is the newcomer, it is refused and reported evicted
    local low = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    if low[2] and math.floor(tonumber(low[2]) / 8589934592) > imp then
      redis.call('HINCRBY', KEYS[6], 'evictions', 1)
      return {0, {key}, 1}
    end
  end
  while redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) do
    local victim = redis.call('ZRANGE', order, 0, 0)[1]
    if not victim then break end
    drop(victim)
    evicted[#evicted + 1] = victim
  end
  if #evicted > 0 then redis.call('HINCRBY', KEYS[6], 'evictions', #evicted) end
end
redis.call('HSET', KEYS[1], key, ARGV[2])
redis.call('ZADD', KEYS[2], string.format('%.0f', imp * 8589934592 + seq), key)
redis.call('ZADD', KEYS[3], seq, key)
redis.call('ZADD', KEYS[4], tick, key)
local ttl_ms = tonumber(ARGV[4])
if ttl_ms > 0 then redis.call('ZADD', KEYS[5], now + ttl_ms, key) else redis.call('ZREM', KEYS[5], key) end
refresh(tonumber(ARGV[7]))
return {exists and 1 or 0, evicted, 0}
"""
)

# ARGV: key, touch ('1' updates LRU)
_GET = (
    _PRELUDE
    + """
purge(now_ms())
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and ARGV[2] == '1' then
  redis.call('ZADD', KEYS[4], redis.call('HINCRBY', KEYS[6], 'clock', 1), ARGV[1])
end
return v
"""
)

# ARGV: key
_DELETE = (
    _PRELUDE
    + """
purge(now_ms())
local existed = redis.call('HEXISTS', KEYS[1], ARGV[1])
drop(ARGV[1])
return existed
"""
)

_SNAPSHOT = (
    _PRELUDE
    + """
purge(now_ms())
return {redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', KEYS[3], 0, -1), redis.call('LRANGE', KEYS[7], 0, -1),
        redis.call('HGETALL', KEYS[6]), redis.call('TTL', KEYS[6])}
"""
)

# ARGV: step json (without its number), chain cap, namespace ttl s
_STEP = (
    _PRELUDE
    + """
local n = redis.call('HINCRBY', KEYS[6], 'steps', 1)
local step = cjson.decode(ARGV[1])
step['step'] = n
redis.call('RPUSH', KEYS[7], cjson.encode(step))
redis.call('LTRIM', KEYS[7], -tonumber(ARGV[2]), -1)
refresh(tonumber(ARGV[3]))
return n
"""
)


def _pairs(flat: list[Any]) -> dict[str, Any]:
    return {_s(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class WorkingMemory(BaseMemory):
    """Short-lived, importance-scored items per namespace, with eviction and an optional reasoning chain."""

    memory_type = MemoryType.WORKING_MEMORY
    backends = ("redis",)

    async def _setup(self) -> None:
        redis = self.stores.redis
        self._put = redis.register_script(_PUT)
        self._get = redis.register_script(_GET)
        self._delete = redis.register_script(_DELETE)
        self._snapshot = redis.register_script(_SNAPSHOT)
        self._step = redis.register_script(_STEP)

    def _keys(self, user_id: str, namespace: str) -> list[str]:
        return [self.stores.keys.key(user_id, namespace, "working", part) for part in _PARTS]

    def _scope(self, namespace: Any, user_id: Any) -> tuple[str, str]:
        return (
            sh.require_name(namespace, "namespace", default=self.config.namespace),
            sh.require_name(user_id, "user_id", default="default"),
        )

    def _namespace_ttl(self, item_ttl: int = 0) -> int:
        """Idle expiry of a namespace's keys: ``ttl_seconds`` (0 = never), stretched to outlive a longer item TTL."""
        return 0 if self.config.ttl_seconds == 0 else max(self.config.ttl_seconds, item_ttl)

    # writes ----------------------------------------------------------------------------------
    def validate(self, item: Mapping[str, Any] | Message) -> dict[str, Any]:
        """Validate an item into the stored record; ValidationError names the field."""
        if isinstance(item, Message):
            item = {
                "namespace": item.session_id,
                "user_id": item.user_id,
                "key": str(item.id or ""),
                "content": item.content,
            }
        data = sh.require_mapping(item)
        namespace, user_id = self._scope(data.get("namespace", data.get("session_id")), data.get("user_id"))
        key = sh.require_name(data.get("key"), "key")
        field = "content" if "content" in data else "value"
        if field not in data:
            raise ValidationError("an item needs 'content' (or 'value')", field="content")
        value = data[field]
        if isinstance(value, str) and len(value) > self.config.max_message_chars:
            raise ValidationError(
                f"'{field}' is {len(value)} characters; the limit is {self.config.max_message_chars}", field=field
            )
        sh.dumps(value, field)
        ttl = sh.parse_ttl(data.get("ttl_seconds"), "ttl_seconds")
        now = sh.iso(utcnow())
        return {
            "namespace": namespace,
            "user_id": user_id,
            "key": key,
            "content": value,
            "importance": sh.parse_importance(data.get("importance")),
            "metadata": sh.parse_metadata(data.get("metadata")),
            "ttl_seconds": self.config.ttl_seconds if ttl is None else ttl,
            "created_at": now,
        }

    async def store(self, item: Mapping[str, Any] | Message) -> StoredRef:
        """Put an item; when the namespace is full, evict by ``eviction_policy`` first (atomically)."""
        record = self.validate(item)
        await self._ensure()
        keys = self._keys(record["user_id"], record["namespace"])
        args = [
            record["key"],
            sh.dumps(record),
            record["importance"],
            record["ttl_seconds"] * 1000,
            self.config.capacity_limit,
            self.config.eviction_policy,
            self._namespace_ttl(record["ttl_seconds"]),
        ]
        existed, evicted, refused = await self._put(keys=keys, args=args)
        if evicted:
            self.log.info("working_evicted", namespace=record["namespace"], keys=[_s(k) for k in evicted])
        return StoredRef(
            id=record["key"], memory_type=self.memory_type, durable=False, created=not existed and not refused
        )

    async def add_reasoning_step(
        self, namespace: str, step_type: str, content: str, *, user_id: str = "default"
    ) -> int:
        """Append a thought/action/observation/result to the namespace's reasoning chain; return its number."""
        if not self.config.enable_reasoning_chain:
            raise ValidationError("the reasoning chain is disabled (enable_reasoning_chain=False)", field="step_type")
        if step_type not in STEP_TYPES:
            raise ValidationError(
                f"'step_type' must be one of {', '.join(STEP_TYPES)}; got {step_type!r}", field="step_type"
            )
        if not isinstance(content, str) or not content.strip():
            raise ValidationError("'content' must be a non-empty string", field="content")
        if len(content) > self.config.max_message_chars:
            raise ValidationError(f"'content' exceeds {self.config.max_message_chars} characters", field="content")
        namespace, user_id = self._scope(namespace, user_id)
        await self._ensure()
        step = sh.dumps(
            {"type": step_type, "content": sh.check_text(content, "content"), "created_at": sh.iso(utcnow())}
        )
        return int(await self._step(keys=self._keys(user_id, namespace), args=[step, MAX_CHAIN, self._namespace_ttl()]))

    # reads -----------------------------------------------------------------------------------
    async def get(self, namespace: str, key: str, *, user_id: str = "default") -> dict[str, Any] | None:
        """One item (None when absent or expired); counts as an access for LRU."""
        namespace, user_id = self._scope(namespace, user_id)
        await self._ensure()
        raw = await self._get(keys=self._keys(user_id, namespace), args=[sh.require_name(key, "key"), "1"])
        return sh.loads(raw) if raw is not None else None

    async def _read(
        self, namespace: str, user_id: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], int]:
        """Items (insertion order), reasoning chain, meta counters and the namespace's remaining TTL."""
        await self._ensure()
        keys = self._keys(user_id, namespace)
        try:  # auto-pipelined with the other tiers' reads of the turn
            (reply,) = await self.stores.redis_batch.execute(("EVALSHA", self._snapshot.sha, len(keys), *keys))
        except NoScriptError:  # first use on this server (or after SCRIPT FLUSH): load it
            reply = await self._snapshot(keys=keys, args=[])
        raw_items, order, chain, meta, ttl = reply
        by_key = _pairs(raw_items)
        items = [sh.loads(by_key[_s(k)]) for k in order if _s(k) in by_key]
        return items, [sh.loads(s) for s in chain], _pairs(meta), int(ttl)

    async def items(self, namespace: str, *, user_id: str = "default") -> list[dict[str, Any]]:
        """Every live item of a namespace, in insertion order (not counted as accesses)."""
        namespace, user_id = self._scope(namespace, user_id)
        return (await self._read(namespace, user_id))[0]

    async def get_reasoning_chain(self, namespace: str, *, user_id: str = "default") -> list[dict[str, Any]]:
        """The reasoning chain in order: ``{"step", "type", "content", "created_at"}``."""
        namespace, user_id = self._scope(namespace, user_id)
        return (await self._read(namespace, user_id))[1]

    async def get_namespace_stats(self, namespace: str, *, user_id: str = "default") -> dict[str, Any]:
        """Count, capacity, evictions so far, average importance, reasoning steps and TTL of a namespace."""
        namespace, user_id = self._scope(namespace, user_id)
        items, chain, meta, ttl = await self._read(namespace, user_id)
        importances = [float(i["importance"]) for i in items]
        return {
            "namespace": namespace,
            "user_id": user_id,
            "count": len(items),
            "capacity": self.config.capacity_limit,
            "eviction_policy": self.config.eviction_policy,
            "evictions": int(meta.get("evictions", 0)),
            "expired": int(meta.get("expired", 0)),
            "avg_importance": round(sum(importances) / len(importances), 6) if importances else 0.0,
            "reasoning_steps": len(chain),
            "ttl_seconds": self.config.ttl_seconds,
            "ttl_remaining": ttl if ttl >= 0 else None,
        }

    async def get_context(
        self, query: Mapping[str, Any] | ContextRequest | None = None, *, max_tokens: int | None = None
    ) -> MemoryContext:
        """Items ranked by importance (+ recency) and the reasoning chain in order, within ``max_tokens``."""
        watch = Stopwatch()
        req = sh.context_request(query)
        namespace, user_id = self._scope(req.namespace or req.session_id, req.user_id)
        items, chain, _, _ = await self._read(namespace, user_id)
        n = len(items)
        candidates = [
            {
                "section": "working_memory",
                "kind": "item",
                "id": it["key"],
                "key": it["key"],
                "content": f"{it['key']}: {sh.render_value(it['content'])}",
                "importance": it["importance"],
                "score": round(0.8 * float(it["importance"]) + 0.2 * (i + 1) / n, 6),
                "created_at": it["created_at"],
            }
            for i, it in enumerate(items)
        ]
        candidates += [
            {
                "section": "working_memory",
                "kind": "reasoning_step",
                "id": f"step:{s['step']}",
                "step": s["step"],
                "content": f"[{s['type']}] {s['content']}",
                "score": round(0.5 + 0.5 * (i + 1) / len(chain), 6),
                "created_at": s["created_at"],
            }
            for i, s in enumerate(chain)
        ]
        candidates.sort(key=lambda c: c["score"], reverse=True)

        def render(kept: list[int]) -> str:
            chosen = [candidates[i] for i in sorted(kept)]
            facts = [c for c in chosen if c["kind"] == "item"]
            steps = sorted((c for c in chosen if c["kind"] == "reasoning_step"), key=lambda c: c["step"])
            parts = [f"Working memory ({namespace}):", *(f"- {c['content']}" for c in facts)]
            if steps:
                parts += ["Reasoning chain:", *(f"{c['step']}. {c['content']}" for c in steps)]
            return "\n".join(parts) if chosen else ""

        budget = max_tokens if max_tokens is not None else req.max_total_tokens or self.config.max_total_tokens
        kept = sh.fit_ranked([c["content"] for c in candidates], budget, self.tokenizer, render)
        text = render(kept)
        chosen = [candidates[i] for i in sorted(kept)]
        kept_keys = {c["key"] for c in chosen if c["kind"] == "item"}
        kept_steps = {c["step"] for c in chosen if c["kind"] == "reasoning_step"}
        return MemoryContext(
            memory_type=self.memory_type,
            items=chosen,
            text=text,
            token_count=self.tokenizer.count(text),
            latency_ms=round(watch.ms, 3),
            truncated=len(kept) < len(candidates),
            extra={
                "namespace": namespace,
                "items": [it for it in items if it["key"] in kept_keys],
                "reasoning_chain": [s for s in chain if s["step"] in kept_steps],
            },
        )

    # deletes, health -------------------------------------------------------------------------
    async def delete(self, namespace: str, key: str, *, user_id: str = "default") -> bool:
        """Remove one item; True when it existed."""
        namespace, user_id = self._scope(namespace, user_id)
        await self._ensure()
        return bool(await self._delete(keys=self._keys(user_id, namespace), args=[sh.require_name(key, "key")]))

    async def clear(
        self, *, session_id: str | None = None, user_id: str | None = None, namespace: str | None = None
    ) -> int:
        """Drop a namespace (or session), or with only ``user_id`` all of a user's namespaces; return items removed."""
        stores = await self._ensure()
        scope = namespace if namespace is not None else session_id
        if scope is None and user_id is None:
            raise ValidationError("clear needs namespace (or session_id) or user_id", field="namespace")
        user = sh.require_name(user_id, "user_id", default="default")
        if scope is not None:
            keys = self._keys(user, sh.require_name(scope, "namespace"))
            removed = int(await stores.redis.hlen(keys[0]))
            await stores.redis.unlink(*keys)
            return removed
        removed = 0
        async for key in stores.redis.scan_iter(match=stores.keys.pattern(user, None, "working", "items"), count=500):
            removed += int(await stores.redis.hlen(key))
        await sh.delete_pattern(stores, stores.keys.pattern(user, None, "working"))
        return removed

    async def _health_details(self) -> dict[str, Any]:
        return {
            "eviction_policy": self.config.eviction_policy,
            "capacity_limit": self.config.capacity_limit,
            "reasoning_chain": self.config.enable_reasoning_chain,
        }


__all__ = ["STEP_TYPES", "WorkingMemory"]
