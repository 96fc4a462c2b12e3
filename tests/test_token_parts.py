"""``TokenCounter.count_parts``: per-line token counts add up to the count of the joined rendering, exactly."""

from __future__ import annotations

from typing import Any

import pytest
import tiktoken
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from memory_implementations.composer import TokenCounter, _additive
from memory_implementations.tokens import NEWLINE_ADDITIVE_PATTERNS, Tokenizer

O200K_PATTERN = next(p for p in NEWLINE_ADDITIVE_PATTERNS if "\\p{Lu}" in p)


def _tokenizer_with_pattern(pattern: str | None) -> Tokenizer:
    """The offline cl100k encoding, or its merges under another pre-tokenizer ``pattern`` (o200k's)."""
    tok = Tokenizer("gpt-4o")
    if pattern is not None:
        base: Any = tok._enc
        tok._enc = tiktoken.Encoding(
            name="o200k-pattern-test", pat_str=pattern, mergeable_ranks=base._mergeable_ranks, special_tokens={}
        )
    return tok


TOKENIZERS = {"cl100k": _tokenizer_with_pattern(None), "o200k-pattern": _tokenizer_with_pattern(O200K_PATTERN)}

# adversarial: punctuation runs, slashes, digits, marks, apostrophes, CJK, emoji, odd spaces, CR/LF inside
ALPHABET = st.sampled_from([
    *"ab Z9'.,!?/-:#*()[]{}\"\t\r\n\u00a0\u2028\u3000",
    *["\u0301", "\u0915\u094d", "\u65e5\u672c", "\U0001f600", "'s", "'ll", "123456", "\u00e9", "\u200b", "\x1c",
      "\ufffd"],
])
TEXT = st.lists(ALPHABET, min_size=1, max_size=12).map("".join) | st.text(min_size=1, max_size=30)
PARTS = st.lists(st.tuples(TEXT, st.sampled_from(["\n", "\n\n"])), min_size=1, max_size=8).map(
    lambda ps: [*ps[:-1], (ps[-1][0], "")]
)


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(parts=PARTS)
@example(parts=[("Memory:", "\n\n"), ("## Known entities", "\n"), ("- a.", "\n"), ("- b/c", "")])
@example(parts=[("x.", "\n"), ("/etc", "")])  # "/" after a newline: o200k joins it to ".\n" (not additive)
def test_count_parts_equals_the_count_of_the_joined_text(name: str, parts: list[tuple[str, str]]) -> None:
    tok = TOKENIZERS[name]
    counter = TokenCounter(tok)
    joined = "".join(t + s for t, s in parts)
    assert counter.count_parts(parts) == tok.count(joined)


def test_additive_only_for_known_patterns_and_safe_parts() -> None:
    assert TOKENIZERS["cl100k"].newline_additive
    chars4 = Tokenizer("gpt-4o")
    chars4._enc = None
    assert not chars4.newline_additive
    assert _additive([("a", "\n"), ("b", "")])
    assert not _additive([("a ", "\n"), ("b", "")])  # ends with a space
    assert not _additive([("a", "\n"), (" b", "")])  # starts with a space
    assert not _additive([("a.", "\n"), ("/b", "")])  # "/" joins o200k's punctuation chunk
    assert not _additive([("a", ""), ("b", "")])  # no newline between parts
    assert not _additive([("a", "\n"), ("b", "\n")])  # a trailing newline
    assert not _additive([("a", " \n"), ("b", "")])  # separator is not a newline run


def test_count_parts_falls_back_to_the_joined_count() -> None:
    chars4 = Tokenizer("gpt-4o")
    chars4._enc = None
    counter = TokenCounter(chars4)
    parts = [("abc", "\n"), ("de", "")]
    assert counter.count_parts(parts) == chars4.count("abc\nde") == 2
