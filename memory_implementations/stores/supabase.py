"""Supabase REST (PostgREST) access for deployments that have only ``supabase_url`` + ``supabase_key``.

:func:`create_supabase_client` builds supabase-py's async client with an explicit httpx client (so
timeouts are ours and the client can be closed). :class:`SupabaseVectorBackend` implements the vector
tier's storage protocol over it: writes through ``.table().upsert()``, searches through
``.rpc("match_memories", …)`` (the same SQL function the direct path calls), full-text candidates
through PostgREST's ``wfts`` filter. Row Level Security applies to whatever role the key's JWT names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from ..errors import BackendUnavailable, MemoryError, SchemaMismatch
from ..memories.vector_backend import (
    TS_CONFIG,
    DuplicateContent,
    Hit,
    Scope,
    UpsertResult,
    VectorRow,
    query_terms,
)
from ..types import Stopwatch

if TYPE_CHECKING:
    from supabase import AsyncClient

TABLE = "memory_vectors"
_HIT_COLUMNS = "id,user_id,session_id,namespace,content,metadata,created_at,updated_at"
DEFAULT_TIMEOUT_SECONDS = 10.0


async def create_supabase_client(
    url: str,
    key: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,  # noqa: ASYNC109 - an HTTP client setting
) -> AsyncClient:
    """supabase-py's async client for ``url`` with ``key`` (anon, service_role or a user's JWT) and timeouts."""
    try:
        from supabase import AsyncClientOptions, acreate_client
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BackendUnavailable(
            "supabase_url is set but supabase-py is not installed: pip install 'memory_implementations[supabase]'",
            field="supabase_url",
        ) from exc
    http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)), follow_redirects=True)
    options = AsyncClientOptions(httpx_client=http, auto_refresh_token=False, persist_session=False)
    try:
        return await acreate_client(url, key, options=options)
    except Exception as exc:
        await http.aclose()
        raise BackendUnavailable(f"cannot create the Supabase client: {exc}", field="supabase_url") from exc


class SupabaseVectorBackend:
    """The vector tier's storage over Supabase REST (``memory_vectors`` + ``match_memories``)."""

    name = "supabase"

    def __init__(self, client: AsyncClient, *, owns_client: bool = True) -> None:
        """Use ``client``; ``close()`` closes its HTTP client when ``owns_client``."""
        self.client = client
        self._owns = owns_client

    @classmethod
    async def open(
        cls,
        url: str,
        key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,  # noqa: ASYNC109 - an HTTP client setting
    ) -> SupabaseVectorBackend:
        """Create a client for ``url`` + ``key`` and wrap it."""
        return cls(await create_supabase_client(url, key, timeout=timeout))

    # writes ----------------------------------------------------------------------------------
    async def upsert(self, rows: Sequence[VectorRow]) -> list[UpsertResult]:
        """Read the existing rows of these hashes, then one bulk upsert (existing: metadata merged, content kept)."""
        if not rows:
            return []
        existing: dict[tuple[str, str, str], dict[str, Any]] = {}
        groups: dict[tuple[str, str], list[str]] = {}
        for r in rows:
            groups.setdefault((r.user_id, r.namespace), []).append(r.content_hash)
        for (user_id, namespace), hashes in groups.items():
            found = await self._run(
                self.client.table(TABLE)
                .select("id,content,content_hash,metadata,session_id")
                .eq("user_id", user_id)
                .eq("namespace", namespace)
                .in_("content_hash", hashes)
            )
            for row in found:
                existing[(user_id, namespace, row["content_hash"])] = row
        now = _now()
        body: list[dict[str, Any]] = []
        for r in rows:
            old = existing.get((r.user_id, r.namespace, r.content_hash))
            payload: dict[str, Any] = {
                "user_id": r.user_id,
                "namespace": r.namespace,
                "content": r.content if old is None else old["content"],
                "content_hash": r.content_hash,
                "metadata": r.metadata if old is None else {**(old["metadata"] or {}), **r.metadata},
                "session_id": r.session_id if old is None else (old["session_id"] or r.session_id),
                "embedding": _to_json_vector(r.embedding),
                "embedding_model": r.embedding_model,
                "updated_at": now,
            }
            if old is None and r.created_at is not None:
                payload["created_at"] = r.created_at.isoformat()
            body.append(payload)
        written = await self._run(
            self.client.table(TABLE).upsert(body, on_conflict="user_id,namespace,content_hash", default_to_null=False)
        )
        ids = {(w["user_id"], w["namespace"], w["content_hash"]): str(w["id"]) for w in written}
        return [
            UpsertResult(
                id=ids[(r.user_id, r.namespace, r.content_hash)],
                created=(r.user_id, r.namespace, r.content_hash) not in existing,
                user_id=r.user_id,
                namespace=r.namespace,
                content_hash=r.content_hash,
            )
            for r in rows
        ]

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
        """PATCH one row of ``user_id``; None when no row matched."""
        fields: dict[str, Any] = {"updated_at": _now()}
        if content is not None:
            fields.update(content=content, content_hash=content_hash, embedding_model=embedding_model)
            fields["embedding"] = _to_json_vector(embedding)
        if metadata is not None:
            fields["metadata"] = metadata
        try:
            data = await self._run(
                self.client.table(TABLE).update(fields).eq("id", memory_id).eq("user_id", user_id), raw_errors=True
            )
        except _ApiError as exc:
            if getattr(exc, "code", None) == "23505":
                other = await self._run(
                    self.client.table(TABLE).select("id").eq("user_id", user_id).eq("content_hash", content_hash or "")
                )
                raise DuplicateContent(str(other[0]["id"]) if other else None) from None
            raise _translate(exc) from exc
        return _hit(data[0]) if data else None

    async def delete(self, memory_id: str, user_id: str) -> bool:
        """DELETE one row of ``user_id``."""
        data = await self._run(self.client.table(TABLE).delete().eq("id", memory_id).eq("user_id", user_id))
        return bool(data)

    async def clear(self, scope: Scope) -> int:
        """DELETE the rows in ``scope`` (PostgREST refuses an unfiltered delete, and so does the tier)."""
        from postgrest.types import CountMethod, ReturnMethod

        query = self.client.table(TABLE).delete(count=CountMethod.exact, returning=ReturnMethod.minimal)
        query = _apply_scope(query, scope)
        try:
            response = await query.execute()
        except Exception as exc:
            raise _translate(exc) from exc
        return int(response.count or 0)

    # reads -----------------------------------------------------------------------------------
    async def search(
        self, embedding: np.ndarray, scope: Scope, *, threshold: float, count: int, with_embeddings: bool = False
    ) -> list[Hit]:
        """``.rpc("match_memories", …)``; embeddings fetched in a second request when asked for."""
        params = _match_params(embedding, scope, threshold, count)
        data = await self._run(self.client.rpc("match_memories", params))
        hits = sorted((_hit(row) for row in data), key=lambda h: -(h.similarity or 0.0))
        if with_embeddings and hits:
            vectors = await self.embeddings([h.id for h in hits])
            for h in hits:
                h.embedding = vectors.get(h.id)
        return hits

    async def hybrid_search(
        self, embedding: np.ndarray, lexical: tuple[str, str] | None, scope: Scope, *, threshold: float, count: int,
        dense_weight: float = 1.0,
    ) -> list[Hit]:
        """``.rpc("match_memories_hybrid", …)``: the same one-statement fusion as the direct path."""
        match, rank = lexical if lexical is not None else ("", "")
        params = {**_match_params(embedding, scope, threshold, count), "query_text": match, "rank_text": rank,
                  "dense_weight": dense_weight}
        data = await self._run(self.client.rpc("match_memories_hybrid", params))
        hits = [_hit(row) for row in data]
        hits.sort(key=lambda h: -(h.score or 0.0))
        return hits

    async def text_search(self, match: str, rank: str, embedding: np.ndarray, scope: Scope, *, count: int) -> list[Hit]:
        """PostgREST ``wfts`` with ``match``; PostgREST cannot order by ``ts_rank``, so rows are ranked here by
        how many of ``rank``'s terms they contain (then by similarity)."""
        query_builder = (
            self.client.table(TABLE)
            .select(f"{_HIT_COLUMNS},embedding")
            .text_search("fts", match, {"type": "web_search", "config": TS_CONFIG})
        )
        query_builder = _apply_scope(query_builder, scope).order("updated_at", desc=True).limit(max(count * 5, 100))
        data = await self._run(query_builder)
        terms = [t for t in rank.split(" or ") if t]
        q = np.asarray(embedding, dtype=np.float32)
        hits: list[Hit] = []
        for row in data:
            hit = _hit(row)
            if hit.embedding is not None:
                hit.similarity = float(hit.embedding @ q)
            words = set(query_terms(hit.content))
            lowered = hit.content.lower()
            hit.text_rank = float(sum(1 for t in terms if t in words or t in lowered))
            hits.append(hit)
        hits.sort(key=lambda h: (-(h.text_rank or 0.0), -(h.similarity or 0.0)))
        return hits[:count]

    async def recent(self, scope: Scope, *, count: int) -> list[Hit]:
        """The most recently updated rows in ``scope``."""
        query = _apply_scope(self.client.table(TABLE).select(_HIT_COLUMNS), scope)
        data = await self._run(query.order("updated_at", desc=True).limit(count))
        return [_hit(row) for row in data]

    async def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored embeddings of ``ids`` (parsed from pgvector's text form)."""
        if not ids:
            return {}
        data = await self._run(self.client.table(TABLE).select("id,embedding").in_("id", list(ids)))
        return {str(row["id"]): _from_json_vector(row["embedding"]) for row in data}

    async def get(self, memory_id: str, user_id: str | None) -> Hit | None:
        """One row by id (and ``user_id`` when given)."""
        query = self.client.table(TABLE).select(_HIT_COLUMNS).eq("id", memory_id)
        if user_id is not None:
            query = query.eq("user_id", user_id)
        data = await self._run(query.limit(1))
        return _hit(data[0]) if data else None

    async def stored_dimension(self) -> int | None:
        """Dimension of a stored embedding visible to this key (None when it sees no rows)."""
        data = await self._run(self.client.table(TABLE).select("embedding").limit(1))
        return len(_from_json_vector(data[0]["embedding"])) if data else None

    async def ping(self) -> float:
        """A one-row select through PostgREST; latency in ms."""
        watch = Stopwatch()
        await self._run(self.client.table(TABLE).select("id").limit(1))
        return watch.ms

    async def close(self) -> None:
        """Close the HTTP client (when this backend created it)."""
        if not self._owns:
            return
        http = self.client.options.httpx_client
        if http is not None:
            await http.aclose()

    async def _run(self, builder: Any, *, raw_errors: bool = False) -> list[dict[str, Any]]:
        try:
            response = await builder.execute()
        except Exception as exc:
            if raw_errors and isinstance(exc, _ApiError):
                raise
            raise _translate(exc) from exc
        data = response.data
        if data is None:
            return []
        return list(data) if isinstance(data, list) else [data]


try:  # supabase (and with it postgrest) is an optional extra
    from postgrest.exceptions import APIError as _ApiError
except ImportError:  # pragma: no cover - depends on the install

    class _ApiError(Exception):  # type: ignore[no-redef]
        """Placeholder when postgrest is absent."""


def _translate(exc: BaseException) -> MemoryError:
    """Map a PostgREST / HTTP failure to this package's errors."""
    if isinstance(exc, MemoryError):
        return exc
    if isinstance(exc, _ApiError):
        code = str(getattr(exc, "code", "") or "")
        message = str(getattr(exc, "message", "") or exc)
        if "dimensions" in message:
            return SchemaMismatch(
                f"Supabase rejected the embedding: {message}. The store's memory_vectors.embedding has another "
                "dimension than the configured embedder; nothing was written.",
                field="embedding_dim",
            )
        if code == "42501":
            return MemoryError(f"Supabase refused the request (row-level security): {message}", field="user_id")
        if code in ("PGRST301", "PGRST302", "PGRST300"):
            return MemoryError(f"Supabase rejected the key: {message}", field="supabase_key")
        return BackendUnavailable(f"Supabase REST error {code}: {message}", field="supabase_url")
    if isinstance(exc, httpx.HTTPError):
        return BackendUnavailable(f"Supabase REST request failed: {type(exc).__name__}: {exc}", field="supabase_url")
    return BackendUnavailable(f"Supabase REST request failed: {exc}", field="supabase_url")


def _apply_scope(query: Any, scope: Scope) -> Any:
    for column, value in (("user_id", scope.user_id), ("namespace", scope.namespace), ("session_id", scope.session_id)):
        if value is not None:
            query = query.eq(column, value)
    if scope.filter:
        query = query.contains("metadata", scope.filter)
    if scope.created_after is not None:
        query = query.gte("created_at", scope.created_after.isoformat())
    if scope.created_before is not None:
        query = query.lt("created_at", scope.created_before.isoformat())
    return query


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _to_json_vector(embedding: np.ndarray | None) -> list[float]:
    if embedding is None:
        raise ValueError("an embedding is required")
    return [float(x) for x in np.asarray(embedding, dtype=np.float32)]


def _from_json_vector(value: Any) -> np.ndarray:
    if isinstance(value, str):
        value = json.loads(value)
    return np.asarray(value, dtype=np.float32)


def _ts(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _match_params(embedding: np.ndarray, scope: Scope, threshold: float, count: int) -> dict[str, Any]:
    """The arguments ``match_memories`` and ``match_memories_hybrid`` share."""
    return {
        "query_embedding": _to_json_vector(embedding),
        "match_threshold": threshold,
        "match_count": count,
        "filter": scope.filter or {},
        "p_user_id": scope.user_id,
        "p_namespace": scope.namespace,
        "p_session_id": scope.session_id,
        "created_after": scope.created_after.isoformat() if scope.created_after else None,
        "created_before": scope.created_before.isoformat() if scope.created_before else None,
    }


def _hit(row: dict[str, Any]) -> Hit:
    emb = row.get("embedding")
    sim = row.get("similarity")
    return Hit(
        id=str(row["id"]),
        user_id=row["user_id"],
        namespace=row["namespace"],
        content=row["content"],
        metadata=dict(row.get("metadata") or {}),
        similarity=None if sim is None else float(sim),
        created_at=_ts(row.get("created_at")),
        updated_at=_ts(row.get("updated_at")),
        session_id=row.get("session_id"),
        embedding=None if emb is None else _from_json_vector(emb),
        text_rank=None if row.get("text_rank") is None else float(row["text_rank"]),
        score=None if row.get("score") is None else float(row["score"]),
        dense_rank=row.get("dense_rank"),
        lexical_rank=row.get("lexical_rank"),
    )


__all__ = ["DEFAULT_TIMEOUT_SECONDS", "SupabaseVectorBackend", "create_supabase_client"]
