"""``memory-orchestrator``: parser, pluggable subcommands, migrate and health against real backends."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cli_env import fresh_dsn, isolated  # noqa: F401,F811  (fixtures: isolated is autouse)

from memory_implementations import cli
from memory_implementations.cli import main
from memory_implementations.cli.health import (
    compute_health,
    health_exit_code,
    overall_status,
    render_health,
)
from memory_implementations.config import MemoryConfig
from memory_implementations.stores.migrations import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("memory-orchestrator: error:")]


# --- the parser and the command registry ----------------------------------------------------------


def test_top_level_help_lists_commands_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    assert "migrate" in out and "health" in out and "examples:" in out


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("migrate", ["--dsn", "--embedding-dim", "--check", "examples:", "memory-orchestrator migrate --check"]),
        ("health", ["--json", "examples:", "memory-orchestrator health --json", "exit status"]),
    ],
)
def test_every_command_has_help_with_examples(
    capsys: pytest.CaptureFixture[str], command: str, expected: list[str]
) -> None:
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    for fragment in expected:
        assert fragment in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([], capsys)
    assert code == 2 and "usage: memory-orchestrator" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["migrate", "--embedding-dim", "0"], capsys)[0] == 2
    assert run(["migrate", "--no-such-flag"], capsys)[0] == 2
    assert run(["no-such-command"], capsys)[0] == 2


class _FakeCommands(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Provides cli.hello (a working plugin) and cli.broken (its dependency is missing)."""

    names = {f"{cli.__name__}.hello", f"{cli.__name__}.broken"}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname in self.names:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__name__.endswith(".broken"):
            raise ModuleNotFoundError("No module named 'fancy_dependency'", name="fancy_dependency")

        def register(subparsers: Any) -> None:
            parser = subparsers.add_parser("hello", help="say hello")
            parser.add_argument("--code", type=int, default=0)
            parser.set_defaults(handler=lambda args: print("hello from a plugin") or args.code)

        module.register = register  # type: ignore[attr-defined]


@pytest.fixture
def plugin_commands(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    finder = _FakeCommands()
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "hello", "broken", "not_written_yet"))
    sys.meta_path.insert(0, finder)
    yield
    sys.meta_path.remove(finder)
    for name in _FakeCommands.names:
        sys.modules.pop(name, None)


