"""``EntityMemory``: people, organisations, places and concepts mentioned in conversation, in PostgreSQL.

Each stored message is run through the configured extractor (an LLM's JSON mode when a key is set,
else the offline rule-based extractor) by the shared background worker. Entities merge across
spellings and aliases (see :mod:`.names`), newer attribute values supersede older ones (which are
kept in ``memory_entity_attribute_history``), relationships accumulate weight, and importance
combines mention count with exponential recency decay.

``store`` does not persist the text itself: it validates, schedules extraction and returns a
``StoredRef`` with ``durable=False`` (the conversation tiers hold the message). Use ``process`` to
extract synchronously, ``add_entity`` / ``add_relationship`` to write directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from ..base import BaseMemory
from ..config import MemoryConfig
from ..errors import BackendUnavailable, NotFound, ProviderError, ValidationError
from ..providers.interfaces import USER_ENTITY, EntityExtractor, Extraction
from ..stores import Stores
from ..types import ROLES, ContextRequest, MemoryContext, MemoryType, Message, Stopwatch, StoredRef
from ._provider_key import provider_key
from .entity_store import EntityStore, UpsertResult, attr_value, attribute_key, flat_attributes
from .names import content_tokens, normalize_name, query_ngrams

DEFAULT_HALF_LIFE_DAYS = 14.0
SECTION = "entities"


@dataclass(slots=True)
class ProcessResult:
    """What one extraction wrote: entity upserts and relationships."""

    entities: list[dict[str, Any]] = field(default_factory=list)
    relationships: list[dict[str, Any]] = field(default_factory=list)
    extractor: str = ""
    fallback: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain dict view."""
        return asdict(self)


@dataclass(slots=True)
class _Input:
    content: str
    user_id: str
    session_id: str | None
    role: str
    source_message_id: int | None
    observed_at: datetime | None


