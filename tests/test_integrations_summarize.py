"""summarize_messages / asummarize_messages / SummarizationMiddleware with the offline and the OpenAI summariser."""

from __future__ import annotations

from typing import Any

import pytest
from protocol_server import ProtocolServer

from memory_implementations.errors import ValidationError
from memory_implementations.integrations import (
    SummarizationMiddleware,
    SummaryResult,
    asummarize_messages,
    count_tokens,
    summarize_messages,
)
from memory_implementations.integrations.summarize import SUMMARY_PREFIX
from memory_implementations.tokens import get_tokenizer

pytest_plugins = ("conftest_providers",)

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
FACTS = ["My name is Priya and I work as a marine biologist.", "I live in Lisbon near the river.",
         "My dog is called Pepper.", "I prefer short answers."]


def conversation() -> list[dict[str, str]]:
    msgs: list[dict[str, str]] = [SYSTEM]
    for i, fact in enumerate(FACTS):
        msgs += [{"role": "user", "content": fact}, {"role": "assistant", "content": f"Noted ({i})."}]
    return [*msgs, {"role": "user", "content": "What should I cook tonight?"}]


def test_summarize_folds_older_turns_offline() -> None:
    msgs = conversation()
    result = summarize_messages(msgs, keep_last=3, max_summary_tokens=80)
    assert isinstance(result, SummaryResult)
    assert result.original_count == len(msgs) and result.summarized_count == len(msgs) - 1 - 3
    assert result.summarizer == "extractive-textrank"
    out = result.messages
    assert out[0] is SYSTEM and out[-3:] == msgs[-3:] and len(out) == 5
    assert out[1]["role"] == "system" and out[1]["content"] == f"{SUMMARY_PREFIX}\n{result.summary}"
    assert "Priya" in result.summary and "Pepper" in result.summary
    assert get_tokenizer(None).count(result.summary) <= 80
    assert count_tokens(out) < count_tokens(msgs)
    unchanged = summarize_messages(msgs, keep_last=50)
    assert unchanged.messages == msgs and unchanged.summarized_count == 0 and unchanged.summary == ""


async def test_async_version_and_tool_results_stay_with_their_call() -> None:
    tool_chat = [{"role": "user", "content": "I live in Porto."},
                 {"role": "assistant", "content": "", "tool_calls": [
                     {"id": "c", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
                 {"role": "tool", "content": "rain", "tool_call_id": "c"},
                 {"role": "assistant", "content": "It rains in Porto."}]
    folded = await asummarize_messages(tool_chat, keep_last=2)
    assert folded.messages[-1] == tool_chat[-1] and all(m.get("role") != "tool" for m in folded.messages)
    assert "Porto" in folded.summary
    same = await asummarize_messages(conversation(), keep_last=3, max_summary_tokens=80)
    assert same.summary == summarize_messages(conversation(), keep_last=3, max_summary_tokens=80).summary


async def test_bad_arguments_name_the_field() -> None:
    msgs = conversation()
    for kwargs, field in (({"keep_last": -1}, "keep_last"), ({"max_summary_tokens": 0}, "max_summary_tokens"),
                          ({"summarizer": object()}, "summarizer")):
        with pytest.raises(ValidationError) as err:
            summarize_messages(msgs, **kwargs)
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        await asummarize_messages([{"role": "wizard", "content": "x"}, *msgs[1:]], keep_last=1)
    assert err.value.field == "messages[0].role"


async def test_llm_summariser_through_the_openai_sdk(protocol_server: ProtocolServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", protocol_server.openai_base_url)
    protocol_server.reply_next("Priya, a marine biologist in Lisbon, has a dog called Pepper.")
    result = await asummarize_messages(conversation(), keep_last=3, llm_provider="openai", llm_model="gpt-4o-mini")
    assert result.summary == "Priya, a marine biologist in Lisbon, has a dog called Pepper."
    (request,) = protocol_server.requests_to("/chat/completions")
    assert request.body["model"] == "gpt-4o-mini"
    assert "Pepper" in str(request.body["messages"])  # the folded messages went to the model
    with pytest.raises(ValidationError) as err:  # blocking call inside a running loop: a clear error
        summarize_messages(conversation(), keep_last=3, llm_provider="openai")
    assert err.value.field == "summarizer"


def test_middleware_triggers() -> None:
    msgs = conversation()
    by_count = SummarizationMiddleware(trigger_messages=8, keep_last=3)
    assert by_count.should_summarize(msgs) and not by_count.should_summarize(msgs[:5])
    out = by_count.process(msgs)
    assert len(out) == 5 and out[1]["content"].startswith(SUMMARY_PREFIX)
    assert by_count.process(msgs[:5]) == msgs[:5]
    by_tokens = SummarizationMiddleware(trigger_tokens=count_tokens(msgs) - 1, keep_last=3)
    assert by_tokens.should_summarize(msgs)
    assert not SummarizationMiddleware(trigger_tokens=count_tokens(msgs), keep_last=3).should_summarize(msgs)
    assert not SummarizationMiddleware(trigger_messages=1, keep_last=20).should_summarize(msgs)  # nothing to fold
    for kwargs, field in (({}, "trigger_tokens"), ({"trigger_messages": 0}, "trigger_messages"),
                          ({"trigger_tokens": 10, "keep_last": -1}, "keep_last")):
        with pytest.raises(ValidationError) as err:
            SummarizationMiddleware(**kwargs)
        assert err.value.field == field


async def test_middleware_async() -> None:
    middleware = SummarizationMiddleware(trigger_messages=8, keep_last=3)
    out: list[Any] = await middleware.aprocess(conversation())
    assert out == middleware.process(conversation())
