"""Row Level Security proven with real roles: tenants cannot see or touch each other's rows.

Rows are inserted as the table owner (which bypasses RLS), then each check runs in a transaction
that is rolled back: ``SET LOCAL ROLE authenticated`` plus Supabase-style JWT claims, exactly as
PostgREST does it on Supabase.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from pg_helpers import fresh_database
from psycopg import sql

from memory_implementations.stores.migrations import migrate

DIM = 3

# table -> INSERT of one row; params: user (tenant id), tag (unique text), entity (an entity id of that tenant)
INSERTS: dict[str, str] = {
    "memory_messages": (
        "INSERT INTO memory_messages (user_id, session_id, role, content) VALUES (%(user)s, 's', 'user', %(tag)s)"
    ),
    "memory_summaries": (
        "INSERT INTO memory_summaries (user_id, session_id, version, summary, covers_to_id) "
        "VALUES (%(user)s, %(tag)s, 1, %(tag)s, 1)"
    ),
    "memory_vectors": (
        "INSERT INTO memory_vectors (user_id, content, content_hash, embedding) "
        "VALUES (%(user)s, %(tag)s, md5(%(tag)s), '[1,0,0]')"
    ),
    "memory_kv": "INSERT INTO memory_kv (user_id, namespace, key, value) VALUES (%(user)s, 'ns', %(tag)s, '1')",
    "memory_kv_history": (
        "INSERT INTO memory_kv_history (user_id, namespace, key, value, version, valid_from) "
        "VALUES (%(user)s, 'ns', %(tag)s, '1', 1, now())"
    ),
    "memory_entities": (
        "INSERT INTO memory_entities (user_id, name, normalized_name, entity_type) "
        "VALUES (%(user)s, %(tag)s, %(tag)s, 'person')"
    ),
    "memory_entity_aliases": (
        "INSERT INTO memory_entity_aliases (user_id, entity_id, alias, normalized_alias) "
        "VALUES (%(user)s, %(entity)s, %(tag)s, %(tag)s)"
    ),
    "memory_entity_attribute_history": (
        "INSERT INTO memory_entity_attribute_history (user_id, entity_id, attribute, value, valid_from) "
        "VALUES (%(user)s, %(entity)s, %(tag)s, '1', now())"
    ),
    "memory_entity_relationships": (
        "INSERT INTO memory_entity_relationships (user_id, source_entity_id, target_entity_id, relation_type) "
        "VALUES (%(user)s, %(entity)s, %(entity)s, %(tag)s)"
    ),
}
TENANT_TABLES = tuple(INSERTS)


@dataclass
class World:
    """A migrated database with two rows of each of two tenants in every tenant table."""

    dsn: str
    a: str
    b: str
    entities: dict[str, str]

    def params(self, user: str) -> dict[str, Any]:
        """Parameters of an INSERTS statement for one new row of ``user``."""
        return {"user": user, "tag": f"t-{uuid.uuid4().hex}", "entity": self.entities[user]}


@pytest.fixture(scope="module")
async def world(pg_dsn: str) -> AsyncIterator[World]:
    """A fresh migrated database; as the owner, two rows per tenant table for each of users A and B."""
    async with fresh_database(pg_dsn, prefix="mi_rls") as dsn:
        await migrate(dsn, embedding_dim=DIM)
        a, b = str(uuid.uuid4()), str(uuid.uuid4())
        world = World(dsn, a, b, {})
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for user in (a, b):
                cur = await conn.execute(
                    "INSERT INTO memory_entities (user_id, name, normalized_name, entity_type) "
                    "VALUES (%s, 'anchor', 'anchor', 'concept') RETURNING id",
                    (user,),
                )
                row = await cur.fetchone()
                assert row is not None
                world.entities[user] = str(row[0])
            for table, statement in INSERTS.items():
                for user in (a, b):
                    for _ in range(1 if table == "memory_entities" else 2):
                        await conn.execute(statement, world.params(user))
            await conn.execute("INSERT INTO memory_api_keys (key_hash, prefix) VALUES ('hash-1', 'mk_')")
        yield world


@asynccontextmanager
async def acting_as(dsn: str, role: str, sub: str | None = None) -> AsyncIterator[psycopg.AsyncConnection]:
    """A connection inside a rolled-back transaction running as ``role`` with JWT ``sub``."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.transaction(force_rollback=True):
            await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            claims = {"role": role} if sub is None else {"sub": sub, "role": role}
            await conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
            yield conn


async def users_visible(conn: psycopg.AsyncConnection, table: str) -> list[str]:
    cur = await conn.execute(sql.SQL("SELECT user_id FROM {}").format(sql.Identifier(table)))
    return [row[0] for row in await cur.fetchall()]