def test_missing_or_broken_command_modules_do_not_break_the_cli(
    plugin_commands: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    assert "hello" in out and "migrate" in out
    assert "broken" in out and "unavailable" in out and "fancy_dependency" in out
    assert "not_written_yet" not in out
    code, out, _ = run(["hello", "--code", "3"], capsys)
    assert code == 3 and "hello from a plugin" in out
    code, _, err = run(["broken"], capsys)
    assert code == 2
    assert len(error_lines(err)) == 1 and "fancy_dependency" in err and "Traceback" not in err
    # the real commands still work next to them
    assert run(["migrate", "--help"], capsys)[0] == 0


def test_module_entry_point_migrates_from_any_directory(tmp_path: Path, fresh_dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MEMORY_")}
    result = subprocess.run(
        [sys.executable, "-m", "memory_implementations.cli", "migrate", "--dsn", fresh_dsn, "--embedding-dim", "32"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # not the repo: the installed package must find its SQL files on its own
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"migrated: schema version {SCHEMA_VERSION}") and "vector(32)" in result.stdout
    assert "migrations_applied" in result.stderr


# --- migrate -----------------------------------------------------------------------------------------


def test_migrate_check_then_apply_then_check(fresh_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["migrate", "--dsn", fresh_dsn, "--embedding-dim", "384", "--check"], capsys)
    assert code == 1
    assert "pending: schema version(s) 1" in out and "auth.uid()" in out
    code, out, _ = run(["migrate", "--dsn", fresh_dsn, "--embedding-dim", "384"], capsys)
    assert code == 0 and out.startswith(f"migrated: schema version {SCHEMA_VERSION}") and "vector(384)" in out
    code, out, _ = run(["migrate", "--dsn", fresh_dsn, "--check"], capsys)
    assert code == 0 and out.startswith(f"up to date: schema version {SCHEMA_VERSION}") and "vector(384)" in out
    code, out, _ = run(["migrate", "--dsn", fresh_dsn], capsys)
    assert code == 0 and out.startswith("up to date, nothing applied")


@pytest.mark.parametrize("variable", ["DATABASE_URL", "MEMORY_DATABASE_URL"])
def test_migrate_takes_the_dsn_from_the_environment(
    fresh_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str
) -> None:
    monkeypatch.setenv(variable, fresh_dsn)
    code, out, _ = run(["migrate", "--check"], capsys)
    assert code == 1 and "(config)" in out
    code, out, _ = run(["migrate", "--embedding-dim", "3072"], capsys)
    assert code == 0 and "halfvec(3072)" in out


def test_migrate_takes_the_dsn_and_dim_from_a_config_file(
    fresh_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "memory.toml"
    path.write_text(f"database_url = {json.dumps(fresh_dsn)}\nembedding_dim = 128\n", encoding="utf-8")
    code, out, _ = run(["migrate", "--config", str(path)], capsys)
    assert code == 0 and "vector(128)" in out
    code, out, _ = run(["--config", str(path), "migrate", "--check"], capsys)
    assert code == 0 and "up to date" in out


def test_migrate_without_a_dsn_uses_the_embedded_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMORY_DATA_DIR", str(tmp_path / "data"))
    code, out, _ = run(["migrate", "--check"], capsys)
    assert code == 1 and "(embedded)" in out and str(tmp_path / "data") in out
    code, out, _ = run(["migrate", "--embedding-dim", "64"], capsys)
    assert code == 0 and "migrated" in out and "(embedded)" in out
    code, out, _ = run(["migrate", "--check", "--embedding-dim", "64"], capsys)
    assert code == 0 and "vector(64)" in out
    # without the flag the configured (local, 384) embedder's dimension is wanted: the empty table would change
    code, out, _ = run(["migrate", "--check"], capsys)
    assert code == 1 and "from vector(64) to vector(384)" in out
    assert (tmp_path / "data" / "postgres").is_dir()


def test_migrate_dimension_mismatch_exits_2_and_changes_nothing(
    fresh_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["migrate", "--dsn", fresh_dsn, "--embedding-dim", "384"], capsys)[0] == 0
    vec = "[" + ",".join(["0.1"] * 384) + "]"
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO memory_vectors (user_id, content, content_hash, embedding) "
                     "VALUES ('u', 'kept', 'h', %s::vector)", (vec,))
    code, _, err = run(["migrate", "--dsn", fresh_dsn, "--embedding-dim", "1536"], capsys)
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and "embedding_dim mismatch" in lines[0] and "Nothing was changed" in lines[0]
    assert "--embedding-dim 1536 needs vector(1536)" in lines[0] and "is vector(384) and holds 1 rows" in lines[0]
    code, out, _ = run(["migrate", "--dsn", fresh_dsn, "--check"], capsys)
    assert code == 0 and "vector(384)" in out


def test_migrate_unreachable_server_is_one_masked_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["migrate", "--dsn", "postgresql://app:S3cretPW@127.0.0.1:1/app"], capsys)
    assert code == 2
    assert len(error_lines(err)) == 1 and "cannot connect to PostgreSQL" in err
    assert "S3cretPW" not in err and "Traceback" not in err


def test_bad_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["migrate", "--config", str(tmp_path / "absent.toml")], capsys)
    assert code == 2 and len(error_lines(err)) == 1 and "absent.toml" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("embeding_dim = 3\n", encoding="utf-8")
    code, _, err = run(["migrate", "--config", str(bad)], capsys)
    assert code == 2 and "did you mean 'embedding_dim'" in err


def test_cli_logs_go_to_stderr_not_stdout(fresh_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["migrate", "--dsn", fresh_dsn, "--embedding-dim", "16"], capsys)
    assert code == 0
    assert "migrations_applied" in err and "migrations_applied" not in out
    code, out, err = run(["migrate", "--dsn", fresh_dsn, "--log-level", "WARNING"], capsys)
    assert code == 0 and "migrations_applied" not in err


# --- health ------------------------------------------------------------------------------------------


async def test_health_is_healthy_on_the_test_backends(config: MemoryConfig, stores: Any) -> None:
    report = await compute_health(config)
    assert report["status"] == "healthy" and health_exit_code(report) == 0
    details = report["details"]
    assert details["redis"]["status"] == "up" and details["redis"]["latency_ms"] >= 0
    assert details["postgres"]["status"] == "up" and details["postgres"]["schema_version"] == SCHEMA_VERSION
    assert json.loads(render_health(report, as_json=True))["status"] == "healthy"
    assert render_health(report).startswith("status: healthy")


async def test_health_is_degraded_when_redis_is_down(config: MemoryConfig, stores: Any) -> None:
    cfg = MemoryConfig.from_any(config, redis_url="redis://:RedisPW9@127.0.0.1:1/0")
    report = await compute_health(cfg)
    assert report["status"] == "degraded" and health_exit_code(report) == 1
    assert report["details"]["redis"]["status"] == "down" and report["details"]["redis"]["error"]
    assert report["details"]["postgres"]["status"] == "up"
    assert "RedisPW9" not in render_health(report) + render_health(report, as_json=True)


async def test_health_is_unhealthy_when_postgres_is_down(config: MemoryConfig) -> None:
    cfg = MemoryConfig.from_any(config, database_url="postgresql://app:PgPW9@127.0.0.1:1/app")
    report = await compute_health(cfg)
    assert report["status"] == "unhealthy" and health_exit_code(report) == 2
    assert report["details"]["postgres"]["status"] == "down"
    assert report["details"]["redis"]["status"] == "up"
    assert "PgPW9" not in render_health(report) + render_health(report, as_json=True)


async def test_health_flags_an_unmigrated_database(config: MemoryConfig, fresh_dsn: str) -> None:
    report = await compute_health(MemoryConfig.from_any(config, database_url=fresh_dsn))
    assert report["status"] == "degraded"
    postgres = report["details"]["postgres"]
    assert postgres["status"] == "up" and postgres["schema_pending"] is True and "migrate" in postgres["hint"]


def test_health_command_json_and_exit_codes(
    redis_url: str, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stores: Any
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    code, out, _ = run(["health", "--json"], capsys)
    assert code == 0 and json.loads(out)["details"]["postgres"]["status"] == "up"
    monkeypatch.setenv("MEMORY_REDIS_URL", "redis://127.0.0.1:1/0")
    code, out, _ = run(["health"], capsys)
    assert code == 1 and out.startswith("status: degraded")
    monkeypatch.setenv("MEMORY_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/x")
    code, out, _ = run(["health"], capsys)
    assert code == 2 and out.startswith("status: unhealthy")


def test_overall_status_rules() -> None:
    up, down = {"status": "up"}, {"status": "down"}
    assert overall_status(up, up) == "healthy"
    assert overall_status(down, up) == "degraded"
    assert overall_status(up, {"status": "up", "schema_pending": True}) == "degraded"
    assert overall_status(up, down) == "unhealthy" and overall_status(down, down) == "unhealthy"
    assert [health_exit_code({"status": s}) for s in ("healthy", "degraded", "unhealthy", "?")] == [0, 1, 2, 2]
