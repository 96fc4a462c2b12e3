"""Helpers shared by the buffer, working-memory and key-value tiers.

One place for: strict JSON, the Redis value codec (flag byte + optional zlib), field validation
that names the field, token-budget fitting, PostgreSQL access with error translation, and Redis
key sweeps. Tiers keep only their own logic.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis.exceptions as redis_exc
from psycopg_pool import PoolTimeout

from .._json import loads as fast_loads
from ..errors import BackendUnavailable, ValidationError
from ..stores import Stores
from ..tokens import Tokenizer
from ..types import ContextRequest

#: Errors meaning "Redis is unreachable" (not script or command bugs, which must surface).
REDIS_DOWN: tuple[type[BaseException], ...] = (redis_exc.ConnectionError, redis_exc.TimeoutError, OSError)

MAX_NAME_CHARS = 512

# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def dumps(value: Any, field: str = "value") -> str:
    """Strict compact JSON (no NaN/Infinity, no NUL characters); ValidationError naming ``field``."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"'{field}' is not JSON-serialisable: {exc}", field=field) from None
    if "\\u0000" in text:
        raise ValidationError(f"'{field}' contains a NUL character, which PostgreSQL cannot store", field=field)
    return text


def loads(raw: str | bytes) -> Any:
    """Parse JSON produced by :func:`dumps` (orjson when installed; same results as ``json.loads``)."""
    return fast_loads(raw)


# --------------------------------------------------------------------------------------------
# Redis value codec: one flag byte (kind | compressed bit), then the payload
# --------------------------------------------------------------------------------------------

KIND_JSON = 0x01
KIND_STR = 0x02
KIND_BYTES = 0x03
COMPRESSED = 0x80
_BYTES_TAG = "$bytes"


def encode_blob(value: Any, *, serialize_json: bool, threshold: int, field: str = "value") -> bytes:
    """Encode ``value`` for Redis; zlib-compress payloads longer than ``threshold`` bytes."""
    if serialize_json:
        kind, payload = KIND_JSON, dumps(value, field).encode()
    elif isinstance(value, bytes | bytearray):
        kind, payload = KIND_BYTES, bytes(value)
    elif isinstance(value, str):
        check_text(value, field)
        kind, payload = KIND_STR, value.encode()
    else:
        raise ValidationError(
            f"'{field}' must be str or bytes when serialize_json is off, got {type(value).__name__}", field=field
        )
    if len(payload) > threshold:
        packed = zlib.compress(payload, 6)
        if len(packed) < len(payload):
            return bytes([kind | COMPRESSED]) + packed
    return bytes([kind]) + payload


def decode_blob(raw: bytes | str) -> Any:
    """Decode a value written by :func:`encode_blob`."""
    data = raw.encode("latin-1") if isinstance(raw, str) else raw
    flag, payload = data[0], data[1:]
    if flag & COMPRESSED:
        payload = zlib.decompress(payload)
    kind = flag & ~COMPRESSED
    if kind == KIND_JSON:
        return loads(payload)
    if kind == KIND_STR:
        return payload.decode()
    if kind == KIND_BYTES:
        return payload
    raise ValueError(f"unknown value flag byte {flag:#04x}")


def to_pg_json(value: Any, *, serialize_json: bool, field: str = "value") -> str:
    """The JSON text stored in a jsonb column (bytes, allowed only without serialize_json, are tagged)."""
    if not serialize_json:
        if isinstance(value, bytes | bytearray):
            return dumps({_BYTES_TAG: base64.b64encode(bytes(value)).decode()}, field)
        if not isinstance(value, str):
            raise ValidationError(
                f"'{field}' must be str or bytes when serialize_json is off, got {type(value).__name__}", field=field
            )
    return dumps(value, field)


def from_pg_json(value: Any, *, serialize_json: bool) -> Any:
    """Inverse of :func:`to_pg_json` for a value psycopg loaded from jsonb."""
    if not serialize_json and isinstance(value, dict) and set(value) == {_BYTES_TAG}:
        return base64.b64decode(value[_BYTES_TAG])
    return value


def render_value(value: Any) -> str:
    """A value as prompt text: strings as-is, bytes as a size note, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def text(value: bytes | str | None) -> str | None:
    """A Redis reply as text (None stays None)."""
    return value.decode() if isinstance(value, bytes) else value


def check_text(value: str, field: str) -> str:
    """Reject NUL characters (PostgreSQL text cannot hold them)."""
    if "\x00" in value:
        raise ValidationError(f"'{field}' contains a NUL character, which PostgreSQL cannot store", field=field)
    return value


def require_name(value: Any, field: str, *, default: str | None = None) -> str:
    """A non-empty identifier string (key, namespace, user id) of at most 512 characters."""
    if value is None and default is not None:
        return default
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"'{field}' is required and must be a non-empty string", field=field)
    if len(value) > MAX_NAME_CHARS:
        raise ValidationError(f"'{field}' is {len(value)} characters; the limit is {MAX_NAME_CHARS}", field=field)
    return check_text(value, field)


def require_mapping(item: Any, what: str = "item") -> Mapping[str, Any]:
    """The item as a mapping, or ValidationError."""
    if not isinstance(item, Mapping):
        raise ValidationError(f"{what} must be a mapping, got {type(item).__name__}", field=what)
    return item


def parse_importance(value: Any, default: float = 0.5) -> float:
    """An importance score: a finite number in [0, 1]."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"'importance' must be a number between 0 and 1, got {value!r}", field="importance")
    if not 0.0 <= float(value) <= 1.0:
        raise ValidationError(f"'importance' must be between 0 and 1, got {value}", field="importance")
    return float(value)


