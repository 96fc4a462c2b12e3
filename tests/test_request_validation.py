"""A malformed context request is refused up front with a ValidationError naming the field (never "degraded")."""

from __future__ import annotations

from typing import Any

import pytest

from memory_implementations.errors import ValidationError
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.stores import Stores
from memory_implementations.types import ContextRequest


@pytest.mark.parametrize(
    "fields, bad",
    [
        ({"query": None}, "query"),
        ({"query": 42}, "query"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "  "}, "user_id"),
        ({"user_id": None}, "user_id"),
        ({"user_id": "a\x00b"}, "user_id"),
        ({"session_id": ""}, "session_id"),
        ({"session_id": 7}, "session_id"),
        ({"namespace": ""}, "namespace"),
        ({"max_total_tokens": 0}, "max_total_tokens"),
        ({"max_total_tokens": True}, "max_total_tokens"),
        ({"weights": ["summary"]}, "weights"),
        ({"filters": "k=5"}, "filters"),
    ],
)
def test_a_bad_field_is_named(fields: dict[str, Any], bad: str) -> None:
    with pytest.raises(ValidationError) as err:
        ContextRequest(**fields)
    assert err.value.field == bad and bad in str(err.value)


def test_the_dict_form_validates_the_same_and_keeps_its_defaults() -> None:
    with pytest.raises(ValidationError) as err:
        ContextRequest.from_any({"query": "hi", "user_id": ""})  # an empty id is a mistake, not "default"
    assert err.value.field == "user_id"
    req = ContextRequest.from_any({"query": None, "session_id": "s"})  # None: no search
    assert (req.query, req.user_id, req.session_id) == ("", "default", "s")
    assert ContextRequest.from_any(None).user_id == "default"


@pytest.mark.parametrize(
    "request_fields, bad",
    [
        ({"query": "hi", "session_id": "s", "user_id": ""}, "user_id"),
        ({"query": "hi", "session_id": ""}, "session_id"),
        ({"query": None, "session_id": "s", "max_total_tokens": -1}, "max_total_tokens"),
    ],
)
async def test_the_orchestrator_refuses_before_any_tier_reads(
    base_config: dict[str, Any], stores: Stores, request_fields: dict[str, Any], bad: str
) -> None:
    orchestrator = MemoryOrchestrator({**base_config, "warm_up": False}, stores=stores)
    await orchestrator.initialize()
    reads: list[str] = []
    for tier in orchestrator.memories.values():
        real = tier.get_context

        async def spy(*a: Any, _real: Any = real, **kw: Any) -> Any:
            reads.append("read")
            return await _real(*a, **kw)

        tier.get_context = spy  # type: ignore[method-assign]
    with pytest.raises(ValidationError) as err:
        await orchestrator.get_comprehensive_context(request_fields)
    assert err.value.field == bad
    assert reads == []
    await orchestrator.close()
