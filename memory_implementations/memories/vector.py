"""``VectorDatabaseMemory``: semantic memories in pgvector, searched by similarity (optionally hybrid + MMR).

Storage goes through a :class:`~.vector_backend.VectorBackend`: direct PostgreSQL (psycopg) by default,
Supabase REST when ``supabase_url`` + ``supabase_key`` are set and ``database_url`` is not. Everything
else lives here once: validation, auto-embedding (one shared embedder per ``Stores``, Redis-cached),
de-duplication by content hash, reciprocal-rank fusion with full-text search, MMR diversity, and the
token-budgeted ``get_context``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from ..base import BaseMemory
from ..composer import ROLE_LABELS, TokenCounter, grouped_lines, normalize_content
from ..errors import BackendUnavailable, Conflict, NotFound, SchemaMismatch, ValidationError
from ..explain import preview
from ..providers import Embedder, build_embedder
from ..providers.embedding_dim import configured_embedding_dim, describe_embedder
from ..stores.migrations import embedding_type
from ..types import ContextRequest, HealthState, HealthStatus, MemoryContext, MemoryType, Message, Stopwatch, StoredRef
from ._provider_key import provider_key
from .vector_backend import (
    DEFAULT_NAMESPACE,
    DuplicateContent,
    Hit,
    Scope,
    SearchResult,
    VectorBackend,
    VectorRow,
    content_hash,
    lexical_queries,
)
from .vector_sql import SqlVectorBackend

RRF_K = 60
MAX_K = 1000
SECTION = "vector_search"
#: Default similarity floor per embedder kind (``similarity_threshold`` unset): below it a "match" is noise.
#: Local MiniLM, measured on the recall benchmark's seed 3 (not used for tuning): question-message pairs
#: that are not evidence have median 0.056 (90th percentile 0.18); 0.1 keeps 96.6 % of evidence pairs.
#: The full-text leg still finds what falls below. Other kinds: conservative values, not measured here.
NOISE_FLOOR: dict[str, float] = {"semantic": 0.1, "lexical": 0.05, "remote": 0.15}
#: Weight of the similarity leg in the fusion (the full-text leg has 1).
DENSE_WEIGHT = 2.5
#: A context read asks for ``budget // TOKENS_PER_CANDIDATE`` candidates (within MIN/MAX) when no cap is set.
TOKENS_PER_CANDIDATE = 30
MIN_BUDGET_K = 5
MAX_BUDGET_K = 300
#: ``search()`` without ``k`` and without ``max_results``.
DEFAULT_SEARCH_K = 10
#: A partner turn's score as a share of its hit's: kept after the better hits, when the budget allows.
PARTNER_SHARE = 0.6
COUNT_CACHE_SIZE = 16384


@dataclass(slots=True)
class _Item:
    """A validated item to store."""

    content: str
    user_id: str
    namespace: str
    session_id: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    embed_text: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """The de-duplication key (user, namespace, content hash)."""
        return (self.user_id, self.namespace, content_hash(self.content))


class VectorDatabaseMemory(BaseMemory):
    """Semantic memory: store texts (auto-embedded), search by meaning, feed the best matches to the LLM."""

    memory_type = MemoryType.VECTOR_DATABASE
    backends = ("postgres",)

    def __init__(
        self,
        config: Mapping[str, Any] | Any = None,
        *,
        stores: Any = None,
        embedder: Embedder | None = None,
        backend: VectorBackend | None = None,
    ) -> None:
        """Validate the config; ``embedder``/``backend`` override the configured ones (no I/O yet)."""
        super().__init__(config, stores=stores)
        self._embedder: Embedder | None = embedder
        self._own_embedder = embedder is None
        self._backend: VectorBackend | None = backend
        self._owns_backend = backend is None
        self._token_counter: TokenCounter | None = None
        self._redis: aioredis.Redis | None = None
        cfg = self.config
        self.mode = (
            "supabase"
            if cfg.supabase_url and cfg.secret("supabase_key") and not cfg.secret("database_url")
            else "postgres"
        )

    # lifecycle -------------------------------------------------------------------------------
    def embedding_dim(self) -> int | None:
        """The embedder's dimension, so ``Stores.open`` migrates ``memory_vectors.embedding`` to it."""
        if self._embedder is not None:
            return self._embedder.dim
        return configured_embedding_dim(self.config)  # what build_embedder will give

    def _embedder_label(self) -> str:
        embedder = self.embedder
        if self._own_embedder:
            return describe_embedder(self.config)
        return f"the embedder {embedder.model!r} ({embedder.dim} dimensions)"

    @property
    def embedder(self) -> Embedder:
        """The embedder in use (after ``initialize``)."""
        if self._embedder is None:
            raise BackendUnavailable("VectorDatabaseMemory is not initialized: await memory.initialize() first")
        return self._embedder

    @property
    def backend(self) -> VectorBackend:
        """The storage backend in use (after ``initialize``)."""
        if self._backend is None:
            raise BackendUnavailable("VectorDatabaseMemory is not initialized: await memory.initialize() first")
        return self._backend

    async def initialize(self) -> None:
        """Connect: shared ``Stores`` (direct PostgreSQL), or Supabase REST (+ Redis when ``redis_url`` is set)."""
        if self.mode == "postgres" or self._stores is not None:
            await super().initialize()
            return
        if self._initialized:
            return
        async with self._init_lock:
            if self._initialized:
                return
            from ..stores.supabase import SupabaseVectorBackend

            redis_url = self.config.secret("redis_url")
            if redis_url and self._embedder is None:
                self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
            if self._embedder is None:
                self._embedder = build_embedder(self.config, redis=self._redis)
            if self._backend is None:
                self._backend = await SupabaseVectorBackend.open(
                    str(self.config.supabase_url), str(self.config.secret("supabase_key"))
                )
            await self._check_dimension()
            self._initialized = True

    async def _setup(self) -> None:
        """Adopt the shared embedder and build the SQL backend over the shared pool."""
        stores = self.stores
        if self._embedder is None:
            cfg = self.config
            key = provider_key("embedder", cfg)
            self._embedder = stores.shared(key, lambda: build_embedder(cfg, redis=stores.redis))
        if self._backend is None and self.mode == "supabase":
            from ..stores.supabase import SupabaseVectorBackend

            self._backend = await SupabaseVectorBackend.open(
                str(self.config.supabase_url), str(self.config.secret("supabase_key"))
            )
            await self._check_dimension()
            return
        await stores.require_embedding_dim(self._embedder.dim, self._embedder_label())
        if self._backend is None:
            self._backend = SqlVectorBackend(stores.pg, embedding_type=embedding_type(stores.embedding_dim))

    async def _check_dimension(self) -> None:
        """REST mode: compare a stored embedding's dimension with the embedder's (SchemaMismatch when they differ)."""
        from ..stores.supabase import SupabaseVectorBackend

        backend = self.backend
        if not isinstance(backend, SupabaseVectorBackend):
            return
        have = await backend.stored_dimension()
        want = self.embedder.dim
        if have is not None and have != want:
            raise SchemaMismatch(
                f"embedding_dim mismatch: the Supabase store's memory_vectors.embedding holds {have}-dimensional "
                f"vectors but the embedder {self.embedder.model!r} gives {want}. Nothing was changed. Use the "
                f"embedding model the store was built with, or re-embed into a store migrated with "
                f"`memory-orchestrator migrate --embedding-dim {want}`.",
                field="embedding_dim",
            )

    async def _teardown(self) -> None:
        """Close what this tier opened itself (the REST client, its own Redis client)."""
        if self._backend is not None and self._owns_backend:
            await self._backend.close()
            self._backend = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._own_embedder:
            self._embedder = None  # it may hold a Redis client that is being closed

    async def _ready(self) -> tuple[Embedder, VectorBackend]:
        if not self._initialized:
            await self.initialize()
        return self.embedder, self.backend

    # writes ----------------------------------------------------------------------------------
    async def store(self, item: Mapping[str, Any] | Message | str) -> StoredRef:
        """Embed and store one memory; a repeat (same normalised content, user, namespace) refreshes the row."""
        return (await self.store_many([item]))[0]

    async def store_many(self, items: Sequence[Mapping[str, Any] | Message | str]) -> list[StoredRef]:
        """Validate every item, embed them in one call and write them in one multi-row upsert."""
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise ValidationError("store_many() takes a list of items", field="items")
        parsed = [self._parse_item(item, index=i if len(items) > 1 else None) for i, item in enumerate(items)]
        if not parsed:
            return []
        embedder, backend = await self._ready()
        unique: dict[tuple[str, str, str], _Item] = {}
        for p in parsed:
            first = unique.get(p.key)
            if first is None:
                unique[p.key] = replace(p, metadata=dict(p.metadata))
            else:
                first.metadata.update(p.metadata)
        batch = list(unique.values())
        vectors = await embedder.embed([u.embed_text or u.content for u in batch])
        rows = [
            VectorRow(
                user_id=u.user_id,
                namespace=u.namespace,
                content=u.content,
                content_hash=k[2],
                embedding=vectors[i],
                embedding_model=embedder.model,
                session_id=u.session_id,
                metadata=u.metadata,
                created_at=u.created_at,
            )
            for i, (k, u) in enumerate(unique.items())
        ]
        written = await backend.upsert(rows)
        by_key = {(w.user_id, w.namespace, w.content_hash): w for w in written}
        seen: set[tuple[str, str, str]] = set()
        refs: list[StoredRef] = []
        for p in parsed:
            w = by_key[p.key]
            refs.append(StoredRef(id=w.id, memory_type=self.memory_type, durable=True,
                                  created=w.created and p.key not in seen))
            seen.add(p.key)
        self.log.debug("vector_store", count=len(parsed), unique=len(rows), new=sum(r.created for r in refs))
        return refs

    async def update(
        self,
        memory_id: str,
        content: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        user_id: str,
    ) -> dict[str, Any]:
        """Change a memory's content (re-embedded) and/or replace its metadata; NotFound if not the user's."""
        memory_id = _uuid(memory_id)
        user_id = _str(user_id, "user_id")
        if content is None and metadata is None:
            raise ValidationError("update() needs content and/or metadata", field="content")
        new_content = new_hash = None
        if content is not None:
            new_content = self._content(content, "content")
            new_hash = content_hash(new_content)
        new_meta = _metadata(metadata) if metadata is not None else None
        embedder, backend = await self._ready()
        vector = (await embedder.embed([new_content]))[0] if new_content is not None else None
        try:
            hit = await backend.update(
                memory_id,
                user_id,
                content=new_content,
                content_hash=new_hash,
                embedding=vector,
                embedding_model=embedder.model if vector is not None else None,
                metadata=new_meta,
            )
        except DuplicateContent as dup:
            raise Conflict(
                f"'content' duplicates memory {dup.existing_id} of the same user and namespace; nothing was changed",
                field="content",
            ) from None
        if hit is None:
            raise NotFound(f"memory {memory_id} does not exist for user {user_id!r}", field="id")
        return _record(hit)

    async def delete(self, memory_id: str, *, user_id: str) -> bool:
        """Delete one memory of ``user_id``; False when there was none."""
        memory_id = _uuid(memory_id)
        user_id = _str(user_id, "user_id")
        _, backend = await self._ready()
        return await backend.delete(memory_id, user_id)

    async def get(self, memory_id: str, *, user_id: str | None = None) -> dict[str, Any] | None:
        """One memory by id (restricted to ``user_id`` when given); None when absent."""
        memory_id = _uuid(memory_id)
        if user_id is not None:
            user_id = _str(user_id, "user_id")
        _, backend = await self._ready()
        hit = await backend.get(memory_id, user_id)
        return _record(hit) if hit else None

    async def clear(
        self, *, session_id: str | None = None, user_id: str | None = None, namespace: str | None = None
    ) -> int:
        """Delete the memories matching every given scope (at least one is required); return how many."""
        if session_id is None and user_id is None and namespace is None:
            raise ValidationError("clear() needs user_id, session_id and/or namespace", field="user_id")
        scope = Scope(
            user_id=_str(user_id, "user_id") if user_id is not None else None,
            session_id=_str(session_id, "session_id") if session_id is not None else None,
            namespace=_str(namespace, "namespace") if namespace is not None else None,
        )
        _, backend = await self._ready()
        return await backend.clear(scope)

    # search ----------------------------------------------------------------------------------
    async def search(
        self,
        query: str,
        *,
        user_id: str,
        k: int | None = None,
        threshold: float | None = None,
        filters: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        session_id: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        hybrid: bool | None = None,
        mmr_lambda: float | None = None,
        extra_terms: Sequence[str] = (),
        embedding: Awaitable[np.ndarray] | None = None,
    ) -> list[SearchResult]:
        """Top-``k`` memories of ``user_id`` for ``query``: similarity fused with full-text rank (weighted RRF,
        one SQL statement; ``hybrid=False``: similarity only), optionally diversified by MMR.

        ``extra_terms`` join the full-text leg (entity steering); ``embedding`` is the query's embedding
        when the caller already started computing it.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("'query' must be a non-empty string", field="query")
        scope = self._scope_of({"user_id": user_id, "namespace": namespace, "session_id": session_id,
                                "filters": filters, "created_after": created_after, "created_before": created_before})
        k = self._k(k)
        threshold = self._threshold(threshold)
        hybrid = self.config.hybrid_search if hybrid is None else _bool(hybrid, "hybrid")
        mmr = self.config.mmr_lambda if mmr_lambda is None else _fraction(mmr_lambda, "mmr_lambda")
        lexical = lexical_queries(query, extra_terms) if hybrid or extra_terms else None
        embedder, backend = await self._ready()
        q = await embedding if embedding is not None else (await embedder.embed([query]))[0]
        if threshold is None:
            threshold = NOISE_FLOOR.get(embedder.kind, 0.0)
        if mmr is None:
            if lexical is None:
                hits = await backend.search(q, scope, threshold=threshold, count=k)
                return [_result(h, h.similarity or 0.0, ("vector",)) for h in hits]
            hits = await backend.hybrid_search(q, lexical, scope, threshold=threshold, count=k,
                                               dense_weight=DENSE_WEIGHT)
            return [_result(h, h.score or 0.0, _sources(h)) for h in hits]
        pool = min(max(4 * k, 20), MAX_K)
        hits = await backend.search(q, scope, threshold=threshold, count=pool, with_embeddings=True)
        if lexical is not None:
            text_hits = await backend.text_search(lexical[0], lexical[1], q, scope, count=pool)
            results = _fuse(hits, text_hits)
        else:
            results = [_result(h, h.similarity or 0.0, ("vector",)) for h in hits]
        if len(results) <= 1:
            return results[:k]
        known = {h.id: h.embedding for h in hits if h.embedding is not None}
        missing = [r.id for r in results if r.id not in known]
        known.update(await backend.embeddings(missing))
        return _mmr(results, known, q, k=k, lam=mmr)

    # context ---------------------------------------------------------------------------------
    async def get_steered_context(
        self,
        query: Mapping[str, Any] | ContextRequest | str | None,
        *,
        max_tokens: int | None = None,
        entities: Awaitable[Sequence[str]],
    ) -> MemoryContext:
        """``get_context`` steered by entity names still being looked up (``entities``, awaited here).

        The unsteered search starts at once, while the names are looked up: when the query names no
        entity (the usual turn) its answer is used and the lookup costs no latency. Names, when found,
        become ``filters["entities"]`` and the search is run again with them (the first answer is
        dropped). Same answer as awaiting the names first and calling ``get_context``.
        """
        req = ContextRequest.from_any(query)
        early: asyncio.Future[np.ndarray] | None = None
        if req.query.strip():
            embedder, _ = await self._ready()
            early = asyncio.ensure_future(_first(embedder.embed([req.query])))
        unsteered = asyncio.ensure_future(self._context(req, max_tokens, early))
        dropped = False
        try:
            names = _clean_terms(await entities)
            if not names:
                return await unsteered
            dropped = True
            req = replace(req, filters={**req.filters, "entities": names})
            return await self._context(req, max_tokens, early)
        finally:
            if inspect.iscoroutine(entities):
                entities.close()  # never awaited when the request was invalid: no "never awaited" warning
            if dropped and not unsteered.done():
                unsteered.add_done_callback(_retrieve)  # left to finish: cancelling a statement costs more
            else:
                await _settle(unsteered)
                if early is not None:
                    await _settle(early)

    def _scope_of(self, kw: Mapping[str, Any]) -> Scope:
        """The validated search scope of ``search``'s keyword arguments."""
        namespace, session_id, filters = kw.get("namespace"), kw.get("session_id"), kw.get("filters")
        return Scope(
            user_id=_str(kw["user_id"], "user_id"),
            namespace=_str(namespace, "namespace") if namespace is not None else None,
            session_id=_str(session_id, "session_id") if session_id is not None else None,
            filter=_metadata(filters, "filters") if filters is not None else {},
            created_after=_when(kw.get("created_after"), "created_after"),
            created_before=_when(kw.get("created_before"), "created_before"),
        )

    async def get_context(
        self, query: Mapping[str, Any] | ContextRequest | str | None = None, *, max_tokens: int | None = None
    ) -> MemoryContext:
        """The memories that best match ``query`` as tier-contract items, as many as ``max_tokens`` holds.

        Candidates: ``filters["k"]``, else ``max_results``, else as many as the budget can hold
        (``budget // TOKENS_PER_CANDIDATE``). Each is rendered with its date and speaker
        (``[2026-03-14] User: ...``), newest first, so a fact that changed shows its current value
        first; a conversation message's partner turn (the question it answers, the answer it got)
        comes with it at a lower score, so it is kept only when the budget allows. Request ``filters``
        understood: ``metadata`` (jsonb containment), ``k``, ``threshold``, ``hybrid``, ``mmr_lambda``,
        ``created_after``/``created_before``, ``session_only``
        (restrict to the request's session; by default memories are long-term and span sessions) and
        ``entities`` (names that steer the search: they join the full-text leg). An empty query does no
        vector work: it returns the user's most recently updated memories with score 0.
        """
        return await self._context(ContextRequest.from_any(query), max_tokens, None)

    async def _context(
        self, req: ContextRequest, max_tokens: int | None, embedding: Awaitable[np.ndarray] | None
    ) -> MemoryContext:
        watch = Stopwatch()
        f = dict(req.filters or {})
        entities = f.get("entities") or []
        if isinstance(entities, str):
            entities = [entities]
        if not isinstance(entities, (list, tuple)):
            raise ValidationError("'entities' must be a list of names", field="entities")
        entities = [str(e) for e in entities if str(e).strip()]
        budget = self.budget(max_tokens)
        kw = _search_kwargs(req, f)
        if kw["k"] is None and self.config.max_results is None:
            kw["k"] = min(MAX_BUDGET_K, max(MIN_BUDGET_K, budget // TOKENS_PER_CANDIDATE))
        if req.query.strip():
            hybrid = f.get("hybrid")
            results = await self.search(req.query, **kw, hybrid=hybrid, extra_terms=entities, embedding=embedding)
            hybrid_on = self.config.hybrid_search if hybrid is None else bool(hybrid)
            mode = "hybrid" if (entities or hybrid_on) else "vector"
        else:
            scope = Scope(
                user_id=_str(req.user_id, "user_id"),
                namespace=req.namespace,
                filter=_metadata(f.get("metadata"), "filters") if f.get("metadata") is not None else {},
            )
            _, backend = await self._ready()
            results = [_result(h, 0.0, ("recent",)) for h in await backend.recent(scope, count=self._k(kw["k"]))]
            mode = "recent"
        return self._render(results, budget, mode=mode, entities=entities, latency=watch,
                            explain=f.get("explain") is True)

    def _render(
        self, results: list[SearchResult], budget: int, *, mode: str, entities: list[str], latency: Stopwatch,
        explain: bool = False,
    ) -> MemoryContext:
        """Items best first within ``budget`` (partners after hits), listed newest first, each exchange in order."""
        tok = self._counter()
        lines = [_RenderedMemory.of(r, rank) for rank, r in enumerate(results)]
        partners: list[_RenderedMemory] = []
        seen = {normalize_content(m.content) for m in lines}
        for m in lines:
            for p in m.partners():
                if normalize_content(p.content) not in seen:
                    seen.add(normalize_content(p.content))
                    partners.append(p)
        header = "Relevant memories:"
        used = tok.count(header)
        kept: list[_RenderedMemory] = []
        truncated = False
        days: set[str] = set()
        for m in sorted([*lines, *partners], key=lambda m: -m.score):
            cost = tok.count(m.content) + tok.count(m.prefix) + 3  # "- " + newline, and one token of slack
            cost += tok.count(m.group) + 1 if m.group and m.group not in days else 0
            if used + cost > budget:
                truncated = True
                continue
            used += cost
            days.add(m.group)
            kept.append(m)
        if not kept and lines and budget > 0:
            room = budget - tok.count(f"{header}\n{lines[0].group}\n- {lines[0].prefix}")
            cut = tok.truncate(lines[0].content, room) if room > 0 else ""
            if cut:
                kept = [replace(lines[0], content=cut)]
        kept.sort(key=lambda m: m.order[2])
        kept.sort(key=lambda m: m.order[:2], reverse=True)  # newest exchange first (stable: question, answer)
        out = [header, *grouped_lines((m.group, m.line) for m in kept)] if kept else []
        text = "\n".join(out)
        items = [m.item(tok.count(m.content)) for m in kept]
        extra: dict[str, Any] = {"results": [m.result.as_dict() for m in kept if m.partner_of is None], "mode": mode,
                                 "entities": entities, "candidates": len(results)}
        if explain:
            extra["explain"] = _explain_search(mode, entities, [*lines, *partners], {m.id for m in kept}, budget)
        return MemoryContext(
            memory_type=self.memory_type,
            items=items,
            text=text,
            token_count=tok.count_parts([(line, "\n") for line in out[:-1]] + [(out[-1], "")]) if out else 0,
            latency_ms=round(latency.ms, 3),
            truncated=truncated,
            extra=extra,
        )

    def _counter(self) -> TokenCounter:
        """A token counter that remembers counts (the same memories come back turn after turn)."""
        counter = self._token_counter
        if counter is None or counter.tokenizer is not self.tokenizer:
            counter = self._token_counter = TokenCounter(self.tokenizer, maxsize=COUNT_CACHE_SIZE)
        return counter

    # health ----------------------------------------------------------------------------------
    async def health_check(self) -> HealthStatus:
        """Ping the storage backend (required) and Redis (the embedding cache: degraded when down)."""
        try:
            embedder, backend = await self._ready()
        except Exception as exc:
            return HealthStatus(status="unhealthy", details={"error": str(exc)})
        details: dict[str, Any] = {
            "memory_type": self.memory_type.value,
            "backend": backend.name,
            "embedder": {"model": embedder.model, "dim": embedder.dim, "kind": embedder.kind},
        }
        status: HealthState = "healthy"
        total = 0.0
        try:
            ms = await backend.ping()
            details[backend.name] = {"status": "healthy", "latency_ms": round(ms, 3)}
            total += ms
        except Exception as exc:
            details[backend.name] = {"status": "unhealthy", "error": str(exc)}
            status = "unhealthy"
        redis = self._stores.redis if self._stores is not None else self._redis
        if redis is not None:
            watch = Stopwatch()
            try:
                await redis.ping()
                details["redis"] = {"status": "healthy", "latency_ms": round(watch.ms, 3)}
                total += watch.ms
            except Exception as exc:
                details["redis"] = {"status": "unhealthy", "error": str(exc)}
                status = "degraded" if status == "healthy" else status
        return HealthStatus(status=status, latency_ms=round(total, 3), details=details)

    # validation ------------------------------------------------------------------------------
    def _parse_item(self, item: Mapping[str, Any] | Message | str, *, index: int | None) -> _Item:
        at = f"items[{index}]." if index is not None else ""
        if isinstance(item, str):
            return _Item(self._content(item, f"{at}content"), "default", DEFAULT_NAMESPACE, None, {})
        if isinstance(item, Message):
            meta = dict(item.metadata)
            meta.setdefault("role", item.role)
            return _Item(self._content(item.content, f"{at}content"), _str(item.user_id, f"{at}user_id"),
                         DEFAULT_NAMESPACE, item.session_id, _metadata(meta, f"{at}metadata"),
                         created_at=_when(item.created_at, f"{at}created_at"))
        if not isinstance(item, Mapping):
            raise ValidationError(
                f"an item must be a string or a mapping with 'content', got {type(item).__name__}", field=f"{at}item"
            )
        allowed = {"content", "user_id", "session_id", "namespace", "metadata", "id", "role", "created_at",
                   "embed_text"}
        unknown = sorted(set(item) - allowed)
        if unknown:
            raise ValidationError(f"unknown item key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}",
                                  field=f"{at}{unknown[0]}")
        metadata = _metadata(item.get("metadata"), f"{at}metadata") if item.get("metadata") is not None else {}
        if item.get("role") is not None:
            metadata.setdefault("role", _str(item["role"], f"{at}role"))
        return _Item(
            content=self._content(item.get("content"), f"{at}content"),
            user_id=_str(item["user_id"], f"{at}user_id") if item.get("user_id") is not None else "default",
            namespace=(
                _str(item["namespace"], f"{at}namespace") if item.get("namespace") is not None else DEFAULT_NAMESPACE
            ),
            session_id=_str(item["session_id"], f"{at}session_id") if item.get("session_id") is not None else None,
            metadata=metadata,
            created_at=_when(item.get("created_at"), f"{at}created_at"),
            embed_text=self._content(item["embed_text"], f"{at}embed_text") if item.get("embed_text") else None,
        )

    def _content(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"'{name}' is required and must be a non-empty string", field=name)
        if "\x00" in value:
            raise ValidationError(f"'{name}' must not contain NUL characters", field=name)
        limit = self.config.max_message_chars
        if len(value) > limit:
            raise ValidationError(f"'{name}' is {len(value)} characters; the limit is {limit} (max_message_chars)",
                                  field=name)
        return value

    def _k(self, k: Any) -> int:
        if k is None:
            return self.config.max_results or DEFAULT_SEARCH_K
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise ValidationError(f"'k' must be an integer between 1 and {MAX_K}, got {k!r}", field="k")
        return k

    def _threshold(self, threshold: Any) -> float | None:
        if threshold is None:
            return self.config.similarity_threshold  # None: the embedder's noise floor
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0 \
                or math.isnan(threshold):
            raise ValidationError(
                f"'threshold' must be a number between -1 and 1, got {threshold!r}", field="threshold"
            )
        return float(threshold)


# helpers ---------------------------------------------------------------------------------------
def _str(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"'{name}' must be a non-empty string, got {value!r}", field=name)
    if "\x00" in value:
        raise ValidationError(f"'{name}' must not contain NUL characters", field=name)
    return value


def _uuid(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise ValidationError(f"'id' must be a memory id (a UUID), got {value!r}", field="id") from None


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"'{name}' must be true or false, got {value!r}", field=name)
    return value


def _fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValidationError(f"'{name}' must be a number between 0 and 1, got {value!r}", field=name)
    return float(value)


def _metadata(value: Any, name: str = "metadata") -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"'{name}' must be a mapping (a JSON object), got {type(value).__name__}", field=name)
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"'{name}' must be JSON-serialisable: {exc}", field=name) from None
    if "\\u0000" in text:
        raise ValidationError(f"'{name}' must not contain NUL characters", field=name)
    return dict(json.loads(text))


