"""The memory-read circuit breaker: open after a failure, one probe per window, doubling, closed by success."""

from __future__ import annotations

import pytest

from memory_implementations.errors import ValidationError
from memory_implementations.integrations import MemoryAugmentedLLM
from memory_implementations.integrations._breaker import CircuitBreaker
from memory_implementations.orchestrator import MemoryOrchestrator


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_probes_doubles_and_closes() -> None:
    clock = Clock()
    b = CircuitBreaker(1.0, 4.0, clock=clock)
    assert b.allow() and b.allow() and not b.is_open  # closed: every read goes ahead
    b.failure("redis down")
    assert b.is_open and not b.allow() and b.remaining_s() == pytest.approx(1.0)
    assert b.last_failure == "redis down"
    clock.now += 1.0
    assert b.allow()  # the probe
    assert not b.allow()  # others stay out while the probe runs
    b.failure("still down")  # the probe failed: open for twice as long
    clock.now += 1.5
    assert not b.allow()
    clock.now += 0.5
    assert b.allow()
    b.failure("still down")
    b.failure("still down")
    assert b.remaining_s() == pytest.approx(4.0)  # capped at max_s
    clock.now += 4.0
    assert b.allow()
    b.success()
    assert not b.is_open and b.allow() and b.allow() and b.last_failure is None
    b.failure("again")
    assert b.remaining_s() == pytest.approx(1.0)  # success reset the window
    b.reset()
    assert b.allow()


def test_disabled_breaker_never_skips() -> None:
    b = CircuitBreaker(0)
    b.failure("down")
    assert not b.enabled and not b.is_open and b.allow() and b.remaining_s() == 0


def test_wrapper_validates_breaker_settings(base_config: dict) -> None:
    o = MemoryOrchestrator(base_config)
    for name in ("breaker_s", "breaker_max_s"):
        with pytest.raises(ValidationError) as err:
            MemoryAugmentedLLM(o, **{name: -1})
        assert err.value.field == name
    assert MemoryAugmentedLLM(o, breaker_s=0).breaker.enabled is False


async def test_open_breaker_skips_the_read_without_touching_memory(base_config: dict, uid: str, sid: str) -> None:
    dead = MemoryOrchestrator({**base_config, "redis_url": "redis://127.0.0.1:1/0",
                               "database_url": "postgresql://nobody@127.0.0.1:1/none"})
    llm_calls: list[list[dict[str, str]]] = []

    async def model(messages: list[dict[str, str]]) -> str:
        llm_calls.append(messages)
        return "ok"

    wrapper = MemoryAugmentedLLM(dead, model, timeout_ms=3000, breaker_s=60, retry_initial_s=3600)
    try:
        first = await wrapper.complete("hello?", user_id=uid, session_id=sid)
        assert not first.used_memory and not first.degraded["memory"].startswith("skipped")
        init_task = wrapper._init_task
        second = await wrapper.complete("again?", user_id=uid, session_id=sid)
        assert not second.used_memory and second.degraded["memory"].startswith("skipped for")
        assert wrapper._init_task is init_task  # no new connection attempt while open
        assert [m[-1]["content"] for m in llm_calls] == ["hello?", "again?"]  # the model answered both
    finally:
        await wrapper.aclose()
        await dead.close()
