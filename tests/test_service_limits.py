"""Rate limits (429 + Retry-After), body limits (413), the key cache TTL and the JSON error shape for bad input."""

from __future__ import annotations

import threading
import time

import pytest
from service_fixtures import LiveServer, metric_value, new_user

from memory_implementations.errors import (
    BackendUnavailable,
    ConfigError,
    ExtensionMissing,
    MemoryError,
    NotFound,
    ProviderError,
    SchemaMismatch,
    ValidationError,
)
from memory_implementations.service.errors import (
    Conflict,
    Forbidden,
    PayloadTooLarge,
    RateLimited,
    TierDisabled,
    Unauthorized,
    status_for,
)
from memory_implementations.service.settings import ServiceSettings

RATE, BURST, TTL = 0.5, 3, 1.5

pytest_plugins = ["service_fixtures"]


@pytest.fixture(scope="module")
def limited(service_config) -> LiveServer:
    """A server with a tiny bucket (3 requests, 0.5/s), a 1.5 s key cache and a 1 KiB body limit."""
    settings = ServiceSettings(
        rate_limit_per_second=RATE, rate_limit_burst=BURST, key_cache_ttl_seconds=TTL, max_body_bytes=1024
    )
    server = LiveServer(service_config, settings).start()
    server.wait_ready()
    yield server
    server.stop()


def test_token_bucket_429_with_retry_after_per_key(limited, keys):
    key, _ = keys.create(new_user())
    other, _ = keys.create(new_user())
    with limited.client(key) as c:
        remaining = []
        for i in range(BURST):
            r = c.post("/v1/context", json={"query": "hi", "session_id": "s"}) if i == 0 else c.get("/v1/entities")
            assert r.status_code == 200, r.text
            assert r.headers["x-ratelimit-limit"] == str(BURST)
            remaining.append(int(r.headers["x-ratelimit-remaining"]))
        assert remaining == [2, 1, 0]
        refused = c.get("/v1/entities")
        assert refused.status_code == 429
        err = refused.json()["error"]
        assert err["code"] == "rate_limited" and "retry after" in err["message"]
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= int(1 / RATE) + 1
        with limited.client(other) as c2:  # another key has its own bucket
            assert c2.get("/v1/entities").status_code == 200
        time.sleep(retry_after + 0.1)
        assert c.get("/v1/entities").status_code == 200  # refilled
    with limited.client() as c:
        text = c.get("/metrics").text
    assert metric_value(text, "memory_rate_limited_total") >= 1
    assert metric_value(text, "memory_http_requests_total", {"route": "/v1/entities", "status": "429"}) >= 1


def test_bucket_lives_in_redis_and_is_shared_across_app_instances(limited, service_config, keys):
    key, record = keys.create(new_user())
    twin = LiveServer(service_config, limited.settings).start()  # a second replica on the same Redis
    try:
        twin.wait_ready()
        with limited.client(key) as a, twin.client(key) as b:
            codes = [
                a.get("/v1/entities").status_code,
                b.get("/v1/entities").status_code,
                a.get("/v1/entities").status_code,
                b.get("/v1/entities").status_code,
            ]
        assert codes == [200, 200, 200, 429]
        limiter = limited.state.limiter
        assert limiter is not None and f"key%3A{record.id}" in limiter.bucket_key(f"key:{record.id}")
    finally:
        twin.stop()


def test_key_cache_ttl_delays_revocation_then_refuses(limited, keys):
    key, record = keys.create(new_user())
    with limited.client(key) as c:
        assert c.get("/v1/entities").status_code == 200
        keys.revoke(record.id)
        assert c.get("/v1/entities").status_code == 200  # still cached: revocation applies within the TTL
        time.sleep(TTL + 0.2)
        r = c.get("/v1/entities")
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


