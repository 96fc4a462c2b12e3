"""The small storage protocol under the vector tier, and the value types it exchanges.

Two implementations: :class:`~memory_implementations.memories.vector_sql.SqlVectorBackend` (direct
psycopg) and :class:`~memory_implementations.stores.supabase.SupabaseVectorBackend` (Supabase REST).
Both search through the ``match_memories`` SQL function, so ranking, scoping and RLS behave the same;
the tier logic (validation, embedding, de-duplication, hybrid fusion, MMR, rendering) lives once in
:mod:`memory_implementations.memories.vector`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

DEFAULT_NAMESPACE = "default"
TS_CONFIG = "english"  # must match the generated `fts` column of memory_vectors
_WS = re.compile(r"\s+")
_TERM = re.compile(r"[\w][\w\-.@/]*", re.UNICODE)


def normalize_content(text: str) -> str:
    """The de-duplication form of ``text``: NFKC, case-folded, whitespace collapsed and trimmed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def content_hash(text: str) -> str:
    """sha256 hex digest of the normalised content (the per-(user, namespace) de-duplication key)."""
    return hashlib.sha256(normalize_content(text).encode("utf-8")).hexdigest()


def query_terms(text: str) -> list[str]:
    """Word-like terms of ``text`` (ids such as ``ORD-88412`` stay whole), lower-cased, in order, unique."""
    return list(dict.fromkeys(m.group(0).strip(".-/").lower() for m in _TERM.finditer(text) if m.group(0).strip(".-/")))


def any_terms_query(terms: Sequence[str]) -> str:
    """A ``websearch_to_tsquery`` input matching rows with *any* of ``terms`` (``a or b or c``).

    Natural-language questions rarely contain every word of the stored text, so the lexical leg of
    hybrid search is recall-oriented (OR) and ``ts_rank_cd`` rewards rows covering more terms.
    """
    return " or ".join(t.replace('"', "") for t in terms if t and t.lower() != "or")


def is_identifier(term: str) -> bool:
    """Whether ``term`` looks like an exact identifier (an order id, a SKU, a version): it contains a digit."""
    return any(ch.isdigit() for ch in term)


def lexical_queries(query: str, extra_terms: Sequence[str] = ()) -> tuple[str, str] | None:
    """The full-text leg's (match, rank) ``websearch_to_tsquery`` inputs for ``query`` (None: no terms).

    Identifiers in the query (terms with digits, e.g. ``ORD-88412``) and ``extra_terms`` (entity names
    steering the search) are *required*: when present, only rows containing one of them match. Otherwise
    any term matches. Rows are ranked by ``ts_rank_cd`` against all the terms.
    """
    terms = query_terms(query)
    extra = [t for e in extra_terms for t in query_terms(str(e))]
    required = [t for t in terms if is_identifier(t)] + extra
    everything = list(dict.fromkeys(terms + extra))
    if not everything:
        return None
    return any_terms_query(required or everything), any_terms_query(everything)


@dataclass(frozen=True, slots=True)
class VectorRow:
    """One memory to write: scope, content, its hash, metadata and embedding."""

    user_id: str
    namespace: str
    content: str
    content_hash: str
    embedding: np.ndarray
    embedding_model: str
    session_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None  # when it was said (a message's time); None: now


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """Where a row landed: its id and whether it was new (False: an existing row was refreshed)."""

    id: str
    created: bool
    user_id: str
    namespace: str
    content_hash: str


@dataclass(slots=True)
class Scope:
    """Which rows a read or delete may touch; ``None`` fields do not constrain."""

    user_id: str | None = None
    namespace: str | None = None
    session_id: str | None = None
    filter: dict[str, Any] = field(default_factory=dict)
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(slots=True)
class Hit:
    """A stored memory as read back, with its cosine similarity to the query when there is one."""

    id: str
    user_id: str
    namespace: str
    content: str
    metadata: dict[str, Any]
    similarity: float | None
    created_at: datetime | None
    updated_at: datetime | None
    session_id: str | None = None
    text_rank: float | None = None
    embedding: np.ndarray | None = None
    score: float | None = None  # fused rank score (hybrid search)
    dense_rank: int | None = None  # 1-based rank in the similarity leg (hybrid search; None: not in it)
    lexical_rank: int | None = None  # 1-based rank in the full-text leg (hybrid search; None: not in it)


