"""Vector search benchmark: HNSW latency and recall@10 on ``memory_vectors``, global and per-user.

Runs on the embedded PostgreSQL 18 + pgvector (its own data directory, default
``/tmp/mi-bench-vector``) in a fresh database migrated with the package's own schema.

Data: ``--n`` synthetic *clustered* unit vectors of the offline embedder's dimension (384): 200
Gaussian cluster centres, each vector a centre plus isotropic noise, L2-normalised. Synthetic vectors
are used for speed (embedding 100k texts offline takes minutes); clustering makes the neighbourhoods
non-trivial, as real sentence embeddings are. Rows are spread over ``--users`` users. They are loaded
with ``COPY … (FORMAT BINARY)``, then the HNSW index (m=16, ef_construction=64, pgvector defaults) is
built. Queries are fresh draws from the same distribution, precomputed, issued one at a time (closed
loop) through ``match_memories``. Exact top-10 is computed with numpy for recall.

    python benchmarks/vector_search.py [--n 100000] [--queries 500] [--users 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memory_implementations.stores.embedded import start_postgres
from memory_implementations.stores.migrations import migrate

DIM = 384
K = 10
NOISE = 0.05  # per-coordinate noise: two members of one cluster have cosine ~0.5, like related sentences
DB = "mi_bench_vector"
MATCH = "SELECT content FROM match_memories(%s::vector(384), -1.0, %s, '{}'::jsonb, %s)"
EXACT_USER = (
    "WITH u AS MATERIALIZED (SELECT content, embedding FROM memory_vectors WHERE user_id = %s) "
    "SELECT content FROM u ORDER BY embedding <=> %s::vector(384) LIMIT %s"
)


@dataclass
class Row:
    """One line of the results table."""

    name: str
    p50: float
    p95: float
    p99: float
    mean: float
    recall: float
    queries: int


def clustered(rng: np.random.Generator, n: int, centres: np.ndarray, noise: float) -> np.ndarray:
    """``n`` unit vectors drawn around random ``centres``."""
    pick = rng.integers(0, len(centres), n)
    v = centres[pick] + rng.standard_normal((n, centres.shape[1])).astype(np.float32) * noise
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def exact_topk(data: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[set[int]]:
    """Exact cosine top-``k`` row indices per query (optionally among ``mask`` rows only)."""
    out: list[set[int]] = []
    for i in range(0, len(queries), 64):
        sims = queries[i : i + 64] @ data.T
        if mask is not None:
            sims = np.where(mask[i : i + 64], sims, -np.inf)
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        out.extend(set(map(int, row)) for row in part)
    return out


def timed(conn: psycopg.Connection, queries: list[tuple[object, ...]], stmt: str) -> tuple[list[float], list[set[int]]]:
    """Run ``stmt`` once per parameter tuple; return latencies (ms) and the returned row indices."""
    lat: list[float] = []
    got: list[set[int]] = []
    for params in queries:
        t0 = time.perf_counter()
        rows = conn.execute(stmt, params).fetchall()
        lat.append((time.perf_counter() - t0) * 1000)
        got.append({int(r[0]) for r in rows})
    return lat, got


def summarize(name: str, lat: list[float], got: list[set[int]], truth: list[set[int]]) -> Row:
    """Percentiles and recall@K."""
    q = np.percentile(lat, [50, 95, 99])
    recall = float(np.mean([len(g & t) / len(t) for g, t in zip(got, truth, strict=True)]))
    return Row(name, float(q[0]), float(q[1]), float(q[2]), statistics.fmean(lat), recall, len(lat))


def setup(admin_dsn: str, n: int, users: int, seed: int) -> tuple[str, np.ndarray, np.ndarray, dict[str, float]]:
    """Create the database, load ``n`` vectors with binary COPY, build HNSW; return dsn, data, owners, timings."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=DB)
    import asyncio

    asyncio.run(migrate(dsn, embedding_dim=DIM))
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    data = clustered(rng, n, centres, noise=NOISE)
    owners = rng.integers(0, users, n)
    timings: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP INDEX IF EXISTS memory_vectors_embedding_hnsw")
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
            "COPY memory_vectors (user_id, namespace, content, content_hash, embedding) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "text", "text", "text", "vector"])
            for i in range(n):
                copy.write_row((f"user-{owners[i]}", "default", str(i), f"{i:064x}", data[i]))
        timings["copy_s"] = time.perf_counter() - t0
        conn.execute("SET maintenance_work_mem = '1GB'")
        workers = max(1, (os.cpu_count() or 2) - 1)
        conn.execute("SELECT set_config('max_parallel_maintenance_workers', %s, false)", (str(workers),))
        t0 = time.perf_counter()
        conn.execute(
            "CREATE INDEX memory_vectors_embedding_hnsw ON memory_vectors USING hnsw (embedding vector_cosine_ops)"
        )
        timings["hnsw_build_s"] = time.perf_counter() - t0
        conn.execute("VACUUM ANALYZE memory_vectors")
    return dsn, data, owners, timings


