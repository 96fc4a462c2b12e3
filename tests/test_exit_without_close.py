"""A program that exits without close(): embeddings are caught up on the next start, the dropped jobs
are reported on stderr, and no embedded server outlives the process (nor one killed with SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pg_helpers import fresh_database

from memory_implementations.catch_up import catch_up
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.types import MemoryType

TIERS = [MemoryType.CONVERSATION_BUFFER, MemoryType.VECTOR_DATABASE]


@pytest.fixture
async def db_config(base_config: dict[str, Any], pg_dsn: str) -> AsyncIterator[dict[str, Any]]:
    """The test backends on a new, empty database, with the vector tier and start-up catch-up."""
    async with fresh_database(pg_dsn) as dsn:
        yield {**base_config, "database_url": dsn, "enabled_memories": TIERS, "warm_up": False,
               "reindex_on_start": True, "tier_timeout_ms": 5000}


async def vector_rows(o: MemoryOrchestrator) -> dict[int, str]:
    """message_id -> content of every vector row."""
    async with o.stores.pg.connection() as conn:
        cur = await conn.execute("SELECT (metadata->>'message_id')::bigint, content FROM memory_vectors")
        return {int(mid): content for mid, content in await cur.fetchall()}


async def test_turns_whose_embedding_was_dropped_are_caught_up_once(db_config: dict[str, Any]) -> None:
    first = MemoryOrchestrator(db_config)
    await first.initialize()
    await first.flush()
    await first.store_turn("s1", "u1", "I adopted a beagle called Pepper", "Pepper is a lovely name for a beagle.")
    await first.flush()
    indexed = await vector_rows(first)
    # the process "dies" before its background jobs run: they are submitted to nowhere
    first.stores.worker.submit = lambda job, name="job": None  # type: ignore[assignment,method-assign,misc]
    dropped = await first.store_turn("s1", "u1", "We moved to Porto in March", "Porto suits you, I think.")
    lost = await first.store_turn("s2", "u2", "My sister Ines is a marine biologist")
    assert await vector_rows(first) == indexed
    await first.close()

    second = MemoryOrchestrator(db_config)
    await second.initialize()
    await second.flush()  # waits for the catch-up
    rows = await vector_rows(second)
    ids = [int(ref["id"]) for ref in dropped["stored"] + lost["stored"]]
    assert {rows.get(i) for i in ids} == {
        "We moved to Porto in March", "Porto suits you, I think.", "My sister Ines is a marine biologist"
    }
    assert len(rows) == len(indexed) + 3
    # partners as on a live turn: the dropped answer keeps its question
    async with second.stores.pg.connection() as conn:
        cur = await conn.execute("SELECT metadata->'partners' FROM memory_vectors WHERE content = %s",
                                 ("Porto suits you, I think.",))
        partners = (await cur.fetchone())[0]  # type: ignore[index]
    assert [p["message_id"] for p in partners] == [ids[0]]
    await second.close()

    third = MemoryOrchestrator(db_config)
    await third.initialize()
    await third.flush()
    assert await vector_rows(third) == rows  # nothing added the second time
    assert (await catch_up(third.stores, third.memories[MemoryType.VECTOR_DATABASE]))["messages"] == 0
    await third.close()


async def test_a_memory_deleted_mid_conversation_is_not_brought_back(db_config: dict[str, Any]) -> None:
    o = MemoryOrchestrator(db_config)
    await o.initialize()
    first = await o.store_turn("s1", "u1", "I live in Lisbon near the river", "Lisbon by the river, lovely.")
    await o.store_turn("s1", "u1", "I work as a nurse", "Nursing is demanding work.")
    await o.flush()
    user_msg = int(first["stored"][0]["id"])
    async with o.stores.pg.connection() as conn:
        await conn.execute("DELETE FROM memory_vectors WHERE (metadata->>'message_id')::bigint = %s", (user_msg,))
    assert (await catch_up(o.stores, o.memories[MemoryType.VECTOR_DATABASE]))["messages"] == 0
    assert user_msg not in await vector_rows(o)
    await o.close()


async def test_reindex_on_start_false_leaves_missing_embeddings(db_config: dict[str, Any]) -> None:
    o = MemoryOrchestrator(db_config)
    await o.initialize()
    await o.flush()  # (its own catch-up has run)
    o.stores.worker.submit = lambda job, name="job": None  # type: ignore[assignment,method-assign,misc]
    await o.store_turn("s1", "u1", "I collect vintage typewriters")
    await o.close()
    off = MemoryOrchestrator({**db_config, "reindex_on_start": False})
    await off.initialize()
    await off.flush()
    assert await vector_rows(off) == {}
    await off.close()


# --- subprocesses on the embedded default --------------------------------------------------------

NO_CLOSE = textwrap.dedent(
    """
    import asyncio, sys
    from memory_implementations import MemoryOrchestrator, MemoryType

    async def main():
        o = MemoryOrchestrator({"data_dir": sys.argv[1], "warm_up": False, "embedding_provider": "local",
            "enabled_memories": [MemoryType.CONVERSATION_SUMMARY, MemoryType.VECTOR_DATABASE]})
        await o.initialize()
        await o.flush()
        await o.store_turn(session_id="s1", user_id="u1", user_message="I moved to Lisbon last spring",
                           assistant_message="Nice, Lisbon is lovely.")
        if sys.argv[2] == "close":
            await o.flush()
            async with o.stores.pg.connection() as conn:
                cur = await conn.execute("SELECT content FROM memory_vectors ORDER BY content")
                print("ROWS", [r[0] for r in await cur.fetchall()])
            await o.close()

    asyncio.run(main())
    """
)
HOLD = textwrap.dedent(
    """
    import asyncio, sys
    from memory_implementations import MemoryOrchestrator, MemoryType

    async def main():
        o = MemoryOrchestrator({"data_dir": sys.argv[1], "warm_up": False,
                                "enabled_memories": [MemoryType.CONVERSATION_BUFFER]})
        await o.initialize()
        print("READY", flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
    """
)


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a fresh user: no MEMORY_* settings, no database or Redis URL."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("MEMORY_") and k.upper() not in ("DATABASE_URL", "REDIS_URL")}
    env["HOME"] = str(tmp_path / "home")
    return env


def processes_using(path: Path) -> list[str]:
    """Live processes whose command line or working directory names ``path``."""
    found: list[str] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
            state = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if "zombie" not in state and (str(path) in cmdline or cwd.startswith(str(path))):
            found.append(f"{proc.name}: {cmdline.strip()} (cwd {cwd})")
    return found


def wait_until_gone(path: Path, seconds: float = 15.0) -> list[str]:
    """The processes still using ``path`` once they had ``seconds`` to finish stopping."""
    deadline = time.monotonic() + seconds
    while (left := processes_using(path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def run(tmp_path: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env=clean_env(tmp_path), cwd=tmp_path, check=False)


def test_a_script_without_close_warns_leaves_no_server_and_is_caught_up(tmp_path: Path) -> None:
    data = tmp_path / "data"
    script = tmp_path / "script.py"
    script.write_text(NO_CLOSE)
    done = run(tmp_path, str(script), str(data), "no-close")
    assert done.returncode == 0, done.stderr
    assert "DroppedWorkWarning" in done.stderr
    assert "turn_embedding: 1" in done.stderr and "caught up on the next start" in done.stderr
    assert wait_until_gone(data) == []

    again = run(tmp_path, str(script), str(data), "close")
    assert again.returncode == 0, again.stderr
    assert "DroppedWorkWarning" not in again.stderr
    # the dropped turn was embedded on this start; the same turn stored again adds no row
    assert "ROWS ['I moved to Lisbon last spring', 'Nice, Lisbon is lovely.']" in again.stdout
    assert wait_until_gone(data) == []


def test_a_killed_process_does_not_make_the_next_command_leave_postgres_running(tmp_path: Path) -> None:
    data = tmp_path / "data"
    script = tmp_path / "hold.py"
    script.write_text(HOLD)
    holder = subprocess.Popen([sys.executable, str(script), str(data)], stdout=subprocess.PIPE, text=True,
                              env=clean_env(tmp_path), cwd=tmp_path)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "READY"
        handles = data / "postgres" / ".handle_pids.json"
        assert str(holder.pid) in handles.read_text()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert processes_using(data) != []  # its servers outlive a SIGKILL: nothing can stop that
    env = {**clean_env(tmp_path), "MEMORY_DATA_DIR": str(data)}
    health = subprocess.run([sys.executable, "-m", "memory_implementations.cli", "health"], capture_output=True,
                            text=True, timeout=180, env=env, cwd=tmp_path, check=False)
    assert health.returncode == 0, health.stderr
    assert wait_until_gone(data) == []  # the next command stopped both on its way out
