"""``memory-orchestrator bench``: documented default sizes, a --quick that is quicker, a report without log lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from cli_env import isolated  # noqa: F401  (autouse: a fresh user's environment)

from memory_implementations.cli import build_parser
from memory_implementations.cli.bench import cli_settings

SIZES = ("users", "messages", "vectors", "big_tenant", "iterations", "long_session", "store_turns")
TINY = ["--users", "4", "--messages", "4", "--vectors", "100", "--big-tenant", "0", "--iterations", "5",
        "--long-session", "20"]
INFO_LINE = re.compile(r"\[\s*(debug|info)\s*\]")  # the library's console log lines below WARNING


def test_quick_is_smaller_than_the_default_in_every_size() -> None:
    parser = build_parser()
    default = cli_settings(parser.parse_args(["bench"]))
    quick = cli_settings(parser.parse_args(["bench", "--quick"]))
    for name in SIZES:
        assert getattr(quick, name) < getattr(default, name), name
    explicit = cli_settings(parser.parse_args(["bench", "--quick", "--users", "7"]))
    assert explicit.users == 7 and explicit.vectors == quick.vectors  # an explicit size wins over --quick


def test_help_documents_the_default_and_the_quick_sizes(capsys) -> None:
    parser = build_parser()
    default = cli_settings(parser.parse_args(["bench"]))
    quick = cli_settings(parser.parse_args(["bench", "--quick"]))
    try:
        parser.parse_args(["bench", "--help"])
    except SystemExit:
        pass
    text = " ".join(capsys.readouterr().out.split())
    assert f"Default sizes: {default.users:,} sessions x {default.messages} messages" in text
    assert f"--quick: {quick.users:,} sessions x {quick.messages} messages" in text
    assert f"(default {default.iterations})" in text


def _bench(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    dropped = ("DATABASE_URL", "REDIS_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_") and k not in dropped}
    env["TMPDIR"] = str(scratch)  # the benchmark's scratch data dir goes here
    done = subprocess.run(
        [sys.executable, "-m", "memory_implementations.cli", "bench", "--quick", *TINY, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # as on a terminal: progress and report interleaved
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    return done, scratch


def test_bench_output_has_progress_and_report_but_no_library_log_lines(tmp_path: Path) -> None:
    done, scratch = _bench(tmp_path)
    out = done.stdout
    assert "| What (per turn) | p50 ms | p99 ms |" in out and "[bench] measuring 5 turns per variant" in out
    assert not [line for line in out.splitlines() if INFO_LINE.search(line)]
    assert "embedded_postgres_started" not in out and "embedded_redis_started" not in out
    assert not list(scratch.glob("mi-bench-*"))  # its data dir is deleted afterwards


def test_bench_log_level_brings_the_library_lines_back(tmp_path: Path) -> None:
    done, _ = _bench(tmp_path, "--log-level", "INFO")
    assert "embedded_postgres_started" in done.stdout
