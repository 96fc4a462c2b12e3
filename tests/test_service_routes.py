"""Every /v1 route against the real service (uvicorn on loopback, real Redis + PostgreSQL), driven by httpx."""

from __future__ import annotations

import time
import uuid

import pytest
from service_fixtures import new_user

pytest_plugins = ["service_fixtures"]


def _poll(fn, timeout: float = 20.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        out = fn()
        if out:
            return out
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def test_openapi_lists_every_route(live):
    with live.client() as c:
        spec = c.get("/openapi.json").json()
        docs = c.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = spec["paths"]
    expected = {
        ("/v1/context", "post"),
        ("/v1/turns", "post"),
        ("/v1/sessions/{session_id}/messages", "post"),
        ("/v1/sessions/{session_id}/messages", "get"),
        ("/v1/sessions/{session_id}/messages", "delete"),
        ("/v1/sessions/{session_id}/summary", "get"),
        ("/v1/sessions/{session_id}/stats", "get"),
        ("/v1/memories", "post"),
        ("/v1/memories/batch", "post"),
        ("/v1/memories/search", "post"),
        ("/v1/memories/{memory_id}", "get"),
        ("/v1/memories/{memory_id}", "patch"),
        ("/v1/memories/{memory_id}", "delete"),
        ("/v1/kv/{namespace}", "get"),
        ("/v1/kv/{namespace}/{key}", "get"),
        ("/v1/kv/{namespace}/{key}", "put"),
        ("/v1/kv/{namespace}/{key}", "delete"),
        ("/v1/kv/{namespace}/{key}/history", "get"),
        ("/v1/working/{namespace}/items", "post"),
        ("/v1/working/{namespace}", "get"),
        ("/v1/working/{namespace}/reasoning", "post"),
        ("/v1/working/{namespace}/reasoning", "get"),
        ("/v1/entities", "get"),
        ("/v1/entities/{name}", "get"),
        ("/v1/entities/analytics", "get"),
        ("/v1/users/{user_id}", "delete"),
        ("/health", "get"),
        ("/health/ready", "get"),
        ("/metrics", "get"),
    }
    have = {(p, m) for p, ops in paths.items() for m in ops}
    assert expected <= have, expected - have
    # both auth schemes are documented, so /docs offers "Authorize"
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])


def test_a_dated_turn_is_recalled_with_its_date(live, tenant):
    user, key = tenant
    sid = f"s-{uuid.uuid4().hex[:8]}"
    with live.client(key) as c:
        r = c.post("/v1/turns", json={
            "session_id": sid, "created_at": "2024-02-29T09:30:00+00:00",
            "user_message": "My passport number ends in 7731 and expires next year.",
            "assistant_message": "Noted, I will remind you before it expires.",
        })
        assert r.status_code == 201, r.text
        bad = c.post("/v1/turns", json={"session_id": sid, "created_at": "yesterday",
                                        "user_message": "x", "assistant_message": "y"})
        assert bad.status_code == 422 and "created_at" in bad.text
        naive = c.post("/v1/turns", json={"session_id": sid, "created_at": "2024-02-29T09:30:00",
                                          "user_message": "x", "assistant_message": "y"})
        assert naive.status_code == 422 and "created_at" in naive.text
        text = ""
        for _ in range(50):
            ctx = c.post("/v1/context", json={"query": "when does my passport expire?", "session_id": f"{sid}-q",
                                              "max_total_tokens": 800})
            assert ctx.status_code == 200, ctx.text
            text = ctx.json().get("text", "")
            if "7731" in text:
                break
            time.sleep(0.1)
        assert "[2024-02-29]\n- User: My passport number ends in 7731" in text