def parse_ttl(value: Any, field: str, *, allow_zero: bool = True) -> int | None:
    """An optional TTL in whole seconds (None = not given)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        bound = ">= 0" if allow_zero else ">= 1"
        raise ValidationError(f"'{field}' must be an integer {bound} (seconds), got {value!r}", field=field)
    return value


def parse_metadata(value: Any) -> dict[str, Any]:
    """Optional JSON-serialisable metadata mapping."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError("'metadata' must be a mapping", field="metadata")
    dumps(dict(value), "metadata")
    return dict(value)


def context_request(query: Mapping[str, Any] | ContextRequest | str | None) -> ContextRequest:
    """The seed's dict (or a request) as a validated ContextRequest."""
    req = ContextRequest.from_any(query)
    require_name(req.user_id, "user_id")
    return req


def user_omitted(query: Mapping[str, Any] | ContextRequest | str | None) -> bool:
    """Whether a seed-style query left ``user_id`` out (the seed's ``get_context({"session_id": ...})``)."""
    return isinstance(query, Mapping) and not query.get("user_id")


# --------------------------------------------------------------------------------------------
# time
# --------------------------------------------------------------------------------------------


def as_utc(value: datetime) -> datetime:
    """Treat naive datetimes as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 text of a datetime (None stays None)."""
    return value.isoformat() if value is not None else None


def parse_iso(value: str | None) -> datetime | None:
    """Parse text written by :func:`iso`."""
    return datetime.fromisoformat(value) if value else None


# --------------------------------------------------------------------------------------------
# token budgets
# --------------------------------------------------------------------------------------------


def fit_tail(lines: Sequence[str], budget: int, tokenizer: Tokenizer) -> int:
    """How many trailing ``lines`` fit in ``budget`` tokens when joined by newlines (lines are never split)."""
    used = kept = 0
    for line in reversed(lines):
        cost = tokenizer.count(line) + (1 if kept else 0)
        if used + cost > budget:
            break
        used += cost
        kept += 1
    while kept and tokenizer.count("\n".join(lines[len(lines) - kept :])) > budget:
        kept -= 1
    return kept


def fit_ranked(
    texts: Sequence[str], budget: int, tokenizer: Tokenizer, render: Callable[[list[int]], str]
) -> list[int]:
    """Indices of ``texts`` (highest priority first) that fit ``budget`` once rendered; lower ones drop first."""
    used = tokenizer.count(render([]))
    kept: list[int] = []
    for i, text in enumerate(texts):
        cost = tokenizer.count(text) + 1
        if used + cost <= budget:
            kept.append(i)
            used += cost
    while kept and tokenizer.count(render(kept)) > budget:
        kept.pop()
    return kept


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@asynccontextmanager
async def pg_connection(stores: Stores, *, transaction: bool = False) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection (optionally inside one transaction); unreachable PostgreSQL -> BackendUnavailable."""
    try:
        async with stores.pg.connection() as conn:
            if transaction:
                async with conn.transaction():
                    yield conn
            else:
                yield conn
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise BackendUnavailable(f"PostgreSQL failed: {exc}", field="database_url") from exc


async def pg_fetch(stores: Stores, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one parameterised statement (autocommit) and return its rows."""
    async with pg_connection(stores) as conn:
        cur = await conn.execute(sql.encode(), params)
        return await cur.fetchall() if cur.description else []


async def pg_rowcount(stores: Stores, sql: str, params: Sequence[Any] = ()) -> int:
    """Run one parameterised statement (autocommit) and return the number of rows it touched."""
    async with pg_connection(stores) as conn:
        cur = await conn.execute(sql.encode(), params)
        return max(cur.rowcount, 0)


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


async def delete_pattern(stores: Stores, pattern: str) -> int:
    """UNLINK every key matching ``pattern`` (SCAN, never KEYS); return how many were removed."""
    removed = 0
    batch: list[Any] = []
    async for key in stores.redis.scan_iter(match=pattern, count=500):
        batch.append(key)
        if len(batch) >= 500:
            removed += await stores.redis.unlink(*batch)
            batch = []
    if batch:
        removed += await stores.redis.unlink(*batch)
    return removed


__all__ = [
    "REDIS_DOWN",
    "as_utc",
    "check_text",
    "context_request",
    "decode_blob",
    "delete_pattern",
    "dumps",
    "encode_blob",
    "fit_ranked",
    "fit_tail",
    "from_pg_json",
    "iso",
    "loads",
    "parse_importance",
    "parse_iso",
    "parse_metadata",
    "parse_ttl",
    "pg_connection",
    "pg_fetch",
    "pg_rowcount",
    "render_value",
    "require_mapping",
    "require_name",
    "text",
    "to_pg_json",
]
