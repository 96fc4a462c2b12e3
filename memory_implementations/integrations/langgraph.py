"""A LangGraph store over the key-value and vector tiers: ``MemoryStore``.

``MemoryStore`` implements LangGraph's ``BaseStore`` (``batch``/``abatch`` over ``GetOp``, ``PutOp``,
``SearchOp`` and ``ListNamespacesOp``), so ``put``/``get``/``search``/``delete``/``list_namespaces``
and their async twins work, and a graph compiled with ``store=MemoryStore(...)`` reads and writes
this package's memories.

Tenancy. Every item has an owner (the tiers' ``user_id``):

* unbound (``user_id=None``, the default): the first namespace label is the owner, the remaining
  labels joined by ``.`` are the key-value namespace. ``("u1", "prefs")`` is user ``u1``'s ``prefs``
  namespace; a namespace needs the owner plus at least one label.
* bound (``MemoryStore(..., user_id="u1")``): every namespace belongs to ``u1`` and all its labels,
  joined by ``.``, are the key-value namespace.

LangGraph forbids ``.`` in labels, so the mapping is one-to-one.

Storage. An item is a key-value row (``memory_kv``): the value dict is the row's value, so
``KeyValueStoreMemory.get``/``get_context`` and the orchestrator's ``key_value`` section see it
(``("u1", "default")`` is the namespace the orchestrator reads by default); history and versioning
are the tier's. Items are indexed into the vector tier, one memory per extracted text (the whole
value as JSON, or the configured / per-put ``index`` fields), in a vector namespace of their own
(``langgraph:["<kv namespace>", "<key>"]``) with ``metadata["langgraph"]`` = namespace, key, field
and namespace prefixes. Re-putting an item replaces its memories; deleting it removes both.

Reads come from PostgreSQL: ``get`` and listing ``search`` (no ``query``) read ``memory_kv`` (live,
JSON-object values only, newest ``updated_at`` first); a ``search`` with a ``query`` ranks the owner's
indexed memories by cosine similarity (``score``), keeps each item's best score, then applies the
filter, offset and limit. ``filter`` matches top-level value keys: a value (JSON equality), a nested
object (JSON containment) or operators ``$eq $ne $gt $gte $lt $lte``.

TTL: ``put(..., ttl=minutes)`` becomes the key-value ``ttl`` (seconds, rounded up); expired items are
never returned. Reads do not extend a TTL (``refresh_ttl`` is accepted and ignored).

Async methods use the given tiers on the caller's loop; sync methods run on a private loop thread
(:class:`~._portal.Portal`) with tiers built from the same configurations (their own connections).
A sync method called from that thread raises ``RuntimeError`` instead of deadlocking.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import MemoryConfig
from ..errors import ConfigError, ValidationError
from ..memories import _shared as sh
from ..memories.kv import KeyValueStoreMemory
from ..memories.vector import MAX_K, VectorDatabaseMemory
from ..orchestrator import MemoryOrchestrator
from ..types import MemoryType
from ._portal import Portal

try:  # optional: the [langgraph] extra
    from langgraph.store.base import (
        BaseStore,
        GetOp,
        Item,
        ListNamespacesOp,
        MatchCondition,
        Op,
        PutOp,
        Result,
        SearchItem,
        SearchOp,
        TTLConfig,
    )
    from langgraph.store.base.embed import get_text_at_path, tokenize_path
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without langgraph
    raise ImportError(
        "memory_implementations.integrations.langgraph needs LangGraph: "
        'pip install "memory_implementations[langgraph]"'
    ) from exc

#: Metadata key of the vector memories this store writes.
META_KEY = "langgraph"
#: Prefix of the vector-tier namespace of an indexed item.
VECTOR_NAMESPACE_PREFIX = "langgraph:"
#: What a store with a vector tier indexes when neither the store nor the put names fields.
DEFAULT_INDEX_FIELDS: tuple[str, ...] = ("$",)

_LIVE = "(m.expires_at IS NULL OR m.expires_at > now()) AND jsonb_typeof(m.value) = 'object'"
_COLUMNS = "m.user_id, m.namespace, m.key, m.value, m.created_at, m.updated_at"
_BY_IDENT = f"""
SELECT {_COLUMNS} FROM memory_kv m
JOIN unnest(%s::text[], %s::text[], %s::text[]) AS w(u, n, k) ON m.user_id = w.u AND m.namespace = w.n AND m.key = w.k
WHERE {_LIVE}"""
_LISTING = f"""
SELECT {_COLUMNS} FROM memory_kv m
WHERE {_LIVE} AND (%s::text IS NULL OR m.user_id = %s)
  AND (%s::text IS NULL OR m.namespace = %s OR starts_with(m.namespace, %s::text || '.'))"""
_NAMESPACES = f"""
SELECT DISTINCT m.user_id, m.namespace FROM memory_kv m WHERE {_LIVE} AND (%s::text IS NULL OR m.user_id = %s)"""
_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


# validation ------------------------------------------------------------------------------------
def _labels(namespace: Any, field: str) -> tuple[str, ...]:
    """A namespace as a tuple of labels: strings, non-empty, without ``.`` or NUL."""
    if isinstance(namespace, str) or not isinstance(namespace, tuple | list):
        raise ValidationError(f"'{field}' must be a tuple of strings, got {type(namespace).__name__}", field=field)
    for label in namespace:
        if not isinstance(label, str) or not label or "." in label or "\x00" in label:
            raise ValidationError(
                f"'{field}' labels must be non-empty strings without '.' or NUL, got {label!r}", field=field
            )
    return tuple(namespace)


def _count(value: Any, field: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(f"'{field}' must be an integer >= {minimum}, got {value!r}", field=field)
    return value


def _fields(value: Any, field: str) -> tuple[str, ...]:
    """Index field paths (LangGraph path syntax); each is checked by tokenising it."""
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise ValidationError(f"'{field}' must be a non-empty list of field paths", field=field)
    for path in value:
        if not isinstance(path, str) or not path.strip():
            raise ValidationError(f"'{field}' paths must be non-empty strings, got {path!r}", field=field)
        try:
            tokenize_path(path)
        except Exception as exc:
            raise ValidationError(f"'{field}' path {path!r} is invalid: {exc}", field=field) from None
    return tuple(value)


def _ttl_seconds(ttl: Any) -> int | None:
    """LangGraph's TTL in minutes as the key-value tier's whole seconds (rounded up)."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
        raise ValidationError(f"'ttl' must be a positive number of minutes, got {ttl!r}", field="ttl")
    return max(1, math.ceil(ttl * 60))


