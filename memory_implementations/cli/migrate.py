"""``memory-orchestrator migrate``: apply (or ``--check``) the database schema."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..config import MemoryConfig
from ..logging import mask_text
from ..providers.embedding_dim import configured_embedding_dim, describe_embedder
from ..stores.embedded import start_postgres_async
from ..stores.migrations import MigrationReport, migrate
from ._common import (
    EXIT_OK,
    EXIT_PENDING,
    add_common_options,
    add_dsn_option,
    load_config,
    positive_int,
    run_async,
)

EPILOG = """examples:
  memory-orchestrator migrate
      DATABASE_URL / MEMORY_DATABASE_URL (or database_url in --config); none: the embedded
      PostgreSQL in data_dir
  memory-orchestrator migrate --dsn "postgresql://postgres:PASSWORD@db.PROJECT.supabase.co:5432/postgres"
      Supabase: use the direct or session connection (port 5432), not the transaction pooler (6543)
  memory-orchestrator migrate --embedding-dim 384
      vector(384) for all-MiniLM-L6-v2; above 2000 dimensions (e.g. 3072) the column is halfvec
  memory-orchestrator migrate --check
      change nothing; exit 0 when up to date, 1 and list what is pending otherwise

Without --embedding-dim the dimension is the configured embedder's, as the tiers and `serve` use it:
embedding_dim when set, else 384 for the local embedder (no API key), 1536 for OpenAI, 768 for Gemini.
An empty memory_vectors of another dimension is re-created at it; one holding rows of another
dimension is refused and left untouched (--check exits 2 with the same message).
exit status: 0 migrated or up to date, 1 pending (--check), 2 error (message on stderr)."""


@dataclass(frozen=True, slots=True)
class Target:
    """The database a command works on and where its DSN came from."""

    dsn: str
    source: str  # "--dsn", "config" or "embedded"

    @property
    def display(self) -> str:
        """The DSN with its password masked."""
        return mask_text(self.dsn)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``migrate`` subcommand."""
    parser = subparsers.add_parser(
        "migrate",
        help="apply database_migrations.sql (versioned, idempotent, advisory-locked)",
        description="Create or update the memory schema: tables, HNSW index, match_memories(), RLS policies.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dsn_option(parser)
    parser.add_argument(
        "--embedding-dim",
        metavar="N",
        type=positive_int,
        help="embedding dimension of memory_vectors (default: the configured embedder's)",
    )
    parser.add_argument("--check", action="store_true", help="report pending migrations only; exit 1 if any")
    add_common_options(parser)
    parser.set_defaults(handler=run)


async def resolve_target(config: MemoryConfig, dsn: str | None = None) -> Target:
    """The DSN to migrate: ``--dsn``, else the configured database_url, else the embedded server."""
    if dsn:
        return Target(dsn, "--dsn")
    configured = config.secret("database_url")
    if configured:
        return Target(configured, "config")
    server = await start_postgres_async(config.data_dir)
    return Target(server.dsn, "embedded")


async def run_migrate(
    config: MemoryConfig, *, dsn: str | None = None, embedding_dim: int | None = None, check: bool = False
) -> tuple[Target, MigrationReport]:
    """Resolve the target database and migrate (or check) it."""
    target = await resolve_target(config, dsn)
    if embedding_dim:
        dim, wanted_by = embedding_dim, f"--embedding-dim {embedding_dim}"
    else:
        dim, wanted_by = configured_embedding_dim(config), describe_embedder(config)
    report = await migrate(target.dsn, embedding_dim=dim, check=check, config=config, wanted_by=wanted_by)
    return target, report


def describe(target: Target, report: MigrationReport, *, check: bool) -> tuple[str, int]:
    """The text to print for a migrate/check run and the exit status."""
    where = f"database: {target.display} ({target.source})"
    embedding = f"embedding column: {report.embedding_type}"
    if report.retyped_from and not check:
        embedding += f" (was {report.retyped_from}; the table was empty)"
    if check:
        if not report.up_to_date:
            versions = ", ".join(str(v) for v in report.pending)
            schema = (
                f"pending: schema version(s) {versions} (database at version {report.current_version}, "
                f"package at {report.target_version})"
            )
            lines = [
                *([schema] if report.pending else []),
                *(f"pending: {note}" for note in report.notes),
                where,
                embedding,
                "run `memory-orchestrator migrate` to apply",
            ]
            return "\n".join(lines), EXIT_PENDING
        return f"up to date: schema version {report.current_version}\n{where}\n{embedding}", EXIT_OK
    state = "migrated" if report.applied else "up to date, nothing applied"
    extra = "\nauth: installed the Supabase auth.uid() emulation" if report.auth_emulated else ""
    return f"{state}: schema version {report.current_version}\n{where}\n{embedding}{extra}", EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Handle ``memory-orchestrator migrate``."""
    config = load_config(args)
    target, report = run_async(
        run_migrate(config, dsn=args.dsn, embedding_dim=args.embedding_dim, check=args.check)
    )
    text, code = describe(target, report, check=args.check)
    print(text)
    return code


__all__ = ["Target", "describe", "register", "resolve_target", "run", "run_migrate"]
