"""Fresh databases on the test PostgreSQL server, for tests that need an empty schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

PLAIN_PG_DSN = os.environ.get("MEMORY_TEST_PLAIN_PG_DSN") or "postgresql://postgres@127.0.0.1:5432/test"


def with_dbname(dsn: str, dbname: str) -> str:
    """``dsn`` pointing at another database of the same server."""
    return make_conninfo(dsn, dbname=dbname)


def dbname_of(dsn: str) -> str:
    """The database name in ``dsn``."""
    return str(conninfo_to_dict(dsn).get("dbname") or "")


@asynccontextmanager
async def fresh_database(dsn: str, prefix: str = "mi_test") -> AsyncIterator[str]:
    """CREATE DATABASE on the server of ``dsn``; yield its DSN; DROP it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_dbname(dsn, name)
    finally:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
