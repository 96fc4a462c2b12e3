"""``ctx.chat()``: memory + the question, the same request ``orchestrator.turn(...).messages`` sends."""

from __future__ import annotations

from typing import Any

import pytest

from memory_implementations.errors import ValidationError
from memory_implementations.orchestrator import MemoryOrchestrator
from memory_implementations.stores import Stores
from memory_implementations.types import ContextRequest


async def test_chat_ends_with_the_question_and_matches_a_turn(
    base_config: dict[str, Any], stores: Stores, uid: str
) -> None:
    orchestrator = MemoryOrchestrator({**base_config, "warm_up": False}, stores=stores)
    await orchestrator.store_turn("s1", uid, "I live in Lisbon.", "Noted.")
    await orchestrator.flush()
    question = "Where do I live?"
    ctx = await orchestrator.get_comprehensive_context(ContextRequest(query=question, session_id="s1", user_id=uid))
    assert ctx.messages and ctx.messages[-1]["content"] != question  # messages: the memory alone
    chat = ctx.chat()
    assert chat[:-1] == ctx.messages and chat[-1] == {"role": "user", "content": question}
    async with orchestrator.turn("s1", uid, question, store=False) as turn:
        assert turn.messages == chat  # one answer to "what do I send?"
    anthropic = ctx.chat(format="anthropic", system_prompt="Be brief.")
    assert anthropic["system"].startswith("Be brief.") and question in anthropic["messages"][-1]["content"]
    assert ctx.chat("And my dog?")[-1]["content"] == "And my dog?"
    empty = await orchestrator.get_comprehensive_context(ContextRequest(query="", session_id="s1", user_id=uid))
    with pytest.raises(ValidationError) as err:
        empty.chat()
    assert err.value.field == "query"
    await orchestrator.forget(uid)
