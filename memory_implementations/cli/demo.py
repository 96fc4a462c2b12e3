"""``memory-orchestrator demo``: a scripted conversation on the embedded servers, no server and no key needed."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..logging import configure_logging
from ._common import EXIT_ERROR, EXIT_OK, add_common_options, load_config, run_async

EPILOG = """examples:
  memory-orchestrator demo                     run the demo (data in <data_dir>/demo, kept between runs)
  memory-orchestrator demo                     ...run it again: it remembers the first run
  memory-orchestrator demo --reset             forget the demo user and start over
  memory-orchestrator demo --data-dir /tmp/d   keep the demo's data somewhere else

The demo starts an embedded Redis and PostgreSQL + pgvector (no server, no API key), plays a scripted
conversation over several sessions and shows, after every turn, the composed context: the tokens used
and left unused, each section's tokens against its allotment, what it recalled and from which tier
(wrapped to the terminal's width), and each tier's latency."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="scripted multi-session conversation on the embedded servers (no server, no key)",
        description="Show the six memory tiers composing context turn by turn; run twice to see it remember.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", metavar="DIR",
                        help="where the demo's embedded servers keep data (default: <data_dir>/demo)")
    parser.add_argument("--reset", action="store_true", help="forget everything the demo stored, then run")
    add_common_options(parser)
    parser.set_defaults(handler=handle)


def demo_data_dir(args: argparse.Namespace) -> str:
    """``--data-dir``, else ``demo`` under the configured data_dir (MEMORY_DATA_DIR or the default)."""
    if args.data_dir:
        return str(Path(args.data_dir).expanduser())
    return str(Path(load_config(args).data_dir).expanduser() / "demo")


def handle(args: argparse.Namespace) -> int:
    """Run the demo; library logs are kept to errors unless --log-level / MEMORY_LOG_LEVEL asks for more."""
    if not getattr(args, "log_level", None) and not os.environ.get("MEMORY_LOG_LEVEL"):
        configure_logging("ERROR")
    from ..demo.runner import run_demo
    from ..demo.view import make_console

    data_dir = demo_data_dir(args)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    result = run_async(run_demo(data_dir, make_console(), reset=args.reset))
    return EXIT_OK if all(result.recalled.values()) else EXIT_ERROR


__all__ = ["demo_data_dir", "handle", "register"]
