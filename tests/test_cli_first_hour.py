"""A new user's first CLI mistakes: a busy port, a missing --user, a DSN given on the command line.

Bad arguments are refused before anything starts: no embedded PostgreSQL/Redis, no data directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from cli_env import isolated  # noqa: F401  (autouse: a fresh user's environment)

from memory_implementations.cli import main
from memory_implementations.cli.serve import port_problem

DEAD_PG = "postgresql://postgres@127.0.0.1:1/nowhere"


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path`` (an embedded server started there)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if str(path) in cmdline:
            found.append(cmdline)
    return found


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a new user: no URLs, no keys, the embedded servers' data in ``data_dir``."""
    dropped = ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("MEMORY_")}
    return {**env, "MEMORY_DATA_DIR": str(data_dir), **extra}


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another process (this one) listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


# --- serve on a busy port -------------------------------------------------------------------------


def test_serve_on_a_busy_port_exits_at_once_with_one_line_naming_it(busy_port: int, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, "-m", "memory_implementations.cli", "serve", "--port", str(busy_port)],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(data_dir),
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("memory-orchestrator: error: port ") and str(busy_port) in lines[0]
    assert "already in use" in lines[0]
    assert done.stdout == "" and "serving" not in done.stderr
    assert not data_dir.exists()  # no embedded server was started
    assert processes_using(data_dir) == []


def test_port_problem_names_what_is_wrong(busy_port: int) -> None:
    assert port_problem("127.0.0.1", 0) is None  # 0: the OS picks a free port
    busy = port_problem("127.0.0.1", busy_port)
    assert busy is not None and f"port {busy_port} on 127.0.0.1 is already in use" in busy
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    assert port_problem("127.0.0.1", free) is None
    foreign = port_problem("192.0.2.1", free)  # TEST-NET-1: not an address of this machine
    assert foreign is not None and foreign.startswith(f"cannot listen on 192.0.2.1:{free}")


# --- keys: arguments before PostgreSQL --------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "field_hint"),
    [
        (["keys", "create"], "--user"),
        (["keys", "create", "--name", "bot"], "--user"),
        (["keys", "create", "--user", " "], "--user"),
        (["keys", "revoke", " "], "prefix"),
    ],
)
def test_keys_with_bad_arguments_start_no_database(
    argv: list[str],
    field_hint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MEMORY_DATA_DIR", str(data_dir))
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("memory-orchestrator: error:") and field_hint in lines[0]
    assert not data_dir.exists()  # the embedded PostgreSQL was never started
    assert processes_using(data_dir) == []


# --- --dsn on every command that talks to PostgreSQL ---------------------------------------------------


@pytest.mark.parametrize("command", ["migrate", "health", "serve", "keys create", "keys list", "keys revoke"])
def test_every_database_command_documents_dsn(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert "--dsn DSN" in out and "DATABASE_URL" in out


def test_health_dsn_wins_over_database_url(
    redis_url: str, pg_dsn: str, stores: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", DEAD_PG)
    assert main(["health"]) == 2  # the environment's PostgreSQL is down
    assert capsys.readouterr().out.startswith("status: unhealthy")
    assert main(["health", "--dsn", pg_dsn]) == 0
    out = capsys.readouterr().out
    assert out.startswith("status: healthy") and "external" in out


def test_serve_uses_the_dsn_given_on_the_command_line(
    redis_url: str, pg_dsn: str, stores: Any, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log = tmp_path / "serve.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memory_implementations.cli", "serve", "--port", str(port), "--insecure-dev",
             "--dsn", pg_dsn],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=cli_env(tmp_path / "data", REDIS_URL=redis_url, DATABASE_URL=DEAD_PG),
        )
        try:
            ready = None
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            assert ready is not None, log.read_text()
            assert ready.status_code == 200, ready.text
            assert ready.json()["status"] in ("healthy", "degraded")
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    assert DEAD_PG not in log.read_text() and "127.0.0.1:1/" not in log.read_text()