def test_turn_then_context_messages_stats_summary(live, tenant):
    user, key = tenant
    sid = f"s-{uuid.uuid4().hex[:8]}"
    with live.client(key) as c:
        r = c.post(
            "/v1/turns",
            json={
                "session_id": sid,
                "user_message": "I live in Austin, Texas and I love hiking on weekends.",
                "assistant_message": "Austin has great trails!",
            },
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["user_id"] == user  # taken from the key
        assert [s["role"] for s in body["stored"]] == ["user", "assistant"]
        assert all(s["durable"] for s in body["stored"])

        msgs = c.get(f"/v1/sessions/{sid}/messages").json()
        assert [m["content"] for m in msgs["messages"]] == [
            "I live in Austin, Texas and I love hiking on weekends.",
            "Austin has great trails!",
        ]
        assert all(m["user_id"] == user for m in msgs["messages"])

        r = c.post(f"/v1/sessions/{sid}/messages", json={"role": "user", "content": "Also, my dog is called Rex."})
        assert r.status_code == 201 and len(r.json()["stored"]) == 1
        r = c.post(
            f"/v1/sessions/{sid}/messages",
            json={
                "messages": [
                    {"role": "assistant", "content": "Rex is a good name."},
                    {"role": "user", "content": "Thanks!"},
                ]
            },
        )
        assert r.status_code == 201 and len(r.json()["stored"]) == 2

        last_two = c.get(f"/v1/sessions/{sid}/messages", params={"limit": 2}).json()["messages"]
        assert [m["content"] for m in last_two] == ["Rex is a good name.", "Thanks!"]
        first_id = msgs["messages"][0]["id"]
        after = c.get(f"/v1/sessions/{sid}/messages", params={"after_id": first_id}).json()["messages"]
        assert len(after) == 4 and after[0]["content"] == "Austin has great trails!"

        stats = c.get(f"/v1/sessions/{sid}/stats").json()
        assert stats["message_count"] == 5
        assert stats["roles"] == {"user": 3, "assistant": 2}
        assert stats["total_tokens"] > 0

        assert c.get(f"/v1/sessions/{sid}/summary").status_code == 404  # nothing summarised yet
        assert c.post(f"/v1/sessions/{sid}/summary").status_code == 404  # all 5 are inside the window (10)
        filler = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"Filler message number {i}."} for i in range(12)
        ]
        assert c.post(f"/v1/sessions/{sid}/messages", json={"messages": filler}).status_code == 201
        forced = c.post(f"/v1/sessions/{sid}/summary")
        assert forced.status_code == 200, forced.text
        summary = c.get(f"/v1/sessions/{sid}/summary").json()
        assert summary["session_id"] == sid and summary["summary"]

        ctx = c.post("/v1/context", json={"query": "Where do I live?", "session_id": sid, "max_total_tokens": 800})
        assert ctx.status_code == 200, ctx.text
        data = ctx.json()
        assert data["user_id"] == user and data["session_id"] == sid
        assert data["total_tokens"] <= 800
        assert data["messages"] and data["messages"][0]["role"] == "system"
        assert "Austin" in data["text"]
        assert set(data["latency_ms"]) >= {"conversation_summary", "total"}

        deleted = c.delete(f"/v1/sessions/{sid}/messages")
        assert deleted.status_code == 200 and deleted.json()["deleted"] >= 17
        assert c.get(f"/v1/sessions/{sid}/messages").json()["messages"] == []


