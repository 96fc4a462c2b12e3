"""``memory-orchestrator``: the command line.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``, which
adds its parser and sets ``handler=<callable(args) -> int>``. :data:`COMMANDS` lists the modules in
help order; a module that does not exist (yet) is skipped, and one that fails to import (e.g. a
missing optional dependency) is listed as unavailable instead of breaking the other commands.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence

import structlog

from ..errors import MemoryError
from ..logging import configure_logging
from ._common import EXIT_ERROR, add_common_options, default_log_level, fail

COMMANDS: tuple[str, ...] = ("demo", "serve", "migrate", "health", "keys", "bench")

EPILOG = """examples:
  memory-orchestrator migrate                 apply database_migrations.sql (DATABASE_URL or embedded)
  memory-orchestrator migrate --check         exit 1 and list what is pending
  memory-orchestrator health --json           ping Redis and PostgreSQL; exit 0/1/2
  memory-orchestrator <command> --help        options and examples of one command

configuration: --config FILE (TOML), MEMORY_* environment variables (see config/example.env),
REDIS_URL / DATABASE_URL / OPENAI_API_KEY / GOOGLE_API_KEY; unset URLs mean the embedded servers."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="memory-orchestrator",
        description="Memory tiers for LLM apps over Redis + PostgreSQL/pgvector.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser, top=True)
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="<command>")
    for name in COMMANDS:
        _register(subparsers, name)
    return parser


def _register(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Import ``cli.<name>`` and let it register; skip it if absent, stub it if it cannot import."""
    module_name = f"{__name__}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return
        _register_unavailable(subparsers, name, exc)
        return
    except Exception as exc:
        _register_unavailable(subparsers, name, exc)
        return
    register = getattr(module, "register", None)
    if callable(register):
        register(subparsers)


def _register_unavailable(subparsers: argparse._SubParsersAction, name: str, exc: BaseException) -> None:
    reason = f"{type(exc).__name__}: {exc}"
    parser = subparsers.add_parser(name, help=f"(unavailable: {reason})", add_help=True)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def unavailable(_args: argparse.Namespace) -> int:
        return fail(f"the '{name}' command is unavailable: {reason}")

    parser.set_defaults(handler=unavailable)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        configure_logging(getattr(args, "log_level", None) or default_log_level(), json=False)
    except ValueError as exc:
        return fail(str(exc))
    log = structlog.get_logger("memory_implementations.cli")
    _exit_cleanly_on_sigterm()
    try:
        return int(handler(args))
    except MemoryError as exc:
        log.debug("command_failed", command=args.command, exc_info=True)
        return fail(exc.message)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        log.debug("command_crashed", command=args.command, exc_info=True)
        return fail(f"unexpected {type(exc).__name__}: {exc} (rerun with --log-level DEBUG for the traceback)")


def _exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM (kill, timeout, systemd, docker stop) end the command like Ctrl-C: a normal exit.

    Python's default SIGTERM action kills the process at once: no ``finally``, no ``atexit``, so the
    embedded PostgreSQL and Redis would outlive it. ``serve`` first shuts down gracefully (uvicorn
    catches the signal, then raises it again once the app has stopped): the handler below then turns
    it into ``SystemExit(143)`` and the embedded servers are stopped on the way out.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_exit)


def _sigterm_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


__all__ = ["COMMANDS", "build_parser", "main"]