async def test_role_setup_is_real(world: World) -> None:
    async with acting_as(world.dsn, "authenticated", world.a) as conn:
        cur = await conn.execute("SELECT current_user, auth.uid(), auth.role()")
        row = await cur.fetchone()
    assert row is not None
    assert (row[0], str(row[1]), row[2]) == ("authenticated", world.a, "authenticated")
    async with await psycopg.AsyncConnection.connect(world.dsn) as conn:
        cur = await conn.execute(
            "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles "
            "WHERE rolname IN ('anon', 'authenticated', 'service_role') ORDER BY rolname"
        )
        roles = await cur.fetchall()
    assert roles == [("anon", False, False), ("authenticated", False, False), ("service_role", False, True)]


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_select_sees_only_own_rows(world: World, table: str) -> None:
    async with acting_as(world.dsn, "authenticated", world.a) as conn:
        seen = await users_visible(conn, table)
    assert seen == [world.a, world.a]
    async with acting_as(world.dsn, "authenticated", world.b) as conn:
        assert await users_visible(conn, table) == [world.b, world.b]


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_update_and_delete_of_other_tenant_affect_nothing(world: World, table: str) -> None:
    ident = sql.Identifier(table)
    async with acting_as(world.dsn, "authenticated", world.a) as conn:
        cur = await conn.execute(
            sql.SQL("UPDATE {} SET user_id = user_id WHERE user_id = %s").format(ident), (world.b,)
        )
        assert cur.rowcount == 0
        cur = await conn.execute(sql.SQL("DELETE FROM {} WHERE user_id = %s").format(ident), (world.b,))
        assert cur.rowcount == 0
        # the same statements do reach A's own rows, so the zeros above are RLS, not a bad WHERE
        cur = await conn.execute(
            sql.SQL("UPDATE {} SET user_id = user_id WHERE user_id = %s").format(ident), (world.a,)
        )
        assert cur.rowcount == 2
    async with await psycopg.AsyncConnection.connect(world.dsn) as owner:
        cur = await owner.execute(sql.SQL("SELECT count(*) FROM {} WHERE user_id = %s").format(ident), (world.b,))
        row = await cur.fetchone()
    assert row == (2,)


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_insert_for_other_tenant_is_an_rls_violation(world: World, table: str) -> None:
    async with acting_as(world.dsn, "authenticated", world.a) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            await conn.execute(INSERTS[table], world.params(world.b))
    async with acting_as(world.dsn, "authenticated", world.a) as conn:
        # and moving one's own row to the other tenant fails the WITH CHECK too
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            await conn.execute(
                sql.SQL("UPDATE {} SET user_id = %s WHERE user_id = %s").format(sql.Identifier(table)),
                (world.b, world.a),
            )
    async with acting_as(world.dsn, "authenticated", world.a) as conn:
        # while inserting for oneself works
        await conn.execute(INSERTS[table], world.params(world.a))
        assert (await users_visible(conn, table)).count(world.a) == 3


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_service_role_sees_every_tenant(world: World, table: str) -> None:
    async with acting_as(world.dsn, "service_role") as conn:
        seen = await users_visible(conn, table)
    assert sorted(seen) == sorted([world.a, world.a, world.b, world.b])


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_anon_sees_nothing_and_cannot_write(world: World, table: str) -> None:
    async with acting_as(world.dsn, "anon") as conn:
        assert await users_visible(conn, table) == []
        cur = await conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        assert cur.rowcount == 0
    async with acting_as(world.dsn, "anon") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            await conn.execute(INSERTS[table], world.params(world.a))


async def test_api_keys_are_service_role_only(world: World) -> None:
    for role, sub in (("authenticated", world.a), ("anon", None)):
        async with acting_as(world.dsn, role, sub) as conn:
            cur = await conn.execute("SELECT count(*) FROM memory_api_keys")
            assert await cur.fetchone() == (0,)
    async with acting_as(world.dsn, "service_role") as conn:
        cur = await conn.execute("SELECT count(*) FROM memory_api_keys")
        assert await cur.fetchone() == (1,)


async def _match(conn: psycopg.AsyncConnection, p_user_id: str | None) -> list[str]:
    cur = await conn.execute(
        "SELECT user_id FROM match_memories('[1,0,0]'::vector, -1.0, 100, '{}'::jsonb, %s)", (p_user_id,)
    )
    return [row[0] for row in await cur.fetchall()]


async def test_match_memories_respects_rls_even_without_user_filter(world: World) -> None:
    async with acting_as(world.dsn, "authenticated", world.a) as conn:
        assert await _match(conn, None) == [world.a, world.a]
        assert await _match(conn, world.b) == []
        assert await _match(conn, world.a) == [world.a, world.a]
    async with acting_as(world.dsn, "anon") as conn:
        assert await _match(conn, None) == []
    async with acting_as(world.dsn, "service_role") as conn:
        assert sorted(await _match(conn, None)) == sorted([world.a, world.a, world.b, world.b])


async def test_authenticated_without_a_sub_sees_nothing(world: World) -> None:
    async with acting_as(world.dsn, "authenticated") as conn:
        for table in TENANT_TABLES:
            assert await users_visible(conn, table) == []


async def test_every_user_table_has_rls_and_is_covered_here(world: World) -> None:
    async with await psycopg.AsyncConnection.connect(world.dsn) as conn:
        cur = await conn.execute(
            "SELECT relname, relrowsecurity FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY relname"
        )
        tables = dict(await cur.fetchall())
        cur = await conn.execute(
            "SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attname = 'user_id'"
        )
        with_user_id = {row[0] for row in await cur.fetchall()}
    assert all(tables.values()), f"tables without RLS: {[t for t, on in tables.items() if not on]}"
    # every table that carries a tenant id is exercised above (memory_api_keys is service-role only)
    assert with_user_id - {"memory_api_keys"} == set(TENANT_TABLES)
