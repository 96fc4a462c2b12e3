"""Load test of the HTTP service: ``POST /v1/context`` from a second process over loopback.

What it does:
1. starts ``memory-orchestrator serve`` (embedded Redis + PostgreSQL in its own data dir under /tmp,
   offline models, auth ON) as a subprocess;
2. creates an API key with ``memory-orchestrator keys create`` (bound to the benchmark users);
3. seeds every user with conversation turns, vector memories, key-value facts and working memory,
   and waits for the background jobs (embeddings, entity extraction) to finish;
4. drives ``POST /v1/context`` from this process with an httpx AsyncClient at bounded concurrency
   and reports requests/s, p50/p95/p99 latency, errors and how many contexts came back degraded.

Usage: python benchmarks/service_load.py [--requests 2000] [--concurrency 1,8,32] [--users 8]
                                        [--server-slots N] [--json]
``--concurrency`` takes a comma-separated sweep (one seeded server, one run per level);
``--server-slots`` sets MEMORY_SERVICE_MAX_CONCURRENT_REQUESTS (default: the server's pg_pool_max).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

QUERIES = [
    "where do I live?",
    "what do I do for work?",
    "what are my hobbies?",
    "which languages do I speak?",
    "what did we talk about regarding travel?",
    "what is my favourite food?",
    "who is my manager?",
    "remind me of my deadlines",
    "what pets do I have?",
    "what music do I like?",
]
TURNS = [
    ("I live in Lisbon, Portugal, near the river.", "Lisbon is lovely, especially the Alfama district."),
    ("I work as a data engineer at Northwind Analytics.", "Data engineering keeps you busy!"),
    ("On weekends I go climbing and play the guitar.", "Great mix of hobbies."),
    ("I speak Portuguese, English and some German.", "Impressive!"),
    ("Next month I travel to Tokyo for a conference.", "Tokyo in spring is beautiful."),
    ("My favourite food is grilled sardines.", "A Lisbon classic."),
    ("My manager is Helena Costa.", "Noted."),
    ("The quarterly report is due on Friday.", "I'll remind you."),
    ("I have a cat named Pixel.", "Cute name!"),
    ("I listen to fado and jazz.", "Lovely choices."),
    ("Remember that I prefer short answers.", "Sure."),
    ("I am learning Rust in the evenings.", "Rust is a great language."),
]
FACTS = [
    "User prefers morning meetings",
    "User is allergic to peanuts",
    "User drives an electric car",
    "User's birthday is in March",
    "User supports Benfica",
    "User wants to run a marathon next year",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "memory_implementations.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {out.stderr}")
    return out.stdout


def wait_ready(base: str, proc: subprocess.Popen[bytes], limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            if httpx.get(f"{base}/health/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("the service exited during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError("the service did not become ready")
        time.sleep(0.25)


async def seed(client: httpx.AsyncClient, users: list[str]) -> None:
    async def one(user: str) -> None:
        for i, (u, a) in enumerate(TURNS):
            r = await client.post(
                "/v1/turns",
                json={"session_id": f"{user}-s1", "user_id": user, "user_message": u, "assistant_message": a},
            )
            r.raise_for_status()
            if i % 4 == 3:
                await client.post(f"/v1/sessions/{user}-s1/summary", params={"user_id": user})
        r = await client.post("/v1/memories/batch", json={"user_id": user, "memories": [{"content": f} for f in FACTS]})
        r.raise_for_status()
        for k, v in (("theme", "dark"), ("language", "pt"), ("timezone", "Europe/Lisbon")):
            (await client.put(f"/v1/kv/prefs/{k}", json={"value": v, "user_id": user})).raise_for_status()
        item = {"key": "goal", "content": "prepare the Tokyo trip", "user_id": user}
        (await client.post(f"/v1/working/{user}-s1/items", json=item)).raise_for_status()

    await asyncio.gather(*(one(u) for u in users))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for embeddings / entity extraction to drain
        text = (await client.get("/metrics")).text
        depth = [ln for ln in text.splitlines() if ln.startswith("memory_background_queue_depth ")]
        if depth and float(depth[0].split()[1]) == 0:
            return
        await asyncio.sleep(0.25)


async def drive(client: httpx.AsyncClient, users: list[str], n: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[int, int] = {}
    degraded = 0
    counter = iter(range(n))

    async def worker() -> None:
        nonlocal degraded
        for i in counter:
            user = users[i % len(users)]
            body = {
                "query": QUERIES[i % len(QUERIES)],
                "session_id": f"{user}-s1",
                "user_id": user,
                "max_total_tokens": 1500,
            }
            t0 = time.perf_counter()
            r = await client.post("/v1/context", json=body)
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors[r.status_code] = errors.get(r.status_code, 0) + 1
            elif r.json().get("degraded"):
                degraded += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": n,
        "concurrency": concurrency,
        "seconds": round(wall, 2),
        "rps": round(n / wall, 1),
        "p50_ms": round(pct(0.50), 1),
        "p95_ms": round(pct(0.95), 1),
        "p99_ms": round(pct(0.99), 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "errors": errors,
        "degraded": degraded,
    }


async def load(base: str, key: str, users: list[str], args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    levels = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    top = max(levels)
    limits = httpx.Limits(max_connections=top, max_keepalive_connections=top)
    runs = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as client:
        t0 = time.perf_counter()
        await seed(client, users)
        seed_s = time.perf_counter() - t0
        await drive(client, users, min(200, args.requests), min(levels))  # warm-up
        for level in levels:
            load_before = os.getloadavg()[0]
            run = await drive(client, users, args.requests, level)
            run["load_avg_1m"] = round(max(load_before, os.getloadavg()[0]), 1)
            runs.append(run)
    return {"runs": runs, "seed_seconds": round(seed_s, 1), "users": len(users)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="mi-bench-service-", dir="/tmp"))
    env = {
        **os.environ,
        "MEMORY_DATA_DIR": str(data_dir),
        "MEMORY_SERVICE_RATE_LIMIT_PER_SECOND": "100000",
        "MEMORY_SERVICE_RATE_LIMIT_BURST": "100000",
        "MEMORY_LOG_LEVEL": "WARNING",
    }
    if args.server_slots:
        env["MEMORY_SERVICE_MAX_CONCURRENT_REQUESTS"] = str(args.server_slots)
    for name in ("REDIS_URL", "DATABASE_URL", "MEMORY_REDIS_URL", "MEMORY_DATABASE_URL", "MEMORY_SERVICE_AUTH"):
        env.pop(name, None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    users = [f"bench-user-{i}" for i in range(args.users)]
    with open(data_dir / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memory_implementations.cli", "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            wait_ready(base, proc)
            created = json.loads(
                cli(env, "keys", "create", "--json", "--name", "bench", *[a for u in users for a in ("--user", u)])
            )
            result = asyncio.run(load(base, created["key"], users, args))
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        result["data_dir"] = str(data_dir)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels (default 1,8,32)")
    parser.add_argument("--server-slots", type=int, default=0, help="MEMORY_SERVICE_MAX_CONCURRENT_REQUESTS")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the data dir (and serve.log)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    slots = args.server_slots or "pg_pool_max (10)"
    print(
        f"POST /v1/context: {args.requests} requests per level, {result['users']} users, server slots {slots}, "
        f"auth + rate limiting on ({result['machine']}); seeding took {result['seed_seconds']} s"
    )
    print("| concurrency | req/s | p50 ms | p95 ms | p99 ms | mean ms | errors | degraded | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["runs"]:
        errors = sum(r["errors"].values()) if r["errors"] else 0
        print(
            f"| {r['concurrency']} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['mean_ms']} "
            f"| {errors} | {r['degraded']} | {r['load_avg_1m']} |"
        )


if __name__ == "__main__":
    main()