def _json(value: Any, field: str) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"'{field}' must be JSON-serialisable: {exc}", field=field) from None


def _filter_sql(filt: Any) -> tuple[str, list[Any]]:
    """SQL conditions on ``m.value`` for a LangGraph ``filter`` (``""`` when there is none)."""
    if filt is None:
        return "", []
    if not isinstance(filt, Mapping):
        raise ValidationError(f"'filter' must be a mapping, got {type(filt).__name__}", field="filter")
    parts: list[str] = []
    params: list[Any] = []
    field_value = "coalesce(m.value -> %s, 'null'::jsonb)"
    for key, want in filt.items():
        if not isinstance(key, str):
            raise ValidationError(f"'filter' keys must be strings, got {key!r}", field="filter")
        at = f"filter.{key}"
        if isinstance(want, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in want):
            for op, operand in want.items():
                if op == "$eq":
                    parts.append(f"{field_value} = %s::jsonb")
                    params += [key, _json(operand, at)]
                elif op == "$ne":
                    parts.append(f"{field_value} <> %s::jsonb")
                    params += [key, _json(operand, at)]
                elif op in _COMPARE:
                    if isinstance(operand, bool) or not isinstance(operand, int | float) or not math.isfinite(operand):
                        raise ValidationError(f"'{at}' {op} needs a finite number, got {operand!r}", field=at)
                    parts.append(
                        f"(jsonb_typeof(m.value -> %s) = 'number' AND (m.value ->> %s)::float8 {_COMPARE[op]} %s)"
                    )
                    params += [key, key, float(operand)]
                else:
                    raise ValidationError(
                        f"'{at}' has unsupported operator {op!r}; use $eq, $ne, $gt, $gte, $lt or $lte", field=at
                    )
        elif isinstance(want, Mapping):
            parts.append("m.value -> %s @> %s::jsonb")
            params += [key, _json(want, at)]
        else:
            parts.append(f"{field_value} = %s::jsonb")
            params += [key, _json(want, at)]
    return "".join(f" AND {p}" for p in parts), params


