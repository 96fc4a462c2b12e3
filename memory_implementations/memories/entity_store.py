"""SQL of the entity tier: race-safe entity/alias/relationship upserts, attribute history, reads, analytics.

Every write for one user runs in one transaction under a per-user advisory transaction lock, so name
resolution (exact name, alias, then fuzzy spelling) and the upsert that follows see a stable table;
inserts still use ``ON CONFLICT (user_id, normalized_name)`` so writers that bypass the lock cannot
create duplicates either. Attribute values are kept in ``attributes`` as
``{"city": {"value": "Dallas", "since": "<iso>", "source_message_id": 12}}``; a superseded value moves
to ``memory_entity_attribute_history``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from .names import fold, normalize_name, same_entity, unique

_LOCK_NS = "mi-entity:"
_ENTITY_COLS = (
    "e.id, e.user_id, e.name, e.normalized_name, e.entity_type, e.attributes, e.mention_count, e.importance, "
    "e.first_seen, e.last_seen"
)


def base_importance(mention_count: int) -> float:
    """Importance before recency decay: 1 + ln(mentions)."""
    return 1.0 + math.log(max(1, mention_count))


def decayed(importance_sql: str = "e.importance", last_seen_sql: str = "e.last_seen") -> str:
    """SQL for importance decayed by age since last mention; binds ``%(half_life)s`` seconds."""
    return (
        f"({importance_sql} * power(0.5::float8, greatest(0, extract(epoch FROM (now() - {last_seen_sql})))"
        " / %(half_life)s))"
    )


def attr_value(raw: Any) -> Any:
    """The plain value of one stored attribute (tolerates flat values written by other tools)."""
    if isinstance(raw, Mapping) and "value" in raw:
        return raw["value"]
    return raw


def flat_attributes(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"city": "Dallas"}`` from the stored attribute map."""
    return {k: attr_value(v) for k, v in (raw or {}).items()}


def attribute_key(key: str) -> str:
    """Canonical attribute name: folded, words joined by underscores."""
    return "_".join(fold(str(key)).replace("-", " ").split())


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(fold(a).split()) == " ".join(fold(b).split())
    return bool(a == b)


@dataclass(slots=True)
class UpsertResult:
    """The entity row an upsert landed on."""

    id: str
    name: str
    entity_type: str
    created: bool
    merged_from: str | None = None
    superseded: int = 0


