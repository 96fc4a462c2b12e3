"""trim_messages / count_message_tokens with the package tokenizer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from memory_implementations.errors import ValidationError
from memory_implementations.integrations import count_message_tokens, trim_messages
from memory_implementations.integrations.messages import (
    IMAGE_TOKENS_ANTHROPIC,
    IMAGE_TOKENS_HIGH,
    IMAGE_TOKENS_LOW,
    count_tokens,
    count_tokens_approximate,
    get_context_limit,
    message_text,
)
from memory_implementations.tokens import get_tokenizer

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def chat(n: int) -> list[dict[str, str]]:
    """``n`` alternating user/assistant messages of different lengths."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "word " * (i % 5)}
            for i in range(n)]


def test_count_matches_the_tokenizer_framing() -> None:
    msgs = [SYSTEM, *chat(6)]
    tok = get_tokenizer("gpt-4o")
    assert count_message_tokens(msgs) == tok.count_messages(msgs)
    assert count_message_tokens([]) == 0
    assert count_message_tokens(msgs, model="gpt-4o") == count_message_tokens(msgs)
    # content blocks and tool calls cost tokens too; LangChain/LlamaIndex-like objects are understood
    text_only = count_message_tokens([{"role": "user", "content": "hello there"}])
    blocks = {"role": "user", "content": [{"type": "text", "text": "hello there"},
                                          {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
    assert count_message_tokens([blocks]) == text_only + IMAGE_TOKENS_HIGH
    low = {"role": "user", "content": [{"type": "text", "text": "hello there"},
                                       {"type": "image_url", "image_url": {"url": "u", "detail": "low"}}]}
    assert count_message_tokens([low]) == text_only + IMAGE_TOKENS_LOW
    with_call = {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c", "function": {"name": "lookup", "arguments": "{\"q\": \"tea\"}"}}]}
    assert count_message_tokens([with_call]) > count_message_tokens([{"role": "assistant", "content": ""}])
    lc_like = SimpleNamespace(type="human", content="hello there")
    assert count_message_tokens([lc_like]) == count_message_tokens([{"role": "user", "content": "hello there"}])
    assert "lookup" in message_text(with_call)
    with pytest.raises(ValidationError) as err:
        count_message_tokens("hello")  # type: ignore[arg-type]
    assert err.value.field == "messages"


def test_trim_last_keeps_system_and_newest_within_budget() -> None:
    msgs = [SYSTEM, *chat(20)]
    for budget in (30, 60, 100, 150):
        out = trim_messages(msgs, budget)
        assert out[0] is SYSTEM
        assert count_message_tokens(out) <= budget
        tail = out[1:]
        assert tail == msgs[len(msgs) - len(tail):]  # a suffix, order kept
        if len(tail) < 20:  # the next older message would not have fit
            assert count_message_tokens([SYSTEM, msgs[len(msgs) - len(tail) - 1], *tail]) > budget
    assert trim_messages(msgs, 10_000) == msgs


def test_trim_first_and_without_system() -> None:
    msgs = [SYSTEM, *chat(10)]
    out = trim_messages(msgs, 60, strategy="first")
    assert out[0] is SYSTEM and out[1:] == msgs[1:len(out)]
    assert count_message_tokens(out) <= 60
    no_sys = trim_messages(msgs, 40, keep_system=False)
    assert SYSTEM not in no_sys and count_message_tokens(no_sys) <= 40 and no_sys[-1] is msgs[-1]


def test_trim_max_messages_partial_and_start_on() -> None:
    msgs = [SYSTEM, *chat(10)]
    assert trim_messages(msgs, 10_000, max_messages=3) == [SYSTEM, *msgs[-3:]]
    long = [{"role": "user", "content": "alpha " * 200}, {"role": "assistant", "content": "short reply"}]
    whole = trim_messages(long, 60)
    assert whole == [long[1]]
    partial = trim_messages(long, 60, allow_partial=True)
    assert partial[1] is long[1] and partial[0]["content"].startswith("alpha")
    assert partial[0]["content"] != long[0]["content"] and count_message_tokens(partial) <= 60
    # Anthropic wants the first message to be the user's
    assert msgs[-3]["role"] == "assistant"
    assert trim_messages(msgs, 10_000, keep_system=False, max_messages=3, start_on="user") == msgs[-2:]
    assert trim_messages(msgs, 10_000, keep_system=False, max_messages=3) == msgs[-3:]


def test_trim_drops_orphaned_tool_results() -> None:
    msgs = [
        {"role": "user", "content": "look it up " * 30},
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": "result", "tool_call_id": "c1"},
        {"role": "assistant", "content": "Here it is."},
    ]
    budget = count_message_tokens(msgs[2:])  # room for the tool result but not the call that made it
    out = trim_messages(msgs, budget)
    assert out == [msgs[3]]


def test_trim_validation() -> None:
    with pytest.raises(ValidationError) as err:
        trim_messages([SYSTEM, *chat(3)], 5)
    assert err.value.field == "max_tokens"  # the system message alone does not fit
    for kwargs, field in (({"max_tokens": -1}, "max_tokens"), ({"max_tokens": 10, "strategy": "middle"}, "strategy"),
                          ({"max_tokens": 10, "max_messages": -2}, "max_messages")):
        with pytest.raises(ValidationError) as err:
            trim_messages(chat(3), **kwargs)  # type: ignore[arg-type]
        assert err.value.field == field
    assert trim_messages([], 100) == []


def test_count_tokens_never_counts_a_part_as_zero() -> None:
    from langchain_core.messages import AIMessage, ToolMessage
    from llama_index.core.base.llms.types import ChatMessage, ImageBlock, TextBlock

    empty = count_tokens([{"role": "assistant", "content": ""}])
    # Anthropic tool_use / tool_result blocks
    use = {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "lookup",
                                             "input": {"city": "Lisbon"}}]}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                           "content": [{"type": "text", "text": "sunny, 24 degrees"}]}]}
    assert count_tokens([use]) > empty and count_tokens([result]) > empty
    # unknown blocks (audio, files) cost their JSON with the payload elided, never zero and never the payload
    audio = {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "QUJD" * 5000,
                                                                                "format": "wav"}}]}
    audio_cost = count_tokens([audio]) - count_tokens([{"role": "user", "content": []}])
    assert 1 <= audio_cost < 50
    # a named message pays for its name
    assert count_tokens([{"role": "user", "content": "hi", "name": "sam"}]) > count_tokens([{"role": "user",
                                                                                            "content": "hi"}])
    # real LangChain and LlamaIndex messages
    ai = AIMessage(content="", tool_calls=[{"name": "lookup", "args": {"city": "Lisbon"}, "id": "c1"}])
    assert count_tokens([ai]) > count_tokens([AIMessage(content="")])
    assert count_tokens([ToolMessage(content="sunny", tool_call_id="c1")]) == count_tokens(
        [{"role": "tool", "content": "sunny"}])
    picture = ChatMessage(role="user", blocks=[TextBlock(text="what is this?"),
                                               ImageBlock(url="https://example.com/cat.png")])
    assert count_tokens([picture]) == count_tokens([{"role": "user", "content": "what is this?"}]) + \
        IMAGE_TOKENS_ANTHROPIC
    assert count_message_tokens is count_tokens