def _matches(condition: Any, namespace: tuple[str, ...]) -> bool:
    """Whether ``namespace`` satisfies a ``MatchCondition`` (``*`` matches any one label)."""
    path = condition.path
    if len(namespace) < len(path):
        return False
    pairs = zip(namespace, path, strict=False) if condition.match_type == "prefix" else zip(
        reversed(namespace), reversed(path), strict=False
    )
    return all(p == "*" or n == p for n, p in pairs)


def _conditions(value: Any) -> tuple[MatchCondition, ...]:
    if value is None:
        return ()
    if not isinstance(value, tuple | list):
        raise ValidationError("'match_conditions' must be a tuple of MatchCondition", field="match_conditions")
    out = []
    for cond in value:
        kind, path = getattr(cond, "match_type", None), getattr(cond, "path", None)
        if kind not in ("prefix", "suffix"):
            raise ValidationError(
                f"'match_conditions' match_type must be 'prefix' or 'suffix', got {kind!r}", field="match_conditions"
            )
        out.append(MatchCondition(match_type=kind, path=_labels(path, "match_conditions")))
    return tuple(out)


# the tiers -------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Tiers:
    """The key-value tier (the record) and the optional vector tier (the semantic index)."""

    kv: KeyValueStoreMemory
    vector: VectorDatabaseMemory | None
    owned: bool
    source: MemoryOrchestrator | None = None

    async def ready(self) -> None:
        """Initialize both (the key-value tier shares the vector tier's stores when it has none)."""
        if self.source is not None:
            await self.source.initialize()
        if self.vector is not None:
            await self.vector.initialize()
            if self.owned and self.vector.mode == "postgres" and _same_backends(self.kv.config, self.vector.config):
                self.kv.attach_stores(self.vector.stores)
        await self.kv.initialize()

    async def close(self) -> None:
        """Close tiers built here (the key-value tier first: it may borrow the vector tier's stores)."""
        if self.owned:
            await self.kv.close()
            if self.vector is not None:
                await self.vector.close()


def _same_backends(a: MemoryConfig, b: MemoryConfig) -> bool:
    return a.secret("database_url") == b.secret("database_url") and a.secret("redis_url") == b.secret("redis_url")


#: What a ``MemoryStore`` may be built on.
StoreSource = MemoryOrchestrator | KeyValueStoreMemory | Mapping[str, Any] | MemoryConfig | None


