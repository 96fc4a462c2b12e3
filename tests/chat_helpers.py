"""Helpers shared by the integration tests: an orchestrator factory fixture and conversation reads.

Load the fixture with ``pytest_plugins = ("chat_helpers",)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from memory_implementations.integrations.failopen import failopen_wrapper
from memory_implementations.memories.buffer import ConversationBufferMemory
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.stores import Stores
from memory_implementations.types import MemoryType

MakeOrchestrator = Callable[..., Awaitable[MemoryOrchestrator]]


@pytest.fixture
async def make_orchestrator(base_config: dict[str, Any], stores: Stores) -> AsyncIterator[MakeOrchestrator]:
    """``await make_orchestrator(tiers, **config)``: initialized on the shared stores; writer and tiers closed after."""
    made: list[MemoryOrchestrator] = []

    async def make(tiers: list[MemoryType], **extra: Any) -> MemoryOrchestrator:
        o = MemoryOrchestrator({**base_config, "enabled_memories": tiers, "tier_timeout_ms": 5000, **extra},
                               stores=stores)
        await o.initialize()
        made.append(o)
        return o

    yield make
    for o in made:
        await failopen_wrapper(o).aclose()
        await o.close()


async def history(o: MemoryOrchestrator, uid: str, sid: str) -> list[tuple[str, str]]:
    """(role, content) of the session's stored messages, oldest first."""
    tier = o.memories[MemoryType.CONVERSATION_BUFFER]
    assert isinstance(tier, ConversationBufferMemory)
    return [(m.role, m.content) for m in await tier.get_messages(sid, uid)]