def test_trim_by_message_count_token_strategy_and_preserve_system() -> None:
    msgs = [SYSTEM, *chat(12)]
    assert trim_messages(msgs, max_messages=4) == [SYSTEM, *msgs[-4:]]
    assert trim_messages(msgs, strategy="first", max_messages=2) == [SYSTEM, *msgs[1:3]]
    assert trim_messages(msgs, max_messages=4, preserve_system=False) == msgs[-4:]
    by_tokens = trim_messages(msgs, 70, strategy="token")
    assert by_tokens == trim_messages(msgs, 70) and count_tokens(by_tokens) <= 70
    assert by_tokens[0] is SYSTEM and by_tokens[-1] is msgs[-1]
    # both limits: the tighter one wins
    assert trim_messages(msgs, 10_000, max_messages=2) == [SYSTEM, *msgs[-2:]]
    for kwargs in ({}, {"strategy": "token"}, {"strategy": "token", "max_tokens": 50, "max_messages": 2}):
        with pytest.raises(ValidationError) as err:
            trim_messages(msgs, **kwargs)  # type: ignore[arg-type]
        assert err.value.field == "max_tokens"


def test_approximate_count_and_context_limits() -> None:
    msgs = [SYSTEM, *chat(8)]
    approx = count_tokens_approximate(msgs)
    exact = count_tokens(msgs)
    assert approx == sum(4 + (len(m["content"]) + 3) // 4 for m in msgs) + 3
    assert 0.5 * exact <= approx <= 2 * exact
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}
    assert count_tokens_approximate([image]) == 4 + IMAGE_TOKENS_HIGH + 3  # never zero, tokenizer or not
    assert count_tokens_approximate([]) == 0
    assert get_context_limit("gpt-4o-mini") == 128_000
    assert get_context_limit("gpt-4") == 8_192 and get_context_limit("gpt-4-turbo-2024-04-09") == 128_000
    assert get_context_limit("openai/gpt-4.1-mini") == 1_047_576
    assert get_context_limit("claude-sonnet-4-5") == 200_000
    assert get_context_limit("models/gemini-2.5-flash") == 1_048_576
    assert get_context_limit("my-local-llama") == 8_192 and get_context_limit("my-local-llama", 32_000) == 32_000
    with pytest.raises(ValidationError) as err:
        get_context_limit("")
    assert err.value.field == "model"