def _resolve(source: StoreSource, vector: VectorDatabaseMemory | bool | None) -> _Tiers:
    """The key-value and vector tiers of ``source`` (``vector``: an instance, False for none, None for auto)."""
    if vector is not None and not isinstance(vector, bool | VectorDatabaseMemory):
        raise ConfigError(f"'vector' must be a VectorDatabaseMemory, True/False or None, got {type(vector).__name__}",
                          field="vector")
    if isinstance(source, MemoryOrchestrator):
        kv = source.memories.get(MemoryType.KEY_VALUE_STORE)
        if not isinstance(kv, KeyValueStoreMemory):
            raise ConfigError("the orchestrator enables no key_value_store tier: add it to enabled_memories",
                              field="enabled_memories")
        found = source.memories.get(MemoryType.VECTOR_DATABASE)
        vec = vector if isinstance(vector, VectorDatabaseMemory) else None
        if vector is None or vector is True:
            vec = found if isinstance(found, VectorDatabaseMemory) else None
            if vector is True and vec is None:
                raise ConfigError("the orchestrator enables no vector_database tier", field="enabled_memories")
        return _Tiers(kv, vec, owned=False, source=source)
    if isinstance(source, KeyValueStoreMemory):
        if vector is True:
            raise ConfigError("pass the VectorDatabaseMemory itself as 'vector'", field="vector")
        return _Tiers(source, vector if isinstance(vector, VectorDatabaseMemory) else None, owned=False)
    if source is not None and not isinstance(source, Mapping | MemoryConfig):
        raise ConfigError(
            f"a MemoryStore is built on a MemoryOrchestrator, a KeyValueStoreMemory or a config, "
            f"got {type(source).__name__}",
            field="memory",
        )
    if isinstance(vector, VectorDatabaseMemory):
        raise ConfigError("pass a VectorDatabaseMemory only together with a KeyValueStoreMemory or orchestrator",
                          field="vector")
    config = MemoryConfig.from_any(source)
    return _Tiers(KeyValueStoreMemory(config), VectorDatabaseMemory(config) if vector is not False else None,
                  owned=True)


def _factory(tiers: _Tiers) -> Callable[[], Awaitable[_Tiers]]:
    """A builder of fresh tiers like ``tiers`` (same classes and configs, own connections) for another loop."""
    kv_cls, kv_config = type(tiers.kv), tiers.kv.config
    vec_cls = type(tiers.vector) if tiers.vector is not None else None
    vec_config = tiers.vector.config if tiers.vector is not None else None

    async def make() -> _Tiers:
        vec = vec_cls(vec_config) if vec_cls is not None else None
        fresh = _Tiers(kv_cls(kv_config), vec, owned=True)
        await fresh.ready()
        return fresh

    return make


def _vector_namespace(kv_namespace: str, key: str) -> str:
    """The vector-tier namespace of one item (its memories de-duplicate among themselves only)."""
    return VECTOR_NAMESPACE_PREFIX + json.dumps([kv_namespace, key], ensure_ascii=False)


def _prefixes(kv_namespace: str) -> list[str]:
    labels = kv_namespace.split(".")
    return [".".join(labels[: i + 1]) for i in range(len(labels))]


