"""Per-key token-bucket rate limiting in Redis: one Lua script, atomic, Redis 6.2 compatible.

The bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second using the Redis
server's clock (``TIME``), so every service replica shares one bucket per key and clock skew between
replicas does not matter. A request costs one token; with none left the caller gets 429 and a
``Retry-After`` of the seconds until a token is back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from ..stores.keys import KeyBuilder

log = structlog.get_logger("memory_implementations.service.ratelimit")

# KEYS[1] = bucket hash; ARGV = rate (tokens/s), burst, cost
TOKEN_BUCKET_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate / 1000.0)
local allowed = 0
local retry_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_ms = math.ceil((cost - tokens) * 1000.0 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000.0 / rate) + 1000)
return {allowed, tostring(tokens), retry_ms}
"""


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one bucket check."""

    allowed: bool
    remaining: float
    retry_after_seconds: int
    limit: int

    def headers(self) -> dict[str, str]:
        """Response headers describing the bucket (Retry-After only when refused)."""
        out = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(max(0, math.floor(self.remaining)))}
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after_seconds)
        return out


class RateLimiter:
    """A token bucket per caller, stored in Redis."""

    def __init__(self, redis: aioredis.Redis, keys: KeyBuilder, *, rate: float, burst: int) -> None:
        """Refill ``rate`` tokens/s up to ``burst``; buckets live under ``keys``' prefix."""
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.redis = redis
        self.keys = keys
        self.rate = rate
        self.burst = burst
        self._script = redis.register_script(TOKEN_BUCKET_LUA)

    def bucket_key(self, caller: str) -> str:
        """The Redis key of ``caller``'s bucket."""
        return self.keys.key("_service", "ratelimit", "ratelimit", caller)

    async def hit(self, caller: str, cost: int = 1) -> RateDecision:
        """Take ``cost`` tokens from ``caller``'s bucket (raises on Redis errors; callers decide to fail open)."""
        allowed, remaining, retry_ms = await self._script(
            keys=[self.bucket_key(caller)], args=[repr(float(self.rate)), self.burst, cost]
        )
        remaining_f = float(remaining.decode() if isinstance(remaining, bytes) else remaining)
        return RateDecision(
            allowed=bool(int(allowed)),
            remaining=remaining_f,
            retry_after_seconds=max(1, math.ceil(int(retry_ms) / 1000)),
            limit=self.burst,
        )


__all__ = ["TOKEN_BUCKET_LUA", "RateDecision", "RateLimiter"]
