"""API keys against the real service: missing, wrong, malformed, other tenant, admin, revoked, hashed at rest, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest
from service_fixtures import new_user

from memory_implementations.service.auth import hash_key, parse_key, verify_key

pytest_plugins = ["service_fixtures"]


def _err(r) -> dict:
    body = r.json()
    assert set(body) >= {"error"}, body
    return body["error"]


def test_missing_key_is_401_with_json_error(live):
    with live.client() as c:
        r = c.post("/v1/context", json={"query": "hi", "session_id": "s"})
    assert r.status_code == 401
    err = _err(r)
    assert err["code"] == "unauthorized" and err["field"] == "authorization" and "missing" in err["message"]
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "headers, word",
    [
        ({"Authorization": "Bearer mi_0123abcd_thisisnotarealsecretbutlongenough"}, "unknown"),
        ({"X-API-Key": "mi_0123abcd_thisisnotarealsecretbutlongenough"}, "unknown"),
        ({"Authorization": "Bearer not-a-key"}, "malformed"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Bearer"),
    ],
)
def test_wrong_or_malformed_key_is_401(live, headers, word):
    with live.client(headers=headers) as c:
        r = c.get("/v1/entities")
    assert r.status_code == 401, r.text
    assert word in _err(r)["message"]


def test_a_real_key_with_one_wrong_character_is_401(live, tenant):
    _, key = tenant
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    with live.client(tampered) as c:
        assert c.get("/v1/entities").status_code == 401
    with live.client(key) as c:
        assert c.get("/v1/entities").status_code == 200


def test_bearer_and_x_api_key_both_work(live, tenant):
    user, key = tenant
    for header in ("bearer", "x-api-key"):
        with live.client(key, header=header) as c:
            r = c.put("/v1/kv/prefs/color", json={"value": header})
            assert r.status_code in (200, 201), r.text
            assert c.get("/v1/kv/prefs/color").json() == {
                "namespace": "prefs",
                "key": "color",
                "user_id": user,
                "value": header,
            }


def test_key_of_user_a_gets_403_on_user_b(live, keys):
    a, b = new_user(), new_user()
    key_a, _ = keys.create(a)
    key_b, _ = keys.create(b)
    with live.client(key_b) as c:
        mem = c.post("/v1/memories", json={"content": "B's private fact: the safe code is 4711"}).json()
        c.put("/v1/kv/secrets/code", json={"value": 4711})
    with live.client(key_a) as c:
        attempts = [
            c.post("/v1/context", json={"query": "safe code", "session_id": "s", "user_id": b}),
            c.post("/v1/turns", json={"session_id": "s", "user_id": b, "user_message": "x", "assistant_message": "y"}),
            c.post("/v1/memories", json={"content": "planted", "user_id": b}),
            c.post("/v1/memories/batch", json={"user_id": b, "memories": [{"content": "planted"}]}),
            c.post("/v1/memories/batch", json={"memories": [{"content": "ok"}, {"content": "x", "user_id": b}]}),
            c.post("/v1/memories/search", json={"query": "safe code", "user_id": b}),
            c.get(f"/v1/memories/{mem['id']}", params={"user_id": b}),
            c.patch(f"/v1/memories/{mem['id']}", params={"user_id": b}, json={"content": "overwritten"}),
            c.delete(f"/v1/memories/{mem['id']}", params={"user_id": b}),
            c.get("/v1/kv/secrets/code", params={"user_id": b}),
            c.put("/v1/kv/secrets/code", json={"value": 1, "user_id": b}),
            c.get("/v1/kv/secrets", params={"user_id": b}),
            c.get("/v1/sessions/s/messages", params={"user_id": b}),
            c.delete("/v1/sessions/s/messages", params={"user_id": b}),
            c.get("/v1/working/ns", params={"user_id": b}),
            c.get("/v1/entities", params={"user_id": b}),
            c.delete(f"/v1/users/{b}"),
        ]
        for r in attempts:
            assert r.status_code == 403, (r.request.method, r.request.url, r.status_code, r.text)
            err = _err(r)
            assert err["code"] == "forbidden" and err["field"] == "user_id" and b in err["message"]
        # without user_id the key only ever sees its own tenant: B's memory is simply not found
        assert c.get(f"/v1/memories/{mem['id']}").status_code == 404
        assert c.get("/v1/kv/secrets/code").status_code == 404
        hits = c.post("/v1/memories/search", json={"query": "safe code", "threshold": -1}).json()["memories"]
        assert all(h["user_id"] == a for h in hits)
    with live.client(key_b) as c:  # nothing of B's was changed by A's attempts
        assert c.get(f"/v1/memories/{mem['id']}").json()["content"] == "B's private fact: the safe code is 4711"
        assert c.get("/v1/kv/secrets/code").json()["value"] == 4711


def test_admin_key_touches_any_user_but_must_name_one(live, keys):
    a, b = new_user(), new_user()
    admin, record = keys.create(admin=True, name="ops")
    assert record.is_admin and record.users == ()
    with live.client(admin) as c:
        for user in (a, b):
            r = c.put("/v1/kv/prefs/x", json={"value": user, "user_id": user})
            assert r.status_code == 201, r.text
        assert c.get("/v1/kv/prefs/x", params={"user_id": a}).json()["value"] == a
        assert c.get("/v1/kv/prefs/x", params={"user_id": b}).json()["value"] == b
        r = c.get("/v1/kv/prefs/x")
        assert r.status_code == 400 and _err(r)["field"] == "user_id"
        assert c.delete(f"/v1/users/{a}").status_code == 200
        assert c.get("/v1/kv/prefs/x", params={"user_id": a}).status_code == 404


def test_revoked_key_is_refused_at_once_with_ttl_zero(live, keys):
    user = new_user()
    key, record = keys.create(user)
    with live.client(key) as c:
        assert c.get("/v1/entities").status_code == 200
        revoked = keys.revoke(record.prefix)
        assert revoked.id == record.id and revoked.revoked_at is not None
        r = c.get("/v1/entities")
    assert r.status_code == 401 and "revoked" in _err(r)["message"]


def test_keys_are_stored_hashed_never_in_clear(live, keys, pg_dsn):
    key, record = keys.create(new_user())
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            "SELECT key_hash, prefix, name, users, user_id FROM memory_api_keys WHERE id = %s", (record.id,)
        ).fetchone()
    assert row is not None
    assert row[0] == hash_key(key) and row[0].startswith("sha256:")
    secret = key.split("_", 2)[2]
    assert all(secret not in str(v) for v in row)
    assert row[1] == parse_key(key) == record.prefix


def test_hash_schemes_and_constant_time_verify():
    key = "mi_0a1b2c3d_" + "s" * 43
    assert verify_key(key, hash_key(key))
    assert not verify_key(key + "x", hash_key(key))
    peppered = hash_key(key, "pepper-1")
    assert peppered.startswith("hmac-sha256:") and peppered != hash_key(key)
    assert verify_key(key, peppered, "pepper-1")
    assert not verify_key(key, peppered, "pepper-2")
    assert not verify_key(key, peppered, None)
    assert not verify_key(key, "md5:abc")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memory_implementations.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_keys_cli_create_list_revoke(live, pg_dsn):
    user = new_user()
    created = _cli("keys", "create", "--user", user, "--name", "cli test", "--dsn", pg_dsn, "--json")
    assert created.returncode == 0, created.stderr
    info = json.loads(created.stdout)
    key = info["key"]
    assert key.startswith(f"mi_{info['prefix']}_") and info["users"] == [user] and info["is_admin"] is False
    with live.client(key) as c:
        assert c.put("/v1/kv/a/b", json={"value": 1}).status_code == 201

    human = _cli("keys", "create", "--user", user, "--dsn", pg_dsn)
    assert human.returncode == 0 and "shown only once" in human.stdout
    assert sum(line.startswith("mi_") for line in human.stdout.splitlines()) == 1

    listed = _cli("keys", "list", "--dsn", pg_dsn, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    mine = [r for r in rows if r["id"] == info["id"]]
    assert mine and mine[0]["prefix"] == info["prefix"] and mine[0]["revoked_at"] is None
    secret = key.split("_", 2)[2]
    assert secret not in listed.stdout and "sha256" not in listed.stdout
    table = _cli("keys", "list", "--dsn", pg_dsn)
    assert info["prefix"] in table.stdout and secret not in table.stdout

    revoked = _cli("keys", "revoke", info["prefix"], "--dsn", pg_dsn)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    with live.client(key) as c:
        assert c.put("/v1/kv/a/b", json={"value": 2}).status_code == 401
    missing = _cli("keys", "revoke", "ffffffff", "--dsn", pg_dsn)
    assert missing.returncode != 0 and "no API key" in missing.stderr
    no_user = _cli("keys", "create", "--dsn", pg_dsn)
    assert no_user.returncode != 0 and "--user" in no_user.stderr


def test_cli_help_has_examples():
    for args in (
        ("serve", "--help"),
        ("keys", "--help"),
        ("keys", "create", "--help"),
        ("keys", "list", "--help"),
        ("keys", "revoke", "--help"),
    ):
        out = _cli(*args)
        assert out.returncode == 0, out.stderr
        assert "examples:" in out.stdout and "memory-orchestrator" in out.stdout