# the store -------------------------------------------------------------------------------------
class MemoryStore(BaseStore):
    """LangGraph ``BaseStore`` over the key-value tier (items) and the vector tier (semantic search).

    ``MemoryStore(orchestrator)`` uses the orchestrator's key_value_store and vector_database tiers;
    ``MemoryStore(kv_tier, vector=vector_tier)`` given tiers; ``MemoryStore(config)`` builds both
    (close with ``await store.aclose()``). ``user_id=`` binds every namespace to one owner; otherwise
    the first namespace label is the owner. ``index={"fields": [...]}`` names the value paths to
    embed (default: the whole value); ``index=False`` indexes nothing.
    """

    supports_ttl = True

    def __init__(
        self,
        memory: StoreSource = None,
        *,
        vector: VectorDatabaseMemory | bool | None = None,
        user_id: str | None = None,
        index: Mapping[str, Any] | bool | None = None,
        ttl: TTLConfig | None = None,
    ) -> None:
        """Bind the tiers, the tenancy mode, the index fields and the TTL defaults (no I/O yet)."""
        self.user_id = sh.require_name(user_id, "user_id") if user_id is not None else None
        self._tiers = _resolve(memory, vector)
        self.index_fields: tuple[str, ...] | None = self._index_config(index)
        if ttl is not None and not isinstance(ttl, Mapping):
            raise ConfigError(f"'ttl' must be a TTLConfig mapping, got {type(ttl).__name__}", field="ttl")
        if ttl is not None:
            _ttl_seconds(ttl.get("default_ttl"))
        self.ttl_config = ttl
        self._portal: Portal[_Tiers] = Portal(_factory(self._tiers), _Tiers.close, name="memory-langgraph-store")

    def _index_config(self, index: Mapping[str, Any] | bool | None) -> tuple[str, ...] | None:
        if index is False or (index is None and self._tiers.vector is None):
            return None
        if self._tiers.vector is None:
            raise ConfigError("indexing needs a vector tier (vector_database)", field="index")
        if index is None or index is True:
            return DEFAULT_INDEX_FIELDS
        if not isinstance(index, Mapping):
            raise ConfigError(f"'index' must be a mapping, True/False or None, got {type(index).__name__}",
                              field="index")
        unknown = sorted(set(index) - {"fields", "dims"})
        if unknown:
            raise ConfigError(
                f"'index' key {unknown[0]!r} is not supported: embeddings come from the vector tier's embedder",
                field="index",
            )
        if "dims" in index and index["dims"] != self._tiers.vector.embedding_dim():
            raise ConfigError(
                f"'index.dims' is {index['dims']!r} but the vector tier embeds {self._tiers.vector.embedding_dim()} "
                f"dimensions", field="index",
            )
        try:
            return _fields(index.get("fields", list(DEFAULT_INDEX_FIELDS)), "index.fields")
        except ValidationError as exc:
            raise ConfigError(exc.message, field="index") from None

    # namespaces --------------------------------------------------------------------------------
    def _locate(self, namespace: Any) -> tuple[str, str]:
        """``(owner, key-value namespace)`` of an item namespace."""
        labels = _labels(namespace, "namespace")
        if self.user_id is not None:
            if not labels:
                raise ValidationError("'namespace' needs at least one label", field="namespace")
            owner, rest = self.user_id, labels
        else:
            if len(labels) < 2:
                raise ValidationError(
                    "'namespace' needs the owner (user id) and at least one more label, e.g. (user_id, 'memories')",
                    field="namespace",
                )
            owner, rest = labels[0], labels[1:]
        return sh.require_name(owner, "namespace"), sh.require_name(".".join(rest), "namespace")

    def _prefix_scope(self, prefix: Any) -> tuple[str | None, str | None]:
        """``(owner or None, key-value namespace prefix or None)`` of a search prefix."""
        labels = _labels(prefix, "namespace_prefix")
        if self.user_id is not None:
            owner, rest = self.user_id, labels
        elif labels:
            owner, rest = labels[0], labels[1:]
        else:
            return None, None
        return owner, ".".join(rest) or None

    def _namespace_of(self, owner: str, kv_namespace: str) -> tuple[str, ...]:
        rest = tuple(kv_namespace.split("."))
        return rest if self.user_id is not None else (owner, *rest)

    def _item(self, row: Sequence[Any]) -> Item:
        owner, kv_ns, key, value, created, updated = row[:6]
        return Item(value=dict(value), key=key, namespace=self._namespace_of(owner, kv_ns), created_at=created,
                    updated_at=updated)

    def _search_item(self, row: Sequence[Any], score: float | None = None) -> SearchItem:
        owner, kv_ns, key, value, created, updated = row[:6]
        return SearchItem(self._namespace_of(owner, kv_ns), key, dict(value), created, updated, score)

    # batch -------------------------------------------------------------------------------------
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` in order from sync code (on the private loop thread); one result per op."""
        todo = list(ops)

        async def run(tiers: _Tiers) -> list[Result]:
            return await self._run(tiers, todo)

        return self._portal.call(run)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` in order on the caller's loop; one result per op."""
        return await self._run(self._tiers, list(ops))

    async def _run(self, tiers: _Tiers, ops: list[Op]) -> list[Result]:
        await tiers.ready()
        results: list[Result] = []
        i = 0
        while i < len(ops):
            op = ops[i]
            if isinstance(op, GetOp):
                j = i
                while j < len(ops) and isinstance(ops[j], GetOp):
                    j += 1
                results.extend(await self._get(tiers, ops[i:j]))  # type: ignore[arg-type]
                i = j
                continue
            if isinstance(op, PutOp):
                await self._put(tiers, op)
                results.append(None)
            elif isinstance(op, SearchOp):
                results.append(await self._search(tiers, op))
            elif isinstance(op, ListNamespacesOp):
                results.append(await self._list_namespaces(tiers, op))
            else:
                raise ValidationError(f"unsupported store operation {type(op).__name__}", field="ops")
            i += 1
        return results

    # get ---------------------------------------------------------------------------------------
    async def _rows(
        self, tiers: _Tiers, idents: Sequence[tuple[str, str, str]], filt: Any = None
    ) -> dict[tuple[str, str, str], tuple[Any, ...]]:
        if not idents:
            return {}
        extra, params = _filter_sql(filt)
        cols = [list(c) for c in zip(*idents, strict=True)]
        rows = await sh.pg_fetch(tiers.kv.stores, _BY_IDENT + extra, (*cols, *params))
        return {(r[0], r[1], r[2]): r for r in rows}

    async def _get(self, tiers: _Tiers, ops: Sequence[GetOp]) -> list[Item | None]:
        idents = []
        for op in ops:
            owner, kv_ns = self._locate(op.namespace)
            idents.append((owner, kv_ns, sh.require_name(op.key, "key")))
        rows = await self._rows(tiers, idents)
        return [self._item(rows[i]) if i in rows else None for i in idents]

    # put / delete ------------------------------------------------------------------------------
    def _texts(self, tiers: _Tiers, value: dict[str, Any], fields: tuple[str, ...]) -> list[tuple[str, str]]:
        """``(field, text)`` pairs to embed, checked against the vector tier's content limit."""
        assert tiers.vector is not None
        limit = tiers.vector.config.max_message_chars
        out: list[tuple[str, str]] = []
        for path in fields:
            for text in get_text_at_path(value, path):
                if not text.strip():
                    continue
                if "\x00" in text:
                    raise ValidationError("indexed text must not contain NUL characters", field="value")
                if len(text) > limit:
                    raise ValidationError(
                        f"the text indexed at {path!r} is {len(text)} characters; the vector tier's limit is {limit} "
                        f"(max_message_chars): index fewer fields or pass index=False",
                        field="value",
                    )
                out.append((path, text))
        return out

    async def _put(self, tiers: _Tiers, op: PutOp) -> None:
        owner, kv_ns = self._locate(op.namespace)
        key = sh.require_name(op.key, "key")
        vector_ns = _vector_namespace(kv_ns, key)
        if op.value is None:
            await tiers.kv.delete(key, namespace=kv_ns, user_id=owner)
            if tiers.vector is not None:
                await tiers.vector.clear(user_id=owner, namespace=vector_ns)
            return
        if not isinstance(op.value, Mapping):
            raise ValidationError(f"'value' must be a dict (or None to delete), got {type(op.value).__name__}",
                                  field="value")
        value = dict(op.value)
        seconds = _ttl_seconds(op.ttl)
        if op.index is False or op.index is None:
            fields = None if op.index is False else self.index_fields
        else:
            if tiers.vector is None:
                raise ConfigError("'index' fields need a vector tier (vector_database)", field="index")
            fields = _fields(op.index, "index")
        texts = self._texts(tiers, value, fields) if fields and tiers.vector is not None else []
        await tiers.kv.set(key, value, namespace=kv_ns, user_id=owner, ttl=seconds)
        if tiers.vector is None:
            return
        await tiers.vector.clear(user_id=owner, namespace=vector_ns)
        if texts:
            base = {"namespace": kv_ns, "key": key, "prefixes": _prefixes(kv_ns)}
            await tiers.vector.store_many([
                {"content": text, "user_id": owner, "namespace": vector_ns,
                 "metadata": {META_KEY: {**base, "field": path}}}
                for path, text in texts
            ])

    # search ------------------------------------------------------------------------------------
    async def _search(self, tiers: _Tiers, op: SearchOp) -> list[SearchItem]:
        owner, kv_prefix = self._prefix_scope(op.namespace_prefix)
        limit = _count(op.limit, "limit")
        offset = _count(op.offset, "offset")
        if op.query is not None and not isinstance(op.query, str):
            raise ValidationError(f"'query' must be a string, got {type(op.query).__name__}", field="query")
        if op.query and op.query.strip():
            return await self._semantic(tiers, op.query, owner, kv_prefix, op.filter, limit, offset)
        extra, params = _filter_sql(op.filter)
        sql = _LISTING + extra + " ORDER BY m.updated_at DESC, m.user_id, m.namespace, m.key LIMIT %s OFFSET %s"
        rows = await sh.pg_fetch(
            tiers.kv.stores, sql, (owner, owner, kv_prefix, kv_prefix, kv_prefix, *params, limit, offset)
        )
        return [self._search_item(r) for r in rows]

    async def _semantic(
        self, tiers: _Tiers, query: str, owner: str | None, kv_prefix: str | None, filt: Any, limit: int, offset: int
    ) -> list[SearchItem]:
        if tiers.vector is None:
            raise ConfigError("a search with 'query' needs a vector tier (vector_database)", field="query")
        if owner is None:
            raise ValidationError(
                "a search with 'query' needs the owner: start 'namespace_prefix' with the user id "
                "(or bind the store with user_id=)",
                field="namespace_prefix",
            )
        _filter_sql(filt)  # bad filters fail before any embedding work
        if limit == 0:
            return []
        pool = MAX_K if filt else min(MAX_K, max(20, 4 * (offset + limit)))
        scope: dict[str, Any] = {"prefixes": [kv_prefix]} if kv_prefix else {}
        hits = await tiers.vector.search(
            query, user_id=owner, k=pool, threshold=-1.0, filters={META_KEY: scope}, hybrid=False
        )
        best: dict[tuple[str, str, str], float] = {}
        for hit in hits:
            meta = hit.metadata.get(META_KEY)
            if not isinstance(meta, Mapping) or not isinstance(meta.get("namespace"), str):
                continue
            ident = (owner, str(meta["namespace"]), str(meta.get("key")))
            score = hit.similarity if hit.similarity is not None else hit.score
            if ident not in best or score > best[ident]:
                best[ident] = score
        order = sorted(best, key=lambda i: -best[i])
        rows = await self._rows(tiers, order, filt)
        found = [i for i in order if i in rows][offset : offset + limit]
        return [self._search_item(rows[i], best[i]) for i in found]

    # list namespaces ---------------------------------------------------------------------------
    async def _list_namespaces(self, tiers: _Tiers, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        conditions = _conditions(op.match_conditions)
        limit = _count(op.limit, "limit")
        offset = _count(op.offset, "offset")
        depth = _count(op.max_depth, "max_depth", minimum=1) if op.max_depth is not None else None
        owner = self.user_id
        if owner is None:
            for cond in conditions:
                if cond.match_type == "prefix" and cond.path and cond.path[0] != "*":
                    owner = cond.path[0]
        rows = await sh.pg_fetch(tiers.kv.stores, _NAMESPACES, (owner, owner))
        found = {self._namespace_of(r[0], r[1]) for r in rows}
        found = {ns for ns in found if all(_matches(c, ns) for c in conditions)}
        if depth is not None:
            found = {ns[:depth] for ns in found}
        return sorted(found)[offset : offset + limit]

    # lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the sync loop thread (and the tiers it built)."""
        self._portal.close()

    async def aclose(self) -> None:
        """Close the tiers this store built (not ones passed in) and the sync loop thread."""
        await self._tiers.close()
        await asyncio.to_thread(self._portal.close)


__all__ = ["DEFAULT_INDEX_FIELDS", "META_KEY", "MemoryStore", "StoreSource"]