def test_vector_memories_crud_search_filters(live, tenant):
    user, key = tenant
    with live.client(key) as c:
        r = c.post(
            "/v1/memories",
            json={"text": "User prefers morning meetings", "topics": ["scheduling"], "metadata": {"kind": "pref"}},
        )
        assert r.status_code == 201, r.text
        first = r.json()
        assert first["created"] is True and first["user_id"] == user
        again = c.post("/v1/memories", json={"content": "User prefers morning meetings"}).json()
        assert again["id"] == first["id"] and again["created"] is False

        batch = c.post(
            "/v1/memories/batch",
            json={
                "memories": [
                    {"content": "User works as a software engineer at TechCorp", "metadata": {"kind": "job"}},
                    {"content": "User is allergic to peanuts", "metadata": {"kind": "health"}},
                    {"content": "User plays the cello", "namespace": "hobbies"},
                ]
            },
        )
        assert batch.status_code == 201, batch.text
        ids = [m["id"] for m in batch.json()["memories"]]
        assert len(set(ids)) == 3

        found = c.post("/v1/memories/search", json={"query": "what is the user's job?", "k": 3, "threshold": -1})
        assert found.status_code == 200, found.text
        hits = found.json()["memories"]
        assert hits[0]["content"] == "User works as a software engineer at TechCorp"
        assert all(h["user_id"] == user for h in hits)

        filtered = c.post(
            "/v1/memories/search", json={"query": "anything", "filters": {"kind": "health"}, "threshold": -1}
        ).json()["memories"]
        assert [h["content"] for h in filtered] == ["User is allergic to peanuts"]
        by_topic = c.post(
            "/v1/memories/search",
            json={"text": "meetings", "topics": ["scheduling"], "min_relevance_score": -1, "limit": 5},
        ).json()["memories"]
        assert [h["id"] for h in by_topic] == [first["id"]]
        in_ns = c.post("/v1/memories/search", json={"query": "music", "namespace": "hobbies", "threshold": -1}).json()[
            "memories"
        ]
        assert [h["content"] for h in in_ns] == ["User plays the cello"]

        got = c.get(f"/v1/memories/{ids[0]}")
        assert got.status_code == 200 and got.json()["metadata"] == {"kind": "job"}

        patched = c.patch(f"/v1/memories/{ids[0]}", json={"content": "User is a staff engineer at TechCorp"})
        assert patched.status_code == 200 and patched.json()["content"] == "User is a staff engineer at TechCorp"
        assert c.get(f"/v1/memories/{ids[0]}").json()["content"] == "User is a staff engineer at TechCorp"
        conflict = c.patch(f"/v1/memories/{ids[0]}", json={"content": "User is allergic to peanuts"})
        assert conflict.status_code == 409, conflict.text
        assert conflict.json()["error"]["code"] == "conflict" and conflict.json()["error"]["field"] == "content"

        assert c.delete(f"/v1/memories/{ids[1]}").json() == {"id": ids[1], "deleted": True}
        gone = c.get(f"/v1/memories/{ids[1]}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
        assert c.delete(f"/v1/memories/{ids[1]}").status_code == 404
        bad = c.get("/v1/memories/not-a-uuid")
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "id"


def test_kv_routes_with_history(live, tenant):
    _, key = tenant
    with live.client(key) as c:
        assert c.get("/v1/kv/prefs/theme").status_code == 404
        r = c.put("/v1/kv/prefs/theme", json={"value": "dark"})
        assert r.status_code == 201 and r.json()["created"] is True
        r = c.put("/v1/kv/prefs/theme", json={"value": {"mode": "light", "contrast": 2}})
        assert r.status_code == 200 and r.json()["created"] is False
        assert c.get("/v1/kv/prefs/theme").json()["value"] == {"mode": "light", "contrast": 2}
        c.put("/v1/kv/prefs/lang", json={"value": ["en", "fr"]})
        listing = c.get("/v1/kv/prefs").json()
        assert listing["items"] == {"theme": {"mode": "light", "contrast": 2}, "lang": ["en", "fr"]}
        assert c.get("/v1/kv/prefs", params={"prefix": "la"}).json()["items"] == {"lang": ["en", "fr"]}
        hist = c.get("/v1/kv/prefs/theme/history").json()["history"]
        assert [h["value"] for h in hist] == ["dark"] and hist[0]["version"] == 1
        full = c.get("/v1/kv/prefs/theme/history", params={"include_current": "true"}).json()["history"]
        assert [h["version"] for h in full] == [1, 2]
        assert c.delete("/v1/kv/prefs/theme").json()["deleted"] is True
        assert c.get("/v1/kv/prefs/theme").status_code == 404
        assert c.delete("/v1/kv/prefs/theme").status_code == 404


def test_working_memory_routes(live, tenant):
    _, key = tenant
    with live.client(key) as c:
        r = c.post(
            "/v1/working/task-1/items", json={"key": "goal", "content": "book a flight to Rome", "importance": 0.9}
        )
        assert r.status_code == 201 and r.json() == {
            "namespace": "task-1",
            "user_id": tenant[0],
            "key": "goal",
            "created": True,
        }
        auto = c.post("/v1/working/task-1/items", json={"value": {"budget": 500}}).json()
        assert auto["key"] and auto["created"] is True
        assert c.get("/v1/working/task-1/items/goal").json()["content"] == "book a flight to Rome"
        step1 = c.post("/v1/working/task-1/reasoning", json={"content": "need dates first"})
        assert step1.status_code == 201 and step1.json()["step"] == 1
        step2 = c.post("/v1/working/task-1/reasoning", json={"step": "search flights", "step_type": "action"})
        assert step2.json()["step"] == 2
        bad = c.post("/v1/working/task-1/reasoning", json={"content": "x", "step_type": "daydream"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "step_type"
        chain = c.get("/v1/working/task-1/reasoning").json()["steps"]
        assert [(s["type"], s["content"]) for s in chain] == [
            ("thought", "need dates first"),
            ("action", "search flights"),
        ]
        ns = c.get("/v1/working/task-1").json()
        assert {i["key"] for i in ns["items"]} == {"goal", auto["key"]}
        assert ns["stats"]["count"] == 2 and ns["stats"]["reasoning_steps"] == 2
        assert c.delete("/v1/working/task-1/items/goal").json()["deleted"] is True
        assert c.get("/v1/working/task-1/items/goal").status_code == 404


def test_entities_routes_after_turns(live, tenant):
    user, key = tenant
    sid = "s-ent"
    with live.client(key) as c:
        c.post(
            "/v1/turns",
            json={
                "session_id": sid,
                "user_message": "My sister Maria Lopez works at Google in Zurich.",
                "assistant_message": "Interesting!",
            },
        )
        listed = _poll(lambda: c.get("/v1/entities").json()["entities"])
        names = {e["name"] for e in listed}
        assert "Maria Lopez" in names, names
        one = c.get("/v1/entities/Maria Lopez", params={"history": "true"})
        assert one.status_code == 200, one.text
        assert one.json()["name"] == "Maria Lopez" and "attribute_history" in one.json()
        assert c.get("/v1/entities/Nobody Atall").status_code == 404
        people = c.get("/v1/entities", params={"type": "person"}).json()["entities"]
        assert people and all(e["type"] == "person" for e in people)
        analytics = c.get("/v1/entities/analytics").json()
        assert analytics["user_id"] == user
        assert analytics["total_entities"] == len(c.get("/v1/entities", params={"limit": 1000}).json()["entities"])
        assert analytics["total_entities"] >= 2


def test_forget_user_everywhere(live, keys):
    user = new_user()
    key, _ = keys.create(user)
    with live.client(key) as c:
        c.post(
            "/v1/turns",
            json={
                "session_id": "s1",
                "user_message": "I am a pilot based in Lisbon, Portugal.",
                "assistant_message": "Cool.",
            },
        )
        c.post("/v1/memories", json={"content": "User flies Airbus A320"})
        c.put("/v1/kv/prefs/seat", json={"value": "aisle"})
        c.post("/v1/working/trip/items", json={"key": "k", "content": "v"})
        r = c.delete(f"/v1/users/{user}")
        assert r.status_code == 200, r.text
        deleted = r.json()["deleted"]
        assert deleted["vector_database"] >= 1 and deleted["key_value_store"] >= 1
        assert c.get("/v1/sessions/s1/messages").json()["messages"] == []
        assert c.post("/v1/memories/search", json={"query": "airbus", "threshold": -1}).json()["memories"] == []
        assert c.get("/v1/kv/prefs/seat").status_code == 404
        assert c.get("/v1/working/trip/items/k").status_code == 404
        assert c.get("/v1/entities").json()["entities"] == []


@pytest.mark.parametrize("path", ["/v1/sessions/s/messages", "/v1/kv/ns", "/v1/entities"])
def test_user_id_query_param_selects_tenant_for_multi_user_keys(live, keys, path):
    a, b = new_user(), new_user()
    key, _ = keys.create(a, b)
    with live.client(key) as c:
        missing = c.get(path)
        assert missing.status_code == 400 and missing.json()["error"]["field"] == "user_id"
        assert c.get(path, params={"user_id": b}).status_code == 200


def test_create_app_with_a_given_orchestrator_opens_and_closes_it(service_config, keys):
    from service_fixtures import LiveServer

    from memory_implementations.errors import BackendUnavailable
    from memory_implementations.orchestrator import MemoryOrchestrator
    from memory_implementations.service.settings import ServiceSettings
    from memory_implementations.types import MemoryType

    orchestrator = MemoryOrchestrator(
        {**service_config, "enabled_memories": ["conversation_buffer", "key_value_store"]}
    )
    server = LiveServer(None, ServiceSettings(key_cache_ttl_seconds=0), orchestrator=orchestrator).start()
    try:
        server.wait_ready()
        assert server.state.orchestrator is orchestrator and orchestrator.stores is not None  # the lifespan opened it
        key, _ = keys.create(new_user())
        with server.client(key) as c:
            assert set(c.get("/health/ready").json()["tiers"]) == {"conversation_buffer", "key_value_store"}
            r = c.post("/v1/sessions/s/messages", json={"content": "buffer only"})
            assert r.status_code == 201, r.text
            assert [m["content"] for m in c.get("/v1/sessions/s/messages").json()["messages"]] == ["buffer only"]
            off = c.post("/v1/memories", json={"content": "x"})
            assert off.status_code == 501 and off.json()["error"] == {
                "code": "tier_disabled",
                "message": "the vector_database tier is not enabled on this server (enabled_memories)",
                "field": "enabled_memories",
            }
            assert "retry-after" not in off.headers
            assert c.get("/v1/sessions/s/summary").status_code == 501
        assert MemoryType.VECTOR_DATABASE not in orchestrator.memories
    finally:
        server.stop()
    with pytest.raises(BackendUnavailable):
        _ = orchestrator.stores  # closed by the lifespan shutdown
