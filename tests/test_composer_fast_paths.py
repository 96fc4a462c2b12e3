"""The composer's fast paths give the same answers as the straightforward computations they replace."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory_implementations import composer
from memory_implementations.composer import (
    COUNT_CACHE_SIZE,
    NEAR_DUPLICATE_JACCARD,
    Candidate,
    TokenCounter,
    _size_window,
    _word_set,
    compose,
    dedupe,
    near_duplicate,
)
from memory_implementations.context import ComprehensiveContext
from memory_implementations.tokens import COUNT_CACHE_MAX_CHARS, get_tokenizer

TOK = get_tokenizer("gpt-4o")


def test_size_window_is_near_duplicates_size_bound() -> None:
    for n in range(1, 200):
        window = _size_window(n)
        for m in range(1, 260):
            assert (m in window) == (min(n, m) / max(n, m) >= NEAR_DUPLICATE_JACCARD), (n, m)


WORDS = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h", "tea", "Tea!", "x y", "é"])
CONTENT = st.lists(WORDS, min_size=1, max_size=14).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(sections=st.dictionaries(st.sampled_from(["summary", "entities", "key_value", "vector_search"]),
                                st.lists(CONTENT, max_size=8), min_size=1))
def test_dedupe_matches_the_pairwise_reference(sections: dict[str, list[str]]) -> None:
    counter = TokenCounter(TOK)

    def cands() -> dict[str, list[Candidate]]:
        return {s: [Candidate(s, {}, c, 1.0, i, None, counter.count(c), 1) for i, c in enumerate(items)]
                for s, items in sections.items()}

    weights = {"summary": 0.4, "entities": 0.3, "key_value": 0.2, "vector_search": 0.1}
    fast = cands()
    removed = dedupe(fast, weights)
    # reference: every kept item of a higher section against every later one, pair by pair
    ref = cands()
    kept_sets: list[frozenset[str]] = []
    seen: set[str] = set()
    ref_removed = {s: 0 for s in ref}
    for s in sorted(ref, key=lambda s: -weights[s]):
        keep = []
        for c in ref[s]:
            if c.norm in seen or any(near_duplicate(_word_set(c.norm), o) for o in kept_sets):
                ref_removed[s] += 1
            else:
                keep.append(c)
        ref[s] = keep
        seen.update(c.norm for c in keep)
        kept_sets.extend(_word_set(c.norm) for c in keep)
    assert removed == ref_removed
    assert {s: [c.content for c in v] for s, v in fast.items()} == {s: [c.content for c in v] for s, v in ref.items()}


def test_renderings_are_counted_from_their_lines_and_recounted_only_near_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counter = TokenCounter(TOK)
    items = {
        "entities": [{"content": f"Entity {i} likes tea number {i}."} for i in range(5)],
        "key_value": [{"content": f"k{i}"} for i in range(120)],
        "recent_conversation": [{"role": "user", "content": f"message {i} about tea"} for i in range(6)],
    }
    roomy = compose(items, max_total_tokens=4000, counter=counter)
    assert counter.exact_recounts == 0  # far from the budget: summed from the lines only
    assert roomy.token_counts["text"] == TOK.count(roomy.text)
    monkeypatch.setattr(composer, "RECOUNT_MARGIN", 0.3)  # the item costs are conservative: widen "near"
    near_seen = 0
    for budget in range(40, roomy.total_tokens + 5, 7):
        before = counter.exact_recounts
        ctx = compose(items, max_total_tokens=budget, counter=counter)
        counts_ok(ctx, budget)
        near = ctx.total_tokens >= budget * (1 - composer.RECOUNT_MARGIN)
        if near:
            assert counter.exact_recounts > before
        near_seen += near
    assert near_seen


def counts_ok(ctx: ComprehensiveContext, budget: int) -> None:
    """The reported counts are the tokenizer's counts of the final strings, within the budget."""
    a = ctx.anthropic()
    assert ctx.token_counts == {
        "messages": TOK.count_messages(ctx.messages),
        "anthropic": TOK.count(a["system"]) + TOK.count_messages(a["messages"]),
        "text": TOK.count(ctx.text),
    }
    assert ctx.total_tokens <= budget


def test_token_counter_does_not_cache_whole_renderings() -> None:
    counter = TokenCounter(TOK)
    assert counter.maxsize == COUNT_CACHE_SIZE
    big = "word " * (COUNT_CACHE_MAX_CHARS // 5 + 10)
    assert counter.count(big) == TOK.count(big)
    assert big not in counter._cache
    assert counter.count("small") and "small" in counter._cache
