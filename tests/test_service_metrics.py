"""/metrics parsed with prometheus_client's parser: request counters by route template, latency, tiers, providers."""

from __future__ import annotations

import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from service_fixtures import LiveServer, metric_value, new_user

from memory_implementations.service.settings import ServiceSettings

pytest_plugins = ["service_fixtures"]


@pytest.fixture(scope="module")
def metered(service_config) -> LiveServer:
    """A fresh server, so its private registry starts at zero."""
    server = LiveServer(service_config, ServiceSettings(key_cache_ttl_seconds=0)).start()
    server.wait_ready()
    yield server
    server.stop()


def _families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_request_counters_by_route_template_and_status(metered, keys):
    user = new_user()
    key, _ = keys.create(user)
    with metered.client(key) as c:
        for _ in range(3):
            assert c.get(f"/v1/memories/{uuid.uuid4()}").status_code == 404
        for _ in range(2):
            assert c.post("/v1/context", json={"query": "hello there", "session_id": "m1"}).status_code == 200
        assert c.get("/no/such/route").status_code == 404
    with metered.client() as anon:
        assert anon.get("/v1/entities").status_code == 401
        text = anon.get("/metrics").text
        assert anon.get("/metrics").headers["content-type"].startswith("text/plain")
    fams = _families(text)
    assert fams["memory_http_requests"].type == "counter"
    assert (
        metric_value(
            text, "memory_http_requests_total", {"method": "GET", "route": "/v1/memories/{memory_id}", "status": "404"}
        )
        == 3
    )
    assert (
        metric_value(text, "memory_http_requests_total", {"method": "POST", "route": "/v1/context", "status": "200"})
        == 2
    )
    assert metric_value(text, "memory_http_requests_total", {"route": "<unmatched>", "status": "404"}) == 1
    assert metric_value(text, "memory_http_requests_total", {"route": "/v1/entities", "status": "401"}) == 1
    # no raw paths (ids) leak into labels
    assert f"/v1/memories/{uuid.UUID(int=0)}" not in text and "/no/such/route" not in text
    assert metric_value(text, "memory_http_request_duration_seconds_count", {"route": "/v1/context"}) == 2
    assert metric_value(text, "memory_http_request_duration_seconds_sum", {"route": "/v1/context"}) > 0
    # per-tier read latency from the composed contexts
    for tier in ("conversation_summary", "vector_database", "entity_memory", "key_value_store"):
        assert metric_value(text, "memory_tier_read_duration_seconds_count", {"tier": tier}) >= 2, tier
    assert metric_value(text, "memory_context_tokens_count") == 2
    assert metric_value(text, "memory_auth_failures_total", {"reason": "missing"}) == 1
    assert metric_value(text, "memory_http_requests_in_flight") == 1  # the scrape itself
    assert metric_value(text, "memory_ready") in (0, 1)


def test_provider_and_background_metrics_are_wired(metered, keys):
    user = new_user()
    key, _ = keys.create(user)
    with metered.client() as c:
        before = c.get("/metrics").text
    calls_before = metric_value(before, "memory_provider_calls_total", {"operation": "embed", "outcome": "ok"})
    tokens_before = metric_value(before, "memory_provider_tokens_total", {"operation": "embed"})
    jobs_before = metric_value(before, "memory_background_jobs_total", {"outcome": "succeeded"})
    assert "memory_background_queue_depth" in _families(before)
    with metered.client(key) as c:
        r = c.post("/v1/memories", json={"content": f"A completely new fact number {uuid.uuid4().hex}"})
        assert r.status_code == 201
        c.post(
            "/v1/turns",
            json={
                "session_id": "bg",
                "user_message": "My colleague Anna Berg lives in Bergen.",
                "assistant_message": "Noted.",
            },
        )
        deadline = time.monotonic() + 20
        while True:
            after = c.get("/metrics").text
            if metric_value(after, "memory_background_jobs_total", {"outcome": "succeeded"}) >= jobs_before + 2:
                break
            assert time.monotonic() < deadline, "background jobs did not finish"
            time.sleep(0.1)
    provider = {"model": "all-MiniLM-L6-v2", "operation": "embed", "outcome": "ok"}
    assert metric_value(after, "memory_provider_calls_total", provider) > calls_before
    assert metric_value(after, "memory_provider_tokens_total", {"operation": "embed"}) > tokens_before
    assert metric_value(after, "memory_background_queue_depth") >= 0


def test_each_app_has_its_own_registry(metered, live, tenant):
    _, key = tenant
    with live.client(key) as c:
        for _ in range(2):
            c.get("/v1/kv/only-on-live")
    with metered.client() as c:
        text = c.get("/metrics").text
    assert metric_value(text, "memory_http_requests_total", {"route": "/v1/kv/{namespace}"}) == 0


def test_request_id_is_echoed_or_generated(live, tenant):
    _, key = tenant
    with live.client(key) as c:
        given = c.get("/v1/entities", headers={"X-Request-ID": "trace-42.abc"})
        generated = c.get("/v1/entities")
        hostile = c.get("/v1/entities", headers={"X-Request-ID": "bad id\twith spaces" + "x" * 200})
        error = c.get(f"/v1/memories/{uuid.uuid4()}", headers={"X-Request-ID": "err-1"})
    assert given.headers["x-request-id"] == "trace-42.abc"
    assert len(generated.headers["x-request-id"]) == 32 and int(generated.headers["x-request-id"], 16) >= 0
    assert hostile.headers["x-request-id"] != "bad id" and len(hostile.headers["x-request-id"]) == 32
    assert error.status_code == 404 and error.headers["x-request-id"] == "err-1"


def test_metrics_can_require_an_admin_key(service_config, keys):
    server = LiveServer(service_config, ServiceSettings(metrics_require_admin=True, key_cache_ttl_seconds=0)).start()
    try:
        server.wait_ready()
        user_key, _ = keys.create(new_user())
        admin_key, _ = keys.create(admin=True)
        with server.client() as c:
            assert c.get("/metrics").status_code == 401
            assert c.get("/health/ready").status_code == 200  # probes stay open
        with server.client(user_key) as c:
            r = c.get("/metrics")
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        with server.client(admin_key, header="x-api-key") as c:
            r = c.get("/metrics")
            assert r.status_code == 200 and "memory_http_requests_total" in r.text
    finally:
        server.stop()
