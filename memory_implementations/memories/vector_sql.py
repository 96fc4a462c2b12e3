"""The direct PostgreSQL (psycopg 3, async) backend of the vector tier.

Searches call ``match_memories`` (the same function Supabase's ``.rpc()`` calls) as one autocommit
statement: the function raises ``hnsw.ef_search`` to cover the requested count and sets
``hnsw.iterative_scan = relaxed_order`` so filtered searches keep scanning the HNSW graph until they
have enough rows; it takes the top rows by distance first and applies the threshold to those. All SQL
is parameterised; identifiers and the embedding type are composed with
:mod:`psycopg.sql`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..errors import BackendUnavailable, SchemaMismatch
from ..types import Stopwatch
from .vector_backend import TS_CONFIG, DuplicateContent, Hit, Scope, UpsertResult, VectorRow

_HIT_COLUMNS = "id, user_id, session_id, namespace, content, metadata, created_at, updated_at"
_TYPE = re.compile(r"^(vector|halfvec)\(\d{1,5}\)$")
DEFAULT_EF_SEARCH = 100


class SqlVectorBackend:
    """``memory_vectors`` over a psycopg ``AsyncConnectionPool`` (with pgvector's types registered)."""

    name = "postgres"

    def __init__(self, pool: AsyncConnectionPool, *, embedding_type: str, ef_search: int = DEFAULT_EF_SEARCH) -> None:
        """Use ``pool``; ``embedding_type`` is the column type (e.g. ``vector(384)``) query vectors are cast to."""
        if not _TYPE.match(embedding_type):
            raise SchemaMismatch(f"unsupported embedding column type {embedding_type!r}", field="embedding_dim")
        self.pool = pool
        self.embedding_type = embedding_type
        self.ef_search = ef_search
        self._cast = sql.SQL(embedding_type)

    # writes ----------------------------------------------------------------------------------
    async def upsert(self, rows: Sequence[VectorRow]) -> list[UpsertResult]:
        """One multi-row ``INSERT … ON CONFLICT DO UPDATE``: new rows inserted, repeats refreshed (metadata merged)."""
        if not rows:
            return []
        values = sql.SQL(", ").join(
            sql.SQL("(%s, %s, %s, %s, %s, %s, %s::{t}, %s, coalesce(%s::timestamptz, now()))").format(t=self._cast)
            for _ in rows
        )
        query = sql.SQL(
            "INSERT INTO memory_vectors (user_id, session_id, namespace, content, content_hash, metadata, "
            "embedding, embedding_model, created_at) VALUES {values} "
            "ON CONFLICT (user_id, namespace, content_hash) DO UPDATE SET "
            "metadata = memory_vectors.metadata || EXCLUDED.metadata, "
            "session_id = coalesce(memory_vectors.session_id, EXCLUDED.session_id), "
            "updated_at = now() "
            "RETURNING id::text, user_id, namespace, content_hash, (xmax = 0) AS created"
        ).format(values=values)
        params: list[Any] = []
        for r in rows:
            params += [r.user_id, r.session_id, r.namespace, r.content, r.content_hash, Jsonb(r.metadata),
                       _vec(r.embedding), r.embedding_model, r.created_at]
        async with self._conn() as conn:
            cur = await conn.execute(query, params)
            found = await cur.fetchall()
        by_key = {(u, ns, h): UpsertResult(id=i, created=bool(c), user_id=u, namespace=ns, content_hash=h)
                  for i, u, ns, h, c in found}
        return [by_key[(r.user_id, r.namespace, r.content_hash)] for r in rows]

    async def update(
        self,
        memory_id: str,
        user_id: str,
        *,
        content: str | None = None,
        content_hash: str | None = None,
        embedding: np.ndarray | None = None,
        embedding_model: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Hit | None:
        """Set the given columns (and ``updated_at``) of one row of ``user_id``; None when it does not exist."""
        sets: list[sql.Composable] = [sql.SQL("updated_at = now()")]
        params: list[Any] = []
        if content is not None:
            sets += [sql.SQL("content = %s"), sql.SQL("content_hash = %s"), sql.SQL("embedding = %s::{t}").format(
                t=self._cast), sql.SQL("embedding_model = %s")]
            params += [content, content_hash, _vec(embedding), embedding_model]
        if metadata is not None:
            sets.append(sql.SQL("metadata = %s"))
            params.append(Jsonb(metadata))
        query = sql.SQL("UPDATE memory_vectors SET {sets} WHERE id = %s AND user_id = %s RETURNING {cols}").format(
            sets=sql.SQL(", ").join(sets), cols=sql.SQL(_HIT_COLUMNS)
        )
        try:
            async with self._conn() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(query, [*params, memory_id, user_id])
                row = await cur.fetchone()
        except psycopg.errors.UniqueViolation:
            existing = await self._id_by_hash(user_id, memory_id, content_hash)
            raise DuplicateContent(existing) from None
        return _hit(row) if row else None

    async def _id_by_hash(self, user_id: str, memory_id: str, content_hash: str | None) -> str | None:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT o.id::text FROM memory_vectors o JOIN memory_vectors m ON m.id = %s "
                "WHERE o.user_id = %s AND o.namespace = m.namespace AND o.content_hash = %s",
                (memory_id, user_id, content_hash),
            )
            row = await cur.fetchone()
        return row[0] if row else None

    async def delete(self, memory_id: str, user_id: str) -> bool:
        """Delete one row of ``user_id``."""
        async with self._conn() as conn:
            cur = await conn.execute("DELETE FROM memory_vectors WHERE id = %s AND user_id = %s", (memory_id, user_id))
            return cur.rowcount > 0

    async def clear(self, scope: Scope) -> int:
        """Delete the rows in ``scope``."""
        where, params = _where(scope)
        async with self._conn() as conn:
            cur = await conn.execute(sql.SQL("DELETE FROM memory_vectors m WHERE {w}").format(w=where), params)
            return cur.rowcount

    # reads -----------------------------------------------------------------------------------
    async def search(
        self, embedding: np.ndarray, scope: Scope, *, threshold: float, count: int, with_embeddings: bool = False
    ) -> list[Hit]:
        """``match_memories`` (which raises ``hnsw.ef_search`` to cover ``count``): one statement, no transaction.

        A backend built with ``ef_search`` above the default sets it first, in a short transaction.
        """
        emb_col = sql.SQL(", v.embedding") if with_embeddings else sql.SQL("")
        join = sql.SQL(" JOIN memory_vectors v ON v.id = mm.id") if with_embeddings else sql.SQL("")
        query = sql.SQL(
            "SELECT mm.id::text AS id, mm.user_id, mm.session_id, mm.namespace, mm.content, mm.metadata, "
            "mm.similarity, mm.created_at, mm.updated_at{emb} FROM match_memories("
            "%s::{t}, %s, %s, %s::jsonb, %s, %s, %s, %s, %s) mm{join} ORDER BY mm.similarity DESC"
        ).format(emb=emb_col, t=self._cast, join=join)
        params = [_vec(embedding), threshold, count, Jsonb(scope.filter or {}), scope.user_id, scope.namespace,
                  scope.session_id, scope.created_after, scope.created_before]
        async with self._conn() as conn:
            if self.ef_search <= DEFAULT_EF_SEARCH:
                # match_memories raises hnsw.ef_search to max(100, count) itself: one round trip
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(query, params)
                rows = await cur.fetchall()
            else:
                async with conn.transaction():
                    await conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(self.ef_search),))
                    cur = conn.cursor(row_factory=dict_row)
                    await cur.execute(query, params)
                    rows = await cur.fetchall()
        return [_hit(r) for r in rows]

    async def hybrid_search(
        self, embedding: np.ndarray, lexical: tuple[str, str] | None, scope: Scope, *, threshold: float, count: int,
        dense_weight: float = 1.0,
    ) -> list[Hit]:
        """``match_memories_hybrid``: both legs and their weighted reciprocal-rank fusion in one statement."""
        match, rank = lexical if lexical is not None else ("", "")
        query = sql.SQL(
            "SELECT id::text AS id, user_id, session_id, namespace, content, metadata, similarity, text_rank, "
            "dense_rank, lexical_rank, score, created_at, updated_at FROM match_memories_hybrid("
            "%s::{t}, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s)"
        ).format(t=self._cast)
        params = [_vec(embedding), match, threshold, count, Jsonb(scope.filter or {}), scope.user_id,
                  scope.namespace, scope.session_id, scope.created_after, scope.created_before, rank, dense_weight]
        async with self._conn() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query, params)
            rows = await cur.fetchall()
        return [_hit(r) for r in rows]

    async def text_search(self, match: str, rank: str, embedding: np.ndarray, scope: Scope, *, count: int) -> list[Hit]:
        """Rows whose ``fts`` matches ``websearch_to_tsquery(match)``, by ``ts_rank_cd`` against ``rank``."""
        where, params = _where(scope)
        stmt = sql.SQL(
            "SELECT m.id::text AS id, m.user_id, m.session_id, m.namespace, m.content, m.metadata, "
            "1 - (m.embedding <=> %s::{t}) AS similarity, m.created_at, m.updated_at, "
            "ts_rank_cd(m.fts, r) AS text_rank "
            "FROM memory_vectors m, websearch_to_tsquery({cfg}, %s) q, websearch_to_tsquery({cfg}, %s) r "
            "WHERE m.fts @@ q AND {w} ORDER BY text_rank DESC, m.updated_at DESC LIMIT %s"
        ).format(t=self._cast, cfg=sql.Literal(TS_CONFIG), w=where)
        async with self._conn() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(stmt, [_vec(embedding), match, rank, *params, count])
            rows = await cur.fetchall()
        return [_hit(r) for r in rows]

    async def recent(self, scope: Scope, *, count: int) -> list[Hit]:
        """Most recently updated rows in ``scope``."""
        where, params = _where(scope)
        stmt = sql.SQL(
            "SELECT m.id::text AS id, m.user_id, m.session_id, m.namespace, m.content, m.metadata, "
            "NULL::float8 AS similarity, m.created_at, m.updated_at FROM memory_vectors m WHERE {w} "
            "ORDER BY m.updated_at DESC LIMIT %s"
        ).format(w=where)
        async with self._conn() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(stmt, [*params, count])
            rows = await cur.fetchall()
        return [_hit(r) for r in rows]

    async def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored embeddings of ``ids``."""
        if not ids:
            return {}
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT id::text, embedding FROM memory_vectors WHERE id = ANY(%s::uuid[])", (list(ids),)
            )
            return {i: _np(e) for i, e in await cur.fetchall()}

    async def get(self, memory_id: str, user_id: str | None) -> Hit | None:
        """One row by id (scoped to ``user_id`` when given)."""
        scope = Scope(user_id=user_id)
        where, params = _where(scope)
        stmt = sql.SQL(
            "SELECT m.id::text AS id, m.user_id, m.session_id, m.namespace, m.content, m.metadata, "
            "NULL::float8 AS similarity, m.created_at, m.updated_at FROM memory_vectors m WHERE m.id = %s AND {w}"
        ).format(w=where)
        async with self._conn() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(stmt, [memory_id, *params])
            row = await cur.fetchone()
        return _hit(row) if row else None

    async def ping(self) -> float:
        """``SELECT 1`` round trip in ms."""
        watch = Stopwatch()
        async with self._conn() as conn:
            await conn.execute("SELECT 1")
        return watch.ms

    async def close(self) -> None:
        """Nothing to release: the pool belongs to ``Stores``."""

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; connection-level failures become BackendUnavailable."""
        try:
            async with self.pool.connection(timeout=10) as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise BackendUnavailable(
                f"PostgreSQL failed during a vector-tier query: {exc}", field="database_url"
            ) from exc


