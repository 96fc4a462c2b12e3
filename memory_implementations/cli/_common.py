"""Helpers shared by the subcommands: common options, config loading, error output, exit codes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..config import MemoryConfig
from ..logging import mask_text

T = TypeVar("T")

EXIT_OK = 0
EXIT_PENDING = 1  # also "degraded" for health
EXIT_ERROR = 2  # also "unhealthy" for health


def add_common_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """Add ``--config`` and ``--log-level`` (accepted before or after the subcommand)."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="TOML config file (like config/default.toml); also MEMORY_CONFIG_FILE",
    )
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        default=default,
        help="DEBUG, INFO, WARNING or ERROR (default: MEMORY_LOG_LEVEL or INFO); logs go to stderr",
    )


def add_dsn_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--dsn``: the PostgreSQL URL, overriding DATABASE_URL / database_url (same for every command)."""
    parser.add_argument(
        "--dsn",
        metavar="DSN",
        help="PostgreSQL URL (default: DATABASE_URL / MEMORY_DATABASE_URL, else the embedded server)",
    )


def default_log_level() -> str:
    """The CLI's log level when ``--log-level`` is not given."""
    return os.environ.get("MEMORY_LOG_LEVEL") or "INFO"


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def load_config(args: argparse.Namespace, **overrides: Any) -> MemoryConfig:
    """The MemoryConfig for a command: ``--config`` file, environment, then non-None ``overrides``."""
    data: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    config_file = getattr(args, "config", None)
    if config_file:
        data["config_file"] = config_file
    return MemoryConfig.from_any(data)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


def fail(message: str) -> int:
    """Print ``message`` as one masked line on stderr and return the error exit status."""
    line = " ".join(mask_text(str(message)).split())
    print(f"memory-orchestrator: error: {line}", file=sys.stderr)
    return EXIT_ERROR


__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_PENDING",
    "add_common_options",
    "add_dsn_option",
    "default_log_level",
    "fail",
    "load_config",
    "positive_int",
    "run_async",
]
