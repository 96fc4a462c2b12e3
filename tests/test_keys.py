"""Redis key layout: ``<prefix>:{<tenant>:<scope>}:<tier>:<name>``, hash tags, no collisions, SCAN patterns."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import unquote

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from memory_implementations.stores.keys import KeyBuilder

# ids full of the characters that could break the layout: separators, braces, globs, escapes, any
# unicode (lone surrogates excluded: they cannot be encoded as UTF-8; see the report on keys.py)
nasty = st.text(
    alphabet=st.sampled_from(list(":{}*?[]\\%/ ab01é🙂")) | st.characters(codec="utf-8"), max_size=12
)
tiers = st.sampled_from(["buffer", "summary", "vector", "working", "kv", "entity"])


def hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes (the rule from the cluster spec)."""
    start = key.find("{")
    if start == -1:
        return None
    end = key.find("}", start + 1)
    if end == -1 or end == start + 1:
        return None
    return key[start + 1 : end]


def parse(key: str) -> tuple[str, str, str, str, str]:
    """Split a key back into its decoded parts (prefix, tenant, scope, tier, name)."""
    parts = key.split(":")
    assert len(parts) in (4, 5), key
    prefix, tenant, scope, tier = parts[0], parts[1], parts[2], parts[3]
    assert tenant.startswith("{") and scope.endswith("}")
    name = parts[4] if len(parts) == 5 else ""
    return prefix, unquote(tenant[1:]), unquote(scope[:-1]), tier, unquote(name)


@pytest.fixture(scope="module")
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client on the test Redis."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_layout() -> None:
    keys = KeyBuilder()
    assert keys.key("user-1", "sess-1", "buffer", "messages") == "mi:{user-1:sess-1}:buffer:messages"
    assert KeyBuilder("app").key("u", "s", "kv", "k") == "app:{u:s}:kv:k"
    assert keys.key("a:b", "{c}", "kv", "x:y") == "mi:{a%3Ab:%7Bc%7D}:kv:x%3Ay"


@settings(max_examples=300, deadline=None)
@given(tenant=nasty, scope=nasty, tier=tiers, name=nasty)
def test_round_trip_and_hash_tag(tenant: str, scope: str, tier: str, name: str) -> None:
    keys = KeyBuilder()
    key = keys.key(tenant, scope, tier, name)
    assert parse(key) == ("mi", tenant, scope, tier, name)
    base = keys.key(tenant, scope, "other", "n")
    tag = hash_tag(key)
    assert tag is not None and tag == hash_tag(base)
    assert unquote(tag.split(":")[0]) == tenant and unquote(tag.split(":")[1]) == scope
    # every key of one tenant+scope lands in one cluster slot, whatever the tier or name
    assert key_slot(key.encode()) == key_slot(keys.key(tenant, scope, "other", "zzz").encode())


@settings(max_examples=500, deadline=None)
@given(a=st.tuples(nasty, nasty, tiers, nasty), b=st.tuples(nasty, nasty, tiers, nasty))
def test_distinct_ids_never_collide(a: tuple[str, str, str, str], b: tuple[str, str, str, str]) -> None:
    keys = KeyBuilder()
    if a != b:
        assert keys.key(*a) != keys.key(*b)
    else:
        assert keys.key(*a) == keys.key(*b)


@pytest.mark.parametrize(
    ("one", "two"),
    [
        (("a:b", "c"), ("a", "b:c")),
        (("a}", "b"), ("a", "}b")),
        (("{a", "b"), ("", "a:b")),
        (("a%3Ab", "c"), ("a:b", "c")),
    ],
)
def test_known_separator_collisions_are_avoided(one: tuple[str, str], two: tuple[str, str]) -> None:
    keys = KeyBuilder()
    assert keys.key(*one, "kv", "n") != keys.key(*two, "kv", "n")
    assert hash_tag(keys.key(*one, "kv", "n")) != hash_tag(keys.key(*two, "kv", "n"))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tenants=st.lists(nasty, min_size=2, max_size=4, unique=True), scope=nasty, name=nasty)
def test_scan_patterns_match_exactly_one_tenant(r: redis.Redis, tenants: list[str], scope: str, name: str) -> None:
    keys = KeyBuilder(f"t{uuid.uuid4().hex[:8]}")
    written: dict[str, set[str]] = {}
    for tenant in tenants:
        made = {keys.key(tenant, scope, tier, name) for tier in ("kv", "buffer", "kv_history")}
        made.add(keys.key(tenant, scope + "x", "kv", name))
        for key in made:
            r.set(key, "1")
        written[tenant] = made
    try:
        for tenant in tenants:
            found = set(r.scan_iter(match=keys.pattern(tenant), count=1000))
            assert found == written[tenant]
            in_scope = set(r.scan_iter(match=keys.pattern(tenant, scope), count=1000))
            assert in_scope == {keys.key(tenant, scope, tier, name) for tier in ("kv", "buffer", "kv_history")}
            kv_only = set(r.scan_iter(match=keys.pattern(tenant, scope, "kv"), count=1000))
            # a tier's pattern never matches a tier whose name merely starts with it
            assert kv_only == {keys.key(tenant, scope, "kv", name)}
            one = set(r.scan_iter(match=keys.pattern(tenant, scope, "buffer", name), count=1000))
            assert one == {keys.key(tenant, scope, "buffer", name)}
    finally:
        r.delete(*[k for made in written.values() for k in made])