class EntityStore:
    """All SQL of the entity tier over one psycopg pool."""

    def __init__(self, pool: AsyncConnectionPool, *, fuzzy_threshold: float = 0.92) -> None:
        """Use ``pool``; names at or above ``fuzzy_threshold`` (same type) are one entity."""
        self.pool = pool
        self.fuzzy_threshold = fuzzy_threshold

    # --- writes --------------------------------------------------------------------------------------
    @staticmethod
    async def lock_user(conn: psycopg.AsyncConnection[Any], user_id: str) -> None:
        """Take the per-user advisory transaction lock (call inside a transaction)."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_LOCK_NS + user_id,))

    async def resolve(
        self, conn: psycopg.AsyncConnection[Any], user_id: str, forms: Sequence[str], entity_type: str | None
    ) -> dict[str, Any] | None:
        """The existing entity for these normalised forms: exact name, alias, fuzzy spelling, person first name."""
        if not forms:
            return None
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"SELECT {_ENTITY_COLS}, 0 AS how, array_position(%(forms)s::text[], e.normalized_name) AS pos "
            "FROM memory_entities e WHERE e.user_id = %(u)s AND e.normalized_name = ANY(%(forms)s) "
            f"UNION ALL SELECT {_ENTITY_COLS}, 1 AS how, array_position(%(forms)s::text[], a.normalized_alias) AS pos "
            "FROM memory_entity_aliases a JOIN memory_entities e ON e.id = a.entity_id "
            "WHERE a.user_id = %(u)s AND a.normalized_alias = ANY(%(forms)s) ORDER BY pos, how LIMIT 1",
            {"u": user_id, "forms": list(forms)},
        )
        row = await cur.fetchone()
        if row is not None or entity_type is None:
            return row
        primary = forms[0]
        await cur.execute(
            f"SELECT {_ENTITY_COLS}, "
            "coalesce(array_agg(a.normalized_alias) FILTER (WHERE a.normalized_alias IS NOT NULL), "
            "'{}') AS alias_forms FROM memory_entities e LEFT JOIN memory_entity_aliases a "
            "ON a.entity_id = e.id AND a.user_id = e.user_id "
            "WHERE e.user_id = %(u)s AND e.entity_type = %(t)s AND left(e.normalized_name, 1) = ANY(%(initials)s) "
            "GROUP BY e.id ORDER BY e.mention_count DESC, e.first_seen LIMIT 500",
            {"u": user_id, "t": entity_type, "initials": unique(f[:1] for f in forms)},
        )
        candidates = await cur.fetchall()
        for cand in candidates:
            names = [cand["normalized_name"], *cand["alias_forms"]]
            if any(same_entity(f, n, threshold=self.fuzzy_threshold) for f in forms for n in names):
                return cand
        if entity_type == "person":
            return self._person_reference(primary, candidates)
        return None

    @staticmethod
    def _person_reference(primary: str, candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
        """ "Ana" -> the one person "Ana Lopez" (and "Ana Lopez" -> the one person "Ana"); None if ambiguous."""
        parts = primary.split()
        if len(parts) == 1:
            hits = [
                c
                for c in candidates
                if len(c["normalized_name"].split()) > 1 and c["normalized_name"].split()[0] == parts[0]
            ]
        else:
            hits = [c for c in candidates if c["normalized_name"] == parts[0]]
        return hits[0] if len(hits) == 1 else None

    async def upsert_entity(
        self,
        conn: psycopg.AsyncConnection[Any],
        user_id: str,
        name: str,
        entity_type: str,
        *,
        aliases: Sequence[str] = (),
        attributes: Mapping[str, Any] | None = None,
        observed_at: datetime | None = None,
        source_message_id: int | None = None,
        mentions: int = 1,
    ) -> UpsertResult | None:
        """Merge one mention into its entity (creating it if new); call inside a transaction holding the user lock."""
        primary = normalize_name(name)
        if not primary:
            return None
        alias_forms = [(a, normalize_name(a)) for a in aliases if normalize_name(a)]
        forms = unique([primary, *(f for _, f in alias_forms)])
        found = await self.resolve(conn, user_id, forms, entity_type)
        cur = conn.cursor(row_factory=dict_row)
        when = {"at": observed_at}
        merged_from: str | None = None
        if found is None:
            await cur.execute(
                "INSERT INTO memory_entities AS e "
                "(user_id, name, normalized_name, entity_type, mention_count, importance, "
                "first_seen, last_seen) VALUES (%(u)s, %(name)s, %(norm)s, %(t)s, %(m)s, %(imp)s, "
                "coalesce(%(at)s, now()), coalesce(%(at)s, now())) "
                "ON CONFLICT (user_id, normalized_name) DO UPDATE SET "
                "mention_count = e.mention_count + EXCLUDED.mention_count, "
                "importance = 1 + ln(e.mention_count + EXCLUDED.mention_count), "
                "last_seen = greatest(e.last_seen, EXCLUDED.last_seen), "
                "first_seen = least(e.first_seen, EXCLUDED.first_seen) "
                f"RETURNING {_ENTITY_COLS.replace('e.', '')}, (xmax = 0) AS created",
                {
                    "u": user_id,
                    "name": name.strip(),
                    "norm": primary,
                    "t": entity_type,
                    "m": mentions,
                    "imp": base_importance(mentions),
                    **when,
                },
            )
            row = await cur.fetchone()
            assert row is not None
            created = bool(row["created"])
        else:
            created = False
            new_name, new_norm = found["name"], found["normalized_name"]
            if (
                entity_type == "person"
                and found["entity_type"] == "person"
                and len(primary.split()) > len(new_norm.split())
                and primary.split()[0] == new_norm
            ):
                merged_from, new_name, new_norm = found["name"], name.strip(), primary  # "Ana" grows into "Ana Lopez"
            await cur.execute(
                "UPDATE memory_entities SET mention_count = mention_count + %(m)s, "
                "importance = 1 + ln(mention_count + %(m)s), last_seen = greatest(last_seen, coalesce(%(at)s, now())), "
                "first_seen = least(first_seen, coalesce(%(at)s, now())), name = %(name)s, normalized_name = %(norm)s "
                f"WHERE id = %(id)s RETURNING {_ENTITY_COLS.replace('e.', '')}",
                {"m": mentions, "id": found["id"], "name": new_name, "norm": new_norm, **when},
            )
            row = await cur.fetchone()
            assert row is not None
            if merged_from is not None:
                alias_forms.append((merged_from, normalize_name(merged_from)))
            if primary != row["normalized_name"]:
                alias_forms.append((name.strip(), primary))
        entity_id = str(row["id"])
        await self._add_aliases(conn, user_id, entity_id, row["normalized_name"], alias_forms)
        superseded = 0
        if attributes:
            superseded = await self._merge_attributes(
                conn,
                user_id,
                entity_id,
                row["attributes"] or {},
                row["first_seen"],
                attributes,
                observed_at=observed_at,
                source_message_id=source_message_id,
            )
        return UpsertResult(entity_id, row["name"], row["entity_type"], created, merged_from, superseded)

    async def _add_aliases(
        self,
        conn: psycopg.AsyncConnection[Any],
        user_id: str,
        entity_id: str,
        own: str,
        aliases: Sequence[tuple[str, str]],
    ) -> None:
        rows = [(user_id, entity_id, alias.strip(), norm) for alias, norm in aliases if norm and norm != own]
        seen: set[str] = set()
        for r in rows:
            if r[3] in seen:
                continue
            seen.add(r[3])
            await conn.execute(
                "INSERT INTO memory_entity_aliases (user_id, entity_id, alias, normalized_alias) "
                "VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (user_id, normalized_alias) DO NOTHING",
                r,
            )

    async def _merge_attributes(
        self,
        conn: psycopg.AsyncConnection[Any],
        user_id: str,
        entity_id: str,
        current: Mapping[str, Any],
        first_seen: datetime,
        incoming: Mapping[str, Any],
        *,
        observed_at: datetime | None,
        source_message_id: int | None,
    ) -> int:
        """Apply new attribute values; each changed value's predecessor goes to the history table."""
        merged = dict(current)
        changed = superseded = 0
        cur = await conn.execute("SELECT coalesce(%s, now())", (observed_at,))
        now_row = await cur.fetchone()
        assert now_row is not None
        at: datetime = now_row[0]
        for raw_key, value in incoming.items():
            key = attribute_key(raw_key)
            if not key or value is None or (isinstance(value, str) and not value.strip()):
                continue
            value = value.strip() if isinstance(value, str) else value
            old = merged.get(key)
            if old is not None and _same_value(attr_value(old), value):
                continue
            if old is not None:
                since = old.get("since") if isinstance(old, Mapping) else None
                await conn.execute(
                    "INSERT INTO memory_entity_attribute_history (user_id, entity_id, attribute, value, valid_from, "
                    "superseded_at, source_message_id) VALUES (%s, %s, %s, %s, coalesce(%s::timestamptz, %s), %s, %s)",
                    (user_id, entity_id, key, Jsonb(attr_value(old)), since, first_seen, at, source_message_id),
                )
                superseded += 1
            merged[key] = {"value": value, "since": at.isoformat(), "source_message_id": source_message_id}
            changed += 1
        if changed:
            await conn.execute("UPDATE memory_entities SET attributes = %s WHERE id = %s", (Jsonb(merged), entity_id))
        return superseded

    async def upsert_relationship(
        self,
        conn: psycopg.AsyncConnection[Any],
        user_id: str,
        source_id: str,
        target_id: str,
        relation_type: str,
        *,
        weight: float = 1.0,
        evidence: str | None = None,
        source_message_id: int | None = None,
    ) -> dict[str, Any]:
        """Insert a relationship or add ``weight`` to the existing one."""
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "INSERT INTO memory_entity_relationships AS r (user_id, source_entity_id, target_entity_id, relation_type, "
            "weight, evidence, evidence_message_id) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (user_id, source_entity_id, target_entity_id, relation_type) DO UPDATE SET "
            "weight = r.weight + EXCLUDED.weight, updated_at = now(), "
            "evidence = coalesce(EXCLUDED.evidence, r.evidence), "
            "evidence_message_id = coalesce(EXCLUDED.evidence_message_id, r.evidence_message_id) "
            "RETURNING id, relation_type, weight, (xmax = 0) AS created",
            (user_id, source_id, target_id, relation_type, weight, evidence, source_message_id),
        )
        row = await cur.fetchone()
        assert row is not None
        return {
            "id": str(row["id"]),
            "type": row["relation_type"],
            "weight": float(row["weight"]),
            "created": row["created"],
        }

    # --- reads ---------------------------------------------------------------------------------------
    async def lookup(self, user_id: str, name: str) -> dict[str, Any] | None:
        """The entity called ``name`` (by normalised name or alias)."""
        form = normalize_name(name)
        if not form:
            return None
        async with self.pool.connection() as conn:
            return await self.resolve(conn, user_id, [form], None)

    async def match_forms(
        self, user_id: str, forms: Sequence[str], *, half_life: float, limit: int = 20
    ) -> list[dict[str, Any]]:
        """Entities whose normalised name or alias is one of ``forms``, most important first."""
        if not forms:
            return []
        sql = (
            f"SELECT {_ENTITY_COLS}, {decayed()} AS score FROM memory_entities e WHERE e.user_id = %(u)s AND "
            "(e.normalized_name = ANY(%(forms)s) OR e.id IN (SELECT a.entity_id FROM memory_entity_aliases a "
            "WHERE a.user_id = %(u)s AND a.normalized_alias = ANY(%(forms)s))) ORDER BY score DESC LIMIT %(lim)s"
        )
        return await self._rows(sql, {"u": user_id, "forms": list(forms), "half_life": half_life, "lim": limit})

    async def match_person_tokens(
        self, user_id: str, words: Sequence[str], *, half_life: float, limit: int = 10
    ) -> list[dict[str, Any]]:
        """Persons whose first or last name token is one of ``words`` ("Ana" -> "Ana Lopez")."""
        if not words:
            return []
        sql = (
            f"SELECT {_ENTITY_COLS}, {decayed()} AS score FROM memory_entities e WHERE e.user_id = %(u)s "
            "AND e.entity_type = 'person' AND (split_part(e.normalized_name, ' ', 1) = ANY(%(w)s) "
            "OR reverse(split_part(reverse(e.normalized_name), ' ', 1)) = ANY(%(w)s)) ORDER BY score DESC LIMIT %(lim)s"
        )
        return await self._rows(sql, {"u": user_id, "w": list(words), "half_life": half_life, "lim": limit})

    async def top_entities(
        self,
        user_id: str,
        *,
        half_life: float,
        limit: int = 20,
        exclude: Sequence[str] = (),
        entity_type: str | None = None,
    ) -> list[dict[str, Any]]:
        """Entities by decayed importance, highest first."""
        sql = (
            f"SELECT {_ENTITY_COLS}, {decayed()} AS score FROM memory_entities e WHERE e.user_id = %(u)s "
            "AND NOT (e.id::text = ANY(%(ex)s)) AND (%(t)s::text IS NULL OR e.entity_type = %(t)s) "
            "ORDER BY score DESC, e.last_seen DESC LIMIT %(lim)s"
        )
        return await self._rows(
            sql, {"u": user_id, "half_life": half_life, "lim": limit, "ex": list(exclude), "t": entity_type}
        )

    async def context_rows(
        self,
        user_id: str,
        forms: Sequence[str],
        words: Sequence[str],
        *,
        half_life: float,
        named_limit: int = 10,
        top_limit: int = 0,
        relationship_limit: int = 200,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Entities a text names and the most important others, hydrated, in ONE statement.

        Named: :meth:`match_forms` rows, then :meth:`match_person_tokens` rows not already found, up to
        ``named_limit`` in all. Others: :meth:`top_entities` excluding the named, up to ``top_limit``.
        Each row carries ``aliases`` (sorted) and ``relationships`` (those touching it, heaviest first,
        at most ``relationship_limit``, with both ends' names and types) — what :meth:`aliases_of` and
        :meth:`relationships_of` return, without their extra round trips.
        """
        if not forms and not words and top_limit <= 0:
            return [], []
        rows = await self._rows(_CONTEXT_SQL, {
            "u": user_id, "forms": list(forms), "w": list(words), "half_life": half_life,
            "lim": named_limit, "top": max(0, top_limit), "rlim": relationship_limit,
        })
        named = [r for r in rows if r["grp"] < 2]
        others = [r for r in rows if r["grp"] == 2]
        return named, others

    async def aliases_of(self, user_id: str, entity_ids: Sequence[str]) -> dict[str, list[str]]:
        """Aliases per entity id."""
        rows = await self._rows(
            "SELECT entity_id, alias FROM memory_entity_aliases "
            "WHERE user_id = %(u)s AND entity_id::text = ANY(%(ids)s) "
            "ORDER BY alias",
            {"u": user_id, "ids": [str(i) for i in entity_ids]},
        )
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(str(r["entity_id"]), []).append(r["alias"])
        return out

    async def relationships_of(
        self, user_id: str, entity_ids: Sequence[str], *, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Relationships touching any of ``entity_ids`` with both ends' names, heaviest first."""
        return await self._rows(
            "SELECT r.id, r.relation_type, r.weight, r.evidence, r.source_entity_id, r.target_entity_id, "
            "s.name AS source_name, s.entity_type AS source_type, t.name AS target_name, t.entity_type AS target_type, "
            "r.created_at, r.updated_at FROM memory_entity_relationships r "
            "JOIN memory_entities s ON s.id = r.source_entity_id JOIN memory_entities t ON t.id = r.target_entity_id "
            "WHERE r.user_id = %(u)s "
            "AND (r.source_entity_id::text = ANY(%(ids)s) OR r.target_entity_id::text = ANY(%(ids)s)) "
            "ORDER BY r.weight DESC, r.updated_at DESC LIMIT %(lim)s",
            {"u": user_id, "ids": [str(i) for i in entity_ids], "lim": limit},
        )

    async def attribute_history(
        self, user_id: str, entity_id: str, attribute: str | None = None
    ) -> list[dict[str, Any]]:
        """Superseded attribute values of one entity, oldest first."""
        return await self._rows(
            "SELECT attribute, value, valid_from, superseded_at, source_message_id "
            "FROM memory_entity_attribute_history "
            "WHERE user_id = %(u)s AND entity_id = %(e)s AND (%(a)s::text IS NULL OR attribute = %(a)s) "
            "ORDER BY superseded_at, id",
            {"u": user_id, "e": entity_id, "a": attribute},
        )

    async def known_names(self, user_id: str, limit: int = 50) -> list[str]:
        """Names of the user's most mentioned entities (hints for an LLM extractor)."""
        rows = await self._rows(
            "SELECT name FROM memory_entities WHERE user_id = %(u)s "
            "ORDER BY importance DESC, last_seen DESC LIMIT %(l)s",
            {"u": user_id, "l": limit},
        )
        return [r["name"] for r in rows]

    async def analytics(self, user_id: str, *, half_life: float, top: int = 10) -> dict[str, Any]:
        """Counts by type, relationship counts, top entities and growth per day for one user."""
        params = {"u": user_id, "half_life": half_life, "top": top}
        totals = await self._rows(
            "SELECT count(*) AS entities, coalesce(sum(mention_count), 0) AS mentions, min(first_seen) AS first_seen, "
            "max(last_seen) AS last_seen FROM memory_entities WHERE user_id = %(u)s",
            params,
        )
        by_type = await self._rows(
            "SELECT entity_type, count(*) AS n, sum(mention_count) AS mentions FROM memory_entities "
            "WHERE user_id = %(u)s GROUP BY entity_type ORDER BY n DESC, entity_type",
            params,
        )
        rel_type = await self._rows(
            "SELECT relation_type, count(*) AS n, sum(weight) AS weight FROM memory_entity_relationships "
            "WHERE user_id = %(u)s GROUP BY relation_type ORDER BY n DESC, relation_type",
            params,
        )
        growth = await self._rows(
            "SELECT (first_seen AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM memory_entities "
            "WHERE user_id = %(u)s GROUP BY day ORDER BY day",
            params,
        )
        changes = await self._rows(
            "SELECT count(*) AS n FROM memory_entity_attribute_history WHERE user_id = %(u)s", params
        )
        aliases = await self._rows("SELECT count(*) AS n FROM memory_entity_aliases WHERE user_id = %(u)s", params)
        top_rows = await self.top_entities(user_id, half_life=half_life, limit=top)
        t = totals[0]
        cumulative = 0
        growth_out = []
        for g in growth:
            cumulative += int(g["n"])
            growth_out.append({"date": g["day"].isoformat(), "new_entities": int(g["n"]), "cumulative": cumulative})
        return {
            "user_id": user_id,
            "total_entities": int(t["entities"]),
            "total_mentions": int(t["mentions"]),
            "total_relationships": sum(int(r["n"]) for r in rel_type),
            "total_aliases": int(aliases[0]["n"]),
            "attribute_changes": int(changes[0]["n"]),
            "entities_by_type": {r["entity_type"]: int(r["n"]) for r in by_type},
            "mentions_by_type": {r["entity_type"]: int(r["mentions"]) for r in by_type},
            "relationships_by_type": {r["relation_type"]: int(r["n"]) for r in rel_type},
            "top_entities": [
                {
                    "id": str(r["id"]),
                    "name": r["name"],
                    "type": r["entity_type"],
                    "mention_count": int(r["mention_count"]),
                    "importance": round(float(r["score"]), 6),
                    "last_seen": r["last_seen"].isoformat(),
                }
                for r in top_rows
            ],
            "growth": growth_out,
            "first_seen": t["first_seen"].isoformat() if t["first_seen"] else None,
            "last_seen": t["last_seen"].isoformat() if t["last_seen"] else None,
        }

    async def clear_user(self, user_id: str) -> int:
        """Delete the user's entities (aliases, history and relationships cascade); return the entity count."""
        async with self.pool.connection() as conn, conn.transaction():
            await self.lock_user(conn, user_id)
            await conn.execute("DELETE FROM memory_entity_relationships WHERE user_id = %s", (user_id,))
            await conn.execute("DELETE FROM memory_entity_attribute_history WHERE user_id = %s", (user_id,))
            await conn.execute("DELETE FROM memory_entity_aliases WHERE user_id = %s", (user_id,))
            cur = await conn.execute("DELETE FROM memory_entities WHERE user_id = %s", (user_id,))
            return cur.rowcount

    async def delete_entity(self, user_id: str, entity_id: str) -> bool:
        """Delete one entity (its aliases, history and relationships cascade)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM memory_entities WHERE user_id = %s AND id = %s", (user_id, entity_id))
            return cur.rowcount > 0

    async def _rows(self, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql, params)
            return await cur.fetchall()


_PERSON_MATCH = (
    "(split_part(e.normalized_name, ' ', 1) = ANY(%(w)s) "
    "OR reverse(split_part(reverse(e.normalized_name), ' ', 1)) = ANY(%(w)s))"
)
_CONTEXT_SQL = f"""
WITH by_form AS (
    SELECT e.id, {decayed()} AS score FROM memory_entities e
    WHERE e.user_id = %(u)s AND (e.normalized_name = ANY(%(forms)s) OR e.id IN (
        SELECT a.entity_id FROM memory_entity_aliases a
        WHERE a.user_id = %(u)s AND a.normalized_alias = ANY(%(forms)s)))
    ORDER BY score DESC LIMIT %(lim)s
), by_person AS (
    SELECT e.id, {decayed()} AS score FROM memory_entities e
    WHERE e.user_id = %(u)s AND e.entity_type = 'person' AND {_PERSON_MATCH}
    ORDER BY score DESC LIMIT %(lim)s
), named AS (
    SELECT id, score, grp, rk FROM (
        SELECT id, score, 0 AS grp, row_number() OVER (ORDER BY score DESC) AS rk FROM by_form
        UNION ALL
        SELECT id, score, 1 AS grp, row_number() OVER (ORDER BY score DESC) AS rk FROM by_person
        WHERE id NOT IN (SELECT id FROM by_form)
    ) n ORDER BY grp, rk LIMIT %(lim)s
), others AS (
    SELECT e.id, {decayed()} AS score, 2 AS grp,
           row_number() OVER (ORDER BY {decayed()} DESC, e.last_seen DESC) AS rk
    FROM memory_entities e
    WHERE e.user_id = %(u)s AND e.id NOT IN (SELECT id FROM named)
    ORDER BY rk LIMIT %(top)s
), picked AS (
    SELECT * FROM named UNION ALL SELECT * FROM others
)
SELECT {_ENTITY_COLS}, p.score, p.grp,
    coalesce((SELECT json_agg(a.alias ORDER BY a.alias) FROM memory_entity_aliases a
              WHERE a.user_id = %(u)s AND a.entity_id = e.id), '[]'::json) AS aliases,
    coalesce((SELECT json_agg(json_build_object(
                  'relation_type', r.relation_type, 'weight', r.weight,
                  'source_entity_id', r.source_entity_id, 'target_entity_id', r.target_entity_id,
                  'source_name', s.name, 'source_type', s.entity_type,
                  'target_name', t.name, 'target_type', t.entity_type) ORDER BY r.weight DESC, r.updated_at DESC)
              FROM (SELECT r0.* FROM memory_entity_relationships r0
                    WHERE r0.user_id = %(u)s AND (r0.source_entity_id = e.id OR r0.target_entity_id = e.id)
                    ORDER BY r0.weight DESC, r0.updated_at DESC LIMIT %(rlim)s) r
              JOIN memory_entities s ON s.id = r.source_entity_id
              JOIN memory_entities t ON t.id = r.target_entity_id), '[]'::json) AS relationships,
    coalesce((SELECT json_object_agg(h.attribute, h.value)
              FROM (SELECT DISTINCT ON (h0.attribute) h0.attribute, h0.value
                    FROM memory_entity_attribute_history h0 WHERE h0.user_id = %(u)s AND h0.entity_id = e.id
                    ORDER BY h0.attribute, h0.superseded_at DESC, h0.id DESC) h), '{{}}'::json) AS earlier
FROM picked p JOIN memory_entities e ON e.id = p.id
ORDER BY p.grp, p.rk
"""


__all__ = ["EntityStore", "UpsertResult", "attr_value", "attribute_key", "base_importance", "flat_attributes"]