@dataclass(slots=True)
class SearchResult(Mapping[str, Any]):
    """One search result: the memory, its cosine ``similarity`` and the ranking ``score``; readable as a dict."""

    id: str
    content: str
    metadata: dict[str, Any]
    similarity: float | None
    score: float
    created_at: datetime | None
    updated_at: datetime | None = None
    user_id: str | None = None
    session_id: str | None = None
    namespace: str | None = None
    sources: tuple[str, ...] = ("vector",)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict view (timestamps as ISO strings)."""
        return {
            "id": self.id,
            "content": self.content,
            "metadata": self.metadata,
            "similarity": self.similarity,
            "score": self.score,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "namespace": self.namespace,
            "sources": list(self.sources),
        }

    def __getitem__(self, key: str) -> Any:
        """Look a key up in the dict view."""
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        """Iterate the dict view's keys."""
        return iter(self.as_dict())

    def __len__(self) -> int:
        """Number of keys in the dict view."""
        return 11


@runtime_checkable
class VectorBackend(Protocol):
    """Storage operations of the vector tier; every read and write is scoped by ``user_id``."""

    name: str

    async def upsert(self, rows: Sequence[VectorRow]) -> list[UpsertResult]:
        """Insert rows; a row whose (user_id, namespace, content_hash) exists is refreshed (metadata merged)."""
        ...

    async def search(
        self, embedding: np.ndarray, scope: Scope, *, threshold: float, count: int, with_embeddings: bool = False
    ) -> list[Hit]:
        """Nearest rows by cosine similarity through ``match_memories``, most similar first."""
        ...

    async def text_search(self, match: str, rank: str, embedding: np.ndarray, scope: Scope, *, count: int) -> list[Hit]:
        """Rows whose ``fts`` matches ``websearch_to_tsquery(match)``, ordered by their rank against ``rank``."""
        ...

    async def hybrid_search(
        self, embedding: np.ndarray, lexical: tuple[str, str] | None, scope: Scope, *, threshold: float, count: int,
        dense_weight: float = 1.0,
    ) -> list[Hit]:
        """Similarity and full-text legs fused by weighted RRF in one ``match_memories_hybrid`` call, best first."""
        ...

    async def recent(self, scope: Scope, *, count: int) -> list[Hit]:
        """The most recently updated rows in ``scope``."""
        ...

    async def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored embeddings of ``ids`` (for MMR)."""
        ...

    async def get(self, memory_id: str, user_id: str | None) -> Hit | None:
        """One row by id (and user, when given)."""
        ...

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
        """Change a row's content (with its new hash and embedding) and/or replace its metadata."""
        ...

    async def delete(self, memory_id: str, user_id: str) -> bool:
        """Delete one row of ``user_id``; False when there was none."""
        ...

    async def clear(self, scope: Scope) -> int:
        """Delete every row in ``scope``; return how many."""
        ...

    async def ping(self) -> float:
        """Round-trip to the backend; latency in ms."""
        ...

    async def close(self) -> None:
        """Release what the backend opened itself."""
        ...


class DuplicateContent(Exception):
    """An update would give a row the content of another row of the same user and namespace."""

    def __init__(self, existing_id: str | None) -> None:
        """Remember the id of the row that already holds the content."""
        super().__init__(existing_id)
        self.existing_id = existing_id


__all__ = [
    "DEFAULT_NAMESPACE",
    "TS_CONFIG",
    "DuplicateContent",
    "Hit",
    "Scope",
    "SearchResult",
    "UpsertResult",
    "VectorBackend",
    "VectorRow",
    "any_terms_query",
    "content_hash",
    "is_identifier",
    "lexical_queries",
    "normalize_content",
    "query_terms",
]