class EntityMemory(BaseMemory):
    """Extracts, merges and serves entities with attributes, aliases, relationships and importance."""

    memory_type: ClassVar[MemoryType] = MemoryType.ENTITY_MEMORY
    backends: ClassVar[tuple[str, ...]] = ("postgres",)
    #: ``get_context``'s ``extra["matched_entities"]`` names exactly what ``find_entities_in_text(query)``
    #: finds, so the orchestrator steers the vector search with it instead of a second lookup.
    reports_query_entities: ClassVar[bool] = True

    def __init__(
        self,
        config: Mapping[str, Any] | MemoryConfig | None = None,
        *,
        stores: Stores | None = None,
        extractor: EntityExtractor | None = None,
        fallback_extractor: EntityExtractor | None = None,
        half_life_days: float | None = None,
        fuzzy_threshold: float = 0.92,
    ) -> None:
        """Configure the tier; ``extractor`` overrides the configured one, ``half_life_days`` the importance decay."""
        super().__init__(config, stores=stores)
        self._extractor = extractor
        self._fallback = fallback_extractor
        hl = half_life_days if half_life_days is not None else getattr(self.config, "entity_half_life_days", None)
        self.half_life_days = float(hl) if hl else DEFAULT_HALF_LIFE_DAYS
        if self.half_life_days <= 0:
            raise ValidationError("half_life_days must be > 0", field="half_life_days")
        self._fuzzy_threshold = fuzzy_threshold
        self._db: EntityStore | None = None
        self.stats: dict[str, int] = {
            "extractions": 0,
            "fallbacks": 0,
            "entities_upserted": 0,
            "relationships_upserted": 0,
        }

    # --- set-up --------------------------------------------------------------------------------------
    async def _setup(self) -> None:
        stores = self.stores
        self._db = EntityStore(stores.pg, fuzzy_threshold=self._fuzzy_threshold)
        if self._extractor is None:
            from ..providers.llm import build_entity_extractor

            cfg = self.config
            self._extractor = stores.shared(provider_key("entity_extractor", cfg), lambda: build_entity_extractor(cfg))

    @property
    def db(self) -> EntityStore:
        """The SQL layer (after ``initialize``)."""
        if self._db is None:
            raise BackendUnavailable(f"{type(self).__name__} is not initialized: await memory.initialize() first")
        return self._db

    @property
    def extractor(self) -> EntityExtractor:
        """The extractor in use (after ``initialize``)."""
        assert self._extractor is not None, "initialize() first"
        return self._extractor

    @property
    def half_life_seconds(self) -> float:
        """Importance half-life in seconds."""
        return self.half_life_days * 86400.0

    def _fallback_extractor(self) -> EntityExtractor | None:
        if self._fallback is None:
            from ..providers.offline import RuleBasedEntityExtractor

            self._fallback = RuleBasedEntityExtractor()
        return None if self._fallback.name == self.extractor.name else self._fallback

    # --- validation ----------------------------------------------------------------------------------
    def _validate(self, item: Mapping[str, Any] | Message | str) -> _Input:
        if isinstance(item, str):
            item = {"content": item}
        if isinstance(item, Message):
            item = {**item.to_dict(), "created_at": item.created_at}
        if not isinstance(item, Mapping):
            raise ValidationError(f"an item must be a mapping, Message or str, got {type(item).__name__}", field="item")
        content = item.get("content")
        if not isinstance(content, str) or not content.strip():
            raise ValidationError("'content' is required and must be a non-empty string", field="content")
        if len(content) > self.config.max_message_chars:
            raise ValidationError(
                f"'content' is {len(content)} characters; "
                f"the limit is {self.config.max_message_chars} (max_message_chars)",
                field="content",
            )
        user_id = _opt_str(item, "user_id") or "default"
        session_id = _opt_str(item, "session_id")
        role = item.get("role", "user")
        if role not in ROLES:
            raise ValidationError(f"'role' must be one of {', '.join(ROLES)}; got {role!r}", field="role")
        mid = item.get("message_id", item.get("id"))
        if mid is not None and (isinstance(mid, bool) or not isinstance(mid, int)):
            raise ValidationError("'message_id' must be an integer message id", field="message_id")
        observed = item.get("created_at") or item.get("timestamp")
        if isinstance(observed, str):
            try:
                observed = datetime.fromisoformat(observed)
            except ValueError as exc:
                raise ValidationError(
                    f"'created_at' is not an ISO timestamp: {observed!r}", field="created_at"
                ) from exc
        if observed is not None and not isinstance(observed, datetime):
            raise ValidationError("'created_at' must be a datetime or ISO string", field="created_at")
        return _Input(content, user_id, session_id, str(role), mid, observed)

    # --- the interface -------------------------------------------------------------------------------
    async def store(self, item: Mapping[str, Any] | Message | str) -> StoredRef:
        """Validate and schedule extraction in the background worker; ``durable=False`` (the text is not kept)."""
        data = self._validate(item)
        stores = await self._ensure()
        job_id = f"extraction:{uuid.uuid4().hex}"

        async def job() -> None:
            await self._process(data)

        stores.worker.submit(job, name="entity_extraction")
        return StoredRef(id=job_id, memory_type=self.memory_type, durable=False, created=True)

    async def flush(self) -> None:
        """Wait for scheduled extractions (the shared worker's pending jobs) to finish."""
        stores = await self._ensure()
        await stores.worker.flush()

    async def process(
        self,
        text: str,
        *,
        user_id: str = "default",
        session_id: str | None = None,
        role: str = "user",
        source_message_id: int | None = None,
        observed_at: datetime | None = None,
    ) -> ProcessResult:
        """Extract entities from ``text`` now and merge them into memory."""
        data = self._validate(
            {
                "content": text,
                "user_id": user_id,
                "session_id": session_id,
                "role": role,
                "message_id": source_message_id,
                "created_at": observed_at,
            }
        )
        return await self._process(data)

    async def _extract(self, data: _Input) -> tuple[Extraction, str, bool]:
        types = list(self.config.entity_types)
        known = await self.db.known_names(data.user_id)
        try:
            return (
                await self.extractor.extract(data.content, entity_types=types, known_entities=known),
                self.extractor.name,
                False,
            )
        except ProviderError as exc:
            fallback = self._fallback_extractor()
            if fallback is None:
                raise
            self.stats["fallbacks"] += 1
            self.log.warning("entity_extractor_fallback", extractor=self.extractor.name, error=exc.message)
            return await fallback.extract(data.content, entity_types=types, known_entities=known), fallback.name, True

    async def _process(self, data: _Input) -> ProcessResult:
        await self._ensure()
        extraction, used, fell_back = await self._extract(data)
        self.stats["extractions"] += 1
        allowed = set(self.config.entity_types)
        entities = [e for e in extraction.entities if e.type.lower() in allowed and normalize_name(e.name)]
        rels = extraction.relationships if self.config.relationship_tracking else []
        if data.role != "user":  # "I" in an assistant/system/tool message is not the user
            entities = [e for e in entities if e.name != USER_ENTITY]
            rels = [r for r in rels if USER_ENTITY not in (r.source, r.target)]
        result = ProcessResult(extractor=used, fallback=fell_back)
        if not entities:
            return result
        async with self.stores.pg.connection() as conn, conn.transaction():
            await EntityStore.lock_user(conn, data.user_id)
            ids: dict[str, UpsertResult] = {}
            for ent in entities:
                res = await self.db.upsert_entity(
                    conn,
                    data.user_id,
                    ent.name,
                    ent.type.lower(),
                    aliases=ent.aliases,
                    attributes=ent.attributes,
                    observed_at=data.observed_at,
                    source_message_id=data.source_message_id,
                )
                if res is None:
                    continue
                ids[ent.name.lower()] = res
                for alias in ent.aliases:
                    ids.setdefault(alias.lower(), res)
                result.entities.append(
                    {
                        "id": res.id,
                        "name": res.name,
                        "type": res.entity_type,
                        "created": res.created,
                        "superseded": res.superseded,
                    }
                )
            for rel in rels:
                src, tgt = ids.get(rel.source.lower()), ids.get(rel.target.lower())
                if src is None or tgt is None or src.id == tgt.id:
                    continue
                row = await self.db.upsert_relationship(
                    conn,
                    data.user_id,
                    src.id,
                    tgt.id,
                    _rel_type(rel.type),
                    weight=float(rel.weight or 1.0),
                    evidence=data.content[:500],
                    source_message_id=data.source_message_id,
                )
                result.relationships.append({**row, "source": src.name, "target": tgt.name})
        self.stats["entities_upserted"] += len(result.entities)
        self.stats["relationships_upserted"] += len(result.relationships)
        return result

    async def add_entity(
        self,
        name: str,
        entity_type: str,
        *,
        user_id: str = "default",
        aliases: Sequence[str] = (),
        attributes: Mapping[str, Any] | None = None,
        observed_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Add (or merge into) an entity directly; returns the entity as :meth:`get_entity` does."""
        if not isinstance(name, str) or not normalize_name(name):
            raise ValidationError("'name' must be a non-empty name", field="name")
        if not isinstance(entity_type, str) or entity_type.strip().lower() not in self.config.entity_types:
            raise ValidationError(
                f"'entity_type' must be one of {', '.join(self.config.entity_types)}; got {entity_type!r}",
                field="entity_type",
            )
        if isinstance(aliases, str) or not all(isinstance(a, str) for a in aliases):
            raise ValidationError("'aliases' must be a list of strings", field="aliases")
        if attributes is not None and not isinstance(attributes, Mapping):
            raise ValidationError("'attributes' must be a mapping", field="attributes")
        for key in attributes or {}:
            if not attribute_key(str(key)):
                raise ValidationError(f"attribute name {key!r} is empty", field="attributes")
        _require_user(user_id)
        stores = await self._ensure()
        async with stores.pg.connection() as conn, conn.transaction():
            await EntityStore.lock_user(conn, user_id)
            res = await self.db.upsert_entity(
                conn,
                user_id,
                name,
                entity_type.strip().lower(),
                aliases=list(aliases),
                attributes=attributes,
                observed_at=observed_at,
            )
        assert res is not None
        entity = await self.get_entity(res.name, user_id=user_id)
        assert entity is not None
        entity["created"] = res.created
        return entity

    async def add_relationship(
        self,
        source: str,
        target: str,
        relation_type: str,
        *,
        user_id: str = "default",
        weight: float = 1.0,
        evidence: str | None = None,
    ) -> dict[str, Any]:
        """Link two existing entities (by name or alias); repeated calls add ``weight``."""
        for fname, value in (("source", source), ("target", target), ("relation_type", relation_type)):
            if not isinstance(value, str) or not value.strip():
                raise ValidationError(f"'{fname}' must be a non-empty string", field=fname)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise ValidationError("'weight' must be a positive number", field="weight")
        _require_user(user_id)
        if not self.config.relationship_tracking:
            raise ValidationError("relationship_tracking is off in this configuration", field="relationship_tracking")
        stores = await self._ensure()
        async with stores.pg.connection() as conn, conn.transaction():
            await EntityStore.lock_user(conn, user_id)
            ends = []
            for fname, value in (("source", source), ("target", target)):
                row = await self.db.resolve(conn, user_id, [normalize_name(value)], None)
                if row is None:
                    raise NotFound(f"no entity named {value!r} for this user", field=fname)
                ends.append(row)
            if ends[0]["id"] == ends[1]["id"]:
                raise ValidationError("'source' and 'target' name the same entity", field="target")
            out = await self.db.upsert_relationship(
                conn,
                user_id,
                str(ends[0]["id"]),
                str(ends[1]["id"]),
                _rel_type(relation_type),
                weight=float(weight),
                evidence=evidence,
            )
        return {**out, "source": ends[0]["name"], "target": ends[1]["name"]}

    # --- reads ---------------------------------------------------------------------------------------
    async def get_entity(
        self, name: str, *, user_id: str = "default", with_relationships: bool = True
    ) -> dict[str, Any] | None:
        """The entity called ``name`` (or with that alias), with attributes, aliases and relationships."""
        await self._ensure()
        row = await self.db.lookup(user_id, name)
        if row is None:
            return None
        rows = await self.db.match_forms(user_id, [row["normalized_name"]], half_life=self.half_life_seconds, limit=1)
        full = await self._hydrate(user_id, rows or [row], with_relationships=with_relationships)
        return full[0]

    async def get_attribute_history(
        self, name: str, *, user_id: str = "default", attribute: str | None = None
    ) -> list[dict[str, Any]]:
        """Superseded values of an entity's attributes (optionally one attribute), oldest first."""
        await self._ensure()
        row = await self.db.lookup(user_id, name)
        if row is None:
            raise NotFound(f"no entity named {name!r} for this user", field="name")
        rows = await self.db.attribute_history(user_id, str(row["id"]), attribute_key(attribute) if attribute else None)
        return [
            {
                "attribute": r["attribute"],
                "value": r["value"],
                "valid_from": r["valid_from"].isoformat(),
                "superseded_at": r["superseded_at"].isoformat(),
                "source_message_id": r["source_message_id"],
            }
            for r in rows
        ]

    async def list_entities(
        self, *, user_id: str = "default", entity_type: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The user's entities by decayed importance (optionally of one type)."""
        await self._ensure()
        rows = await self.db.top_entities(
            user_id, half_life=self.half_life_seconds, limit=limit, entity_type=entity_type
        )
        return await self._hydrate(user_id, rows, with_relationships=False)

    async def find_entities_in_text(
        self, text: str, user_id: str = "default", *, limit: int = 10
    ) -> list[dict[str, Any]]:
        """Entities the text names, by name or alias (n-grams), or by a person's first/last name; best first."""
        await self._ensure()
        if not isinstance(text, str) or not text.strip():
            return []
        named, _ = await self._lookup(text, user_id, limit=limit, top=0)
        return named

    async def _lookup(
        self, text: str, user_id: str, *, limit: int, top: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The entities ``text`` names (hydrated) and the ``top`` most important others: one SQL statement."""
        grams = query_ngrams(text) if text.strip() else []
        words = [w for w in content_tokens(text) if len(w) >= 3] if grams else []  # words are among the grams
        named_rows, other_rows = await self.db.context_rows(
            user_id, grams, words, half_life=self.half_life_seconds, named_limit=limit, top_limit=top
        )
        return self._entities(named_rows), self._entities(other_rows)

    async def get_entity_analytics(self, user_id: str = "default", *, top: int = 10) -> dict[str, Any]:
        """Totals, counts by type, relationship counts by type, top entities and entities first seen per day."""
        await self._ensure()
        out = await self.db.analytics(user_id, half_life=self.half_life_seconds, top=top)
        out["half_life_days"] = self.half_life_days
        return out

    async def get_context(
        self, query: Mapping[str, Any] | ContextRequest | str | None = None, *, max_tokens: int | None = None
    ) -> MemoryContext:
        """Entities the query names (with attributes and relationships), then the most important others."""
        watch = Stopwatch()
        req = ContextRequest.from_any(query)
        await self._ensure()
        budget = self.budget(max_tokens if max_tokens is not None else req.max_total_tokens)
        # one statement: the entities the query names (as find_entities_in_text) + the most important others
        named, others = await self._lookup(
            req.query if isinstance(req.query, str) else "", req.user_id, limit=10,
            top=max(10, (self.config.max_results or 10) * 4),
        )
        top_score = max([e["importance"] for e in others] + [1e-9])
        tok = self.tokenizer
        items: list[dict[str, Any]] = []
        used = 0
        truncated = False
        for rank, (entity, matched) in enumerate([(e, True) for e in named] + [(e, False) for e in others]):
            line = render_entity(entity)
            cost = tok.count(line) + (1 if items else 0)
            if used + cost > budget:
                truncated = True
                if matched and not items and budget > 0:
                    line = tok.truncate(line, budget)
                    cost = tok.count(line)
                else:
                    continue
            used += cost
            score = 1.0 - rank * 1e-3 if matched else 0.5 * entity["importance"] / top_score
            items.append(
                {
                    "section": SECTION,
                    "id": f"entity:{entity['id']}",
                    "content": line,
                    "score": round(score, 6),
                    "token_count": tok.count(line),
                    "matched": matched,
                    "entity": entity,
                }
            )
        text = "\n".join(i["content"] for i in items)
        return MemoryContext(
            memory_type=self.memory_type,
            items=items,
            text=text,
            token_count=tok.count(text),
            latency_ms=watch.ms,
            truncated=truncated,
            extra={
                "entities": [i["entity"] for i in items],
                "matched_entities": [e["name"] for e in named],
                "user_id": req.user_id,
            },
        )

    async def clear(
        self, *, session_id: str | None = None, user_id: str | None = None, namespace: str | None = None
    ) -> int:
        """Delete a user's entities, aliases, history and relationships; return the entity count.

        Entities belong to a user, not to a session: a call naming a ``session_id`` removes nothing
        (so clearing one conversation never erases what is known about the user); use ``forget_user``.
        """
        if session_id is not None:
            return 0
        if user_id is None:
            raise ValidationError("clear needs user_id (entities are per user)", field="user_id")
        _require_user(user_id)
        await self._ensure()
        return await self.db.clear_user(user_id)

    async def delete_entity(self, name: str, *, user_id: str = "default") -> bool:
        """Delete one entity (and its aliases, history and relationships)."""
        await self._ensure()
        row = await self.db.lookup(user_id, name)
        return False if row is None else await self.db.delete_entity(user_id, str(row["id"]))

    async def _health_details(self) -> dict[str, Any]:
        return {"extractor": self._extractor.name if self._extractor else None, "stats": dict(self.stats)}

    # --- helpers -------------------------------------------------------------------------------------
    async def _hydrate(
        self, user_id: str, rows: list[dict[str, Any]], *, with_relationships: bool
    ) -> list[dict[str, Any]]:
        if not rows:
            return []
        ids = [str(r["id"]) for r in rows]
        aliases = await self.db.aliases_of(user_id, ids)
        rels = await self.db.relationships_of(user_id, ids) if with_relationships else []
        return [
            _entity(r, aliases.get(str(r["id"]), []), rels if with_relationships else None) for r in rows
        ]

    @staticmethod
    def _entities(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Entities from :meth:`EntityStore.context_rows` rows (aliases and relationships already attached)."""
        out = [_entity(r, list(r["aliases"] or []), list(r["relationships"] or [])) for r in rows]
        for entity, r in zip(out, rows, strict=True):
            earlier = {k: attr_value(v) for k, v in (r.get("earlier") or {}).items()}
            entity["earlier_attributes"] = {k: v for k, v in earlier.items() if entity["attributes"].get(k) != v}
        return out


def _entity(r: Mapping[str, Any], aliases: list[str], rels: list[dict[str, Any]] | None) -> dict[str, Any]:
    """One entity dict from its row; ``rels`` (relationships touching it or others) adds ``relationships``."""
    eid = str(r["id"])
    raw = r["attributes"] or {}
    entity: dict[str, Any] = {
        "id": eid,
        "name": r["name"],
        "type": r["entity_type"],
        "normalized_name": r["normalized_name"],
        "aliases": aliases,
        "attributes": flat_attributes(raw),
        "attribute_since": {k: v.get("since") for k, v in raw.items() if isinstance(v, Mapping)},
        "mention_count": int(r["mention_count"]),
        "importance": float(r.get("score", r["importance"])),
        "first_seen": r["first_seen"].isoformat(),
        "last_seen": r["last_seen"].isoformat(),
    }
    if rels is not None:
        out_rels = []
        for x in rels:
            src, tgt = str(x["source_entity_id"]), str(x["target_entity_id"])
            if eid not in (src, tgt):
                continue
            out = src == eid
            out_rels.append(
                {
                    "type": x["relation_type"],
                    "direction": "out" if out else "in",
                    "other": x["target_name"] if out else x["source_name"],
                    "other_type": x["target_type"] if out else x["source_type"],
                    "weight": float(x["weight"]),
                }
            )
        entity["relationships"] = out_rels
    return entity


def render_entity(entity: Mapping[str, Any], *, max_relationships: int = 6) -> str:
    """One compact line: ``Ana (person): job=nurse; city=Dallas (since 2026-03-02, earlier Chicago); works_at Mercy``.

    An attribute whose value changed shows the current value first, then when it changed and the value
    it replaced, so the model answers with the current fact.
    """
    head = f"{entity['name']} ({entity['type']}"
    aliases = [a for a in entity.get("aliases", []) if a != entity["name"]]
    head += f", aka {', '.join(aliases[:3])})" if aliases else ")"
    earlier = entity.get("earlier_attributes") or {}
    since = entity.get("attribute_since") or {}
    parts = []
    for k, v in entity.get("attributes", {}).items():
        if k in earlier:
            day = str(since.get(k) or "")[:10]
            parts.append(f"{k}={v} ({'since ' + day + ', ' if day else ''}earlier {earlier[k]})")
        else:
            parts.append(f"{k}={v}")
    for rel in entity.get("relationships", [])[:max_relationships]:
        parts.append(
            f"{rel['type']} {rel['other']}" if rel["direction"] == "out" else f"{rel['other']} {rel['type']} it"
        )
    return f"{head}: {'; '.join(parts)}" if parts else head


def _rel_type(value: str) -> str:
    return "_".join(str(value).strip().lower().replace("-", " ").split()) or "related_to"


def _opt_str(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"'{name}' must be a non-empty string", field=name)
    return value


def _require_user(user_id: object) -> None:
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValidationError("'user_id' must be a non-empty string", field="user_id")


__all__ = ["EntityMemory", "ProcessResult", "render_entity"]