def plan_of(conn: psycopg.Connection, user: str | None, q: np.ndarray) -> str:
    """The access path of match_memories' statement for this scope (EXPLAIN of the same SQL)."""
    where = "WHERE m.user_id = %s" if user else ""
    params: tuple[object, ...] = (q, user, q) if user else (q, q)
    stmt = (
        "EXPLAIN SELECT m.content, 1 - (m.embedding <=> %s::vector(384)) FROM memory_vectors m "
        f"{where} ORDER BY m.embedding <=> %s::vector(384) LIMIT 10"
    )
    lines = [r[0] for r in conn.execute(stmt, params).fetchall()]
    scans = [ln.strip() for ln in lines if "Scan" in ln]
    return "; ".join(s.split("  (")[0] for s in scans)


def run(args: argparse.Namespace) -> list[Row]:
    """Load, index, query; print and return the results table."""
    server = start_postgres(args.data_dir)
    t0 = time.perf_counter()
    dsn, data, owners, timings = setup(server.dsn, args.n, args.users, args.seed)
    print(f"loaded {args.n} x {DIM} in {timings['copy_s']:.1f}s (binary COPY), HNSW built in "
          f"{timings['hnsw_build_s']:.1f}s; setup total {time.perf_counter() - t0:.1f}s", flush=True)
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((200, DIM)).astype(np.float32)  # the same centres as the data (same seed)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(args.seed + 1)
    queries = clustered(rng, args.queries, centres, noise=NOISE)
    truth = exact_topk(data, queries, K)
    q_users = owners[rng.integers(0, args.n, args.queries)]
    masks = owners[None, :] == q_users[:, None]
    truth_user = exact_topk(data, queries, K, mask=masks)
    rows: list[Row] = []
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
        register_vector(conn)
        print("plan (global):   ", plan_of(conn, None, queries[0]))
        print("plan (per-user): ", plan_of(conn, f"user-{q_users[0]}", queries[0]))
        glob = [(q, K, None) for q in queries]
        per_user = [(q, K, f"user-{u}") for q, u in zip(queries, q_users, strict=True)]
        exact_user = [(f"user-{u}", q, K) for q, u in zip(queries, q_users, strict=True)]
        for ef in args.ef:
            conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            timed(conn, glob[:50], MATCH)  # warm-up
            rows.append(summarize(f"global top-{K}, HNSW ef_search={ef}", *timed(conn, glob, MATCH), truth))
            show(rows[-1])
        for ef in args.ef:
            conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            timed(conn, per_user[:50], MATCH)
            rows.append(summarize(f"per-user top-{K}, match_memories ef_search={ef}", *timed(conn, per_user, MATCH),
                                  truth_user))
            show(rows[-1])
        timed(conn, exact_user[:50], EXACT_USER)
        rows.append(summarize(f"per-user top-{K}, btree + exact scan", *timed(conn, exact_user, EXACT_USER),
                              truth_user))
        show(rows[-1])
        conn.execute("SET enable_indexscan = off")
        slow = glob[: min(50, len(glob))]
        lat, got = timed(conn, slow, MATCH)
        rows.append(summarize(f"global top-{K}, exact (no index), {len(slow)} queries", lat, got, truth[: len(slow)]))
        show(rows[-1])
    version = server_version(dsn)
    if not args.keep:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DB)))
    per_user_rows = args.n / args.users
    print()
    print(f"n={args.n}, dim={DIM}, users={args.users} (~{per_user_rows:.0f} rows each), queries={args.queries}, "
          f"cpus={os.cpu_count()}, PostgreSQL {version}")
    print(table(rows))
    return rows


def show(r: Row) -> None:
    """Print one result as it arrives."""
    print(f"{r.name}: p50 {r.p50:.2f} ms, p99 {r.p99:.2f} ms, recall@{K} {r.recall:.3f}", flush=True)


def server_version(dsn: str) -> str:
    """``server_version`` and pgvector version."""
    with psycopg.connect(dsn) as conn:
        v = conn.execute("SHOW server_version").fetchone()
        e = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return f"{v[0] if v else '?'} + pgvector {e[0] if e else '?'}"


def table(rows: list[Row]) -> str:
    """Markdown table of the results."""
    out = ["| search | p50 ms | p95 ms | p99 ms | mean ms | recall@10 |", "|---|---:|---:|---:|---:|---:|"]
    fmt: Callable[[float], str] = lambda x: f"{x:.2f}"  # noqa: E731
    for r in rows:
        out.append(f"| {r.name} | {fmt(r.p50)} | {fmt(r.p95)} | {fmt(r.p99)} | {fmt(r.mean)} | {r.recall:.3f} |")
    return "\n".join(out)


def main() -> None:
    """Parse arguments and run."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="vectors to load")
    p.add_argument("--queries", type=int, default=500, help="queries per variant (closed loop)")
    p.add_argument("--users", type=int, default=1000, help="users the rows are spread over")
    p.add_argument("--ef", type=int, nargs="+", default=[40, 100, 200],
                   help="hnsw.ef_search values (40: pgvector's default; 100: the tier's)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data-dir", default="/tmp/mi-bench-vector", help="embedded PostgreSQL data directory")
    p.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    run(p.parse_args())


if __name__ == "__main__":
    main()
