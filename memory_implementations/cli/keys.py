"""``memory-orchestrator keys``: create, list and revoke the HTTP service's API keys."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from ..config import MemoryConfig
from ..errors import BackendUnavailable, ValidationError
from ..service.auth import ApiKey, KeyStore, key_users
from ..service.settings import ServiceSettings
from ..stores.migrations import migrate
from ._common import EXIT_OK, add_common_options, add_dsn_option, load_config, run_async

EPILOG = """examples:
  memory-orchestrator keys create --user alice
      prints the key ONCE (mi_<prefix>_<secret>); only its hash is stored
  memory-orchestrator keys create --user alice --user bob --name "support bot"
  memory-orchestrator keys create --admin --name ops        an admin key may touch every user
  memory-orchestrator keys list                             ids, prefixes, users; never secrets
  memory-orchestrator keys list --json
  memory-orchestrator keys revoke 3f9a1c2e                  by prefix (or by id)

Keys live in PostgreSQL (memory_api_keys; DATABASE_URL, --dsn, or the embedded server). A running
service notices a revocation within its key cache TTL (MEMORY_SERVICE_KEY_CACHE_TTL_SECONDS, 30 s).
With MEMORY_SERVICE_KEY_PEPPER set, keys are stored as HMAC-SHA256 under that secret: set the same
value for `keys create` and `serve`."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``keys`` subcommand and its ``create``/``list``/``revoke`` actions."""
    parser = subparsers.add_parser(
        "keys",
        help="create, list and revoke API keys of the HTTP service",
        description="Manage the HTTP service's API keys (stored hashed in PostgreSQL).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(title="actions", dest="keys_action", metavar="<action>", required=True)

    create = actions.add_parser(
        "create",
        help="create a key bound to one or more users (or --admin)",
        epilog="examples:\n  memory-orchestrator keys create --user alice\n"
        "  memory-orchestrator keys create --admin --name ops --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument(
        "--user", action="append", default=[], metavar="USER_ID", help="a user the key may access (repeat)"
    )
    create.add_argument("--admin", action="store_true", help="the key may access every user")
    create.add_argument("--name", default="", help="a label for listings")
    _common(create)

    listing = actions.add_parser(
        "list",
        help="list keys (never shows secrets)",
        epilog="examples:\n  memory-orchestrator keys list\n  memory-orchestrator keys list --active --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("--active", action="store_true", help="hide revoked keys")
    _common(listing)

    revoke = actions.add_parser(
        "revoke",
        help="revoke a key by id or prefix",
        epilog="examples:\n  memory-orchestrator keys revoke 3f9a1c2e\n"
        "  memory-orchestrator keys revoke 0b6c9a8e-...-4f1d   (the id from `keys list`)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    revoke.add_argument("ident", metavar="ID_OR_PREFIX", help="the key's id or its 8-character prefix")
    _common(revoke)
    parser.set_defaults(handler=run)


def _common(parser: argparse.ArgumentParser) -> None:
    add_dsn_option(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_common_options(parser)


async def resolve_dsn(config: MemoryConfig, dsn: str | None) -> str:
    """The DSN to use: ``--dsn``, the configured database_url, else the embedded server's."""
    from .migrate import resolve_target

    return (await resolve_target(config, dsn)).dsn


async def ensure_schema(config: MemoryConfig, dsn: str) -> None:
    """Create the schema when ``memory_api_keys`` is missing, with the dimension the tiers will use."""
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            cur = await conn.execute("SELECT to_regclass('public.memory_api_keys') IS NOT NULL")
            row = await cur.fetchone()
            if row and row[0]:
                return
    except psycopg.Error as exc:
        raise BackendUnavailable(f"cannot connect to PostgreSQL: {exc}", field="database_url") from exc
    # keys never embed: keep an existing memory_vectors; a new one gets the configured embedder's dimension
    await migrate(dsn, embedding_dim=None, config=config)


async def _with_store(config: MemoryConfig, dsn_arg: str | None) -> tuple[AsyncConnectionPool, KeyStore]:
    dsn = await resolve_dsn(config, dsn_arg)
    await ensure_schema(config, dsn)
    pool = AsyncConnectionPool(dsn, min_size=1, max_size=2, open=False, kwargs={"autocommit": True})
    try:
        await pool.open(wait=True, timeout=15)
    except Exception as exc:
        raise BackendUnavailable(f"cannot open a PostgreSQL connection: {exc}", field="database_url") from exc
    return pool, KeyStore(pool, pepper=ServiceSettings.load().key_pepper)


async def create_key(
    config: MemoryConfig, users: Sequence[str], *, admin: bool = False, name: str = "", dsn: str | None = None
) -> tuple[str, ApiKey]:
    """Create a key; return ``(secret, record)``. The users are checked before any database is opened."""
    key_users(users, admin=admin)
    pool, store = await _with_store(config, dsn)
    try:
        return await store.create(users, admin=admin, name=name)
    finally:
        await pool.close()


async def list_keys(config: MemoryConfig, *, active_only: bool = False, dsn: str | None = None) -> list[ApiKey]:
    """Every key (no secrets)."""
    pool, store = await _with_store(config, dsn)
    try:
        return await store.list_keys(include_revoked=not active_only)
    finally:
        await pool.close()


async def revoke_key(config: MemoryConfig, ident: str, *, dsn: str | None = None) -> ApiKey:
    """Revoke a key by id or prefix (an empty one is refused before any database is opened)."""
    if not ident.strip():
        raise ValidationError("give the key's id or its 8-character prefix", field="ident")
    pool, store = await _with_store(config, dsn)
    try:
        return await store.revoke(ident)
    finally:
        await pool.close()


def _table(keys: list[ApiKey]) -> str:
    if not keys:
        return "no API keys"
    rows = [("PREFIX", "ID", "NAME", "USERS", "ADMIN", "CREATED", "REVOKED")]
    for k in keys:
        rows.append(
            (
                k.prefix,
                k.id,
                k.name or "-",
                ",".join(k.users) or "-",
                "yes" if k.is_admin else "no",
                k.created_at.strftime("%Y-%m-%d %H:%M") if k.created_at else "-",
                k.revoked_at.strftime("%Y-%m-%d %H:%M") if k.revoked_at else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def run(args: argparse.Namespace) -> int:
    """Handle ``memory-orchestrator keys <action>``."""
    config = load_config(args)
    if args.keys_action == "create":
        secret, record = run_async(create_key(config, args.user, admin=args.admin, name=args.name, dsn=args.dsn))
        if args.json:
            print(json.dumps({**record.public_dict(), "key": secret}))
        else:
            scope = "every user (admin)" if record.is_admin else ", ".join(record.users)
            print(f"created API key {record.prefix} (id {record.id}) for {scope}")
            print(secret)
            print("store it now: it is shown only once (only its hash is kept)")
        return EXIT_OK
    if args.keys_action == "list":
        keys = run_async(list_keys(config, active_only=args.active, dsn=args.dsn))
        out: Any = [k.public_dict() for k in keys]
        print(json.dumps(out) if args.json else _table(keys))
        return EXIT_OK
    record = run_async(revoke_key(config, args.ident, dsn=args.dsn))
    if args.json:
        print(json.dumps(record.public_dict()))
    else:
        print(
            f"revoked API key {record.prefix} (id {record.id}); running services stop accepting it within "
            f"their key cache TTL"
        )
    return EXIT_OK


__all__ = ["create_key", "ensure_schema", "list_keys", "register", "revoke_key", "run"]