def _vec(embedding: np.ndarray | None) -> np.ndarray:
    if embedding is None:
        raise ValueError("an embedding is required")
    return np.asarray(embedding, dtype=np.float32)


def _np(value: Any) -> np.ndarray:
    """A pgvector value (``Vector`` or ndarray) as a float32 array."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def _where(scope: Scope) -> tuple[sql.Composable, list[Any]]:
    """WHERE clauses for ``scope`` on alias ``m`` (only the constraints that are set, so indexes stay usable)."""
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for column, value in (("user_id", scope.user_id), ("namespace", scope.namespace), ("session_id", scope.session_id)):
        if value is not None:
            parts.append(sql.SQL("m.{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if scope.filter:
        parts.append(sql.SQL("m.metadata @> %s"))
        params.append(Jsonb(scope.filter))
    if scope.created_after is not None:
        parts.append(sql.SQL("m.created_at >= %s"))
        params.append(scope.created_after)
    if scope.created_before is not None:
        parts.append(sql.SQL("m.created_at < %s"))
        params.append(scope.created_before)
    if not parts:
        return sql.SQL("TRUE"), params
    return sql.SQL(" AND ").join(parts), params


def _hit(row: dict[str, Any]) -> Hit:
    emb = row.get("embedding")
    sim = row.get("similarity")
    rank = row.get("text_rank")
    return Hit(
        id=str(row["id"]),
        user_id=row["user_id"],
        namespace=row["namespace"],
        content=row["content"],
        metadata=row["metadata"] or {},  # a fresh dict from the driver: no copy
        similarity=None if sim is None else float(sim),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        session_id=row["session_id"],
        text_rank=None if rank is None else float(rank),
        embedding=None if emb is None else _np(emb),
        score=None if row.get("score") is None else float(row["score"]),
        dense_rank=row.get("dense_rank"),
        lexical_rank=row.get("lexical_rank"),
    )


__all__ = ["DEFAULT_EF_SEARCH", "SqlVectorBackend"]
