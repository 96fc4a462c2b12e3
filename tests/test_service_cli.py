"""``memory-orchestrator serve`` as a real process: JSON logs with request ids, no secrets, --insecure-dev."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_fixtures import Keys, free_port, new_user

from memory_implementations.service.settings import ServiceSettings

pytest_plugins = ["service_fixtures"]


def _toml(base: dict[str, Any], path: Path) -> Path:
    lines = []
    for k, v in base.items():
        lines.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


class ServeProcess:
    """``python -m memory_implementations.cli serve`` with logs captured to a file."""

    def __init__(self, config_file: Path, log_file: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_file = log_file
        self._log = open(log_file, "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "memory_implementations.cli",
                "serve",
                "--port",
                str(self.port),
                "--config",
                str(config_file),
                *extra,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start:\n{log_file.read_text()}")
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._log.close()
        return code

    def json_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_file.read_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


@pytest.fixture(scope="module")
def config_file(base_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _toml(base_config, tmp_path_factory.mktemp("cli") / "config.toml")


def test_serve_writes_json_logs_with_request_ids_and_no_secrets(config_file, pg_dsn, tmp_path):
    server = ServeProcess(config_file, tmp_path / "serve.log")
    try:
        user = new_user()
        key, _ = Keys(pg_dsn).create(user)
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            assert c.put("/v1/kv/p/k", json={"value": 1}, headers={"X-Request-ID": "rid-put"}).status_code == 201
            forgot = c.delete(f"/v1/users/{user}", headers={"X-Request-ID": "rid-forget"})
            assert forgot.status_code == 200 and forgot.headers["x-request-id"] == "rid-forget"
            bad = httpx.get(
                f"{server.url}/v1/entities", headers={"X-API-Key": key + "tampered", "X-Request-ID": "rid-bad"}
            )
            assert bad.status_code == 401
    finally:
        code = server.stop()
    raw = server.log_file.read_text()
    lines = server.json_lines()
    assert lines, raw
    assert code in (0, 130)  # uvicorn re-raises the SIGINT it handled after a graceful shutdown
    assert any(line["event"] == "service_stopped" for line in lines)  # lifespan shutdown ran
    assert all("timestamp" in line and "level" in line for line in lines)
    forget_lines = [line for line in lines if line.get("request_id") == "rid-forget"]
    events = {line["event"] for line in forget_lines}
    assert {"user_forgotten", "request"} <= events, forget_lines  # the package's own log line carries the id too
    access = next(line for line in forget_lines if line["event"] == "request")
    assert access["route"] == "/v1/users/{user_id}" and access["status"] == 200 and access["caller"] == key[3:11]
    assert any(line.get("request_id") == "rid-bad" and line.get("status") == 401 for line in lines)
    # a request line never lacks its request id
    assert all(line.get("request_id") for line in lines if line.get("event") == "request")
    secret = key.split("_", 2)[2]
    assert secret not in raw and "Bearer mi_" not in raw


def test_serve_insecure_dev_needs_no_key_and_says_so_loudly(config_file, tmp_path):
    server = ServeProcess(config_file, tmp_path / "insecure.log", "--insecure-dev")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.put("/v1/kv/dev/k", json={"value": "v"})
            assert r.status_code in (200, 201) and r.json()["user_id"] == "default"
            assert c.get("/v1/kv/dev/k", params={"user_id": "someone"}).status_code == 404  # any user reachable
            assert c.get("/health/ready").json()["auth"] == "disabled"
    finally:
        server.stop()
    warnings = [line for line in server.json_lines() if line.get("event") == "AUTH_DISABLED_INSECURE"]
    assert warnings and warnings[0]["level"] == "warning" and "DISABLED" in warnings[0]["message"]


def test_auth_disabled_only_by_explicit_setting(monkeypatch):
    monkeypatch.delenv("MEMORY_SERVICE_AUTH", raising=False)
    assert ServiceSettings.load().auth_enabled is True
    monkeypatch.setenv("MEMORY_SERVICE_AUTH", "disabled")
    assert ServiceSettings.load().auth_enabled is False
    monkeypatch.setenv("MEMORY_SERVICE_AUTH", "off")
    with pytest.raises(Exception, match="auth"):
        ServiceSettings.load()


def test_serve_rejects_a_bad_port(config_file):
    out = subprocess.run(
        [sys.executable, "-m", "memory_implementations.cli", "serve", "--port", "70000", "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "--port" in out.stderr


def _processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path`` (the embedded servers name their data dir)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in text:
            found.append(text)
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_on_the_embedded_default_stops_its_servers_on_sigterm_and_ctrl_c(tmp_path, sig):
    """kill/systemd/docker stop send SIGTERM: the embedded PostgreSQL and Redis must not outlive serve."""
    data_dir = tmp_path / "data"
    config = _toml({"data_dir": str(data_dir), "embedding_provider": "local", "llm_provider": "offline"},
                   tmp_path / "embedded.toml")
    env = {"HOME": str(tmp_path)}
    server = ServeProcess(config, tmp_path / "serve.log", env=env)
    assert _processes_using(data_dir), "the embedded servers run inside the data dir"
    code = server.stop(sig)
    assert code == (143 if sig == signal.SIGTERM else 130) or (sig == signal.SIGINT and code == 0), code
    deadline = time.monotonic() + 30  # the servers stop on the way out; give a slow machine time
    while _processes_using(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_using(data_dir) == []
    assert "service_stopped" in server.log_file.read_text()
