"""API keys: generation, hashing, PostgreSQL storage (``memory_api_keys``), a short TTL cache, tenancy checks.

A key looks like ``mi_<prefix>_<secret>``: ``prefix`` (8 hex characters) is stored in clear to find
the row and to name the key in listings; the whole key is stored only as ``sha256:<hex>`` (or
``hmac-sha256:<hex>`` when a server pepper is configured) and compared in constant time. Keys carry
256 random bits, so a fast hash is the right tool (a slow password hash adds nothing but latency).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ..errors import BackendUnavailable, NotFound, ValidationError
from .errors import Forbidden, Unauthorized

KEY_SCHEME = "mi"
_COLUMNS = "id::text AS id, user_id, name, key_hash, prefix, users, is_admin, created_at, revoked_at"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One stored API key (never its secret)."""

    id: str
    prefix: str
    name: str
    users: tuple[str, ...]
    is_admin: bool
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    key_hash: str = field(default="", repr=False)

    @property
    def revoked(self) -> bool:
        """Whether the key has been revoked."""
        return self.revoked_at is not None

    def public_dict(self) -> dict[str, Any]:
        """The key's listing fields (no hash, no secret)."""
        return {
            "id": self.id,
            "prefix": self.prefix,
            "name": self.name,
            "users": list(self.users),
            "is_admin": self.is_admin,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API key (or the insecure development principal)."""

    key_id: str
    prefix: str
    users: frozenset[str]
    is_admin: bool
    insecure: bool = False

    def may_access(self, user_id: str) -> bool:
        """Whether this caller may read or write ``user_id``'s data."""
        return self.is_admin or user_id in self.users

    def require(self, user_id: str) -> str:
        """Return ``user_id`` when allowed, else raise Forbidden (403)."""
        if not self.may_access(user_id):
            raise Forbidden(f"this API key may not access user_id {user_id!r}", field="user_id")
        return user_id

    def resolve_user(self, user_id: str | None) -> str:
        """The tenant a request is about: the given ``user_id`` (checked) or the key's only user."""
        if user_id is not None and user_id != "":
            return self.require(user_id)
        if self.insecure:
            return "default"
        if len(self.users) == 1:
            return next(iter(self.users))
        raise ValidationError(
            "'user_id' is required: this API key is bound to "
            + ("every user (admin)" if self.is_admin else f"{len(self.users)} users"),
            field="user_id",
        )

    @property
    def label(self) -> str:
        """A non-secret name for logs and rate-limit keys."""
        return self.prefix

    @classmethod
    def from_key(cls, key: ApiKey) -> Principal:
        """The principal of a stored key."""
        return cls(key_id=key.id, prefix=key.prefix, users=frozenset(key.users), is_admin=key.is_admin)


INSECURE_PRINCIPAL = Principal(
    key_id="insecure-dev", prefix="insecure-dev", users=frozenset(), is_admin=True, insecure=True
)


def generate_key() -> tuple[str, str]:
    """A new key and its prefix: ``(mi_<prefix>_<secret>, prefix)``."""
    prefix = secrets.token_hex(4)
    return f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def parse_key(presented: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or len(parts[1]) != 8 or len(parts[2]) < 16:
        return None
    if any(c not in "0123456789abcdef" for c in parts[1]):
        return None
    return parts[1]


def hash_key(key: str, pepper: str | None = None) -> str:
    """The stored form of ``key``: ``hmac-sha256:<hex>`` with a pepper, else ``sha256:<hex>``."""
    if pepper:
        return "hmac-sha256:" + hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def verify_key(key: str, stored_hash: str, pepper: str | None = None) -> bool:
    """Constant-time check of ``key`` against a stored hash of either scheme."""
    scheme = stored_hash.split(":", 1)[0]
    if scheme == "hmac-sha256":
        if not pepper:
            return False
        candidate = hash_key(key, pepper)
    elif scheme == "sha256":
        candidate = hash_key(key, None)
    else:
        return False
    return hmac.compare_digest(candidate.encode(), stored_hash.encode())


def _row_to_key(row: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=str(row["id"]),
        prefix=row["prefix"],
        name=row["name"],
        users=tuple(row["users"] or ()),
        is_admin=bool(row["is_admin"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        key_hash=row["key_hash"],
    )


def _clean_users(users: Iterable[str]) -> list[str]:
    out: list[str] = []
    for user in users:
        if not isinstance(user, str) or not user.strip():
            raise ValidationError("every --user must be a non-empty string", field="users")
        if user not in out:
            out.append(user)
    return out


def key_users(users: Iterable[str], *, admin: bool = False) -> list[str]:
    """The de-duplicated users of a new key; ValidationError (field ``users``) when there are none and no admin."""
    clean = _clean_users(users)
    if not clean and not admin:
        raise ValidationError("a key needs at least one --user, or --admin", field="users")
    return clean


class KeyStore:
    """API keys in PostgreSQL's ``memory_api_keys`` (through a psycopg async pool)."""

    def __init__(self, pool: AsyncConnectionPool, *, pepper: str | None = None) -> None:
        """Use ``pool`` (the orchestrator's); ``pepper`` must match the one keys were created with."""
        self.pool = pool
        self.pepper = pepper

    async def create(self, users: Sequence[str], *, admin: bool = False, name: str = "") -> tuple[str, ApiKey]:
        """Create a key for ``users`` (or an admin key); return ``(secret_key, stored_record)``."""
        clean = key_users(users, admin=admin)
        key, prefix = generate_key()
        try:
            async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    f"INSERT INTO memory_api_keys (user_id, name, key_hash, prefix, users, is_admin) "
                    f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                    (clean[0] if clean else "*", name, hash_key(key, self.pepper), prefix, clean, admin),
                )
                row = await cur.fetchone()
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise BackendUnavailable(f"cannot store the API key: {exc}", field="database_url") from exc
        assert row is not None
        return key, _row_to_key(row)

    async def list_keys(self, *, include_revoked: bool = True) -> list[ApiKey]:
        """Every key, newest first (secrets are never stored, so never shown)."""
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(f"SELECT {_COLUMNS} FROM memory_api_keys {where} ORDER BY created_at DESC, id")
            return [_row_to_key(r) for r in await cur.fetchall()]

    async def revoke(self, ident: str) -> ApiKey:
        """Revoke the key whose id or prefix is ``ident``; raise NotFound when none matches."""
        ident = ident.strip()
        if ident.startswith(f"{KEY_SCHEME}_"):
            ident = parse_key(ident) or ident
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"UPDATE memory_api_keys SET revoked_at = coalesce(revoked_at, now()) "
                f"WHERE id::text = %s OR prefix = %s RETURNING {_COLUMNS}",
                (ident, ident),
            )
            rows = await cur.fetchall()
        if not rows:
            raise NotFound(f"no API key has id or prefix {ident!r}", field="key")
        return _row_to_key(rows[0])

    async def lookup(self, presented: str) -> ApiKey | None:
        """The stored key matching ``presented`` (revoked ones included), or None."""
        prefix = parse_key(presented)
        if prefix is None:
            return None
        try:
            async with self.pool.connection(timeout=5) as conn, conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(f"SELECT {_COLUMNS} FROM memory_api_keys WHERE prefix = %s", (prefix,))
                rows = await cur.fetchall()
        except Exception as exc:
            raise BackendUnavailable(f"cannot check the API key: {type(exc).__name__}", field="database_url") from exc
        match: ApiKey | None = None
        for row in rows:  # compare every candidate so timing does not depend on which one matches
            if verify_key(presented, row["key_hash"], self.pepper):
                match = _row_to_key(row)
        return match


class KeyCache:
    """A bounded in-process TTL cache of key lookups (keyed by the key's SHA-256, never the key itself)."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        """Cache lookups for ``ttl_seconds`` (0 disables caching)."""
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, ApiKey | None]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _digest(presented: str) -> str:
        return hashlib.sha256(presented.encode()).hexdigest()

    def get(self, presented: str) -> tuple[bool, ApiKey | None]:
        """``(hit, key)`` for ``presented``; expired entries are misses."""
        if self.ttl <= 0:
            return False, None
        digest = self._digest(presented)
        now = time.monotonic()
        with self._lock:
            entry = self._data.get(digest)
            if entry is None:
                return False, None
            if entry[0] <= now:
                self._data.pop(digest, None)
                return False, None
            return True, entry[1]

    def put(self, presented: str, key: ApiKey | None) -> None:
        """Remember the lookup result (a miss too, so floods of bad keys stay off PostgreSQL)."""
        if self.ttl <= 0:
            return
        digest = self._digest(presented)
        with self._lock:
            self._data[digest] = (time.monotonic() + self.ttl, key)
            self._data.move_to_end(digest)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        """Forget every cached lookup."""
        with self._lock:
            self._data.clear()


class Authenticator:
    """Turns a presented key into a Principal: cache first, then PostgreSQL."""

    def __init__(self, store: KeyStore, cache: KeyCache) -> None:
        """Authenticate against ``store`` through ``cache``."""
        self.store = store
        self.cache = cache

    async def authenticate(self, presented: str | None) -> Principal:
        """The principal for ``presented``; raise Unauthorized when it is missing, unknown or revoked."""
        if not presented:
            raise Unauthorized(
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'", field="authorization"
            )
        if parse_key(presented) is None:
            raise Unauthorized("malformed API key (expected mi_<prefix>_<secret>)", field="authorization")
        hit, key = self.cache.get(presented)
        if not hit:
            key = await self.store.lookup(presented)
            self.cache.put(presented, key)
        if key is None:
            raise Unauthorized("unknown API key", field="authorization")
        if key.revoked:
            raise Unauthorized(f"API key {key.prefix} has been revoked", field="authorization")
        return Principal.from_key(key)


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key``."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthorized("the Authorization header must be 'Bearer <key>'", field="authorization")
    return None


__all__ = [
    "INSECURE_PRINCIPAL",
    "ApiKey",
    "Authenticator",
    "KeyCache",
    "KeyStore",
    "Principal",
    "generate_key",
    "hash_key",
    "key_users",
    "parse_key",
    "presented_key",
    "verify_key",
]