def test_body_limit_by_content_length_before_auth(live):
    big = b'{"query": "' + b"a" * (70 * 1024) + b'"}'
    with live.client() as c:  # no key: the size check comes first
        r = c.post("/v1/context", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    err = r.json()["error"]
    assert err["code"] == "payload_too_large" and err["field"] == "body" and str(64 * 1024) in err["message"]


def test_body_limit_on_a_streamed_chunked_body(live, tenant):
    _, key = tenant

    def chunks():
        yield b'{"query": "'
        for _ in range(80):
            yield b"b" * 1024
        yield b'"}'

    with live.client(key) as c:
        r = c.post("/v1/context", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "payload_too_large"
        ok = c.post("/v1/context", json={"query": "b" * 1000, "session_id": "s"})
        assert ok.status_code == 200


def test_small_limit_server_refuses_1k_plus(limited, keys):
    key, _ = keys.create(new_user())
    with limited.client(key) as c:
        r = c.post("/v1/memories", json={"content": "x" * 2000})
    assert r.status_code == 413


@pytest.mark.parametrize(
    "method, path, payload, status, field",
    [
        ("post", "/v1/turns", {"session_id": "s", "assistant_message": "hi"}, 422, "user_message"),
        ("post", "/v1/context", {"session_id": "s", "qurey": "typo"}, 422, "qurey"),
        ("post", "/v1/context", {"query": "where do I live?"}, 422, "session_id"),
        ("post", "/v1/context", {"query": "x", "session_id": ""}, 422, "session_id"),
        ("post", "/v1/context", {"query": "x", "session_id": "   "}, 400, "session_id"),
        ("post", "/v1/context", {"session_id": "s", "max_total_tokens": "lots"}, 422, "max_total_tokens"),
        ("post", "/v1/context", {"session_id": "s", "max_total_tokens": 0}, 422, "max_total_tokens"),
        ("post", "/v1/context", {"session_id": "s", "memory_types": ["telepathy"]}, 422, "memory_types.0"),
        ("post", "/v1/context", {"session_id": "s", "weights": {"bogus": 1.0}}, 400, "weights"),
        ("post", "/v1/memories", {"content": "has a \u0000 NUL"}, 400, "content"),
        ("post", "/v1/memories", {"content": "   "}, 400, "content"),
        ("post", "/v1/memories/batch", {"memories": []}, 422, "memories"),
        ("post", "/v1/memories/search", {"query": "x", "k": 5000}, 422, "k"),
        ("post", "/v1/memories/search", {"query": "x", "created_after": "2024-01-01T00:00"}, 400, "created_after"),
        ("patch", "/v1/memories/00000000-0000-0000-0000-000000000000", {}, 422, None),
        ("post", "/v1/turns", {"session_id": "s", "user_message": " ", "assistant_message": "a"}, 400, "user_message"),
        ("post", "/v1/sessions/s/messages", {"role": "robot", "content": "x"}, 422, "role"),
        ("post", "/v1/sessions/s/messages", {}, 422, None),
        ("put", "/v1/kv/ns/k", {"val": 1}, 422, "value"),  # missing value first; "val" in details
        ("put", "/v1/kv/ns/k", {"value": 1, "ttl_seconds": -5}, 422, "ttl_seconds"),
        ("post", "/v1/working/ns/items", {"content": "x", "importance": 3}, 422, "importance"),
        ("get", "/v1/sessions/s/messages?limit=0", None, 422, "limit"),
        ("get", "/v1/entities?limit=abc", None, 422, "limit"),
    ],
)
def test_bad_input_gets_json_error_naming_the_field(live, tenant, method, path, payload, status, field):
    _, key = tenant
    with live.client(key) as c:
        r = c.request(method, path, json=payload)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"code", "message", "field"}
    assert err["code"] == ("invalid_request" if status == 422 else "validation_error")
    assert err["field"] == field
    if field:
        assert field.split(".")[0] in err["message"]


def test_malformed_json_is_400(live, tenant):
    _, key = tenant
    with live.client(key) as c:
        r = c.post("/v1/context", content=b'{"query": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json" and r.json()["error"]["field"] == "body"


def test_unknown_route_and_method_are_json(live, tenant):
    _, key = tenant
    with live.client(key) as c:
        nf = c.get("/v1/nothing-here")
        na = c.put("/v1/context", json={})
    assert nf.status_code == 404 and nf.json()["error"]["code"] == "not_found"
    assert na.status_code == 405 and na.json()["error"]["code"] == "method_not_allowed"


def test_hostile_inputs_never_500(live, tenant):
    _, key = tenant
    bodies = [
        ("post", "/v1/context", b'{"query": "\\ud800 lone surrogate", "session_id": "s"}'),
        ("post", "/v1/memories", b'{"content": "\\udfff"}'),
        ("post", "/v1/turns", b'{"session_id": "s", "user_message": "\\ud83d", "assistant_message": "a"}'),
        ("post", "/v1/context", {"query": "x", "session_id": "s", "filters": {"tier_timeout_ms": -1}}),
        ("post", "/v1/context", {"query": "x", "session_id": "s" * 300}),
        ("post", "/v1/memories/search", {"query": "x", "filters": {"a": {"$gt": 1}}, "threshold": 2}),
        ("post", "/v1/memories", {"content": "x", "metadata": {"nested": [1, {"nan": None}]}}),
        ("post", "/v1/turns", {"session_id": "s", "user_message": "a" * 40_000, "assistant_message": "b"}),
        ("put", "/v1/kv/%00/k", {"value": 1}),
        ("post", "/v1/working/ns/reasoning", {"content": "x", "step_type": "y" * 40}),
        ("get", "/v1/memories/%20", None),
    ]
    statuses: list[int] = []
    with live.client(key) as c:
        for method, path, body in bodies:
            if isinstance(body, bytes):
                r = c.request(method, path, content=body, headers={"content-type": "application/json"})
            else:
                r = c.request(method, path, json=body)
            assert r.status_code < 500, (path, body, r.status_code, r.text)
            if r.status_code >= 400:
                assert set(r.json()["error"]) >= {"code", "message", "field"}, (path, r.text)
            statuses.append(r.status_code)
        # the clearly invalid ones were refused
        assert statuses[3] == 400 and statuses[4] == 422 and statuses[5] in (400, 422) and statuses[-2] == 422


def test_every_package_error_maps_to_its_status():
    cases = [
        (ValidationError("x"), 400),
        (ConfigError("x"), 400),
        (NotFound("x"), 404),
        (SchemaMismatch("x"), 503),
        (BackendUnavailable("x"), 503),
        (ExtensionMissing("x"), 503),
        (ProviderError("x", retryable=True), 503),
        (ProviderError("x"), 502),
        (Unauthorized("x"), 401),
        (Forbidden("x"), 403),
        (Conflict("x"), 409),
        (PayloadTooLarge("x"), 413),
        (RateLimited("x"), 429),
        (TierDisabled("x"), 501),
        (MemoryError("x"), 500),
    ]
    for exc, status in cases:
        assert status_for(exc) == status, exc


def test_concurrency_limit_queues_then_503_overloaded(service_config, keys):
    settings = ServiceSettings(max_concurrent_requests=1, queue_timeout_seconds=0.3, key_cache_ttl_seconds=0)
    server = LiveServer(service_config, settings).start()
    try:
        server.wait_ready()
        key, _ = keys.create(new_user())
        holding = threading.Event()

        def slow_body():
            yield b'{"content": "slow '
            holding.set()
            time.sleep(1.5)  # the request holds the only slot while its body trickles in
            yield b'upload"}'

        results: dict[str, int] = {}

        def slow_request() -> None:
            with server.client(key) as c:
                r = c.post("/v1/memories", content=slow_body(), headers={"content-type": "application/json"})
                results["slow"] = r.status_code

        t = threading.Thread(target=slow_request)
        t.start()
        assert holding.wait(10)
        time.sleep(0.1)
        with server.client(key) as c:
            assert c.get("/health").status_code == 200  # monitoring is never queued
            started = time.perf_counter()
            refused = c.get("/v1/entities")
            waited = time.perf_counter() - started
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "overloaded" and refused.headers["retry-after"] == "1"
            assert 0.25 <= waited < 1.4  # it waited in line for queue_timeout, not for the slow request
            t.join(10)
            assert results["slow"] == 201
            assert c.get("/v1/entities").status_code == 200  # the slot is free again
            text = c.get("/metrics").text
        assert metric_value(text, "memory_http_overloaded_total") == 1
        assert metric_value(text, "memory_http_requests_queued") == 0
    finally:
        server.stop()