def _when(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(f"'{name}' is not an ISO timestamp: {value!r}", field=name) from None
    if not isinstance(value, datetime):
        raise ValidationError(f"'{name}' must be a datetime or ISO string", field=name)
    if value.tzinfo is None:
        raise ValidationError(f"'{name}' must be timezone-aware", field=name)
    return value


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark ``task``'s outcome as seen (no "exception never retrieved" warning for a dropped answer)."""
    if task.done() and not task.cancelled():
        task.exception()


async def _settle(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` if still running and wait for it; its outcome is retrieved, never raised."""
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled():
        task.exception()


def _search_kwargs(req: ContextRequest, f: Mapping[str, Any]) -> dict[str, Any]:
    """``search`` keyword arguments (scope, k, threshold, MMR) of a context request with filters ``f``."""
    return {
        "user_id": req.user_id,
        "k": f.get("k", f.get("top_k")),
        "threshold": f.get("threshold"),
        "filters": f.get("metadata"),
        "namespace": req.namespace,
        "session_id": req.session_id if f.get("session_only") is True else None,
        "created_after": f.get("created_after"),
        "created_before": f.get("created_before"),
        "mmr_lambda": f.get("mmr_lambda"),
    }


async def _first(vectors: Awaitable[np.ndarray]) -> np.ndarray:
    """The first of a batch of embeddings."""
    return (await vectors)[0]


def _sources(hit: Hit) -> tuple[str, ...]:
    """Which legs of a hybrid search found ``hit``."""
    found = (("vector",) if hit.dense_rank is not None else ()) + (("text",) if hit.lexical_rank is not None else ())
    return found or ("vector",)


_NO_TIME = datetime.min.replace(tzinfo=UTC)


def _day(value: Any) -> str | None:
    """``YYYY-MM-DD`` of a datetime or ISO string (None when there is none)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    return value.date().isoformat() if isinstance(value, datetime) else None


def _partners(metadata: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A conversation memory's partner turns (``partners``; the single ``partner`` of older rows)."""
    found = metadata.get("partners")
    if not isinstance(found, list):
        found = [metadata.get("partner")]
    return [p for p in found if isinstance(p, Mapping) and isinstance(p.get("content"), str) and p["content"].strip()]


def _prefix(role: Any) -> str:
    """``User: `` for a conversation message, nothing for another memory."""
    label = ROLE_LABELS.get(str(role)) if role else None
    return f"{label}: " if label else ""


@dataclass(frozen=True, slots=True)
class _RenderedMemory:
    """One line of the vector section: a hit, or the partner turn of a hit."""

    id: str
    content: str
    prefix: str
    day: str | None
    score: float
    order: tuple[datetime, int, int]  # (when said, its exchange's user message id, its own message id)
    result: SearchResult
    partner_of: str | None = None

    @property
    def line(self) -> str:
        """The rendered line (under its day's line)."""
        return f"- {self.prefix}{self.content}"

    @property
    def group(self) -> str:
        """The line its day is shown on: ``[2026-03-14]`` (empty when the date is unknown)."""
        return f"[{self.day}]" if self.day else ""

    @classmethod
    def of(cls, r: SearchResult, rank: int) -> _RenderedMemory:
        """A hit; a conversation message is ordered with its exchange (question before answer)."""
        mid = r.metadata.get("message_id")
        mid = mid if isinstance(mid, int) else 0
        linked = [p.get("message_id") for p in _partners(r.metadata)] if r.metadata.get("role") != "user" else []
        anchor = min([mid, *(m for m in linked if isinstance(m, int))]) if mid else 0  # the exchange's user message
        when = r.created_at or _NO_TIME
        return cls(r.id, r.content, _prefix(r.metadata.get("role")), _day(r.created_at), r.score - rank * 1e-9,
                   (when, anchor, mid), r)

    def partners(self) -> list[_RenderedMemory]:
        """The turns this message answers or was answered by (from its metadata)."""
        out: list[_RenderedMemory] = []
        for n, p in enumerate(_partners(self.result.metadata)):
            mid = p.get("message_id")
            position = mid if isinstance(mid, int) else self.order[2] + 1
            out.append(_RenderedMemory(f"{self.id}:partner:{n}", p["content"], _prefix(p.get("role")), self.day,
                                       self.score * PARTNER_SHARE, (self.order[0], self.order[1], position),
                                       self.result, self.id))
        return out

    def item(self, tokens: int) -> dict[str, Any]:
        """The tier-contract item (``tokens``: its content's token count)."""
        r = self.result
        out: dict[str, Any] = {
            "section": SECTION, "id": self.id, "content": self.content, "prefix": self.prefix, "group": self.group,
            "score": self.score, "token_count": tokens,
            "created_at": r.created_at.isoformat() if r.created_at else None,
        }
        if self.partner_of is not None:
            out.update(kind="partner", partner_of=self.partner_of)
        else:
            out.update(metadata=r.metadata, similarity=r.similarity, rank_score=r.score, sources=list(r.sources))
        return out


def _explain_search(
    mode: str, entities: list[str], lines: list[_RenderedMemory], kept: set[str], budget: int
) -> dict[str, Any]:
    """The search's part of an explanation: every memory it returned (and partner turn), best first."""
    rows = []
    for m in sorted(lines, key=lambda m: -m.score):
        r = m.result
        row: dict[str, Any] = {"id": m.id, "content": preview(m.prefix + m.content), "score": round(m.score, 6),
                               "status": "kept" if m.id in kept else "tier_budget"}
        if m.partner_of is None:
            row.update(similarity=r.similarity, sources=list(r.sources))
        else:
            row.update(kind="partner", partner_of=m.partner_of)
        rows.append(row)
    return {"mode": mode, "entities": entities, "tier_budget": budget, "search": rows}


def _clean_terms(terms: Sequence[str] | str | None) -> list[str]:
    """Entity names as full-text terms: strings, blanks dropped, duplicates removed (order kept)."""
    if isinstance(terms, str):
        terms = [terms]
    return list(dict.fromkeys(str(t) for t in (terms or ()) if str(t).strip()))


def _result(hit: Hit, score: float, sources: tuple[str, ...]) -> SearchResult:
    return SearchResult(
        id=hit.id,
        content=hit.content,
        metadata=hit.metadata,
        similarity=hit.similarity,
        score=float(score),
        created_at=hit.created_at,
        updated_at=hit.updated_at,
        user_id=hit.user_id,
        session_id=hit.session_id,
        namespace=hit.namespace,
        sources=sources,
    )


def _fuse(vector_hits: list[Hit], text_hits: list[Hit]) -> list[SearchResult]:
    """Reciprocal rank fusion: score = Σ 1 / (60 + rank) over the vector and full-text rankings."""
    scores: dict[str, float] = {}
    sources: dict[str, list[str]] = {}
    hits: dict[str, Hit] = {}
    for name, ranked in (("vector", vector_hits), ("text", text_hits)):
        for rank, hit in enumerate(ranked, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (RRF_K + rank)
            sources.setdefault(hit.id, []).append(name)
            prev = hits.get(hit.id)
            if prev is None or (prev.embedding is None and hit.embedding is not None):
                hits[hit.id] = hit
    order = sorted(scores, key=lambda i: (-scores[i], -(hits[i].similarity or 0.0)))
    return [_result(hits[i], scores[i], tuple(sources[i])) for i in order]


def _mmr(results: list[SearchResult], vectors: dict[str, np.ndarray], q: np.ndarray, *, k: int,
         lam: float) -> list[SearchResult]:
    """Maximal marginal relevance: pick ``k`` by ``lam*relevance - (1-lam)*max similarity to those picked``."""
    cands = [r for r in results if r.id in vectors]
    if not cands:
        return results[:k]
    emb = np.stack([np.asarray(vectors[r.id], dtype=np.float32) for r in cands])
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)
    rel = np.array([r.score for r in cands], dtype=np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones_like(rel)
    pair = emb @ emb.T
    chosen: list[int] = []
    left = list(range(len(cands)))
    while left and len(chosen) < k:
        if chosen:
            redundancy = pair[np.ix_(left, chosen)].max(axis=1)
        else:
            redundancy = np.zeros(len(left))
        gain = lam * rel[left] - (1.0 - lam) * redundancy
        best = left[int(np.argmax(gain))]
        chosen.append(best)
        left.remove(best)
    return [cands[i] for i in chosen]


def _record(hit: Hit) -> dict[str, Any]:
    return {
        "id": hit.id,
        "user_id": hit.user_id,
        "session_id": hit.session_id,
        "namespace": hit.namespace,
        "content": hit.content,
        "metadata": hit.metadata,
        "created_at": hit.created_at.isoformat() if hit.created_at else None,
        "updated_at": hit.updated_at.isoformat() if hit.updated_at else None,
    }


__all__ = ["RRF_K", "SearchResult", "VectorDatabaseMemory"]
