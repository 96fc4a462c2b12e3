"""``memory-orchestrator serve``: the HTTP service (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
import errno
import socket

from ._common import EXIT_OK, add_common_options, add_dsn_option, default_log_level, fail, load_config

EPILOG = """examples:
  memory-orchestrator serve
      127.0.0.1:8080; embedded Redis + PostgreSQL in data_dir when REDIS_URL / DATABASE_URL are unset
  memory-orchestrator serve --host 0.0.0.0 --port 9000 --config /etc/memory/config.toml
  MEMORY_SERVICE_RATE_LIMIT_PER_SECOND=20 MEMORY_SERVICE_RATE_LIMIT_BURST=40 memory-orchestrator serve
  memory-orchestrator serve --dsn postgresql://user:PASSWORD@db:5432/postgres
      this PostgreSQL instead of DATABASE_URL / the embedded one
  memory-orchestrator serve --insecure-dev
      no API keys (development only; logged loudly at start-up)

Create keys with `memory-orchestrator keys create --user <user_id>`. OpenAPI docs: http://HOST:PORT/docs.
Monitoring: GET /health (liveness), GET /health/ready (200 healthy/degraded, 503 unhealthy), GET /metrics.
Service settings come from MEMORY_SERVICE_* variables (see docs/service.md)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP service (OpenAPI at /docs)",
        description="Serve the memory API over HTTP with API keys, rate limits, health checks and metrics.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default: 8080; 0 picks a free one)")
    parser.add_argument(
        "--insecure-dev",
        action="store_true",
        help="disable API key authentication (development only; same as MEMORY_SERVICE_AUTH=disabled)",
    )
    parser.add_argument(
        "--log-format", choices=("json", "console"), default="json", help="log line format (default: json)"
    )
    add_dsn_option(parser)
    add_common_options(parser)
    parser.set_defaults(handler=run)


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound right now (one line), or None when it can; 0 always can."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn picks it
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} on {host} is already in use by another process: stop it or choose another --port"
        reason = exc.strerror or str(exc)
        return f"cannot listen on {host}:{port} (--host/--port): {reason}"
    return None


def run(args: argparse.Namespace) -> int:
    """Handle ``memory-orchestrator serve``."""
    import structlog
    import uvicorn

    from ..logging import configure_logging
    from ..service.app import create_app
    from ..service.settings import ServiceSettings

    if not 0 <= args.port <= 65535:
        return fail(f"--port must be between 0 and 65535, got {args.port}")
    problem = port_problem(args.host, args.port)  # before any server (embedded ones included) starts
    if problem:
        return fail(problem)
    configure_logging(getattr(args, "log_level", None) or default_log_level(), json=args.log_format == "json")
    config = load_config(args, database_url=args.dsn)
    overrides = {"auth": "disabled"} if args.insecure_dev else {}
    settings = ServiceSettings.load(**overrides)
    app = create_app(config, settings=settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_config=None,  # uvicorn's own lines go through our (JSON, masked) logging
            access_log=False,  # the service writes one structured line per request itself
            server_header=False,
            lifespan="on",
        )
    )
    structlog.get_logger("memory_implementations.cli").info(
        "serving",
        url=f"http://{args.host}:{args.port}",
        docs=f"http://{args.host}:{args.port}/docs",
        auth="DISABLED (insecure-dev)" if not settings.auth_enabled else "api keys",
    )
    server.run()
    return EXIT_OK if server.started else fail("the server did not start (see the log above)")


__all__ = ["port_problem", "register", "run"]
