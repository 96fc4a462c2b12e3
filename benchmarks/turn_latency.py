"""Per-turn latency of ``MemoryOrchestrator.get_comprehensive_context`` against raw Redis/pgvector floors.

Full size by default (1,000 sessions x 50 messages, 50,000 fact vectors + a 100,000-memory tenant,
384 dims); ``--quick`` for a smoke run. Prints a markdown table; ``--write-docs`` replaces the
``## Turn latency`` section of docs/benchmarks.md. See benchmarks/README.md for what is measured.

    python benchmarks/turn_latency.py                 # full run (a few minutes)
    python benchmarks/turn_latency.py --quick         # ~30 s
    python benchmarks/turn_latency.py --write-docs    # and update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from memory_implementations.cli.bench import BenchSettings, add_arguments, run_cli
from memory_implementations.logging import configure_logging

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DOCS = "docs/benchmarks.md"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, run the benchmark, print (and optionally write) the results."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Every size flag can be combined with --quick (explicit sizes win).",
    )
    defaults, quick = BenchSettings(), BenchSettings.quick()
    add_arguments(parser, defaults, quick)
    parser.add_argument("--log-level", default="WARNING", help="library log level on stderr (default WARNING)")
    args = parser.parse_args(argv)
    if args.write_docs == DEFAULT_DOCS:
        args.write_docs = str(REPO / DEFAULT_DOCS)
    configure_logging(args.log_level)
    return run_cli(args, defaults, quick)


if __name__ == "__main__":
    sys.exit(main())
